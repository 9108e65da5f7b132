/**
 * Real clients behave through the gateway as they do directly: pg_dump and pg_restore with a
 * large object, startup settings (PGOPTIONS, node `pg`'s statement_timeout and options) judged
 * and applied — never dropped —, large objects through the FunctionCall message (psql
 * \lo_import/\lo_export, psycopg2 lobject), and the upstream's real backend pid.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import Cursor from 'pg-cursor'
import type { AuditEvent, RequestEvent } from '@gatehouse/core'
import { psql, runClient } from '../../fixtures/clients.js'
import { RawPgClient, cstr, errorFields, typed, wire } from '../../fixtures/pg-raw.js'
import { pgUpstream, startGateway, type TestGateway } from '../../fixtures/gateway.js'
import { startPgCluster, type PgCluster } from '../../fixtures/pg-cluster.js'

let cluster: PgCluster
let gw: TestGateway
let dir: string

/**
 * What a backup job needs and nothing more: reads (SELECT and COPY out), the session and
 * transaction settings pg_dump makes, LOCK … IN ACCESS SHARE MODE, and reading large objects.
 * Writes, DDL, reaching out of the server and privileged calls stay denied.
 */
const BACKUP_POLICY = [
  {
    id: 'backup',
    principals: { ids: ['backup'] },
    // not sql-privilege: it denies any SET of row_security, and pg_dump sets it (off: an error
    // instead of rows hidden by row-level security)
    include: ['sql-outbound', 'sql-ddl'],
    rules: [
      { id: 'no-role-change', effect: 'deny', match: { 'sql.settings': ['role', 'session_authorization'] }, reason: 'backups run as themselves' },
      { id: 'no-lo-writes', effect: 'deny', match: { 'sql.functionNames': ['lo_creat', 'lo_create', 'lowrite', 'lo_unlink', 'lo_truncate', 'lo_truncate64', 'lo_put', 'lo_from_bytea', 'lo_import', 'lo_export'] }, reason: 'backups do not change large objects' },
      { id: 'dump', effect: 'allow', match: { 'sql.statement': ['SELECT', 'SET', 'SHOW', 'BEGIN', 'COMMIT', 'ROLLBACK', 'LOCK', 'COPY', 'PREPARE', 'EXECUTE', 'DEALLOCATE', 'DECLARE', 'FETCH', 'CLOSE'] }, when: "!has(request.sql.copy) || request.sql.copy.direction == 'to'" },
    ],
  },
  {
    id: 'agents',
    principals: { groups: ['agents'] },
    rules: [
      { id: 'no-replication-role', effect: 'deny', match: { 'sql.settings': ['session_replication_role'] }, reason: 'triggers stay on' },
      { id: 'all', effect: 'allow' },
    ],
  },
]

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-transparency-'))
  cluster = await startPgCluster()
  await cluster.psql(`
    CREATE TABLE items (id int PRIMARY KEY, name text);
    INSERT INTO items VALUES (1, 'apple'), (2, 'pear');
    CREATE VIEW named AS SELECT name FROM items;
    SELECT lo_from_bytea(4242, 'large object payload');
    GRANT SELECT ON ALL TABLES IN SCHEMA public TO app_scram;
    ALTER LARGE OBJECT 4242 OWNER TO app_scram;
    CREATE SCHEMA other AUTHORIZATION app_scram;
    CREATE TABLE other.marker (v text); INSERT INTO other.marker VALUES ('in other');
    ALTER TABLE other.marker OWNER TO app_scram;
    CREATE DATABASE restored OWNER app_scram;
  `)
  gw = await startGateway({
    upstream: pgUpstream(cluster),
    identities: [{ id: 'agent-1', groups: ['agents'] }, { id: 'backup', groups: ['backup'] }],
    policies: BACKUP_POLICY,
    extraConnections: [{ name: 'restore', upstream: { ...pgUpstream(cluster), database: 'restored' } }],
  })
}, 60_000)

afterAll(async () => {
  await gw?.stop()
  await cluster?.stop()
  rmSync(dir, { recursive: true, force: true })
})

const env = (id: string, extra: Record<string, string> = {}) => ({ PGPASSWORD: gw.tokens[id] as string, PGSSLMODE: 'disable', PGCONNECT_TIMEOUT: '10', ...extra })
const conn = (id: string, port = gw.port, database = 'app') => ['-h', '127.0.0.1', '-p', String(port), '-U', id, '-d', database]
const requests = async () => (await gw.audit()).filter((e: AuditEvent): e is RequestEvent => e.type === 'request')

describe('pg_dump and pg_restore', () => {
  it('pg_dump (plain and custom, with a large object) works under a backup policy; pg_restore puts it all back', async () => {
    const plain = await runClient('pg_dump', [...conn('backup'), '--no-owner'], { env: env('backup') })
    expect(plain.stderr).toBe('')
    expect(plain.code).toBe(0)
    expect(plain.stdout).toContain('COPY public.items (id, name) FROM stdin;')
    expect(plain.stdout).toContain('1\tapple')
    expect(plain.stdout).toContain('CREATE VIEW public.named')
    expect(plain.stdout).toMatch(/SELECT pg_catalog\.lo_open\('4242'/)

    const archive = join(dir, 'app.dump')
    const custom = await runClient('pg_dump', [...conn('backup'), '-Fc', '-f', archive], { env: env('backup') })
    expect(custom.stderr).toBe('')
    expect(custom.code).toBe(0)
    // the large object was read through FunctionCall, judged as the SQL call of lo_open/loread
    const calls = (await requests()).filter((e) => (e.attrs as { functionCall?: { function?: string } }).functionCall?.function?.startsWith('pg_catalog.lo'))
    expect(new Set(calls.map((e) => (e.attrs as { functionCall: { function: string } }).functionCall.function))).toEqual(new Set(['pg_catalog.lo_open', 'pg_catalog.loread', 'pg_catalog.lo_close']))
    expect(calls.every((e) => e.verdict === 'allow' && e.principal.id === 'backup')).toBe(true)

    const restore = await runClient('pg_restore', [...conn('agent-1', gw.portOf('restore'), 'restored'), '--no-owner', archive], { env: env('agent-1') })
    expect(restore.stderr).toBe('')
    expect(restore.code).toBe(0)
    expect(await cluster.psql('\\c restored\nSELECT string_agg(name, \',\' ORDER BY id) FROM items;')).toContain('apple,pear')
    expect(await cluster.psql("\\c restored\nSELECT convert_from(lo_get(4242), 'UTF8');")).toContain('large object payload')
  })

  it('the backup identity cannot write a large object through FunctionCall: refused naming the rule, and the session goes on', async () => {
    const file = join(dir, 'upload.txt')
    writeFileSync(file, 'not allowed\n')
    const r = await runClient('psql', [...conn('backup'), '-X', '-At', '-c', `\\lo_import ${file}`, '-c', 'SELECT 1 AS still_here'], { env: env('backup') })
    expect(r.stderr).toContain('denied by rule "backup/no-lo-writes": backups do not change large objects')
    expect(r.stdout).toContain('1')
  })
})

describe('large objects through FunctionCall', () => {
  it('psql \\lo_import and \\lo_export round-trip a file; every call is judged and recorded as the function it names', async () => {
    const src = join(dir, 'in.bin')
    const out = join(dir, 'out.bin')
    writeFileSync(src, Buffer.from(Array.from({ length: 70_000 }, (_, i) => i % 251)))
    const imported = await runClient('psql', [...conn('agent-1'), '-X', '-At', '-c', `\\lo_import ${src}`], { env: env('agent-1') })
    expect(imported.stderr).toBe('')
    const oid = /lo_import (\d+)/.exec(imported.stdout)?.[1]
    expect(oid).toBeDefined()
    const exported = await runClient('psql', [...conn('agent-1'), '-X', '-At', '-c', `\\lo_export ${oid} ${out}`], { env: env('agent-1') })
    expect(exported.stderr).toBe('')
    expect(readFileSync(out).equals(readFileSync(src))).toBe(true)
    const names = (await requests()).map((e) => (e.attrs as { functionCall?: { function?: string } }).functionCall?.function).filter(Boolean)
    expect(names).toEqual(expect.arrayContaining(['pg_catalog.lo_creat', 'pg_catalog.lo_open', 'pg_catalog.lowrite', 'pg_catalog.loread', 'pg_catalog.lo_close']))
  })

  it('psycopg2 lobject writes and reads a large object', async () => {
    const script = join(dir, 'lob.py')
    writeFileSync(
      script,
      `import sys, psycopg2
conn = psycopg2.connect(sys.argv[1])
lob = conn.lobject(0, 'wb')
lob.write(b'written by psycopg2')
oid = lob.oid
lob.close()
conn.commit()
print(conn.lobject(oid, 'rb').read().decode())
conn.commit()
`,
    )
    const r = await runClient('/usr/bin/python3', [script, `host=127.0.0.1 port=${gw.port} user=agent-1 password=${gw.tokens['agent-1']} dbname=app sslmode=disable`], { timeoutMs: 30_000 })
    expect(r.stderr).toBe('')
    expect(r.stdout).toBe('written by psycopg2\n')
  })
})

describe('startup settings', () => {
  it('PGOPTIONS -c settings reach the server (statement_timeout, search_path), judged and recorded as SET', async () => {
    const r = await psql({ port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] as string }, 'SHOW statement_timeout; SELECT v FROM marker; SELECT pg_sleep(1);', [], { PGOPTIONS: '-c statement_timeout=300ms --search-path=other,public' })
    expect(r.stdout.split('\n').slice(0, 2)).toEqual(['300ms', 'in other'])
    expect(r.stderr).toContain('canceling statement due to statement timeout')
    const set = (await requests()).filter((e) => (e.attrs as { startup?: unknown }).startup !== undefined)
    expect(set.map((e) => e.text)).toEqual(expect.arrayContaining(["SET statement_timeout = '300ms'", "SET search_path = 'other,public'"]))
  })

  it('node pg: statement_timeout and options from the client config are applied', async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'], database: 'app', statement_timeout: 250, options: '-c lock_timeout=1234ms -c app.tenant=acme' })
    await c.connect()
    try {
      const r = await c.query("SELECT current_setting('statement_timeout') AS st, current_setting('lock_timeout') AS lt, current_setting('app.tenant') AS tenant")
      expect(r.rows[0]).toEqual({ st: '250ms', lt: '1234ms', tenant: 'acme' })
    } finally {
      await c.end()
    }
  })

  it('a setting policy denies refuses the session with a FATAL naming it; one the gateway cannot read under is refused before policy', async () => {
    const denied = await psql({ port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] as string }, 'SELECT 1;', [], { PGOPTIONS: '-c session_replication_role=replica' })
    expect(denied.stdout).toBe('')
    expect(denied.stderr).toContain('FATAL:  gatehouse: the startup setting session_replication_role was refused: denied by rule "agents/no-replication-role": triggers stay on')
    const unreadable = await psql({ port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] as string }, 'SELECT 1;', [], { PGOPTIONS: '-c standard_conforming_strings=off' })
    expect(unreadable.stdout).toBe('')
    expect(unreadable.stderr).toContain('the startup setting standard_conforming_strings was refused')
    const switched = await psql({ port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] as string }, 'SELECT 1;', [], { PGOPTIONS: '-d 5' })
    expect(switched.stderr).toContain('the startup option "-d" is not supported (only -c name=value and --name=value)')
    // names PostgreSQL reads as packet keys, not settings, cannot smuggle what was never judged
    for (const options of ['-c options=-c\\ session_replication_role=replica', '--replication=database', '-c _PQ_.x=1']) {
      const smuggled = await psql({ port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] as string }, 'SELECT 1;', [], { PGOPTIONS: options })
      expect(smuggled.stdout, options).toBe('')
      expect(smuggled.stderr, options).toContain('cannot be set at startup')
    }
    const c = await RawPgClient.connect(gw.port)
    await expect(c.login('agent-1', gw.tokens['agent-1'] as string, { params: { Options: '-c session_replication_role=replica' } })).rejects.toThrow(/got E/)
    c.close()
    const refusals = (await gw.audit()).filter((e) => e.type === 'protocol' && (e as { event?: string }).event === 'startup.refused').map((e) => (e as { reason?: string }).reason)
    expect(refusals).toContain('gatehouse: "Options" cannot be set at startup')
    // a value the server rejects reaches the client as the server's own error
    const invalid = await psql({ port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] as string }, 'SELECT 1;', [], { PGOPTIONS: '-c statement_timeout=soon' })
    expect(invalid.stderr).toContain('invalid value for parameter "statement_timeout": "soon"')
  })
})

describe('the backend pid', () => {
  it('is the upstream backend’s: pg_backend_pid(), pg_stat_activity and notifications agree with what the client was told', async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'], database: 'app', application_name: 'pid-check' })
    await c.connect()
    try {
      const told = (c as unknown as { processID: number }).processID
      expect((await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid).toBe(told)
      expect(await cluster.psql("SELECT pid FROM pg_stat_activity WHERE application_name = 'pid-check'")).toBe(String(told))
      const note = new Promise<{ processId: number }>((resolve) => c.on('notification', resolve))
      await c.query('LISTEN pidcheck')
      await c.query("NOTIFY pidcheck, 'self'")
      expect((await note).processId).toBe(told)
    } finally {
      await c.end()
    }
  })
})

describe('small things drivers rely on', () => {
  it('a database the connection does not serve is refused after login with 3D000 naming the one it serves', async () => {
    const r = await runClient('psql', ['-h', '127.0.0.1', '-p', String(gw.port), '-U', 'agent-1', '-d', 'template1', '-X', '-c', 'SELECT 1'], { env: env('agent-1') })
    expect(r.stderr).toContain('FATAL:  gatehouse: connection "pg" serves database "app", not "template1"')
    expect((await psql({ port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] as string }, 'SELECT current_database();')).stdout.trim()).toBe('app')
  })

  it('a syntax error the gateway finds keeps its position: psql prints the same caret as directly', async () => {
    const sql = "SELECT 'é' AS accent, * FORM items;"
    const direct = await psql({ port: cluster.port, user: cluster.users.scram.user, password: cluster.users.scram.password, database: 'app' }, sql)
    const through = await psql({ port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] as string }, sql)
    const caret = (stderr: string) => stderr.split('\n').filter((l) => /^LINE 1:|^\s+\^$/.test(l))
    expect(caret(direct.stderr)).toHaveLength(2)
    expect(caret(through.stderr)).toEqual(caret(direct.stderr))
  })

  it('an empty query gets EmptyQueryResponse, as from PostgreSQL', async () => {
    const c = await RawPgClient.connect(gw.port)
    try {
      await c.login('agent-1', gw.tokens['agent-1'] as string)
      for (const text of ['', ' ', ';', '-- only a comment']) {
        c.write(typed('Q', cstr(text)))
        expect((await c.until('Z')).map((m) => m.type).join(''), JSON.stringify(text)).toBe('IZ')
      }
    } finally {
      c.close()
    }
  })
})

describe('COPY FROM STDIN through the extended protocol', () => {
  it('as libpq sends it (Sync right after Execute, another after CopyDone): the rows arrive and the session goes on', async () => {
    await cluster.psql('CREATE TABLE copied (v int); GRANT ALL ON copied TO app_scram')
    const c = await RawPgClient.connect(gw.port)
    try {
      await c.login('agent-1', gw.tokens['agent-1'] as string)
      c.write(Buffer.concat([wire.parse('', 'COPY copied FROM STDIN'), wire.bind('', ''), wire.describe('P', ''), wire.execute(''), wire.sync]))
      expect((await c.until('G')).map((m) => m.type).join('')).toBe('12nG')
      c.write(Buffer.concat([typed('d', Buffer.from('1\n2\n')), typed('c', Buffer.alloc(0)), wire.sync]))
      // the server ignored the first Sync: one CommandComplete, one ReadyForQuery
      expect((await c.until('Z')).map((m) => m.type).join('')).toBe('CZ')
      c.write(wire.query('SELECT count(*) FROM copied'))
      expect((await c.until('Z')).map((m) => m.type).join('')).toBe('TDCZ')
      // and a COPY that fails before it starts: its Sync is answered
      c.write(Buffer.concat([wire.parse('', 'COPY no_such_table FROM STDIN'), wire.bind('', ''), wire.execute(''), wire.sync]))
      expect((await c.until('Z')).map((m) => m.type).join('')).toBe('12EZ')
      c.write(wire.query('SELECT 1'))
      expect((await c.until('Z')).map((m) => m.type).join('')).toBe('TDCZ')
    } finally {
      c.close()
    }
    expect(await cluster.psql('SELECT count(*) FROM copied')).toBe('2')
  })
})

/** Reads until the gateway closes the connection; the errors it sent, as `SEVERITY SQLSTATE`. */
async function errorsUntilClosed(c: RawPgClient): Promise<string[]> {
  const seen: string[] = []
  for (;;) {
    const m = await c.next(5000)
    if (!m) return seen
    if (m.type === 'E') seen.push(`${errorFields(m.body).S} ${errorFields(m.body).C}`)
  }
}

describe('COPY FROM STDIN and other messages', () => {
  it('a Query during COPY FROM STDIN ends the session with 08P01, as PostgreSQL does, sent after the copy started or with it in one write', async () => {
    await cluster.psql('CREATE TABLE IF NOT EXISTS copied2 (v int); GRANT ALL ON copied2 TO app_scram')
    for (const together of [false, true]) {
      const c = await RawPgClient.connect(gw.port)
      try {
        await c.login('agent-1', gw.tokens['agent-1'] as string)
        if (together) c.write(Buffer.concat([wire.query('COPY copied2 FROM STDIN'), wire.query('SELECT 2')]))
        else {
          c.write(wire.query('COPY copied2 FROM STDIN'))
          await c.until('G')
          c.write(wire.query('SELECT 2'))
        }
        expect(await errorsUntilClosed(c), String(together)).toEqual(['FATAL 08P01'])
        expect(c.closed).toBe(true)
      } finally {
        c.close()
      }
    }
    expect((await psql({ port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] as string }, 'SELECT 3;')).stdout.trim()).toBe('3')
  })

  it('a stray CopyDone while no COPY runs does not make the gateway miss the next COPY', async () => {
    const c = await RawPgClient.connect(gw.port)
    try {
      await c.login('agent-1', gw.tokens['agent-1'] as string)
      c.write(typed('c', Buffer.alloc(0)))
      c.write(wire.query('COPY copied2 FROM STDIN'))
      await c.until('G')
      c.write(wire.query('SELECT 2'))
      expect(await errorsUntilClosed(c)).toEqual(['FATAL 08P01'])
    } finally {
      c.close()
    }
  })

  it('a COPY sent with its data and the next Query in one write runs both, as PostgreSQL does', async () => {
    const c = await RawPgClient.connect(gw.port)
    try {
      await c.login('agent-1', gw.tokens['agent-1'] as string)
      c.write(Buffer.concat([wire.query('COPY copied2 FROM STDIN'), typed('d', Buffer.from('7\n')), typed('c', Buffer.alloc(0)), wire.query('SELECT count(*) FROM copied2 WHERE v = 7')]))
      expect((await c.until('Z')).map((m) => m.type).join('')).toBe('GCZ')
      const second = await c.until('Z')
      expect(second.map((m) => m.type).join('')).toBe('TDCZ')
    } finally {
      c.close()
    }
  })
})

describe('libpq pipeline mode', () => {
  it('psycopg 3: a pipeline in which one statement fails reports that error and the session goes on, as directly', async () => {
    const script = join(dir, 'pipeline.py')
    writeFileSync(
      script,
      `import sys, psycopg
conn = psycopg.connect(sys.argv[1], autocommit=True)
try:
    with conn.pipeline():
        a = conn.execute("SELECT 1")
        b = conn.execute("SELECT 1/0")
        c = conn.execute("SELECT 2")
except psycopg.errors.DivisionByZero as e:
    print("failed:", e.sqlstate)
print("after:", conn.execute("SELECT 42").fetchone()[0])
with conn.pipeline():
    rows = [conn.execute("SELECT %s::int", (i,)) for i in range(20)]
print("pipelined:", sum(r.fetchone()[0] for r in rows))
`,
    )
    const through = await runClient('/usr/bin/python3', [script, `host=127.0.0.1 port=${gw.port} user=agent-1 password=${gw.tokens['agent-1']} dbname=app sslmode=disable`], { timeoutMs: 30_000 })
    const direct = await runClient('/usr/bin/python3', [script, `host=127.0.0.1 port=${cluster.port} user=${cluster.users.scram.user} password=${cluster.users.scram.password} dbname=app sslmode=disable`], { timeoutMs: 30_000 })
    expect(direct.stdout).toBe('failed: 22012\nafter: 42\npipelined: 190\n')
    expect(through.stderr).toBe('')
    expect(through.stdout).toBe(direct.stdout)
  })
})

describe('pg-cursor when the statement fails', () => {
  it('at Bind or at Parse, in 200 sessions: every session gets the server\'s error and goes on (none lost)', async () => {
    const outcomes = new Map<string, number>()
    let lost = 0
    const one = async (sql: string, params: unknown[]) => {
      const c = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'], database: 'app' })
      c.on('error', () => undefined)
      await c.connect()
      try {
        const cursor = c.query(new Cursor(sql, params))
        await cursor.read(10).then(
          () => outcomes.set('no error', (outcomes.get('no error') ?? 0) + 1),
          (e: Error) => outcomes.set(e.message, (outcomes.get(e.message) ?? 0) + 1),
        )
        await c.query('SELECT 1').catch(() => lost++)
      } finally {
        await c.end().catch(() => undefined)
      }
    }
    // in waves, within the per-identity session cap
    for (let wave = 0; wave < 20; wave++) {
      await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? one('SELECT $1::int AS n', ['not a number']) : one('SELECT n FROM no_such_table WHERE n = $1', [1]))))
    }
    expect(lost).toBe(0)
    expect(Object.fromEntries(outcomes)).toEqual({
      'invalid input syntax for type integer: "not a number"': 100,
      'relation "no_such_table" does not exist': 100,
    })
  })
})

describe('a client that stops reading', () => {
  it('is ended after limits.postgres.clientStallMs, and its upstream backend is freed', async () => {
    const g = await startGateway({ upstream: pgUpstream(cluster), connection: { limits: { postgres: { clientStallMs: 1000 } } }, policies: [{ id: 'all', principals: { groups: ['agents'] }, rules: [{ id: 'all', effect: 'allow' }] }] })
    const backends = () => cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%stall_marker%' AND pid <> pg_backend_pid()")
    const c = await RawPgClient.connect(g.port)
    try {
      await c.login('agent-1', g.tokens['agent-1'] as string)
      c.socket.pause()
      c.write(wire.query("SELECT repeat('x', 10000) AS stall_marker FROM generate_series(1, 50000)"))
      // the statement runs upstream, its output backs up into the gateway …
      const started = Date.now()
      while ((await backends()) !== '1' && Date.now() - started < 5000) await new Promise((r) => setTimeout(r, 100))
      expect(await backends()).toBe('1')
      const deadline = Date.now() + 8000
      while ((await backends()) !== '0' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200))
      expect(await backends()).toBe('0')
      const events = (await g.audit()).filter((e) => e.type === 'protocol' && (e as { event?: string }).event === 'limit.postgres.client-stalled')
      expect(events).toHaveLength(1)
    } finally {
      c.close()
      await g.stop()
    }
  })
})
