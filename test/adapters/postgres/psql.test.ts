/**
 * The PostgreSQL adapter end to end with real clients: psql, pgbench and the `pg` driver talk to
 * a real gateway in front of a throwaway PostgreSQL 15 cluster with SCRAM authentication.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import pg from 'pg'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import type { AuditEvent, OutcomeEvent, RequestEvent } from '@gatehouse/core'
import { startPgCluster, type PgCluster } from '../../fixtures/pg-cluster.js'
import { pgUpstream, startGateway, type TestGateway } from '../../fixtures/gateway.js'
import { psql, runClient } from '../../fixtures/clients.js'

let cluster: PgCluster
let gw: TestGateway
let target: { port: number; user: string; password: string }

const requests = (events: AuditEvent[]) => events.filter((e): e is RequestEvent => e.type === 'request')
/** Executions: a Parse is judged and recorded too, with `phase: 'parse'`. */
const executions = (events: AuditEvent[]) => requests(events).filter((e) => e.attrs.phase !== 'parse')
const outcomeOf = (events: AuditEvent[], req: RequestEvent) => events.find((e): e is OutcomeEvent => e.type === 'outcome' && e.request === req.request)

function client(): pg.Client {
  return new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'], database: 'app', ssl: false })
}

beforeAll(async () => {
  cluster = await startPgCluster()
  await cluster.psql('CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items VALUES (1, \'one\'), (2, \'two\'), (3, \'three\');', 'app_scram')
  gw = await startGateway({ upstream: pgUpstream(cluster) })
  target = { port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] as string }
})

afterAll(async () => {
  await gw?.stop()
  await cluster?.stop()
})

describe('psql through the gateway', () => {
  it('runs SELECTs, is refused DROP TABLE with SQLSTATE 42501, and keeps working', async () => {
    const r = await psql(target, "SELECT count(*) FROM items;\n\\set VERBOSITY verbose\nDROP TABLE items;\nSELECT name FROM items WHERE id = 2;\n")
    expect(r.code).toBe(0)
    expect(r.stdout.split('\n').filter(Boolean)).toEqual(['3', 'two'])
    expect(r.stderr).toContain('ERROR:  42501: gatehouse: denied by rule "test/no-drop": dropping is not allowed')
    expect(await cluster.psql('SELECT count(*) FROM items')).toBe('3')
  })

  it('records each statement once, with principal, rule and row count', async () => {
    const marker = `audit_marker_${Date.now()}`
    const r = await psql(target, `SELECT id, '${marker}' FROM items;\nDROP TABLE ${marker};\n`)
    expect(r.code).toBe(0)
    const events = await gw.audit()
    const mine = requests(events).filter((e) => e.text?.includes(marker))
    expect(mine.map((e) => e.attrs.sql && (e.attrs.sql as { statement: string }).statement)).toEqual(['SELECT', 'DROP'])
    const [select, drop] = mine as [RequestEvent, RequestEvent]
    expect(select.principal).toMatchObject({ id: 'agent-1', kind: 'agent', credential: 'token:agent-1-token' })
    expect(select).toMatchObject({ verdict: 'allow', rule: 'test/read-write', action: 'sql.query' })
    expect(outcomeOf(events, select)).toMatchObject({ rows: 3, status: 'SELECT 3', rule: 'test/read-write' })
    expect(drop).toMatchObject({ verdict: 'deny', rule: 'test/no-drop', reason: 'dropping is not allowed' })
    expect(outcomeOf(events, drop)?.error?.code).toBe('GH_ERR_POLICY_DENIED')
    // one request event per statement, and the session is attributed
    const sessionIds = new Set(mine.map((e) => e.session))
    expect(sessionIds.size).toBe(1)
    expect(events.some((e) => e.type === 'session.start' && sessionIds.has(e.session))).toBe(true)
  })

  it('runs nothing of a multi-statement string when one statement is denied', async () => {
    await cluster.psql('CREATE TABLE multi (v int)', 'app_scram')
    // psql -c sends the whole string as one Query message
    const r = await psql(target, '', ['-c', 'INSERT INTO multi VALUES (1); DROP TABLE items; INSERT INTO multi VALUES (2)', '-c', 'SELECT count(*) FROM multi'])
    expect(r.stderr).toContain('denied by rule "test/no-drop"')
    expect(r.stdout.trim()).toBe('0')
    const events = await gw.audit()
    const inserts = requests(events).filter((e) => e.text?.startsWith('INSERT INTO multi'))
    expect(inserts).toHaveLength(2)
    for (const ins of inserts) expect(outcomeOf(events, ins)?.skipped).toBe(true)
  })

  it('aborts an open transaction on a denied statement, as PostgreSQL would on an error', async () => {
    await cluster.psql('CREATE TABLE txn (v int)', 'app_scram')
    const r = await psql(target, 'BEGIN;\nINSERT INTO txn VALUES (1);\nDROP TABLE items;\nINSERT INTO txn VALUES (2);\nCOMMIT;\nSELECT count(*) FROM txn;\n')
    expect(r.stderr).toContain('denied by rule')
    expect(r.stderr).toContain('current transaction is aborted')
    expect(r.stdout).toContain('ROLLBACK')
    expect(r.stdout.trim().split('\n').pop()).toBe('0')
  })

  it('copies data in and out, with row counts in the audit', async () => {
    await cluster.psql('CREATE TABLE copied (id int, note text)', 'app_scram')
    const rin = await psql(target, "\\copy copied FROM STDIN\n1\talpha\n2\tbeta\n3\tgamma\n\\.\n")
    expect(rin.code).toBe(0)
    expect(rin.stderr).toBe('')
    const rout = await psql(target, 'COPY (SELECT * FROM copied ORDER BY id) TO STDOUT;\n')
    expect(rout.stdout).toBe('1\talpha\n2\tbeta\n3\tgamma\n')
    const events = await gw.audit()
    const copies = requests(events).filter((e) => e.text?.startsWith('COPY'))
    expect(copies.length).toBeGreaterThanOrEqual(2)
    for (const c of copies.slice(-2)) expect(outcomeOf(events, c)).toMatchObject({ rows: 3, status: 'COPY 3' })
  })

  it('forwards a cancel of a running pg_sleep to the right upstream backend', async () => {
    const other = client()
    await other.connect()
    const env: Record<string, string> = {}
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('PG')) env[k] = v
    const child = spawn('psql', ['-X', '-h', '127.0.0.1', '-p', String(gw.port), '-U', 'agent-1', '-d', 'app', '-c', 'SELECT pg_sleep(30)'], {
      env: { ...env, PGPASSWORD: target.password, PGSSLMODE: 'disable' },
    })
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    // wait until the statement is running upstream
    for (let i = 0; i < 50; i++) {
      const r = await other.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'")
      if (r.rows[0].n === 1) break
      await new Promise((res) => setTimeout(res, 100))
    }
    const started = Date.now()
    child.kill('SIGINT')
    const code = await new Promise<number | null>((res) => child.on('exit', res))
    expect(Date.now() - started).toBeLessThan(5000)
    expect(code).not.toBe(0)
    expect(stderr).toContain('canceling statement due to user request')
    // the other session was not touched
    expect((await other.query('SELECT 1 AS one')).rows[0].one).toBe(1)
    await other.end()
  })

  it('drives pgbench in simple and prepared mode', async () => {
    const env = { PGPASSWORD: cluster.users.scram.password, PGSSLMODE: 'disable' }
    const init = await runClient('pgbench', ['-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', String(cluster.port), '-U', 'app_scram', 'app'], { env })
    expect(init.code).toBe(0)
    for (const mode of ['simple', 'prepared']) {
      const r = await runClient('pgbench', ['-n', '-S', '-M', mode, '-c', '2', '-j', '1', '-t', '200', '-h', '127.0.0.1', '-p', String(gw.port), '-U', 'agent-1', 'app'], {
        env: { PGPASSWORD: target.password, PGSSLMODE: 'disable' },
      })
      expect(r.stderr).not.toContain('error')
      expect(r.code).toBe(0)
      expect(r.stdout).toMatch(/number of transactions actually processed: 400\/400/)
    }
  })
})

describe('the pg driver (extended protocol)', () => {
  it('runs parameterized queries and records the bound parameters', async () => {
    const c = client()
    await c.connect()
    const r = await c.query('SELECT $1::int + $2::int AS sum, $3::text AS label', [2, 3, 'p3-marker'])
    expect(r.rows[0]).toEqual({ sum: 5, label: 'p3-marker' })
    const bin = await c.query({ text: 'SELECT length($1::bytea) AS n', values: [Buffer.from([1, 2, 3])] })
    expect(bin.rows[0].n).toBe(3)
    await c.end()
    const events = await gw.audit()
    const req = executions(events).find((e) => e.params?.includes('p3-marker'))
    expect(req).toMatchObject({ text: 'SELECT $1::int + $2::int AS sum, $3::text AS label', params: ['2', '3', 'p3-marker'], verdict: 'allow' })
    expect(outcomeOf(events, req as RequestEvent)).toMatchObject({ rows: 1, status: 'SELECT 1' })
    const byteaReq = executions(events).find((e) => e.text === 'SELECT length($1::bytea) AS n')
    expect(byteaReq?.params).toEqual([expect.stringMatching(/^(base64:AQID|\\x010203)$/)])
  })

  it('refuses a denied prepared statement with 42501 and the session stays usable', async () => {
    const c = client()
    await c.connect()
    const err = await c.query({ name: 'drop-it', text: 'DROP TABLE items' }).catch((e: unknown) => e as pg.DatabaseError)
    expect(err).toBeInstanceOf(Error)
    expect((err as pg.DatabaseError).code).toBe('42501')
    expect((err as pg.DatabaseError).message).toContain('test/no-drop')
    expect((await c.query({ name: 'count-it', text: 'SELECT count(*)::int AS n FROM items' })).rows[0].n).toBe(3)
    // a refused statement in an extended-protocol transaction aborts it, as an error would
    await c.query('BEGIN')
    await c.query('INSERT INTO items VALUES ($1, $2)', [42, 'forty-two'])
    await expect(c.query({ name: 'drop-again', text: 'DROP TABLE items' })).rejects.toMatchObject({ code: '42501' })
    await expect(c.query('SELECT 1')).rejects.toMatchObject({ code: '25P02' })
    await c.query('ROLLBACK')
    expect((await c.query('SELECT count(*)::int AS n FROM items WHERE id = 42')).rows[0].n).toBe(0)
    await c.end()
    expect(await cluster.psql('SELECT count(*) FROM items')).toBe('3')
  })

  it('passes an error raised at commit (a deferred constraint) and stays usable', async () => {
    await cluster.psql('CREATE TABLE parent (id int PRIMARY KEY); CREATE TABLE child (pid int REFERENCES parent DEFERRABLE INITIALLY DEFERRED)', 'app_scram')
    const c = client()
    await c.connect()
    // extended protocol: the implicit transaction commits at Sync, after CommandComplete
    await expect(c.query('INSERT INTO child VALUES ($1)', [999])).rejects.toMatchObject({ code: '23503' })
    // simple protocol: the error follows the statement's CommandComplete
    await expect(c.query('INSERT INTO child VALUES (998)')).rejects.toMatchObject({ code: '23503' })
    expect((await c.query('SELECT count(*)::int AS n FROM child')).rows[0].n).toBe(0)
    await c.end()
    // the audit does not claim these inserts took effect
    const events = await gw.audit()
    const extended = executions(events).find((e) => e.text === 'INSERT INTO child VALUES ($1)') as RequestEvent
    expect(outcomeOf(events, extended)?.error?.message).toMatch(/^failed at commit: .*violates foreign key constraint/)
    // simple protocol: PostgreSQL commits before the last CommandComplete, so the error is the statement's own
    const simple = requests(events).find((e) => e.text === 'INSERT INTO child VALUES (998)') as RequestEvent
    expect(outcomeOf(events, simple)?.error?.message).toContain('violates foreign key constraint')
  })

  it('keeps the upstream credentials out of the audit', async () => {
    const text = readFileSync(gw.auditPath, 'utf8')
    expect(text).not.toContain(cluster.users.scram.password)
    expect(text).not.toContain(target.password)
  })
})
