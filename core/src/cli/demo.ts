/**
 * `gatehouse demo`: a working gateway with nothing to set up. An embedded PostgreSQL (PGlite,
 * served over its socket package on a loopback port) is the upstream; a fresh token is issued
 * for the identity `demo`; the policy allows reads and writes and denies DDL, so the first
 * `DROP TABLE` shows what a denial looks like. Audit goes to <data-dir>/audit.jsonl.
 */
import { createServer } from 'node:net'
import { resolve } from 'node:path'
import { GatewayConfig } from '../config/schema.js'
import { validate } from '../config/validate.js'
import { Gateway } from '../gateway.js'
import { generateToken, hashToken } from '../auth/tokens.js'
import { runUntilSignal } from './run.js'

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer()
    s.once('error', rej)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => res(port))
    })
  })
}

async function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer()
    s.once('error', () => res(false))
    s.listen(port, '127.0.0.1', () => s.close(() => res(true)))
  })
}

/** Sessions the demo serves at once (pgbench -c 4 and a few psql terminals). */
const DEMO_SESSIONS = 16

export async function runDemo(opts: { port: number; dataDir: string }): Promise<void> {
  const { PGlite } = await import('@electric-sql/pglite')
  const { PGLiteSocketServer } = await import('@electric-sql/pglite-socket')
  const db = await PGlite.create()
  await db.exec(`
    CREATE TABLE orders (id serial PRIMARY KEY, customer text NOT NULL, total numeric(10,2) NOT NULL, created_at timestamptz DEFAULT now());
    INSERT INTO orders (customer, total) VALUES ('ada', 42.00), ('grace', 17.50), ('linus', 99.99);
  `)
  const upstreamPort = await freePort()
  // PGlite is one backend; the socket server's multiplexer lets several sessions share it, one
  // transaction at a time (a session's open transaction holds the others' statements until it ends).
  const upstream = new PGLiteSocketServer({ db, port: upstreamPort, host: '127.0.0.1', maxConnections: DEMO_SESSIONS })
  await upstream.start()

  const port = (await portFree(opts.port)) ? opts.port : await freePort()
  const token = generateToken()
  const dataDir = resolve(opts.dataDir)
  const config = validate(GatewayConfig, {
    dataDir,
    log: { level: process.env.GATEHOUSE_LOG_LEVEL ?? 'warn' },
    identities: [{ id: 'demo', kind: 'human', groups: ['demo'], tokens: [{ id: 'demo', hash: hashToken(token, 'demo') }] }],
    plugins: [{ use: 'audit-jsonl', config: { path: `${dataDir}/audit.jsonl`, required: true } }],
    connections: [
      {
        name: 'demo',
        adapter: 'postgres',
        listen: `127.0.0.1:${port}`,
        upstream: { host: '127.0.0.1', port: upstreamPort, database: 'postgres', user: 'postgres', password: 'pglite-accepts-any-password' },
      },
    ],
    policies: [
      {
        id: 'demo',
        principals: { groups: ['demo'] },
        include: ['sql-outbound', 'sql-privilege', 'sql-dynamic'],
        rules: [
          // The multiplexer loses the protocol's thread on COPY FROM STDIN and stops answering every session.
          { id: 'demo-no-copy-from', effect: 'deny', match: { 'sql.copy.direction': ['from'] }, reason: "the demo's embedded PostgreSQL cannot take COPY FROM; use INSERT, or run a gateway in front of a real PostgreSQL" },
          { id: 'no-ddl', effect: 'deny', match: { 'sql.statement': ['DROP', 'TRUNCATE', 'ALTER', 'CREATE'] }, reason: 'schema changes are not allowed in the demo' },
          { id: 'read-write', effect: 'allow', match: { 'sql.statement': ['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'SHOW', 'SET', 'BEGIN', 'COMMIT', 'ROLLBACK', 'EXPLAIN', 'COPY'] } },
        ],
      },
    ],
  })
  const gateway = await Gateway.build(config)
  await runUntilSignal(gateway, () => {
    // The bound port (with --port 0, the one the system chose).
    const url = `postgresql://demo:${token}@127.0.0.1:${gateway.address('demo').port}/postgres?sslmode=disable`
    process.stdout.write(
      [
        '',
        'Gatehouse demo is running: a gateway in front of an embedded PostgreSQL (PGlite).',
        '',
        `  connect:   psql "${url}"`,
        `  try:       SELECT * FROM orders;      -- allowed`,
        `             DROP TABLE orders;         -- denied with SQLSTATE 42501, session stays usable`,
        `             SELECT pg_read_file('/etc/passwd');  -- denied by the sql-outbound rule set`,
        `  audit log: ${dataDir}/audit.jsonl`,
        '',
        'The token above is valid for this run only. Ctrl-C stops the gateway.',
        '',
      ].join('\n'),
    )
  })
  process.once('exit', () => void upstream.stop())
}
