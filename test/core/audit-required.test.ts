/**
 * A required audit sink is a gate: a statement whose intent record cannot be written is refused,
 * and a session whose start cannot be recorded is not opened. A best-effort sink never blocks.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { createLogger, Gateway, GatewayConfig, generateToken, hashToken, validate } from '@gatehouse/core'
import { startPgCluster, type PgCluster } from '../fixtures/pg-cluster.js'
import { DEFAULT_POLICIES, pgUpstream } from '../fixtures/gateway.js'

const pluginDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'plugins')
const sink = () => (globalThis as unknown as { __gatehouseTestSink: { events: { type: string; text?: string; verdict?: string }[]; failing: boolean } }).__gatehouseTestSink

let cluster: PgCluster
beforeAll(async () => {
  cluster = await startPgCluster()
})
afterAll(async () => {
  await cluster?.stop()
})

async function gatewayWith(record: Record<string, unknown>[], extraPlugins: unknown[] = []) {
  const token = generateToken()
  const config = validate(GatewayConfig, {
    dataDir: join(pluginDir, '..', '..', 'tmp', 'audit-required'),
    log: { level: 'silent' },
    identities: [{ id: 'agent-1', groups: ['agents'], tokens: [{ hash: hashToken(token, 'agent-1') }] }],
    plugins: [...record, ...extraPlugins],
    connections: [{ name: 'pg', adapter: 'postgres', listen: '127.0.0.1:0', upstream: pgUpstream(cluster), plugins: { record: record.map((r) => (r.name ?? r.use) as string) } }],
    policies: DEFAULT_POLICIES,
  })
  const gateway = await Gateway.build(config, { logger: createLogger('silent'), pluginSearchDirs: [pluginDir] })
  await gateway.start()
  const client = () => new pg.Client({ host: '127.0.0.1', port: gateway.address('pg').port, user: 'agent-1', password: token, database: 'app' })
  return { gateway, client }
}

describe('required audit', () => {
  it('refuses a statement whose intent record cannot be written, and recovers when the sink does', async () => {
    const { gateway, client } = await gatewayWith([{ use: 'gatehouse-test-sink' }])
    try {
      const c = client()
      await c.connect()
      expect((await c.query('SELECT 1 AS one')).rows[0].one).toBe(1)
      sink().failing = true
      await expect(c.query('SELECT 2 AS two')).rejects.toMatchObject({ code: '58000', message: expect.stringContaining('audit is unavailable') })
      sink().failing = false
      expect((await c.query('SELECT 3 AS three')).rows[0].three).toBe(3)
      await c.end()
      const texts = sink().events.filter((e) => e.type === 'request').map((e) => e.text)
      expect(texts).toContain('SELECT 1 AS one')
      expect(texts).toContain('SELECT 3 AS three')
      expect(texts).not.toContain('SELECT 2 AS two')
    } finally {
      sink().failing = false
      await gateway.shutdown(0)
    }
  })

  it('does not open a session whose start cannot be recorded', async () => {
    const { gateway, client } = await gatewayWith([{ use: 'audit-jsonl', config: { path: '/dev/full', required: true } }])
    try {
      await expect(client().connect()).rejects.toThrow(/audit is unavailable/)
    } finally {
      await gateway.shutdown(0)
    }
  })

  it('keeps serving when only a best-effort sink fails', async () => {
    const { gateway, client } = await gatewayWith([{ use: 'audit-jsonl', config: { path: '/dev/full', required: false } }])
    try {
      const c = client()
      await c.connect()
      expect((await c.query('SELECT 4 AS four')).rows[0].four).toBe(4)
      await c.end()
    } finally {
      await gateway.shutdown(0)
    }
  })
})
