/**
 * audit-postgres: a real gateway writes its audit events into a PostgreSQL table, batched and
 * hash-chained; `gatehouse audit verify --postgres` checks the table and finds tampered rows; a
 * required sink whose database is gone refuses statements.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { startPgCluster, type PgCluster } from '../../fixtures/pg-cluster.js'
import { pgUpstream, startGateway, type TestGateway } from '../../fixtures/gateway.js'
import { psql, runClient } from '../../fixtures/clients.js'

const CLI = join(fileURLToPath(new URL('../../..', import.meta.url)), 'core/dist/cli.js')
let upstream: PgCluster
let auditDb: PgCluster
let gw: TestGateway
let url: string

function verify(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => execFile(process.execPath, [CLI, 'audit', 'verify', ...args], (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr })))
}

async function query<T extends pg.QueryResultRow>(sql: string): Promise<T[]> {
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  try {
    return (await c.query<T>(sql)).rows
  } finally {
    await c.end()
  }
}

beforeAll(async () => {
  ;[upstream, auditDb] = await Promise.all([startPgCluster(), startPgCluster()])
  url = `postgres://${auditDb.users.scram.user}:${encodeURIComponent(auditDb.users.scram.password)}@127.0.0.1:${auditDb.port}/${auditDb.database}`
  await auditDb.psql(`GRANT CREATE ON SCHEMA public TO ${auditDb.users.scram.user}`)
  gw = await startGateway({
    upstream: pgUpstream(upstream),
    connection: { plugins: { record: ['audit-postgres'] } },
    extraPlugins: [{ use: 'audit-postgres', config: { url, chain: 'gw-1', spoolMaxBytes: 8192, retryMs: 200, connectTimeoutMs: 1000 } }],
  })
}, 60_000)

afterAll(async () => {
  await gw?.stop()
  await Promise.all([upstream?.stop(), auditDb?.stop()])
})

describe('audit-postgres', () => {
  it('stores a request and an outcome per statement, with the principal and verdict in their own columns', async () => {
    const target = { port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] as string }
    await psql(target, 'SELECT 1;\nSELECT 2;\nDROP TABLE nothing;\n')
    await new Promise((r) => setTimeout(r, 100))
    const rows = await query<{ type: string; principal: string | null; verdict: string | null; rule: string | null }>("SELECT type, principal, verdict, rule FROM gatehouse_audit WHERE chain = 'gw-1' ORDER BY seq")
    const requests = rows.filter((r) => r.type === 'request')
    expect(requests.map((r) => r.verdict)).toEqual(['allow', 'allow', 'deny'])
    expect(requests.every((r) => r.principal === 'agent-1')).toBe(true)
    expect(rows.filter((r) => r.type === 'outcome')).toHaveLength(3)
    const indexes = await query<{ indexname: string }>("SELECT indexname FROM pg_indexes WHERE tablename = 'gatehouse_audit'")
    expect(indexes.map((i) => i.indexname)).toEqual(expect.arrayContaining(['gatehouse_audit_time', 'gatehouse_audit_session', 'gatehouse_audit_principal', 'gatehouse_audit_verdict']))
  })

  it('audit verify --postgres accepts the table, then finds an edited and a removed row', async () => {
    const ok = await verify('--postgres', url, '--chain', 'gw-1')
    expect(ok.code, ok.stdout + ok.stderr).toBe(0)
    expect(ok.stdout).toMatch(/^ok: \d+ events, chain intact/)
    await query("UPDATE gatehouse_audit SET line = replace(line, '\"verdict\":\"deny\"', '\"verdict\":\"allow\"') WHERE chain = 'gw-1' AND type = 'request' AND verdict = 'deny'")
    const edited = await verify('--postgres', url, '--chain', 'gw-1')
    expect(edited.code).toBe(1)
    expect(edited.stdout).toMatch(/edited/)
    await query("DELETE FROM gatehouse_audit WHERE seq = (SELECT seq FROM gatehouse_audit WHERE chain = 'gw-1' ORDER BY seq LIMIT 1 OFFSET 1)")
    const removed = await verify('--postgres', url, '--chain', 'gw-1')
    expect(removed.code).toBe(1)
    expect(removed.stdout).toMatch(/:2: removed/)
  })

  it('spools while its database is down, refuses statements once the spool is full, and recovers', async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'], database: 'app' })
    await c.connect()
    try {
      expect((await c.query('SELECT 1 AS one')).rows[0].one).toBe(1)
      await auditDb.pause()
      // the first statements are acknowledged: their records wait in the spool
      let acknowledged = 0
      let refusal: { code?: string; message?: string } | undefined
      for (let i = 0; i < 200 && !refusal; i++) {
        await c.query(`SELECT ${i}`).then(
          () => acknowledged++,
          (e: { code?: string; message?: string }) => (refusal = e),
        )
      }
      expect(acknowledged).toBeGreaterThan(0)
      expect(refusal).toMatchObject({ code: '58000' })
      // ...and the session survives the refusal; once the database is back, statements run again
      await auditDb.resume()
      let back = false
      for (let i = 0; i < 50 && !back; i++) {
        back = await c.query('SELECT 2').then(
          () => true,
          () => false,
        )
        if (!back) await new Promise((r) => setTimeout(r, 200))
      }
      expect(back).toBe(true)
    } finally {
      await c.end().catch(() => undefined)
    }
  })
})

describe('audit-postgres with its spool, under load while the database is stopped and restarted', () => {
  let db: PgCluster
  let up: PgCluster
  let gateway: TestGateway
  let dbUrl: string
  beforeAll(async () => {
    ;[up, db] = await Promise.all([startPgCluster(), startPgCluster()])
    await db.psql(`GRANT CREATE ON SCHEMA public TO ${db.users.scram.user}`)
    dbUrl = `postgres://${db.users.scram.user}:${encodeURIComponent(db.users.scram.password)}@127.0.0.1:${db.port}/${db.database}`
    gateway = await startGateway({
      upstream: pgUpstream(up),
      connection: { plugins: { record: ['audit-postgres'] } },
      extraPlugins: [{ use: 'audit-postgres', config: { url: dbUrl, chain: 'fault', retryMs: 200, connectTimeoutMs: 1000 } }],
    })
  }, 60_000)
  afterAll(async () => {
    await gateway?.stop()
    await Promise.all([up?.stop(), db?.stop()])
  })

  it('loses nothing and duplicates nothing: events equal acknowledged statements, and the chain verifies', async () => {
    const clients = await Promise.all(
      Array.from({ length: 4 }, async () => {
        const c = new pg.Client({ host: '127.0.0.1', port: gateway.port, user: 'agent-1', password: gateway.tokens['agent-1'], database: 'app' })
        await c.connect()
        return c
      }),
    )
    let acknowledged = 0
    let refused = 0
    let running = true
    const load = clients.map(async (c, n) => {
      for (let i = 0; running; i++) {
        try {
          await c.query(`SELECT ${n * 1_000_000 + i} AS v`)
          acknowledged++
        } catch {
          refused++
        }
      }
    })
    await new Promise((r) => setTimeout(r, 800))
    await db.pause()
    await new Promise((r) => setTimeout(r, 3000))
    await db.resume()
    await new Promise((r) => setTimeout(r, 800))
    running = false
    await Promise.all(load)
    await Promise.all(clients.map((c) => c.end()))
    // the spool drains after the database is back
    let stored = 0
    for (let i = 0; i < 50; i++) {
      const rows = await query<{ n: string }>("SELECT count(*) AS n FROM gatehouse_audit WHERE chain = 'fault' AND type = 'request' AND verdict = 'allow'").catch(() => [{ n: '0' }])
      stored = Number(rows[0]?.n)
      if (stored >= acknowledged) break
      await new Promise((r) => setTimeout(r, 200))
    }
    expect(acknowledged).toBeGreaterThan(100)
    expect(refused).toBe(0)
    expect(stored).toBe(acknowledged)
    const dupes = await query<{ n: string }>("SELECT count(*) AS n FROM (SELECT id FROM gatehouse_audit GROUP BY id HAVING count(*) > 1) d")
    expect(Number(dupes[0]?.n)).toBe(0)
    const v = await verify('--postgres', dbUrl, '--chain', 'fault')
    expect(v.code, v.stdout + v.stderr).toBe(0)
  }, 60_000)

  it('under pgbench, with the audit database stopped for 10 s and restarted: events equal acknowledged transactions, no duplicates', async () => {
    const env = { PGPASSWORD: up.users.scram.password, PGSSLMODE: 'disable' }
    const init = await runClient('pgbench', ['-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', String(up.port), '-U', 'app_scram', 'app'], { env })
    expect(init.code).toBe(0)
    // Rate-limited: the 10 s outage must fit the default 64 MiB spool on any machine (unthrottled,
    // a fast one spools close to that much); the test is about exactness, not throughput.
    const bench = runClient('pgbench', ['-n', '-S', '-c', '4', '-j', '2', '-T', '16', '-R', '1500', '-h', '127.0.0.1', '-p', String(gateway.port), '-U', 'agent-1', 'app'], {
      env: { PGPASSWORD: gateway.tokens['agent-1'] as string, PGSSLMODE: 'disable' },
      timeoutMs: 60_000,
    })
    await new Promise((r) => setTimeout(r, 3000))
    await db.pause()
    await new Promise((r) => setTimeout(r, 10_000))
    await db.resume()
    const r = await bench
    expect(r.code, r.stderr).toBe(0)
    const processed = Number(/number of transactions actually processed: (\d+)/.exec(r.stdout)?.[1])
    expect(processed).toBeGreaterThan(1000)
    expect(r.stdout).not.toMatch(/number of failed transactions: [1-9]/)
    let stored = 0
    for (let i = 0; i < 100; i++) {
      const rows = await query<{ n: string }>("SELECT count(*) AS n FROM gatehouse_audit WHERE chain = 'fault' AND type = 'request' AND verdict = 'allow' AND event->>'text' LIKE 'SELECT abalance FROM pgbench_accounts%'").catch(() => [{ n: '0' }])
      stored = Number(rows[0]?.n)
      if (stored >= processed) break
      await new Promise((res) => setTimeout(res, 200))
    }
    expect(stored).toBe(processed)
    const dupes = await query<{ n: string }>('SELECT count(*) AS n FROM (SELECT id FROM gatehouse_audit GROUP BY id HAVING count(*) > 1) d')
    expect(Number(dupes[0]?.n)).toBe(0)
    const v = await verify('--postgres', dbUrl, '--chain', 'fault')
    expect(v.code, v.stdout + v.stderr).toBe(0)
  }, 120_000)

  async function query<T extends pg.QueryResultRow>(sql: string): Promise<T[]> {
    const c = new pg.Client({ connectionString: dbUrl })
    await c.connect()
    try {
      return (await c.query<T>(sql)).rows
    } finally {
      await c.end()
    }
  }
})
