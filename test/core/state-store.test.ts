/**
 * The state store, the same tests against both stores: embedded (PGlite in a temp directory) and
 * PostgreSQL (a throwaway cluster, as a replica set would share it). Tokens, grants, reviews and
 * their votes, sessions; migrations applied once; votes decided once across two replicas voting
 * at once; the embedded store surviving a restart; an unreachable server refused without its
 * password in the message.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { createLogger, Gateway, GatewayError, MIGRATIONS, StateStoreToken, openEmbedded, openPostgres, parseConfig, SqlStateStore, stateStoreFor, type NewReview, type StateStore } from '@gatehouse/core'
import { startPgCluster, type PgCluster } from '../fixtures/pg-cluster.js'

let cluster: PgCluster
let dir: string
let dbCount = 0

beforeAll(async () => {
  cluster = await startPgCluster()
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-state-'))
}, 60_000)
afterAll(async () => {
  await cluster?.stop()
  rmSync(dir, { recursive: true, force: true })
})

const urlOf = (database: string) => `postgres://${cluster.users.scram.user}:${encodeURIComponent(cluster.users.scram.password)}@127.0.0.1:${cluster.port}/${database}`

/** A fresh database for each store under test: the stores' tables never meet. */
async function freshDatabase(): Promise<string> {
  const name = `state_${process.pid}_${++dbCount}`
  await cluster.psql(`CREATE DATABASE ${name}; GRANT ALL ON DATABASE ${name} TO ${cluster.users.scram.user};`)
  return name
}

interface Kind {
  name: string
  /** A new store on a new database; `replica()` opens another store on the same one. */
  make(): Promise<{ store: StateStore; replica(): StateStore }>
}

const kinds: Kind[] = [
  {
    name: 'embedded',
    async make() {
      const path = mkdtempSync(join(dir, 'pglite-'))
      return { store: new SqlStateStore('embedded', () => openEmbedded(path)), replica: () => new SqlStateStore('embedded', () => openEmbedded(path)) }
    },
  },
  {
    name: 'postgres',
    async make() {
      const url = urlOf(await freshDatabase())
      return { store: new SqlStateStore('postgres', () => openPostgres(url)), replica: () => new SqlStateStore('postgres', () => openPostgres(url)) }
    },
  },
]

const T0 = Date.parse('2026-12-04T12:00:00Z')
const MIN = 60_000

function review(id: string, over: Partial<NewReview> = {}): NewReview {
  return {
    id,
    connection: 'orders-db',
    protocol: 'postgres',
    principal: 'agent-1',
    session: 's1',
    request: `s1.${id}`,
    action: 'sql.query',
    target: 'orders-db',
    text: 'DELETE FROM orders WHERE id = $1',
    params: ['42'],
    attrs: { sql: { statement: 'DELETE', writes: ['orders'] } },
    fingerprint: 'f'.repeat(64),
    rule: 'orders/deletes-need-review',
    reason: 'deletes need a person',
    approvalsRequired: 1,
    gateway: 'gw-a',
    createdAt: T0,
    expiresAt: T0 + 10 * MIN,
    ...over,
  }
}

describe.each(kinds)('state store: $name', (kind) => {
  it('applies its migrations once; a replica (or a restart) on the same database finds them current', async () => {
    const { store, replica } = await kind.make()
    const other = replica()
    try {
      await store.start()
      await store.close()
      // started again (a restart), and by a replica, and used: nothing is applied twice
      await other.start()
      await other.addToken({ id: 't-1', identity: 'ci', hash: 'sha256:' + '0'.repeat(64), createdAt: T0, createdBy: 'admin', expiresAt: T0 + MIN })
      expect((await other.getToken('t-1'))?.identity).toBe('ci')
    } finally {
      await store.close()
      await other.close()
    }
  })

  it('tokens: stored with their scope, listed while active, revoked once (the first revocation stands)', async () => {
    const { store } = await kind.make()
    try {
      await store.addToken({ id: 'a', identity: 'ci', hash: 'SCRAM-SHA-256$4096:x$y:z', connections: ['orders-db'], description: 'nightly job', createdAt: T0, createdBy: 'alice', expiresAt: T0 + 15 * MIN })
      await store.addToken({ id: 'b', identity: 'ci', hash: 'sha256:' + '1'.repeat(64), createdAt: T0 + 1, createdBy: 'alice', expiresAt: T0 + MIN })
      await store.addToken({ id: 'c', identity: 'other', hash: 'sha256:' + '2'.repeat(64), createdAt: T0 + 2, createdBy: 'bob', expiresAt: T0 + MIN })
      expect(await store.getToken('a')).toEqual({ id: 'a', identity: 'ci', hash: 'SCRAM-SHA-256$4096:x$y:z', connections: ['orders-db'], description: 'nightly job', createdAt: T0, createdBy: 'alice', expiresAt: T0 + 15 * MIN })
      expect(await store.getToken('nope')).toBeUndefined()
      expect((await store.listTokens({ identity: 'ci', now: T0 })).map((t) => t.id)).toEqual(['b', 'a'])
      expect((await store.listTokens({ now: T0 })).map((t) => t.id)).toEqual(['c', 'b', 'a'])
      // b has expired two minutes in: not active, still listed when asked for everything
      expect((await store.listTokens({ identity: 'ci', now: T0 + 2 * MIN })).map((t) => t.id)).toEqual(['a'])
      expect((await store.listTokens({ identity: 'ci', now: T0 + 2 * MIN, includeInactive: true })).map((t) => t.id)).toEqual(['b', 'a'])

      const revoked = await store.revokeToken('a', 'bob', 'leaked in a log', T0 + 5)
      expect(revoked).toMatchObject({ id: 'a', revokedAt: T0 + 5, revokedBy: 'bob', revokeReason: 'leaked in a log' })
      const again = await store.revokeToken('a', 'carol', 'again', T0 + 9)
      expect(again).toMatchObject({ revokedAt: T0 + 5, revokedBy: 'bob', revokeReason: 'leaked in a log' })
      expect(await store.revokeToken('nope', 'bob', undefined, T0)).toBeUndefined()
      expect((await store.listTokens({ identity: 'ci', now: T0 })).map((t) => t.id)).toEqual(['b'])
    } finally {
      await store.close()
    }
  })

  it('grants: in force until they expire or are revoked, by principal and connection', async () => {
    const { store } = await kind.make()
    try {
      await store.addGrant({ id: 'g1', principal: 'agent-1', connection: 'orders-db', match: { 'sql.statement': ['UPDATE'], 'sql.writes': ['orders'] }, createdAt: T0, createdBy: 'alice', expiresAt: T0 + 30 * MIN, review: 'r-1' })
      await store.addGrant({ id: 'g2', principal: 'agent-1', connection: 'billing-db', match: {}, createdAt: T0 + 1, createdBy: 'alice', expiresAt: T0 + MIN })
      await store.addGrant({ id: 'g3', principal: 'agent-2', connection: 'orders-db', match: {}, createdAt: T0 + 2, createdBy: 'alice', expiresAt: T0 + MIN })
      expect(await store.listGrants({ principal: 'agent-1', connection: 'orders-db', now: T0 })).toEqual([
        { id: 'g1', principal: 'agent-1', connection: 'orders-db', match: { 'sql.statement': ['UPDATE'], 'sql.writes': ['orders'] }, createdAt: T0, createdBy: 'alice', expiresAt: T0 + 30 * MIN, review: 'r-1' },
      ])
      expect((await store.listGrants({ principal: 'agent-1', now: T0 })).map((g) => g.id)).toEqual(['g1', 'g2'])
      expect((await store.listGrants({ connection: 'orders-db', now: T0 })).map((g) => g.id)).toEqual(['g1', 'g3'])
      expect((await store.listGrants({ now: T0 + 2 * MIN })).map((g) => g.id)).toEqual(['g1'])
      expect(await store.revokeGrant('g1', 'bob', T0 + 3)).toMatchObject({ revokedAt: T0 + 3, revokedBy: 'bob' })
      expect(await store.listGrants({ now: T0 })).toHaveLength(2)
      expect(await store.revokeGrant('nope', 'bob', T0)).toBeUndefined()
    } finally {
      await store.close()
    }
  })

  it('reviews: the requester cannot vote, each approver counts once, N approvals decide, a denial decides, a decided review stays decided', async () => {
    const { store } = await kind.make()
    try {
      const created = await store.createReview(review('r-2', { approvalsRequired: 2 }))
      expect(created).toMatchObject({ id: 'r-2', status: 'pending', approvals: [], params: ['42'], attrs: { sql: { statement: 'DELETE', writes: ['orders'] } }, approvalsRequired: 2 })
      expect(await store.vote('r-2', { by: 'agent-1', approve: true, at: T0 + 1 })).toMatchObject({ result: 'self-approval' })
      expect(await store.vote('r-2', { by: 'agent-1', approve: false, at: T0 + 1 })).toMatchObject({ result: 'self-approval' })
      expect(await store.vote('r-2', { by: 'alice', approve: true, at: T0 + 2 })).toMatchObject({ result: 'counted', review: { status: 'pending', approvals: ['alice'] } })
      expect(await store.vote('r-2', { by: 'alice', approve: true, at: T0 + 3 })).toMatchObject({ result: 'already-voted', review: { approvals: ['alice'] } })
      const approved = await store.vote('r-2', { by: 'bob', approve: true, reason: 'checked the ticket', at: T0 + 4 })
      expect(approved).toMatchObject({ result: 'approved', review: { status: 'approved', approvals: ['alice', 'bob'], decidedAt: T0 + 4, decidedBy: 'bob', decisionReason: 'checked the ticket' } })
      expect(await store.vote('r-2', { by: 'carol', approve: false, at: T0 + 5 })).toMatchObject({ result: 'already-decided', review: { status: 'approved' } })

      await store.createReview(review('r-3'))
      expect(await store.vote('r-3', { by: 'carol', approve: false, reason: 'not on a Friday', at: T0 + 6 })).toMatchObject({ result: 'denied', review: { status: 'denied', decidedBy: 'carol', decisionReason: 'not on a Friday' } })
      expect(await store.vote('r-3', { by: 'alice', approve: true, at: T0 + 7 })).toMatchObject({ result: 'already-decided', review: { status: 'denied' } })
      expect(await store.vote('nope', { by: 'alice', approve: true, at: T0 })).toEqual({ result: 'not-found' })

      expect((await store.listReviews({ status: 'pending' })).map((r) => r.id)).toEqual([])
      expect((await store.listReviews({})).map((r) => r.id)).toEqual(['r-2', 'r-3'])
      await expect(store.createReview(review('r-4', { approvalsRequired: 0 }))).rejects.toThrow(/at least one approval/)
      await expect(store.createReview(review('r-2'))).rejects.toThrow()
    } finally {
      await store.close()
    }
  })

  it('reviews: a vote after the expiry does not count; expiry and a restart end pending reviews, each only its own', async () => {
    const { store } = await kind.make()
    try {
      await store.createReview(review('late', { expiresAt: T0 + MIN }))
      await store.createReview(review('held-a', { gateway: 'gw-a', expiresAt: T0 + 60 * MIN }))
      await store.createReview(review('held-b', { gateway: 'gw-b', expiresAt: T0 + 60 * MIN, connection: 'billing-db' }))
      expect(await store.vote('late', { by: 'alice', approve: true, at: T0 + MIN })).toMatchObject({ result: 'expired', review: { status: 'pending' } })
      const expired = await store.expireReviews(T0 + 2 * MIN)
      expect(expired.map((r) => [r.id, r.status, r.decidedBy])).toEqual([['late', 'expired', 'gatehouse']])
      expect(await store.expireReviews(T0 + 2 * MIN)).toEqual([])
      const abandoned = await store.abandonReviews('gw-a', 'the gateway restarted while the request was held', T0 + 3 * MIN)
      expect(abandoned.map((r) => [r.id, r.status, r.decisionReason])).toEqual([['held-a', 'denied', 'the gateway restarted while the request was held']])
      expect((await store.listReviews({ status: 'pending' })).map((r) => r.id)).toEqual(['held-b'])
      expect((await store.listReviews({ connection: 'billing-db' })).map((r) => r.id)).toEqual(['held-b'])
    } finally {
      await store.close()
    }
  })

  it('reviews: two replicas voting at once decide a review once', async () => {
    const { store, replica } = await kind.make()
    // PGlite is one process's database: its "replica" is a second look at the same directory only after the first closes
    const other = kind.name === 'postgres' ? replica() : store
    try {
      // every pooled connection open first (a login takes longer than a vote): the votes then really overlap
      await Promise.all([store, other].flatMap((s) => Array.from({ length: 5 }, () => s.listSessions({}))))
      for (let round = 0; round < 5; round++) {
        const id = `race-${round}`
        await store.createReview(review(id))
        const votes = await Promise.all(
          ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi'].map((by, i) => (i % 2 === 0 ? store : other).vote(id, { by, approve: i !== 3, at: T0 + 10 })),
        )
        const deciding = votes.filter((v) => v.result === 'approved' || v.result === 'denied')
        expect(deciding).toHaveLength(1)
        expect(votes.filter((v) => v.result === 'already-decided')).toHaveLength(7)
        const final = await store.getReview(id)
        expect(final?.status).toBe(deciding[0]?.result)
      }
    } finally {
      await store.close()
      if (other !== store) await other.close()
    }
  })

  it('sessions: started, ended once, listed active or all, newest first', async () => {
    const { store } = await kind.make()
    try {
      const base = { connection: 'orders-db', protocol: 'postgres', credential: 'token:ci#0', client: '127.0.0.1:50000', gateway: 'gw-a' }
      await store.sessionStarted({ id: 's1', principal: 'ci', startedAt: T0, ...base })
      await store.sessionStarted({ id: 's2', principal: 'ci', startedAt: T0 + 1, ...base })
      await store.sessionStarted({ id: 's3', principal: 'ops', startedAt: T0 + 2, ...base, connection: 'bastion', protocol: 'ssh' })
      await store.sessionEnded('s1', T0 + 5, 'client closed')
      await store.sessionEnded('s1', T0 + 9, 'later')
      expect(await store.getSession('s1')).toEqual({ id: 's1', principal: 'ci', startedAt: T0, ...base, endedAt: T0 + 5, endReason: 'client closed' })
      expect((await store.listSessions({ active: true })).map((s) => s.id)).toEqual(['s3', 's2'])
      expect((await store.listSessions({ active: false })).map((s) => s.id)).toEqual(['s1'])
      expect((await store.listSessions({})).map((s) => s.id)).toEqual(['s3', 's2', 's1'])
      expect((await store.listSessions({ connection: 'orders-db', principal: 'ci', limit: 1 })).map((s) => s.id)).toEqual(['s2'])
      expect(await store.getSession('nope')).toBeUndefined()
    } finally {
      await store.close()
    }
  })
})

describe('state store: embedded and postgres specifics', () => {
  it('the embedded store keeps its records across a restart (closed and opened again on the same directory)', async () => {
    const path = mkdtempSync(join(dir, 'restart-'))
    const first = new SqlStateStore('embedded', () => openEmbedded(path))
    await first.createReview(review('survives'))
    await first.close()
    const second = new SqlStateStore('embedded', () => openEmbedded(path))
    try {
      expect(await second.getReview('survives')).toMatchObject({ id: 'survives', status: 'pending', params: ['42'] })
    } finally {
      await second.close()
    }
  })

  it('a schema newer than this gateway knows is refused, and nothing is written', async () => {
    const url = urlOf(await freshDatabase())
    const store = new SqlStateStore('postgres', () => openPostgres(url))
    await store.start()
    await store.close()
    const c = new pg.Client({ connectionString: url })
    await c.connect()
    const newer = (MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0) + 1
    await c.query(`INSERT INTO gatehouse.migrations (version, name) VALUES ($1, 'from a newer gateway')`, [newer])
    await c.end()
    const again = new SqlStateStore('postgres', () => openPostgres(url))
    const err = await again.start().then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(GatewayError)
    expect(err).toMatchObject({ code: 'GH_ERR_STATE_SCHEMA' })
    expect(String((err as Error).message)).toContain(`version ${newer}`)
    await again.close()
  })

  it('an unreachable PostgreSQL is GH_ERR_STATE_UNAVAILABLE, names the host and never the password; the next use tries again', async () => {
    const secret = 'hunter2-state-password'
    const store = new SqlStateStore('postgres', () => openPostgres(`postgres://gh:${secret}@127.0.0.1:1/state?connect_timeout=2`))
    for (let i = 0; i < 2; i++) {
      const err = await store.listReviews({}).then(() => undefined, (e: unknown) => e)
      expect(err).toMatchObject({ code: 'GH_ERR_STATE_UNAVAILABLE' })
      expect((err as Error).message).toContain('127.0.0.1:1/state')
      expect((err as Error).message).not.toContain(secret)
    }
    await store.close()
  })

  it('a gateway opens its store on first use only, and closes it when it stops', async () => {
    const dataDir = mkdtempSync(join(dir, 'gw-'))
    const config = parseConfig(`dataDir: ${dataDir}\nconnections: [{ name: db, adapter: postgres, listen: "127.0.0.1:0", upstream: { host: 127.0.0.1, port: ${cluster.port}, database: app, user: app_trust } }]\n`)
    const gateway = await Gateway.build(config, { logger: createLogger('silent') })
    await gateway.start()
    expect(existsSync(join(dataDir, 'state'))).toBe(false)
    const store = gateway.container.resolve(StateStoreToken)
    await store.sessionStarted({ id: 'g1', connection: 'db', protocol: 'postgres', principal: 'p', credential: 'c', client: 'x', gateway: 'gw', startedAt: T0 })
    expect(existsSync(join(dataDir, 'state'))).toBe(true)
    await gateway.shutdown(0)
    // closed: PGlite released the directory, so another store opens it and finds the record
    const after = new SqlStateStore('embedded', () => openEmbedded(join(dataDir, 'state')))
    expect((await after.getSession('g1'))?.principal).toBe('p')
    await after.close()
  })

  it('the config names the store: embedded under the data directory by default, postgres by URL', async () => {
    const base = 'connections: [{ name: db, adapter: postgres, listen: "127.0.0.1:0", upstream: { host: 127.0.0.1, port: 5432, database: d, user: u } }]\n'
    const embedded = parseConfig(`dataDir: ${join(dir, 'data')}\n${base}`)
    expect(embedded.state).toEqual({ store: 'embedded' })
    const store = stateStoreFor(embedded)
    expect(store.kind).toBe('embedded')
    await store.addToken({ id: 'x', identity: 'ci', hash: 'sha256:' + '3'.repeat(64), createdAt: T0, createdBy: 'a', expiresAt: T0 + MIN })
    await store.close()
    const reopened = new SqlStateStore('embedded', () => openEmbedded(join(dir, 'data', 'state')))
    expect((await reopened.getToken('x'))?.identity).toBe('ci')
    await reopened.close()

    const url = urlOf(await freshDatabase())
    const shared = parseConfig(`state: { store: postgres, url: "${url}" }\n${base}`)
    expect(shared.state).toMatchObject({ store: 'postgres', url, poolSize: 5 })
    const pgStore = stateStoreFor(shared)
    expect(pgStore.kind).toBe('postgres')
    expect(await pgStore.listSessions({})).toEqual([])
    await pgStore.close()
    expect(() => parseConfig(`state: { store: postgres }\n${base}`)).toThrow(/state/)
    expect(() => parseConfig(`state: { store: sqlite }\n${base}`)).toThrow(/state/)
  })
})
