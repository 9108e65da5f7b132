/**
 * The admin API's sessions, probes and gauges, with node-postgres and the CLI: the open sessions
 * listed with their principal; an operator ending one (the client is told, the audit names the
 * operator); an auditor may list but not end; /healthz and /readyz answer without a token;
 * /metrics, scraped and parsed, counts the sessions open per connection and the requests held.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import SwaggerParser from '@apidevtools/swagger-parser'
import { createLogger, Gateway, generateToken, hashToken, parseConfig } from '@gatehouse/core'
import { startPgCluster, type PgCluster } from '../fixtures/pg-cluster.js'
import { pgUpstream, startGateway, type TestGateway } from '../fixtures/gateway.js'

const CLI = join(fileURLToPath(new URL('../..', import.meta.url)), 'core', 'dist', 'cli.js')
const root = generateToken()
const auditor = generateToken()
let cluster: PgCluster
let gw: TestGateway
let admin: string

beforeAll(async () => {
  cluster = await startPgCluster()
  gw = await startGateway({ upstream: pgUpstream(cluster), admin: { listen: '127.0.0.1:0', tokens: [hashToken(root, 'admin'), { id: 'audrey', role: 'auditor', hash: hashToken(auditor, 'audrey') }] } })
  admin = `http://127.0.0.1:${gw.gateway.adminPort}`
}, 60_000)
afterAll(async () => {
  await gw?.stop()
  await cluster?.stop()
})

const get = (path: string, token?: string) => fetch(`${admin}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} })

/** Prometheus text: the value of one sample, by name and labels as written. */
function sample(text: string, name: string, labels = ''): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `) || (labels === '' && l.startsWith(`${name} `)))
  return line === undefined ? undefined : Number(line.split(' ').pop())
}

describe('admin API: sessions, probes, gauges', () => {
  it('lists open sessions; an auditor may not end one; an admin ends it through the CLI, the client is told and the audit names who', async () => {
    const client = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'], database: 'app' })
    const ended = new Promise<Error>((resolve) => client.on('error', resolve))
    await client.connect()
    await client.query('SELECT 1')
    const { sessions } = (await (await get('/sessions', auditor)).json()) as { sessions: { id: string; principal?: string; connection: string; requests: number; client: string }[] }
    const mine = sessions.find((s) => s.principal === 'agent-1')
    expect(mine).toMatchObject({ connection: 'pg', requests: 1 })
    expect(mine?.client).toMatch(/^127\.0\.0\.1:\d+$/)

    const metrics = await (await get('/metrics', auditor)).text()
    expect(sample(metrics, 'gatehouse_sessions_active', '{connection="pg"}')).toBe(1)
    expect(sample(metrics, 'gatehouse_reviews_held')).toBe(0)

    expect((await fetch(`${admin}/sessions/${mine?.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${auditor}` } })).status).toBe(403)
    const kill = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile(process.execPath, [CLI, 'sessions', 'kill', mine?.id as string, '--admin', admin, '--reason', 'incident 7'], { env: { ...process.env, GATEHOUSE_ADMIN_TOKEN: root } }, (err, stdout, stderr) => resolve({ code: err ? 1 : 0, stdout, stderr })),
    )
    expect(kill.code, kill.stderr).toBe(0)
    expect(JSON.parse(kill.stdout)).toEqual({ terminated: mine?.id })
    const err = await ended
    expect(err.message).toMatch(/ended by admin#0: incident 7/)
    await client.end().catch(() => undefined)
    const events = await gw.audit()
    expect(events.find((e) => e.type === 'protocol' && (e as { event?: string }).event === 'admin.terminated')).toMatchObject({ session: mine?.id, reason: 'ended by admin#0: incident 7' })
    expect((await fetch(`${admin}/sessions/${mine?.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${root}` } })).status).toBe(404)
  })

  it('probes answer without a token; everything else needs one', async () => {
    expect(await (await get('/healthz')).json()).toEqual({ status: 'ok' })
    expect(await (await get('/readyz')).json()).toEqual({ status: 'ready' })
    expect((await get('/sessions')).status).toBe(401)
    expect((await get('/metrics')).status).toBe(401)
    expect((await fetch(`${admin}/healthz`, { method: 'POST' })).status).toBe(401)
  })

  it('serves its OpenAPI document, generated from the routes, valid OpenAPI 3 with every route', async () => {
    expect((await get('/openapi.json')).status).toBe(401)
    const doc = (await (await get('/openapi.json', auditor)).json()) as { openapi: string; paths: Record<string, Record<string, unknown>> }
    expect(doc.openapi).toBe('3.0.3')
    await SwaggerParser.validate(structuredClone(doc) as never)
    expect(Object.keys(doc.paths).sort()).toEqual(
      ['/audit', '/grants', '/grants/{id}', '/sessions/{id}/events', '/healthz', '/metrics', '/readyz', '/recordings/{session}', '/recordings/{session}/{file}', '/reviews', '/reviews/{id}', '/reviews/{id}/approve', '/reviews/{id}/deny', '/sessions', '/sessions/{id}', '/tokens', '/tokens/{id}'].sort(),
    )
    expect(Object.keys(doc.paths['/tokens'] ?? {}).sort()).toEqual(['get', 'post'])
    expect(doc.paths['/reviews/{id}/approve']?.post).toMatchObject({ requestBody: { content: { 'application/json': { schema: { properties: { grant: { required: ['minutes'] } } } } } } })
  })

  it('reads the audit back: by principal, type, verdict, session and time, newest first, bounded by limit', async () => {
    const client = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'], database: 'app' })
    await client.connect()
    for (const n of [1, 2, 3]) await client.query(`SELECT ${n}`)
    await expect(client.query('DROP TABLE nothing_here')).rejects.toThrow(/denied/)
    await client.end()
    type E = { type: string; text?: string; verdict?: string; session: string; time: string }
    const q = async (query: string, token = auditor) => ((await (await get(`/audit?${query}`, token)).json()) as { events: E[] }).events
    const newest = await q('principal=agent-1&type=request&limit=2')
    expect(newest.map((e) => e.text)).toEqual(['DROP TABLE nothing_here', 'SELECT 3'])
    const denied = await q('verdict=deny&type=request')
    expect(denied.map((e) => e.text)).toContain('DROP TABLE nothing_here')
    expect(denied.every((e) => e.verdict === 'deny')).toBe(true)
    const session = newest[0]?.session as string
    const ofSession = ((await (await get(`/sessions/${session}/events`, auditor)).json()) as { events: E[] }).events
    expect(ofSession.map((e) => e.type)).toEqual(expect.arrayContaining(['session.start', 'request', 'outcome', 'session.end']))
    expect(ofSession.every((e) => e.session === session)).toBe(true)
    expect(await q(`principal=agent-1&from=${new Date(Date.now() + 60_000).toISOString()}`)).toEqual([])
    expect((await q(`principal=agent-1&to=${new Date(Date.parse(newest[1]?.time as string) - 1).toISOString()}&type=request`)).map((e) => e.text)).not.toContain('SELECT 3')
    expect((await get('/audit?verdict=maybe', auditor)).status).toBe(400)
    expect((await get('/audit')).status).toBe(401)
  })

  it('a config whose admin API nobody could call, or that names a plugin that does not authenticate, is refused with the path', async () => {
    const base = 'dataDir: /tmp/gatehouse-admin-config\nconnections: [{ name: db, adapter: postgres, listen: "127.0.0.1:0", upstream: { host: 127.0.0.1, port: 5432, database: d, user: u } }]\n'
    await expect(Gateway.build(parseConfig(`${base}admin: { listen: "127.0.0.1:0" }\n`), { logger: createLogger('silent') })).rejects.toThrow(/admin: no way to call the admin API/)
    await expect(Gateway.build(parseConfig(`${base}admin: { listen: "127.0.0.1:0", authenticate: [audit-jsonl] }\n`), { logger: createLogger('silent') })).rejects.toThrow(/admin\.authenticate\[0\]/)
  })

  it('times the decide and record stages of one request in 16 (gatehouse_stage_duration_seconds)', async () => {
    const count = (text: string, stage: string) => sample(text, 'gatehouse_stage_duration_seconds_count', `{connection="pg",stage="${stage}"}`) ?? 0
    const before = await (await get('/metrics', auditor)).text()
    const client = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'], database: 'app' })
    await client.connect()
    for (let i = 0; i < 48; i++) await client.query('SELECT 1')
    await client.end()
    const after = await (await get('/metrics', auditor)).text()
    for (const stage of ['decide', 'record']) {
      expect(count(after, stage) - count(before, stage)).toBe(3)
      expect(sample(after, 'gatehouse_stage_duration_seconds_bucket', `{le="+Inf",connection="pg",stage="${stage}"}`)).toBe(count(after, stage))
    }
    expect(sample(after, 'gatehouse_stage_duration_seconds_sum', '{connection="pg",stage="record"}')).toBeGreaterThan(0)
  })
})
