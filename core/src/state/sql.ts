/**
 * The state store in SQL, shared by both stores: the schema, its migrations and every query are
 * the same text for PGlite (embedded) and PostgreSQL, so what the tests prove of one holds for the
 * other. A store supplies only a `SqlClient`: run a query, run a transaction.
 *
 * Migrations run at start inside one transaction holding an advisory lock, so replicas starting
 * at once apply each migration once; a database whose schema is newer than this gateway knows is
 * refused rather than written with an older idea of its tables.
 */
import { GatewayError } from '../errors.js'
import type { Grant, IssuedToken, NewReview, Review, ReviewStatus, ReviewVote, SessionRecord, StateStore, VoteResult } from './store.js'

export interface SqlClient {
  query<T = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<T[]>
  /** Runs `fn` in a transaction: committed when it resolves, rolled back when it throws. */
  transaction<R>(fn: (tx: Pick<SqlClient, 'query'>) => Promise<R>): Promise<R>
  close(): Promise<void>
}

/** Ordered; a released migration is never edited, only followed by another. */
export const MIGRATIONS: readonly { readonly version: number; readonly name: string; readonly sql: readonly string[] }[] = [
  {
    version: 1,
    name: 'tokens, grants, reviews, sessions',
    sql: [
      `CREATE TABLE gatehouse.tokens (
        id text PRIMARY KEY,
        identity text NOT NULL,
        hash text NOT NULL,
        connections jsonb,
        description text,
        created_at timestamptz NOT NULL,
        created_by text NOT NULL,
        expires_at timestamptz NOT NULL,
        revoked_at timestamptz,
        revoked_by text,
        revoke_reason text
      )`,
      `CREATE INDEX tokens_identity ON gatehouse.tokens (identity, created_at)`,
      `CREATE TABLE gatehouse.grants (
        id text PRIMARY KEY,
        principal text NOT NULL,
        connection text NOT NULL,
        match jsonb NOT NULL,
        created_at timestamptz NOT NULL,
        created_by text NOT NULL,
        expires_at timestamptz NOT NULL,
        review text,
        revoked_at timestamptz,
        revoked_by text
      )`,
      `CREATE INDEX grants_principal ON gatehouse.grants (principal, connection, expires_at)`,
      `CREATE TABLE gatehouse.reviews (
        id text PRIMARY KEY,
        status text NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired')),
        connection text NOT NULL,
        protocol text NOT NULL,
        principal text NOT NULL,
        session text NOT NULL,
        request text NOT NULL,
        action text NOT NULL,
        target text NOT NULL,
        text text,
        params jsonb,
        attrs jsonb NOT NULL,
        fingerprint text NOT NULL,
        rule text NOT NULL,
        reason text NOT NULL,
        approvals_required integer NOT NULL CHECK (approvals_required >= 1),
        approvals jsonb NOT NULL DEFAULT '[]',
        gateway text NOT NULL,
        created_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL,
        decided_at timestamptz,
        decided_by text,
        decision_reason text
      )`,
      `CREATE INDEX reviews_status ON gatehouse.reviews (status, created_at)`,
      `CREATE TABLE gatehouse.review_votes (
        review text NOT NULL REFERENCES gatehouse.reviews (id),
        voter text NOT NULL,
        approve boolean NOT NULL,
        reason text,
        at timestamptz NOT NULL,
        PRIMARY KEY (review, voter)
      )`,
      `CREATE TABLE gatehouse.sessions (
        id text PRIMARY KEY,
        connection text NOT NULL,
        protocol text NOT NULL,
        principal text NOT NULL,
        credential text NOT NULL,
        client text NOT NULL,
        gateway text NOT NULL,
        started_at timestamptz NOT NULL,
        ended_at timestamptz,
        end_reason text
      )`,
      `CREATE INDEX sessions_started ON gatehouse.sessions (started_at)`,
    ],
  },
]

/** The advisory lock migrations take (any fixed number; "gatehouse" in ASCII, cut to 63 bits). */
const MIGRATION_LOCK = '7449363911858336613'

type Row = Record<string, unknown>

/** A timestamptz as both drivers return it (a Date), or as text. */
function ms(v: unknown): number {
  if (v instanceof Date) return v.getTime()
  if (typeof v === 'string') return Date.parse(v)
  return Number(v)
}
const optMs = (v: unknown): number | undefined => (v === null || v === undefined ? undefined : ms(v))
const optStr = (v: unknown): string | undefined => (v === null || v === undefined ? undefined : String(v))
const iso = (t: number): string => new Date(t).toISOString()
const isoOpt = (t: number | undefined): string | null => (t === undefined ? null : iso(t))
const json = (v: unknown): string | null => (v === undefined ? null : JSON.stringify(v))
/** jsonb as both drivers return it (parsed), or as text. */
const parsed = (v: unknown): unknown => (typeof v === 'string' ? JSON.parse(v) : v)

function tokenOf(r: Row): IssuedToken {
  const connections = parsed(r.connections) as string[] | null
  return {
    id: String(r.id),
    identity: String(r.identity),
    hash: String(r.hash),
    ...(connections ? { connections } : {}),
    ...(r.description == null ? {} : { description: String(r.description) }),
    createdAt: ms(r.created_at),
    createdBy: String(r.created_by),
    expiresAt: ms(r.expires_at),
    ...(r.revoked_at == null ? {} : { revokedAt: ms(r.revoked_at), revokedBy: String(r.revoked_by) }),
    ...(r.revoke_reason == null ? {} : { revokeReason: String(r.revoke_reason) }),
  }
}

function grantOf(r: Row): Grant {
  return {
    id: String(r.id),
    principal: String(r.principal),
    connection: String(r.connection),
    match: parsed(r.match) as Record<string, unknown>,
    createdAt: ms(r.created_at),
    createdBy: String(r.created_by),
    expiresAt: ms(r.expires_at),
    ...(r.review == null ? {} : { review: String(r.review) }),
    ...(r.revoked_at == null ? {} : { revokedAt: ms(r.revoked_at), revokedBy: String(r.revoked_by) }),
  }
}

function reviewOf(r: Row): Review {
  const params = parsed(r.params) as unknown[] | null
  return {
    id: String(r.id),
    status: String(r.status) as ReviewStatus,
    connection: String(r.connection),
    protocol: String(r.protocol),
    principal: String(r.principal),
    session: String(r.session),
    request: String(r.request),
    action: String(r.action),
    target: String(r.target),
    ...(r.text == null ? {} : { text: String(r.text) }),
    ...(params ? { params } : {}),
    attrs: parsed(r.attrs) as Record<string, unknown>,
    fingerprint: String(r.fingerprint),
    rule: String(r.rule),
    reason: String(r.reason),
    approvalsRequired: Number(r.approvals_required),
    approvals: parsed(r.approvals) as string[],
    gateway: String(r.gateway),
    createdAt: ms(r.created_at),
    expiresAt: ms(r.expires_at),
    ...(r.decided_at == null ? {} : { decidedAt: ms(r.decided_at) }),
    ...(r.decided_by == null ? {} : { decidedBy: String(r.decided_by) }),
    ...(r.decision_reason == null ? {} : { decisionReason: String(r.decision_reason) }),
  }
}

function sessionOf(r: Row): SessionRecord {
  return {
    id: String(r.id),
    connection: String(r.connection),
    protocol: String(r.protocol),
    principal: String(r.principal),
    credential: String(r.credential),
    client: String(r.client),
    gateway: String(r.gateway),
    startedAt: ms(r.started_at),
    ...(r.ended_at == null ? {} : { endedAt: ms(r.ended_at) }),
    ...(r.end_reason == null ? {} : { endReason: String(r.end_reason) }),
  }
}

export class SqlStateStore implements StateStore {
  private opened: Promise<SqlClient> | undefined
  private client: SqlClient | undefined

  /** `open` connects (or opens the embedded database); it is called once, on first use. */
  constructor(
    readonly kind: string,
    private readonly open: () => Promise<SqlClient>,
  ) {}

  start(): Promise<void> {
    return this.db().then(() => undefined)
  }

  private db(): Promise<SqlClient> {
    this.opened ??= (async () => {
      const client = await this.open()
      try {
        await migrate(client)
      } catch (err) {
        await client.close().catch(() => undefined)
        throw err
      }
      this.client = client
      return client
    })()
    // a failed open is not remembered: the next call tries again
    this.opened.catch(() => {
      this.opened = undefined
    })
    return this.opened
  }

  private async q(text: string, params?: readonly unknown[]): Promise<Row[]> {
    return (await this.db()).query<Row>(text, params)
  }

  async close(): Promise<void> {
    const opened = this.opened
    this.opened = undefined
    if (!opened) return
    const client = await opened.catch(() => undefined)
    this.client = undefined
    await client?.close()
  }

  async addToken(t: IssuedToken): Promise<void> {
    await this.q(
      `INSERT INTO gatehouse.tokens (id, identity, hash, connections, description, created_at, created_by, expires_at, revoked_at, revoked_by, revoke_reason)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
      [t.id, t.identity, t.hash, json(t.connections), t.description ?? null, iso(t.createdAt), t.createdBy, iso(t.expiresAt), isoOpt(t.revokedAt), t.revokedBy ?? null, t.revokeReason ?? null],
    )
  }

  async getToken(id: string): Promise<IssuedToken | undefined> {
    const [r] = await this.q(`SELECT * FROM gatehouse.tokens WHERE id = $1`, [id])
    return r ? tokenOf(r) : undefined
  }

  async listTokens(f: { identity?: string; now: number; includeInactive?: boolean }): Promise<IssuedToken[]> {
    const rows = await this.q(
      `SELECT * FROM gatehouse.tokens
       WHERE ($1::text IS NULL OR identity = $1) AND ($2 OR (revoked_at IS NULL AND expires_at > $3))
       ORDER BY created_at DESC, id`,
      [f.identity ?? null, f.includeInactive === true, iso(f.now)],
    )
    return rows.map(tokenOf)
  }

  async revokeToken(id: string, by: string, reason: string | undefined, at: number): Promise<IssuedToken | undefined> {
    await this.q(`UPDATE gatehouse.tokens SET revoked_at = $2, revoked_by = $3, revoke_reason = $4 WHERE id = $1 AND revoked_at IS NULL`, [id, iso(at), by, reason ?? null])
    return this.getToken(id)
  }

  async addGrant(g: Grant): Promise<void> {
    await this.q(
      `INSERT INTO gatehouse.grants (id, principal, connection, match, created_at, created_by, expires_at, review, revoked_at, revoked_by)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
      [g.id, g.principal, g.connection, json(g.match), iso(g.createdAt), g.createdBy, iso(g.expiresAt), g.review ?? null, isoOpt(g.revokedAt), g.revokedBy ?? null],
    )
  }

  async listGrants(f: { principal?: string; connection?: string; now: number }): Promise<Grant[]> {
    const rows = await this.q(
      `SELECT * FROM gatehouse.grants
       WHERE ($1::text IS NULL OR principal = $1) AND ($2::text IS NULL OR connection = $2) AND revoked_at IS NULL AND expires_at > $3
       ORDER BY created_at, id`,
      [f.principal ?? null, f.connection ?? null, iso(f.now)],
    )
    return rows.map(grantOf)
  }

  async revokeGrant(id: string, by: string, at: number): Promise<Grant | undefined> {
    await this.q(`UPDATE gatehouse.grants SET revoked_at = $2, revoked_by = $3 WHERE id = $1 AND revoked_at IS NULL`, [id, iso(at), by])
    const [r] = await this.q(`SELECT * FROM gatehouse.grants WHERE id = $1`, [id])
    return r ? grantOf(r) : undefined
  }

  async createReview(n: NewReview): Promise<Review> {
    if (!Number.isInteger(n.approvalsRequired) || n.approvalsRequired < 1) throw new GatewayError('GH_ERR_INTERNAL', `a review needs at least one approval, not ${n.approvalsRequired}`)
    const [r] = await this.q(
      `INSERT INTO gatehouse.reviews (id, status, connection, protocol, principal, session, request, action, target, text, params, attrs, fingerprint, rule, reason, approvals_required, gateway, created_at, expires_at)
       VALUES ($1, 'pending', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
       RETURNING *`,
      [n.id, n.connection, n.protocol, n.principal, n.session, n.request, n.action, n.target, n.text ?? null, json(n.params), json(n.attrs), n.fingerprint, n.rule, n.reason, n.approvalsRequired, n.gateway, iso(n.createdAt), iso(n.expiresAt)],
    )
    return reviewOf(r as Row)
  }

  async getReview(id: string): Promise<Review | undefined> {
    const [r] = await this.q(`SELECT * FROM gatehouse.reviews WHERE id = $1`, [id])
    return r ? reviewOf(r) : undefined
  }

  async listReviews(f: { status?: ReviewStatus; connection?: string; limit?: number }): Promise<Review[]> {
    const rows = await this.q(
      `SELECT * FROM gatehouse.reviews WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR connection = $2) ORDER BY created_at, id LIMIT $3`,
      [f.status ?? null, f.connection ?? null, Math.max(1, Math.min(f.limit ?? 1000, 10_000))],
    )
    return rows.map(reviewOf)
  }

  async vote(id: string, v: ReviewVote): Promise<VoteResult> {
    return (await this.db()).transaction(async (tx) => {
      // The row lock makes votes on one review one at a time, across every replica.
      const [row] = await tx.query<Row>(`SELECT * FROM gatehouse.reviews WHERE id = $1 FOR UPDATE`, [id])
      if (!row) return { result: 'not-found' as const }
      const review = reviewOf(row)
      if (review.status !== 'pending') return { result: 'already-decided' as const, review }
      if (v.at >= review.expiresAt) return { result: 'expired' as const, review }
      // Neither approve nor deny their own request: a requester who could deny could also probe.
      if (v.by === review.principal) return { result: 'self-approval' as const, review }
      const [seen] = await tx.query<Row>(`SELECT 1 FROM gatehouse.review_votes WHERE review = $1 AND voter = $2`, [id, v.by])
      if (seen) return { result: 'already-voted' as const, review }
      await tx.query(`INSERT INTO gatehouse.review_votes (review, voter, approve, reason, at) VALUES ($1, $2, $3, $4, $5)`, [id, v.by, v.approve, v.reason ?? null, iso(v.at)])
      if (!v.approve) {
        const [denied] = await tx.query<Row>(
          `UPDATE gatehouse.reviews SET status = 'denied', decided_at = $2, decided_by = $3, decision_reason = $4 WHERE id = $1 RETURNING *`,
          [id, iso(v.at), v.by, v.reason ?? null],
        )
        return { result: 'denied' as const, review: reviewOf(denied as Row) }
      }
      const approvals = [...review.approvals, v.by]
      const done = approvals.length >= review.approvalsRequired
      const [updated] = await tx.query<Row>(
        done
          ? `UPDATE gatehouse.reviews SET approvals = $2, status = 'approved', decided_at = $3, decided_by = $4, decision_reason = $5 WHERE id = $1 RETURNING *`
          : `UPDATE gatehouse.reviews SET approvals = $2 WHERE id = $1 RETURNING *`,
        done ? [id, JSON.stringify(approvals), iso(v.at), v.by, v.reason ?? null] : [id, JSON.stringify(approvals)],
      )
      return { result: done ? ('approved' as const) : ('counted' as const), review: reviewOf(updated as Row) }
    })
  }

  async expireReviews(now: number): Promise<Review[]> {
    const rows = await this.q(
      `UPDATE gatehouse.reviews SET status = 'expired', decided_at = $1, decided_by = 'gatehouse', decision_reason = 'no decision before the review timed out'
       WHERE status = 'pending' AND expires_at <= $1 RETURNING *`,
      [iso(now)],
    )
    return rows.map(reviewOf)
  }

  async abandonReviews(gateway: string, reason: string, at: number): Promise<Review[]> {
    const rows = await this.q(
      `UPDATE gatehouse.reviews SET status = 'denied', decided_at = $2, decided_by = 'gatehouse', decision_reason = $3
       WHERE status = 'pending' AND gateway = $1 RETURNING *`,
      [gateway, iso(at), reason],
    )
    return rows.map(reviewOf)
  }

  async sessionStarted(s: SessionRecord): Promise<void> {
    await this.q(
      `INSERT INTO gatehouse.sessions (id, connection, protocol, principal, credential, client, gateway, started_at, ended_at, end_reason)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
      [s.id, s.connection, s.protocol, s.principal, s.credential, s.client, s.gateway, iso(s.startedAt), isoOpt(s.endedAt), s.endReason ?? null],
    )
  }

  async sessionEnded(id: string, at: number, reason: string): Promise<void> {
    await this.q(`UPDATE gatehouse.sessions SET ended_at = $2, end_reason = $3 WHERE id = $1 AND ended_at IS NULL`, [id, iso(at), reason])
  }

  async getSession(id: string): Promise<SessionRecord | undefined> {
    const [r] = await this.q(`SELECT * FROM gatehouse.sessions WHERE id = $1`, [id])
    return r ? sessionOf(r) : undefined
  }

  async listSessions(f: { active?: boolean; connection?: string; principal?: string; limit?: number }): Promise<SessionRecord[]> {
    const rows = await this.q(
      `SELECT * FROM gatehouse.sessions
       WHERE ($1::boolean IS NULL OR (ended_at IS NULL) = $1) AND ($2::text IS NULL OR connection = $2) AND ($3::text IS NULL OR principal = $3)
       ORDER BY started_at DESC, id LIMIT $4`,
      [f.active ?? null, f.connection ?? null, f.principal ?? null, Math.max(1, Math.min(f.limit ?? 1000, 10_000))],
    )
    return rows.map(sessionOf)
  }
}

/** Brings the schema up to date, one migration at a time, under an advisory lock. */
export async function migrate(client: SqlClient): Promise<number> {
  return client.transaction(async (tx) => {
    await tx.query(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`)
    await tx.query(`CREATE SCHEMA IF NOT EXISTS gatehouse`)
    await tx.query(`CREATE TABLE IF NOT EXISTS gatehouse.migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`)
    const applied = new Set((await tx.query<{ version: number }>(`SELECT version FROM gatehouse.migrations`)).map((r) => Number(r.version)))
    const known = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0
    const newest = Math.max(0, ...applied)
    if (newest > known) {
      throw new GatewayError('GH_ERR_STATE_SCHEMA', `the state store's schema is at version ${newest}, newer than this gateway knows (${known}): upgrade the gateway`)
    }
    for (const m of MIGRATIONS) {
      if (applied.has(m.version)) continue
      for (const statement of m.sql) await tx.query(statement)
      await tx.query(`INSERT INTO gatehouse.migrations (version, name) VALUES ($1, $2)`, [m.version, m.name])
    }
    return known
  })
}
