/**
 * Connections still logging in, per listener: a total and a share per source address, so that
 * one source holding sockets open (never sending a greeting, or logging in slowly) cannot take
 * every slot and lock everyone else out. Adapters ask at accept (`Pipeline.admitConnection`),
 * say when the connection has logged in, and release it when it closes.
 *
 * Nothing is refused in silence: every connection dropped is counted in
 * `gatehouse_limit_refusals_total{connection,limit}`, and each burst from one source (refusals
 * less than BURST_MS apart) is logged and audited once when it starts, with the source address.
 */
import { randomUUID } from 'node:crypto'
import type { ResolvedLimits } from './limits.js'
/** Refusals by one limit from one source closer together than this are one burst: logged and audited once. */
const BURST_MS = 10_000

/** One admitted connection's place among those logging in. Both methods are idempotent. */
export interface ConnectionSlot {
  /** The connection logged in: it no longer counts as logging in. */
  authenticated(): void
  /** The connection closed. */
  release(): void
}

export interface RefusedConnection {
  readonly limit: 'unauthenticated.total' | 'unauthenticated.per-source' | 'unauthenticated.login-timeout'
  readonly source: string
  readonly reason: string
  /** The first refusal of a burst from this source: log and audit it. */
  readonly firstOfBurst: boolean
  /** An id for the audit record of this refusal (no session exists). */
  readonly id: string
}

export class ConnectionAdmission {
  private inProgress = 0
  private readonly bySource = new Map<string, number>()
  /** Last refusal time by source, for bursts; bounded by forgetting entries older than a burst. */
  private readonly lastRefusal = new Map<string, number>()

  /** Replaced on config reload; counts carry over. */
  constructor(public limits: ResolvedLimits['unauthenticated']) {}

  /**
   * A slot for a connection from `source`, or why there is none. If the connection has not
   * logged in (nor closed) `loginTimeoutMs` after this, `timedOut` is called with the refusal
   * to count and record, and the slot is released.
   */
  admit(source: string, timedOut: (r: RefusedConnection) => void): ConnectionSlot | RefusedConnection {
    const { perSource, total } = this.limits
    const fromSource = this.bySource.get(source) ?? 0
    if (fromSource >= perSource) return this.refuse('unauthenticated.per-source', source, `${perSource} connections from ${source} are already logging in (limits.unauthenticated.perSource)`)
    if (this.inProgress >= total) return this.refuse('unauthenticated.total', source, `${total} connections are already logging in (limits.unauthenticated.total)`)
    this.inProgress++
    this.bySource.set(source, fromSource + 1)
    let counted = true
    const timeout = this.limits.loginTimeoutMs
    const timer = setTimeout(() => {
      if (!counted) return
      done()
      timedOut(this.refuse('unauthenticated.login-timeout', source, `the connection did not log in within ${timeout} ms (limits.unauthenticated.loginTimeoutMs)`))
    }, timeout)
    timer.unref()
    const done = () => {
      if (!counted) return
      counted = false
      clearTimeout(timer)
      this.inProgress--
      const n = (this.bySource.get(source) ?? 1) - 1
      if (n <= 0) this.bySource.delete(source)
      else this.bySource.set(source, n)
    }
    return { authenticated: done, release: done }
  }

  private refuse(limit: RefusedConnection['limit'], source: string, reason: string): RefusedConnection {
    const now = Date.now()
    const key = `${limit} ${source}`
    const last = this.lastRefusal.get(key)
    const firstOfBurst = last === undefined || now - last > BURST_MS
    this.lastRefusal.set(key, now)
    if (this.lastRefusal.size > 10_000) {
      for (const [s, t] of this.lastRefusal) if (now - t > BURST_MS) this.lastRefusal.delete(s)
    }
    return { limit, source, reason, firstOfBurst, id: randomUUID() }
  }
}

export const isRefused = (r: ConnectionSlot | RefusedConnection): r is RefusedConnection => 'limit' in r

/**
 * Logged-in sessions per identity, per credential (token or key) and in all, on one connection:
 * one agent token cannot open enough sessions to exhaust the upstream's own connection slots
 * (PostgreSQL's `max_connections`) and lock everyone else out, the database superuser included.
 */
export class SessionCaps {
  private count = 0
  private readonly byIdentity = new Map<string, number>()
  private readonly byToken = new Map<string, number>()
  private readonly held = new WeakMap<object, { identity: string; token: string }>()

  /** Replaced on config reload; counts carry over. */
  constructor(public limits: ResolvedLimits['sessions']) {}

  /** Takes a place for `session`, or says which cap is full; `own` are the identity's limits. */
  take(session: object, identity: string, token: string, own: ResolvedLimits['sessions'] = this.limits): { limit: string; reason: string } | undefined {
    const { total } = this.limits
    const { perIdentity, perToken } = own
    if (this.count >= total) return { limit: 'sessions.total', reason: `${total} sessions are open on this connection (limits.sessions.total)` }
    if ((this.byIdentity.get(identity) ?? 0) >= perIdentity) return { limit: 'sessions.per-identity', reason: `identity "${identity}" has ${perIdentity} sessions open on this connection (limits.sessions.perIdentity)` }
    if ((this.byToken.get(token) ?? 0) >= perToken) return { limit: 'sessions.per-token', reason: `${perToken} sessions are open with this credential on this connection (limits.sessions.perToken)` }
    this.count++
    this.byIdentity.set(identity, (this.byIdentity.get(identity) ?? 0) + 1)
    this.byToken.set(token, (this.byToken.get(token) ?? 0) + 1)
    this.held.set(session, { identity, token })
    return undefined
  }

  /** Gives back the place `session` took, if it took one. Idempotent. */
  release(session: object): void {
    const h = this.held.get(session)
    if (!h) return
    this.held.delete(session)
    this.count--
    const dec = (map: Map<string, number>, key: string) => {
      const n = (map.get(key) ?? 1) - 1
      if (n <= 0) map.delete(key)
      else map.set(key, n)
    }
    dec(this.byIdentity, h.identity)
    dec(this.byToken, h.token)
  }
}
