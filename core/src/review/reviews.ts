/**
 * Held requests: a request a policy sends to `review` waits here until people approve it, one
 * denies it, or it times out. The review is a record in the state store (so any replica's admin
 * API can decide it, and it outlives a restart as a record); the request that waits is held in
 * this gateway's memory, keyed by the review's id.
 *
 * An approval releases exactly the request it showed: the review carries a fingerprint of what
 * the approver saw (action, target, text, parameters), and the waiting request is released only
 * if its own fingerprint is that one. Votes are decided in the store, atomically across replicas;
 * a replica learns of a decision taken elsewhere by reading the review again (`pollMs`).
 *
 * Grants: an approval may carry one ("this principal may run requests matching X on this
 * connection for N minutes"). A request sent to review is first checked against the grants in
 * force; a match lets it through without a person.
 */
import { createHash, randomUUID } from 'node:crypto'
import type { InjectionToken } from 'tsyringe'
import { GatewayError } from '../errors.js'
import type { Logger } from '../logger.js'
import type { Grant, Review, ReviewStatus, ReviewVote, StateStore, VoteResult } from '../state/store.js'
import type { GatewayRequest, HeldNotice, Principal } from '../types.js'

/** The key in a grant's match that names the rule it answers (not an attribute: `$` cannot start one). */
export const GRANT_RULE = '$rule'
function withoutRule(match: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const { [GRANT_RULE]: _rule, ...rest } = match
  return rest
}

/** The longest a request may wait for a review (a timer cannot wait longer than 2^31 ms anyway). */
const MAX_REVIEW_TIMEOUT_MS = 86_400_000

/** How long a review waits when the rule names no timeout. */
export const DEFAULT_REVIEW_TIMEOUT_MS = 5 * 60_000

/** What became of a held request. */
export type HoldResult =
  | { readonly approved: true; readonly review: Review; readonly grant?: Grant }
  | { readonly approved: false; readonly review?: Review; readonly code: 'GH_ERR_REVIEW_DENIED' | 'GH_ERR_REVIEW_EXPIRED'; readonly reason: string }

interface Waiter {
  readonly session: string
  readonly fingerprint: string
  readonly resolve: (r: HoldResult) => void
  readonly timer: NodeJS.Timeout
}

/** The SHA-256 of what an approver is shown of a request: an approval releases only a request with this fingerprint. */
export function requestFingerprint(request: Pick<GatewayRequest, 'action' | 'target' | 'text' | 'params'> & { connection: string }): string {
  return createHash('sha256')
    .update(JSON.stringify([request.connection, request.action, request.target, request.text ?? null, request.params ?? null]))
    .digest('hex')
}

/**
 * Whether a grant's `match` covers a request: every key must match. A key names `action`,
 * `target`, or a dotted path into the request's attributes; a list of strings matches when the
 * value (or every element of a list value) is one of them; `true`/`false` a flag that is so, or
 * any other value present (non-empty) or not.
 */
export function grantMatches(match: Readonly<Record<string, unknown>>, request: Pick<GatewayRequest, 'action' | 'target' | 'attrs'>): boolean {
  for (const [key, allowed] of Object.entries(match)) {
    const value = key === 'action' ? request.action : key === 'target' ? request.target : pathValue(request.attrs, key)
    if (typeof allowed === 'boolean') {
      // a flag is itself; anything else is true when present and non-empty
      const truth = typeof value === 'boolean' ? value : value !== undefined && value !== null && !(Array.isArray(value) && value.length === 0) && value !== ''
      if (truth !== allowed) return false
      continue
    }
    if (!Array.isArray(allowed)) return false
    const set = new Set(allowed.map((a) => String(a).toLowerCase()))
    const values = Array.isArray(value) ? value : [value]
    if (values.length === 0 || values.some((v) => v === undefined || v === null || typeof v === 'object' || !set.has(String(v).toLowerCase()))) return false
  }
  return true
}

function pathValue(attrs: Record<string, unknown>, path: string): unknown {
  let v: unknown = attrs
  for (const part of path.split('.')) {
    if (v === null || typeof v !== 'object') return undefined
    v = (v as Record<string, unknown>)[part]
  }
  return v
}

export class Reviews {
  private readonly waiting = new Map<string, Waiter>()
  private poller: NodeJS.Timeout | undefined

  constructor(
    private readonly store: StateStore,
    private readonly logger: Logger,
    /** This gateway's stable id: the reviews it holds are its own. */
    readonly gateway: string,
    private readonly opts: { pollMs?: number } = {},
  ) {}

  /** Reviews of this gateway left pending by its last run: their requesters are gone, so they end denied. */
  async abandonLeftovers(now = Date.now()): Promise<Review[]> {
    return this.store.abandonReviews(this.gateway, 'the gateway restarted while the request was held', now)
  }

  /** The grant in force that lets `request` through without a review, if any. */
  async grantFor(request: GatewayRequest, principal: Principal, connection: string, rule: string | undefined, now = Date.now()): Promise<Grant | undefined> {
    const grants = await this.store.listGrants({ principal: principal.id, connection, now })
    return grants.find((g) => g.match[GRANT_RULE] === (rule ?? 'unnamed') && grantMatches(withoutRule(g.match), request))
  }

  /**
   * Creates the review and waits for its end. `created` runs once the review exists (to tell the
   * client its id); `signal` ends the wait (the client went away), denying the review.
   */
  async hold(
    request: GatewayRequest,
    principal: Principal,
    connection: string,
    decision: { rule?: string; reason: string; approvals?: number; timeoutMs?: number },
    created: (review: Review) => void | Promise<void>,
    signal: AbortSignal,
    now = Date.now(),
  ): Promise<HoldResult> {
    const fingerprint = requestFingerprint({ ...request, connection })
    const review = await this.store.createReview({
      id: `rev_${randomUUID()}`,
      connection,
      protocol: request.protocol,
      principal: principal.id,
      session: request.session.id,
      request: request.id,
      action: request.action,
      target: request.target,
      ...(request.text === undefined ? {} : { text: request.text }),
      ...(request.params === undefined ? {} : { params: request.params.map((p) => (Buffer.isBuffer(p) ? p.toString('base64') : p)) }),
      attrs: request.attrs,
      fingerprint,
      rule: decision.rule ?? 'unnamed',
      reason: decision.reason,
      approvalsRequired: Math.max(1, decision.approvals ?? 1),
      gateway: this.gateway,
      createdAt: now,
      expiresAt: now + Math.min(Math.max(1, decision.timeoutMs ?? DEFAULT_REVIEW_TIMEOUT_MS), MAX_REVIEW_TIMEOUT_MS),
    })
    const result = new Promise<HoldResult>((resolve) => {
      const timer = setTimeout(() => void this.expire(review.id), Math.max(0, review.expiresAt - Date.now()))
      this.waiting.set(review.id, { session: request.session.id, fingerprint, resolve, timer })
    })
    const abandon = () => void this.deny(review.id, 'gatehouse', 'the client went away while the request was held')
    if (signal.aborted) abandon()
    else signal.addEventListener('abort', abandon, { once: true })
    this.armPoller()
    try {
      // the intent record, then the client's notice: a failure ends the review, and refuses the request
      await created(review)
    } catch (err) {
      signal.removeEventListener('abort', abandon)
      await this.deny(review.id, 'gatehouse', 'the request could not be recorded')
      throw err
    }
    try {
      return await result
    } finally {
      signal.removeEventListener('abort', abandon)
    }
  }

  list(filter: { status?: ReviewStatus; connection?: string }): Promise<Review[]> {
    return this.store.listReviews(filter)
  }

  get(id: string): Promise<Review | undefined> {
    return this.store.getReview(id)
  }

  /** Grants in force now (all principals and connections, or one of each). */
  grants(filter: { principal?: string; connection?: string }, now = Date.now()): Promise<Grant[]> {
    return this.store.listGrants({ ...filter, now })
  }

  /** Ends a grant now: the next request it would have covered is held for review again. */
  revokeGrant(id: string, by: string, now = Date.now()): Promise<Grant | undefined> {
    return this.store.revokeGrant(id, by, now)
  }

  /**
   * A person's vote, and with an approval that decides the review, an optional grant: the
   * requester may run requests that the same rule holds and that match `match` (by default
   * `defaultGrantMatch`: no more than the reviewed request had) on this connection for
   * `minutes`, without another review.
   */
  async decide(id: string, vote: ReviewVote, grant?: { minutes: number; match?: Record<string, unknown> }): Promise<VoteResult & { grant?: Grant }> {
    if (grant) {
      // one person cannot waive a rule that wants several: no grant from a review that needs more than one approval
      const shown = await this.store.getReview(id)
      if (shown && shown.approvalsRequired > 1) throw new GatewayError('GH_ERR_CONFIG_INVALID', `review ${id} needs ${shown.approvalsRequired} approvals: its rule takes no grants`)
      if (grant.match !== undefined && Object.keys(grant.match).length === 0) throw new GatewayError('GH_ERR_CONFIG_INVALID', 'a grant that matches everything is not a grant: give match keys, or leave match out for the default')
    }
    const result = await this.vote(id, vote)
    if (!grant || result.result !== 'approved') return result
    const review = result.review
    const given: Grant = {
      id: `grant_${randomUUID()}`,
      principal: review.principal,
      connection: review.connection,
      // bound to the rule that held the request: it lets through only what that rule sends to review
      match: { ...(grant.match ?? defaultGrantMatch(review)), [GRANT_RULE]: review.rule },
      createdAt: vote.at,
      createdBy: vote.by,
      expiresAt: vote.at + grant.minutes * 60_000,
      review: review.id,
    }
    await this.store.addGrant(given)
    return { ...result, grant: given }
  }

  /** One person's vote (the admin API, the CLI). A vote that decides releases or refuses the held request. */
  async vote(id: string, vote: ReviewVote): Promise<VoteResult> {
    const result = await this.store.vote(id, vote)
    if (result.result === 'approved' || result.result === 'denied') this.settle(result.review)
    return result
  }

  /**
   * The client withdrew what it waits for (a PostgreSQL CancelRequest): the session's held
   * requests end denied, recorded as withdrawn. Returns how many there were.
   */
  withdraw(session: string, reason: string): number {
    let n = 0
    for (const [id, w] of this.waiting) {
      if (w.session !== session) continue
      n++
      void this.deny(id, 'gatehouse', reason)
    }
    return n
  }

  /** Denies a pending review on the gateway's behalf (timeout, client gone). */
  private async deny(id: string, by: string, reason: string): Promise<void> {
    try {
      const r = await this.store.vote(id, { by, approve: false, reason, at: Date.now() })
      if ('review' in r) this.settle(r.review)
      // the store would not take the gateway's own denial (a principal named like the gateway, a
      // review already past its expiry): the request is refused here all the same
      if (r.result !== 'denied' && r.result !== 'already-decided') this.release(id, 'review' in r ? r.review : undefined, reason)
    } catch (err) {
      this.logger.error({ review: id, err: String(err) }, 'could not end a held review')
      this.release(id, undefined, 'the state store could not record the end of the review')
    }
  }

  private async expire(id: string): Promise<void> {
    try {
      await this.store.expireReviews(Date.now())
      const r = await this.store.getReview(id)
      const w = this.waiting.get(id)
      if (r && r.status === 'pending' && w) {
        // the timer fired a little early (or the clock stepped back): wait for the rest
        clearTimeout(w.timer)
        this.waiting.set(id, { ...w, timer: setTimeout(() => void this.expire(id), Math.max(1, Math.min(r.expiresAt - Date.now() + 1, MAX_REVIEW_TIMEOUT_MS))) })
        return
      }
      if (r) this.settle(r)
    } catch (err) {
      this.logger.error({ review: id, err: String(err) }, 'could not expire a held review')
      this.release(id, undefined, 'the review timed out')
    }
  }

  /** A decided review releases or refuses its waiter here (if this gateway holds it). */
  private settle(review: Review): void {
    if (review.status === 'pending') return
    const w = this.waiting.get(review.id)
    if (!w) return
    if (review.status === 'approved') {
      // defence in depth: the store's review must be the one made for this very request
      if (review.fingerprint !== w.fingerprint) return this.release(review.id, review, 'the approval does not match the held request')
      this.waiting.delete(review.id)
      clearTimeout(w.timer)
      w.resolve({ approved: true, review })
      return
    }
    this.release(review.id, review, review.status === 'expired' ? 'no decision before the review timed out' : `denied by ${review.decidedBy ?? 'a reviewer'}${review.decisionReason ? `: ${review.decisionReason}` : ''}`)
  }

  private release(id: string, review: Review | undefined, reason: string): void {
    const w = this.waiting.get(id)
    if (!w) return
    this.waiting.delete(id)
    clearTimeout(w.timer)
    const expired = review?.status === 'expired' || (review === undefined && reason.includes('timed out'))
    w.resolve({ approved: false, ...(review ? { review } : {}), code: expired ? 'GH_ERR_REVIEW_EXPIRED' : 'GH_ERR_REVIEW_DENIED', reason })
  }

  /** With a shared store, decisions taken on other replicas are read back every `pollMs`. */
  private armPoller(): void {
    if (!this.opts.pollMs || this.poller) return
    this.poller = setInterval(() => {
      if (this.waiting.size === 0) {
        clearInterval(this.poller)
        this.poller = undefined
        return
      }
      for (const id of this.waiting.keys()) {
        this.store.getReview(id).then(
          (r) => r && this.settle(r),
          (err: unknown) => this.logger.warn({ review: id, err: String(err) }, 'could not read a held review'),
        )
      }
    }, this.opts.pollMs)
    this.poller.unref()
  }

  /** Whether a request of `session` waits for its review here. */
  holds(session: string): boolean {
    for (const w of this.waiting.values()) if (w.session === session) return true
    return false
  }

  /** Held requests of this gateway now. */
  get held(): number {
    return this.waiting.size
  }

  /** Ends every request held here: denied in the store, then refused. */
  async stop(): Promise<void> {
    if (this.poller) clearInterval(this.poller)
    this.poller = undefined
    if (this.waiting.size === 0) return
    let ended: Review[] = []
    try {
      ended = await this.store.abandonReviews(this.gateway, 'the gateway shut down while the request was held', Date.now())
    } catch (err) {
      this.logger.error({ err: String(err) }, 'could not record the end of the held reviews')
    }
    for (const r of ended) this.settle(r)
    for (const id of [...this.waiting.keys()]) this.release(id, undefined, 'the gateway shut down while the request was held')
  }
}

/**
 * What a grant given with an approval covers by default: the same action; for SQL the same
 * statement kind and tables; for an SSH command the same programs, in a command line whose
 * programs are all known.
 */
export function defaultGrantMatch(review: Pick<Review, 'action' | 'attrs'>): Record<string, unknown> {
  const match: Record<string, unknown> = { action: [review.action] }
  /** A list the request's must stay within, or `false` (none at all) when the reviewed one had none. */
  const within = (v: unknown): unknown => (Array.isArray(v) && v.length > 0 ? v : false)
  const sql = review.attrs.sql as Record<string, unknown> | undefined
  if (sql) {
    if (typeof sql.statement === 'string') match['sql.statement'] = [sql.statement]
    // no more than the reviewed statement did: the same kinds of statement (a DELETE inside a WITH
    // is a kind), tables, writes, functions, settings and prepared statements it executed at most
    for (const list of ['kinds', 'tables', 'writes', 'functions', 'settings', 'executes', 'code'] as const) match[`sql.${list}`] = within(sql[list])
    // and nothing it did not have: DDL, row locks, side effects, code the gateway cannot read
    for (const flag of ['ddl', 'locking', 'readWrite', 'write', 'sideEffects', 'opaque', 'dynamic', 'securityDefiner'] as const) if (sql[flag] !== true) match[`sql.${flag}`] = false
  }
  const ssh = review.attrs.ssh as Record<string, unknown> | undefined
  if (ssh) {
    match['ssh.programs'] = within(ssh.programs)
    // a command line whose programs the gateway could not all see is never covered
    match['ssh.dynamic'] = false
  }
  return match
}

export const ReviewsToken: InjectionToken<Reviews> = Symbol.for('gatehouse.Reviews')

/** What a held request's client is told of the terms, in any adapter: approvals needed, the rule, the deadline, the command. */
export function holdTerms(hold: HeldNotice): string {
  return `${hold.approvals === 1 ? 'one approval is' : `${hold.approvals} approvals are`} needed${hold.rule ? ` (rule ${hold.rule})` : ''}; it is denied if nobody decides by ${new Date(hold.expiresAt).toISOString()}; an approver runs: gatehouse review approve ${hold.review}`
}

/** The error a refused hold becomes. */
export function holdRefusal(result: Extract<HoldResult, { approved: false }>): GatewayError {
  return new GatewayError(result.code, `${result.code === 'GH_ERR_REVIEW_EXPIRED' ? 'review timed out' : 'review denied'}: ${result.reason}`)
}
