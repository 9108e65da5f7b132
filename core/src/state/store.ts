/**
 * The state store: what the gateway must remember beyond one process's life and share between
 * replicas — tokens it issued (hashes only), grants, reviews and their decisions, and sessions.
 *
 * One interface, two stores with the same schema and the same SQL (state/sql.ts): `embedded`
 * (PGlite, PostgreSQL built to WebAssembly, in a directory under the data directory; no server)
 * and `postgres` (a shared PostgreSQL for several gateway replicas). Everything that must be
 * decided once across replicas (a review's outcome, a token's revocation) is decided inside one
 * transaction that locks the row, so two replicas deciding at once agree on the result.
 *
 * Times are milliseconds since the epoch; the caller passes `now` so tests and replicas agree on
 * what "expired" means for one call.
 */
import type { InjectionToken } from 'tsyringe'

/** A token the gateway issued (`gatehouse token issue`, the admin API). The token itself is never stored. */
export interface IssuedToken {
  readonly id: string
  readonly identity: string
  /** SCRAM verifier or sha256 digest, as in the config's `identities[].tokens[].hash`. */
  readonly hash: string
  /** Connections the token may open; undefined: all the identity may use. */
  readonly connections?: readonly string[]
  readonly description?: string
  readonly createdAt: number
  readonly createdBy: string
  readonly expiresAt: number
  readonly revokedAt?: number
  readonly revokedBy?: string
  readonly revokeReason?: string
}

/**
 * A grant: "this principal may run requests matching `match` on this connection until
 * `expiresAt`" — given with an approval so an agent's loop does not page a person per row.
 */
export interface Grant {
  readonly id: string
  readonly principal: string
  readonly connection: string
  /** What a request must match (a policy `match` object: attribute → allowed values). */
  readonly match: Readonly<Record<string, unknown>>
  readonly createdAt: number
  readonly createdBy: string
  readonly expiresAt: number
  /** The review whose approval gave it, if any. */
  readonly review?: string
  readonly revokedAt?: number
  readonly revokedBy?: string
}

export type ReviewStatus = 'pending' | 'approved' | 'denied' | 'expired'

/** A held request, as shown to approvers and bound to that exact request by `fingerprint`. */
export interface Review {
  readonly id: string
  readonly status: ReviewStatus
  readonly connection: string
  readonly protocol: string
  /** The requesting principal's id: it may not approve its own request. */
  readonly principal: string
  readonly session: string
  /** The gateway request id (the audit's `request`). */
  readonly request: string
  readonly action: string
  readonly target: string
  readonly text?: string
  readonly params?: readonly unknown[]
  readonly attrs: Readonly<Record<string, unknown>>
  /** SHA-256 over what the approver sees (text, parameters, target, action): an approval releases only this. */
  readonly fingerprint: string
  readonly rule: string
  readonly reason: string
  readonly approvalsRequired: number
  /** Distinct approvers so far (each at most once). */
  readonly approvals: readonly string[]
  /** The gateway instance holding the request (its requester waits on it). */
  readonly gateway: string
  readonly createdAt: number
  readonly expiresAt: number
  readonly decidedAt?: number
  /** Who decided it: the last approver, the denier, or `gatehouse` (timeout, restart). */
  readonly decidedBy?: string
  readonly decisionReason?: string
}

export type NewReview = Omit<Review, 'status' | 'approvals' | 'decidedAt' | 'decidedBy' | 'decisionReason'>

/** A person's answer to a review. */
export interface ReviewVote {
  readonly by: string
  readonly approve: boolean
  readonly reason?: string
  readonly at: number
}

/**
 * What a vote did: `approved`/`denied` when it decided the review, `counted` when it was an
 * approval short of the required number; the rest leave the review as it was.
 */
export type VoteResult =
  | { readonly result: 'approved' | 'denied' | 'counted'; readonly review: Review }
  | { readonly result: 'not-found' }
  | { readonly result: 'already-decided' | 'self-approval' | 'already-voted' | 'expired'; readonly review: Review }

export interface SessionRecord {
  readonly id: string
  readonly connection: string
  readonly protocol: string
  readonly principal: string
  readonly credential: string
  readonly client: string
  readonly gateway: string
  readonly startedAt: number
  readonly endedAt?: number
  readonly endReason?: string
}

export interface StateStore {
  /** `embedded` or `postgres`. */
  readonly kind: string
  /** Opens the store and brings its schema up to date (idempotent; safe for replicas starting at once). */
  start(): Promise<void>
  close(): Promise<void>

  addToken(token: IssuedToken): Promise<void>
  getToken(id: string): Promise<IssuedToken | undefined>
  /** Tokens of one identity (or all), newest first; revoked and expired ones only when asked. */
  listTokens(filter: { identity?: string; now: number; includeInactive?: boolean }): Promise<IssuedToken[]>
  /** Revokes a token once: the first revocation is kept; undefined if there is no such token. */
  revokeToken(id: string, by: string, reason: string | undefined, at: number): Promise<IssuedToken | undefined>

  addGrant(grant: Grant): Promise<void>
  /** Grants in force at `now` for a principal on a connection (or all of them). */
  listGrants(filter: { principal?: string; connection?: string; now: number }): Promise<Grant[]>
  revokeGrant(id: string, by: string, at: number): Promise<Grant | undefined>

  createReview(review: NewReview): Promise<Review>
  getReview(id: string): Promise<Review | undefined>
  listReviews(filter: { status?: ReviewStatus; connection?: string; limit?: number }): Promise<Review[]>
  /** One approver's vote, decided atomically against every other replica's. */
  vote(id: string, vote: ReviewVote): Promise<VoteResult>
  /** Pending reviews past their expiry become `expired`; returns them. */
  expireReviews(now: number): Promise<Review[]>
  /**
   * Pending reviews held by `gateway` end `denied` (its requesters are gone: it restarted);
   * returns them, to be audited.
   */
  abandonReviews(gateway: string, reason: string, at: number): Promise<Review[]>

  sessionStarted(session: SessionRecord): Promise<void>
  sessionEnded(id: string, at: number, reason: string): Promise<void>
  getSession(id: string): Promise<SessionRecord | undefined>
  listSessions(filter: { active?: boolean; connection?: string; principal?: string; limit?: number }): Promise<SessionRecord[]>
}

export const StateStoreToken: InjectionToken<StateStore> = Symbol.for('gatehouse.StateStore')
