/**
 * The decide and record guards of the core pipeline, fed hostile combinations through a real
 * gateway and the `pg` driver: several decide plugins (one denies, one throws, one asks for
 * review, in every order and answering synchronously or as promises), and a required sink that
 * acknowledges the intent record late or fails it. For each, what the server ran is checked on
 * the server itself, not through the gateway.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import pg from 'pg'
import { createLogger, Gateway, GatewayConfig, generateToken, hashToken, ReviewsToken, validate } from '@gatehouse/core'
import { startPgCluster, type PgCluster } from '../fixtures/pg-cluster.js'
import { DEFAULT_POLICIES, pgUpstream } from '../fixtures/gateway.js'

const pluginDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'plugins')

interface SinkState { events: { type: string; text?: string; verdict?: string; rule?: string }[]; failing: boolean; gate: Promise<void> | undefined; held: { text?: string }[] }
const sink = () => (globalThis as unknown as { __gatehouseTestSink: SinkState }).__gatehouseTestSink

type Verdict = 'allow' | 'deny' | 'review'
type How = 'sync' | 'async' | 'throw' | 'reject'

let cluster: PgCluster
let dataRoot: string
let runs = 0
beforeAll(async () => {
  cluster = await startPgCluster()
  dataRoot = mkdtempSync(join(tmpdir(), 'gatehouse-guards-'))
  await cluster.psql(`CREATE TABLE guard_t (n int); GRANT ALL ON guard_t TO ${cluster.users.scram.user};`)
})
afterAll(async () => {
  await cluster?.stop()
  if (dataRoot) rmSync(dataRoot, { recursive: true, force: true })
})

/** A gateway whose decide chain is the given test-verdict plugins (plus `policy` when asked), recording to the test sink. */
async function gatewayWith(decide: { verdict: Verdict; how: How }[], opts: { withPolicy?: boolean } = {}) {
  const token = generateToken()
  const plugins = decide.map((d, i) => ({ use: 'gatehouse-test-verdict', name: `v${i}`, config: { name: `v${i}`, ...d } }))
  const config = validate(GatewayConfig, {
    dataDir: join(dataRoot, `run-${++runs}`),
    log: { level: 'silent' },
    identities: [{ id: 'agent-1', groups: ['agents'], tokens: [{ hash: hashToken(token, 'agent-1') }] }],
    plugins: [{ use: 'gatehouse-test-sink' }, ...plugins],
    connections: [{
      name: 'pg', adapter: 'postgres', listen: '127.0.0.1:0', upstream: pgUpstream(cluster),
      plugins: { record: ['gatehouse-test-sink'], decide: [...(opts.withPolicy ? ['policy'] : []), ...plugins.map((p) => p.name)] },
    }],
    policies: DEFAULT_POLICIES,
  })
  const gateway = await Gateway.build(config, { logger: createLogger('silent'), pluginSearchDirs: [pluginDir] })
  await gateway.start()
  const client = async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: gateway.address('pg').port, user: 'agent-1', password: token, database: 'app' })
    c.on('error', () => undefined)
    await c.connect()
    return c
  }
  return { gateway, client }
}

/** Rows of guard_t as the server has them (asked directly, not through the gateway). */
const serverRows = async () => Number(await cluster.psql('SELECT count(*) FROM guard_t'))

/** Runs one INSERT through a gateway with this decide chain; answers how the client saw it and whether the row landed. */
async function attempt(decide: { verdict: Verdict; how: How }[], opts: { withPolicy?: boolean } = {}) {
  await cluster.psql('TRUNCATE guard_t')
  const { gateway, client } = await gatewayWith(decide, opts)
  sink().events.length = 0
  try {
    const c = await client()
    // a statement held for review is denied as soon as the client hears of it
    c.on('notice', (n) => {
      const id = /held for review (rev_[0-9a-f-]+)/.exec(n.message ?? '')?.[1]
      if (id) void gateway.container.resolve(ReviewsToken).vote(id, { by: 'tester', approve: false, reason: 'not in this test', at: Date.now() })
    })
    let error: { code?: string; message: string } | undefined
    try {
      await c.query('INSERT INTO guard_t VALUES (1)')
    } catch (err) {
      error = err as { code?: string; message: string }
    }
    // the session stays usable after a refusal: the next statement gets the same chain's answer of its own
    const next = await c.query('SELECT 1 AS one').then((r) => r.rows[0].one as number, (err: { code?: string }) => err.code)
    expect(next).toBe(error === undefined ? 1 : error.code)
    await c.end()
    const intent = sink().events.find((e) => e.type === 'request' && e.text === 'INSERT INTO guard_t VALUES (1)')
    return { error, rows: await serverRows(), intent }
  } finally {
    await gateway.shutdown(0)
  }
}

describe('several decide plugins: deny-overrides, fail closed', () => {
  const allowSync = { verdict: 'allow' as const, how: 'sync' as const }
  const allowAsync = { verdict: 'allow' as const, how: 'async' as const }

  it('the baseline: allow plugins alone let the INSERT through (so the refusals below are the guards at work)', async () => {
    const r = await attempt([allowSync, allowAsync])
    expect(r.error).toBeUndefined()
    expect(r.rows).toBe(1)
    expect(r.intent).toMatchObject({ verdict: 'allow' })
  })

  for (const how of ['sync', 'async'] as const) {
    it(`a deny (${how}) from one plugin wins over allows before and after it`, async () => {
      for (const chain of [[allowSync, { verdict: 'deny' as const, how }], [{ verdict: 'deny' as const, how }, allowAsync], [allowAsync, { verdict: 'deny' as const, how }, allowSync]]) {
        const r = await attempt(chain)
        expect(r.error).toMatchObject({ code: '42501', message: expect.stringMatching(/denied by rule "v\d\/fixed"/) })
        expect(r.rows).toBe(0)
        expect(r.intent).toMatchObject({ verdict: 'deny' })
      }
    })
  }

  it("a deny from the built-in policy plugin wins over a third-party allow (DROP under the test policy's no-drop rule)", async () => {
    await cluster.psql('DROP TABLE IF EXISTS guard_drop; CREATE TABLE guard_drop (n int); ALTER TABLE guard_drop OWNER TO app_scram;')
    const { gateway, client } = await gatewayWith([allowSync], { withPolicy: true })
    try {
      const c = await client()
      await expect(c.query('DROP TABLE guard_drop')).rejects.toMatchObject({ code: '42501', message: expect.stringContaining('no-drop') })
      await c.end()
      expect(await cluster.psql("SELECT count(*) FROM pg_class WHERE relname = 'guard_drop'")).toBe('1')
    } finally {
      await gateway.shutdown(0)
    }
  })

  for (const how of ['throw', 'reject'] as const) {
    it(`a plugin that fails (${how}) denies, alone or beside allows, in any position`, async () => {
      for (const chain of [[{ verdict: 'allow' as const, how }], [allowSync, { verdict: 'allow' as const, how }], [{ verdict: 'allow' as const, how }, allowAsync]]) {
        const r = await attempt(chain)
        expect(r.error).toMatchObject({ code: '42501', message: expect.stringContaining('policy evaluation failed') })
        expect(r.rows).toBe(0)
        expect(r.intent).toMatchObject({ verdict: 'deny', rule: 'gatehouse/policy-error' })
      }
    })
  }

  for (const how of ['sync', 'async'] as const) {
    it(`a review verdict (${how}) holds the statement, alone or beside an allow; denied, it never runs`, async () => {
      for (const chain of [[{ verdict: 'review' as const, how }], [allowSync, { verdict: 'review' as const, how }], [{ verdict: 'review' as const, how }, allowAsync]]) {
        const r = await attempt(chain)
        expect(r.error).toMatchObject({ code: '42501', message: expect.stringContaining('review denied: denied by tester: not in this test') })
        expect(r.rows).toBe(0)
        expect(r.intent).toMatchObject({ verdict: 'review' })
      }
    })
  }

  it('deny beats review whatever the order', async () => {
    for (const chain of [[{ verdict: 'review' as const, how: 'sync' as const }, { verdict: 'deny' as const, how: 'async' as const }], [{ verdict: 'deny' as const, how: 'sync' as const }, { verdict: 'review' as const, how: 'async' as const }]]) {
      const r = await attempt(chain)
      expect(r.error).toMatchObject({ code: '42501', message: expect.stringContaining('denied by rule') })
      expect(r.rows).toBe(0)
      expect(r.intent).toMatchObject({ verdict: 'deny' })
    }
  })
})

describe('the intent record comes before the forward (a required sink that acknowledges late)', () => {
  /**
   * Sends `INSERT INTO guard_t VALUES (1)` through a gateway whose sink holds the intent record,
   * waits until the sink has it, and hands the test the pending query and a way to let the sink
   * answer (taken, or refused when `failing` is set first).
   */
  async function withHeldIntent(run: (held: { insert: Promise<unknown>; client: pg.Client; release: () => void }) => Promise<void>): Promise<void> {
    await cluster.psql('TRUNCATE guard_t')
    const { gateway, client } = await gatewayWith([{ verdict: 'allow', how: 'sync' }])
    let release!: () => void
    try {
      const c = await client()
      sink().held.length = 0
      sink().gate = new Promise<void>((r) => { release = r })
      const insert = c.query('INSERT INTO guard_t VALUES (1)').then(() => undefined, (err: unknown) => err)
      for (let i = 0; i < 500 && sink().held.length === 0; i++) await new Promise((r) => setTimeout(r, 10))
      expect(sink().held.map((e) => e.text)).toEqual(['INSERT INTO guard_t VALUES (1)'])
      await run({ insert, client: c, release: () => { sink().gate = undefined; release() } })
      await c.end()
    } finally {
      sink().failing = false
      sink().gate = undefined
      release?.()
      await gateway.shutdown(0)
    }
  }

  it('nothing reaches the server while the intent record is unacknowledged; the statement runs once it is', async () => {
    await withHeldIntent(async ({ insert, release }) => {
      // the sink holds the intent record: look at the server directly
      await new Promise((r) => setTimeout(r, 200))
      expect(await serverRows()).toBe(0)
      expect(await cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'INSERT INTO guard_t%'")).toBe('0')
      release()
      expect(await insert).toBeUndefined()
      expect(await serverRows()).toBe(1)
    })
  })

  it('an intent record that fails after a delay refuses the statement, which never runs; the session goes on', async () => {
    await withHeldIntent(async ({ insert, client, release }) => {
      sink().failing = true
      release()
      expect(await insert).toMatchObject({ code: '58000', message: expect.stringContaining('audit is unavailable') })
      sink().failing = false
      expect(await serverRows()).toBe(0)
      expect((await client.query('SELECT 7 AS seven')).rows[0].seven).toBe(7)
    })
  })
})
