/**
 * The pipeline an adapter drives: authenticate → parse → decide → record → (adapter forwards) →
 * complete. It is the only way through the gateway: adapters translate wire formats, the
 * security-relevant sequence lives here once so protocols cannot drift apart on it.
 *
 * Hot path notes: `admit` avoids awaiting when every stage answered synchronously except the
 * intent write, and builds each audit event once.
 */
import { randomUUID, createHmac, randomBytes } from 'node:crypto'
import type { DependencyContainer, InjectionToken } from 'tsyringe'
import type { Counter, Histogram } from 'prom-client'
import { Metrics } from '../metrics.js'
import { isoNow, principalRef, type AuditEvent, type IntegrityEvent, type OutcomeEvent, type ProtocolEvent, type RequestEvent } from '../audit/events.js'
import type { AuditRecorder } from '../audit/recorder.js'
import { ScramServer } from '../auth/scram.js'
import { maskDocument, maskPathsOf, type MaskPath } from './masking.js'
import { ConnectionAdmission, isRefused, SessionCaps, type ConnectionSlot, type RefusedConnection } from './admission.js'
import { LoginThrottle, sourceOf } from './throttle.js'
import { resolveLimits, sessionLimitsFor, type ResolvedLimits, type SessionLimits } from './limits.js'
import { GatewayError, isGatewayError, toGatewayError, type ErrorCode } from '../errors.js'
import type { Logger } from '../logger.js'
import type { Analyzer, AuthContext, Authenticator, PolicyEngine, Transformer } from '../plugin/stages.js'
import type { Admission, Credentials, Decision, GatewayRequest, HeldNotice, Outcome, Principal, SessionInfo } from '../types.js'
import { holdRefusal, ReviewsToken, type HoldResult, type Reviews } from '../review/reviews.js'
import type { Grant, Review } from '../state/store.js'

export const SessionInfoToken: InjectionToken<SessionInfo> = Symbol.for('gatehouse.SessionInfo')

/** What an adapter holds for one client connection. */
/** Longest client-supplied user name written to the audit as is. */
const MAX_AUDITED_USER = 256

export interface SessionHandle {
  readonly info: SessionInfo
  /** The session's child container; disposed when the session ends. */
  readonly container: DependencyContainer
  /** Ends the session: aborts its signal, records session.end, disposes its container. Idempotent. */
  end(reason?: string): Promise<void>
  /** Traffic moved, either way: the session is not idle (limits.sessions.idleMs). Cheap: call it per chunk. */
  touch(): void
  /**
   * Tells core how to ask whether the session is working although no bytes move (a statement
   * running on the server, a command executing): such a session is not idle. Set once.
   */
  busyWhen(probe: () => boolean): void
  /**
   * How the adapter tells its client that the gateway ended the session (its protocol's error
   * or disconnect message, naming `t.reason`) before it closes and calls `end`. Set once, right
   * after `openSession`; without it core just ends the session (the signal aborts).
   */
  onTerminate(render: (t: Termination) => void): void
  /**
   * Ends the session because of a limit or because its credential stopped being valid: core
   * logs it, counts it, audits it (a protocol event, then session.end with the reason) and has
   * the adapter render it. Adapters call it for their own limits (`postgres.transaction-idle`).
   * The first call wins.
   */
  terminate(t: Termination): void
}

/** Why the gateway ended a session. */
export interface Termination {
  /**
   * What ended it: a limit (`sessions.idle`, `sessions.max-age`, an adapter's
   * `postgres.transaction-idle`), or the credential (`credential.expired`, `credential.revoked`).
   */
  readonly cause: string
  readonly code: ErrorCode
  /** Why, for the client, the log and the audit: names the limit or the credential, never a secret. */
  readonly reason: string
}

/** An open session as the admin API shows it. */
export interface LiveSession {
  readonly id: string
  readonly connection: string
  readonly protocol: string
  readonly client: string
  readonly tls: boolean
  readonly startedAt: number
  readonly lastActive: number
  readonly principal?: string
  readonly credential?: string
  readonly requests: number
  /** Being ended (a limit, a revocation, an operator). */
  readonly ending: boolean
}

/** One SCRAM handshake run by core on an adapter's behalf. */
export interface ScramExchange {
  /** client-first-message → server-first-message */
  start(clientFirst: string): string
  /** client-final-message → principal and server-final-message; throws GatewayError when the proof fails. */
  finish(clientFinal: string): Promise<{ principal: Principal; serverFinal: string }>
}

export interface Pipeline {
  readonly connection: string
  /**
   * Asks, at accept and before anything else, whether a connection from `source` (its address,
   * without the port) may start logging in: at most `limits.unauthenticated.total` connections of
   * this listener log in at once, and `perSource` of them from one address. Undefined means drop
   * it (core has counted, logged and audited the refusal). The adapter calls `authenticated()`
   * once the client has logged in and `release()` when the connection closes. A connection that
   * has done neither within `limits.unauthenticated.loginTimeoutMs` is counted and recorded
   * (once per burst per source) and `timedOut` is called: the adapter tells the client and closes.
   */
  admitConnection(source: string, protocol: string, timedOut: () => void): ConnectionSlot | undefined
  /**
   * The limits in force for this connection (core's and, under `adapter`, the adapter's own),
   * read when needed: a config reload replaces them.
   */
  readonly limits: ResolvedLimits
  /**
   * A request or message refused by one of the adapter's own limits (too many prepared
   * statements …): counted in gatehouse_limit_refusals_total and recorded as a protocol event
   * `limit.<limit>` — or only logged, with `recorded`, when the adapter records the refusal as a
   * refused request itself. The adapter answers the client. Never rejects.
   */
  limitReached(session: SessionInfo, limit: string, reason: string, opts?: { recorded?: boolean }): Promise<void>
  /** Opens a session for an accepted client. Called once per client connection. */
  openSession(init: { protocol: string; clientAddress: string; tls: boolean }): SessionHandle
  /** Turns presented credentials into a principal (and records session.start), or throws GatewayError. */
  authenticate(session: SessionInfo, presented: Credentials): Promise<Principal>
  /**
   * Records a login attempt the adapter refused before asking core (an SSH signature that does
   * not verify) as core records its own: an `auth.failure` event, counted against the lockouts
   * and the connection's attempts. Never rejects.
   */
  loginRefused(session: SessionInfo, presentedUser: string | undefined, error: GatewayError): Promise<void>
  /** Failed login attempts this client connection has left (limits.logins.perConnection); at 0 the adapter ends it. */
  loginAttemptsLeft(session: SessionInfo): number
  /**
   * Starts a SCRAM-SHA-256 exchange for `user`; a principal results only from a valid proof.
   * `channelBinding`: over TLS, the connection's tls-server-end-point data, and whether the client
   * chose SCRAM-SHA-256-PLUS (then its proof must carry that data).
   */
  scram(session: SessionInfo, user: string, channelBinding?: { data: Buffer; plus: boolean }): ScramExchange
  /**
   * The client withdrew the request it waits on (a cancel): any request of this session held for
   * review ends denied. Returns whether there was one (then the cancel is answered here, not
   * upstream, where nothing runs yet).
   */
  withdrawHeld(session: SessionInfo, reason: string): boolean
  /** Builds a request with a fresh id. */
  request(session: SessionInfo, init: { action: string; target?: string; text?: string; attrs: Record<string, unknown>; params?: readonly unknown[]; onHeld?: (hold: HeldNotice) => void; deferReview?: boolean }): GatewayRequest
  /**
   * Enrich → decide → record intent; never forwards anything itself. Answers synchronously when
   * every stage did (the common case: a cached analysis, a synchronous policy, a sink that wrote
   * the intent at once), otherwise with a promise. Never rejects: failures become refusals.
   */
  admit(request: GatewayRequest): Admission | Promise<Admission>
  /**
   * Requests that run together or not at all (the statements of one multi-statement Query, say).
   * Each is judged first. When one is denied, none is held for review: each is recorded with its
   * verdict, those the policy sends to review as refused unjudged. Otherwise they are concluded in
   * order (one held for review waits before the next is asked); once one is refused (its review
   * denied, its intent not recorded) no later one is held. `error` is the first refusal; then
   * nothing may run, and the adapter completes the `admitted` requests as skipped. Never rejects
   * once the session has logged in (like `admit`, it throws before that, or for no requests).
   */
  admitAll(requests: readonly GatewayRequest[]): Promise<{ admitted: readonly GatewayRequest[]; error?: GatewayError }>
  /**
   * Refuses a request without asking policy (unparseable text, a protocol feature the gateway
   * does not allow): records the intent with verdict deny and the outcome, and returns the
   * error to render.
   */
  refuse(request: GatewayRequest, refusal: { rule: string; reason: string; code?: ErrorCode }): Promise<GatewayError>
  /**
   * Records the outcome of an admitted request. Never throws. Refused requests (by `admit` or
   * `refuse`) have their outcome recorded by the pipeline already; a second call is ignored.
   */
  complete(request: GatewayRequest, outcome: Outcome): void
  /**
   * The response path, for each item (a document, a row) the upstream sends back for an admitted
   * request: applies the decision's `mask` obligation (masking.ts: the values of the named fields
   * of a plain object are replaced in place) and then the transform plugins. The fields replaced
   * are named in the request's outcome record. Call it before `complete`.
   */
  transform<T>(request: GatewayRequest, item: T): T
  /**
   * Records a protocol-level event no request covers (a startup refused, a CancelRequest, a name
   * refused, a limit that ended the session), logs and counts it. Works before authentication.
   * Never rejects.
   */
  protocolEvent(session: SessionInfo, event: { event: string; reason: string; attrs?: Record<string, unknown> }): Promise<void>
  /**
   * Records that the upstream's answer contradicts what the gateway judged (its model of the
   * session drifted), logs it as an error and counts it. The adapter ends the session. Never rejects.
   */
  integrity(session: SessionInfo, violation: { request?: GatewayRequest; expected: string; actual: string; reason: string }): Promise<void>
}

export interface Chains {
  readonly authenticators: readonly Authenticator[]
  readonly analyzers: readonly Analyzer[]
  readonly policies: readonly PolicyEngine[]
  readonly transformers: readonly Transformer[]
}

interface Admitted {
  decision: Decision
  startedAt: number
  /** The decision's mask paths, split on first use; null when it masks nothing. */
  masks?: readonly MaskPath[] | null
  /** Mask paths that replaced something in this request's response so far. */
  masked?: Set<string>
}

const MOCK_SALT_KEY = randomBytes(32)
const NO_POLICY: Decision = Object.freeze({ verdict: 'deny', rule: 'gatehouse/no-policy', reason: 'no policy plugin is configured for this connection' })
const POLICY_ERROR: Decision = Object.freeze({ verdict: 'deny', rule: 'gatehouse/policy-error', reason: 'policy evaluation failed' })
const DEFAULT_DENY: Decision = Object.freeze({ verdict: 'deny', rule: 'gatehouse/default-deny', reason: 'no rule allows this request' })

/** What core keeps about each open session, for its limits and its credential. */
interface Live {
  readonly handle: SessionHandle
  lastActive: number
  limits: SessionLimits
  /** When the credential stops being valid (from the principal; a reload may change it). */
  expiresAt: number | undefined
  render: ((t: Termination) => void) | undefined
  busy: (() => boolean) | undefined
  terminated: boolean
}

/** What a config reload replaces in a running pipeline. */
export interface PipelineSettings {
  readonly chains: Chains
  readonly limits: ResolvedLimits
  /** Identity id → its own session limits. */
  readonly identityLimits: ReadonlyMap<string, Partial<SessionLimits>>
}

/** One request in this many has its stages timed: a histogram per request would cost the hot path more than it tells. */
const STAGE_SAMPLE = 16
const STAGE_BUCKETS = [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1]

/** How long an adapter has to close a terminated session before core ends it anyway. */
const TERMINATE_GRACE_MS = 5000

export class ConnectionPipeline implements Pipeline {
  private readonly open = new Map<SessionInfo, Live>()
  private readonly admitted = new WeakMap<GatewayRequest, Admitted>()
  private readonly requestCounts = new WeakMap<SessionInfo, number>()
  private readonly authFailures = new WeakMap<SessionInfo, number>()

  private chains: Chains
  private identityLimits: ReadonlyMap<string, Partial<SessionLimits>>
  private currentLimits: ResolvedLimits

  constructor(
    readonly connection: string,
    chains: Chains,
    private readonly recorder: AuditRecorder,
    private readonly root: DependencyContainer,
    private readonly logger: Logger,
    limits: ResolvedLimits = resolveLimits(undefined, undefined),
    identityLimits: ReadonlyMap<string, Partial<SessionLimits>> = new Map(),
  ) {
    this.chains = chains
    this.currentLimits = limits
    this.identityLimits = identityLimits
    this.admission = new ConnectionAdmission(limits.unauthenticated)
    this.throttle = new LoginThrottle(limits.logins)
    this.caps = new SessionCaps(limits.sessions)
    // Requests decided, by connection, action and verdict, for the admin API's /metrics.
    const metrics = root.isRegistered(Metrics, true) ? root.resolve(Metrics) : undefined
    this.decisions = metrics?.counter('gatehouse_requests_total', 'requests decided, by connection, action and verdict', ['connection', 'action', 'verdict'])
    this.protocolEvents = metrics?.counter('gatehouse_protocol_events_total', 'protocol-level events (startup refusals, cancels, refused names, limits), by connection and event', ['connection', 'event'])
    this.limitRefusals = metrics?.counter('gatehouse_limit_refusals_total', 'connections and requests refused by a limit, by connection and limit', ['connection', 'limit'])
    this.integrityViolations = metrics?.counter('gatehouse_integrity_violations_total', "sessions ended because the upstream's answer contradicted what the gateway judged, by connection", ['connection'])
    this.reviews = root.isRegistered(ReviewsToken, true) ? root.resolve(ReviewsToken) : undefined
    this.reviewCounts = metrics?.counter('gatehouse_reviews_total', 'requests a policy sent to review, by connection and what became of them: held, granted (a grant let it through), approved, denied, expired', ['connection', 'result'])
    const stages = metrics?.histogram('gatehouse_stage_duration_seconds', `time in a stage of the pipeline (decide: policy; record: the intent record), one request in ${STAGE_SAMPLE} timed, by connection and stage`, ['connection', 'stage'], STAGE_BUCKETS)
    this.stageTimes = stages ? { decide: stages.labels({ connection, stage: 'decide' }), record: stages.labels({ connection, stage: 'record' }) } : undefined
    this.credentialEnds = metrics?.counter('gatehouse_sessions_credential_ended_total', 'sessions ended because the credential they logged in with expired or was removed, by connection and cause', ['connection', 'cause'])
  }

  private readonly credentialEnds: Counter<'connection' | 'cause'> | undefined
  /** The stage histograms' children for this connection (when the gateway has metrics). */
  private readonly stageTimes: { decide: Histogram.Internal<'connection' | 'stage'>; record: Histogram.Internal<'connection' | 'stage'> } | undefined
  private sampleCount = 0
  private readonly reviewCounts: Counter<'connection' | 'result'> | undefined
  /** Held requests, when the gateway has them (always, in a gateway; not in a bare pipeline). */
  private readonly reviews: Reviews | undefined

  private readonly decisions: Counter<'connection' | 'action' | 'verdict'> | undefined
  private readonly decisionCounters = new Map<string, { inc(): void }>()
  private readonly protocolEvents: Counter<'connection' | 'event'> | undefined
  private readonly integrityViolations: Counter<'connection'> | undefined
  private readonly limitRefusals: Counter<'connection' | 'limit'> | undefined
  private readonly admission: ConnectionAdmission
  private readonly throttle: LoginThrottle
  private readonly caps: SessionCaps
  private readonly protocolEventCounts = new WeakMap<SessionInfo, number>()

  get sessionCount(): number {
    return this.open.size
  }

  get limits(): ResolvedLimits {
    return this.currentLimits
  }

  /** The settings a config reload brings: new chains and limits for requests and sessions from now on. */
  get settings(): PipelineSettings {
    return { chains: this.chains, limits: this.currentLimits, identityLimits: this.identityLimits }
  }

  /**
   * Applies a reloaded config: later logins and requests use the new chains and limits; open
   * sessions keep running under them, except those whose credential the new authenticators no
   * longer accept (ended, `credential.revoked`) — see `revalidate`. Counts (sessions open, logins
   * failed) carry over.
   */
  reconfigure(next: PipelineSettings): { ended: number } {
    this.generation++
    this.chains = next.chains
    this.currentLimits = next.limits
    this.identityLimits = next.identityLimits
    this.admission.limits = next.limits.unauthenticated
    this.throttle.limits = next.limits.logins
    this.caps.limits = next.limits.sessions
    for (const live of this.open.values()) {
      const principal = live.handle.info.principal
      if (!principal || live.terminated) continue
      live.limits = sessionLimitsFor(next.limits.sessions, next.identityLimits.get(principal.id))
    }
    const ended = this.recheckCredentials()
    this.rearmSweeper()
    return { ended }
  }

  /**
   * Asks the authenticators again about every open session's credential (after a config reload,
   * or a token revoked at run time) and ends the sessions whose credential they no longer accept
   * (`credential.revoked`). Returns how many were ended.
   */
  recheckCredentials(): number {
    // a login already past its credential check is checked again before it becomes a session
    this.generation++
    let ended = 0
    for (const live of this.open.values()) {
      const principal = live.handle.info.principal
      if (!principal || live.terminated) continue
      const verdict = this.revalidate(live.handle.info, principal)
      if (verdict.valid) {
        this.refreshPrincipal(live, verdict.principal)
        continue
      }
      ended++
      this.terminate(live, { cause: 'credential.revoked', code: 'GH_ERR_AUTH_REVOKED', reason: `the credential this session logged in with (${principal.credential}) is no longer valid: ${verdict.reason}` })
    }
    return ended
  }

  /**
   * Whether `principal`'s credential is still accepted by the current authenticators. The one
   * that recognises the credential answers; if none does and every authenticator could have
   * answered, it is gone. An authenticator without `revalidate` cannot answer: its sessions are
   * kept (documented for plugin authors).
   */
  private revalidate(session: SessionInfo, principal: Principal): { valid: true; principal: Principal } | { valid: false; reason: string } {
    const ctx = this.authContext(session)
    let canTell = true
    for (const a of this.chains.authenticators) {
      if (!a.revalidate) {
        canTell = false
        continue
      }
      try {
        const current = a.revalidate(principal, ctx)
        if (!current) continue
        if (current.id !== principal.id) return { valid: false, reason: `the credential now proves identity "${current.id}"` }
        return { valid: true, principal: current }
      } catch (err) {
        return { valid: false, reason: toGatewayError(err, 'GH_ERR_AUTH_REVOKED').message }
      }
    }
    if (!canTell) return { valid: true, principal }
    return { valid: false, reason: 'no configured authenticator accepts it any more' }
  }

  /**
   * Puts the principal as the config now describes it (groups, kind, claims, expiry) on an open
   * session, so the policies judge its next request as they would judge a new login, and
   * records the change when there is one.
   */
  private refreshPrincipal(live: Live, current: Principal): void {
    const info = live.handle.info
    const was = info.principal
    // the same principal back: no authenticator could tell, and the session keeps what it has
    if (!was || current === was) return
    live.expiresAt = current.expiresAt
    const describe = (p: Principal) => JSON.stringify({ kind: p.kind, groups: p.groups, claims: p.claims, credential: p.credential })
    const changed = describe(was) !== describe(current)
    info.principal = current
    if (changed) {
      void this.protocolEvent(info, {
        event: 'principal.updated',
        reason: 'a config reload changed the identity this session logged in as; its next requests are judged as the new config describes it',
        attrs: { before: { kind: was.kind, groups: was.groups, credential: was.credential }, after: { kind: current.kind, groups: current.groups, credential: current.credential } },
      })
    }
  }

  /** Counts reloads: a login checked under an older config is checked again (`established`). */
  private generation = 0

  /** Session timers: one sweep over open sessions, often enough for the shortest limit in force. */
  private sweeper: NodeJS.Timeout | undefined

  private rearmSweeper(): void {
    if (this.sweeper) clearInterval(this.sweeper)
    this.sweeper = undefined
    if (this.open.size === 0) return
    const times = [this.currentLimits.sessions.idleMs, this.currentLimits.sessions.maxAgeMs]
    for (const own of this.identityLimits.values()) times.push(own.idleMs ?? 0, own.maxAgeMs ?? 0)
    const shortest = Math.min(4000, ...times.filter((t) => t > 0))
    this.sweeper = setInterval(() => this.sweep(), Math.max(50, Math.floor(shortest / 4)))
    this.sweeper.unref()
  }

  private sweep(): void {
    if (this.open.size === 0) return this.rearmSweeper()
    const now = Date.now()
    for (const live of this.open.values()) {
      try {
        this.check(live, now)
      } catch (err) {
        this.logger.error({ err: String(err), session: live.handle.info.id }, 'session limit check failed; ending the session')
        this.terminate(live, { cause: 'sessions.check-failed', code: 'GH_ERR_INTERNAL', reason: 'the gateway could not check this session against its limits' })
      }
    }
  }

  /** Ends `live` if its credential expired or a limit says so. */
  private check(live: Live, now: number): void {
    const info = live.handle.info
    const principal = info.principal
    if (!principal || live.terminated) return
    const { idleMs, maxAgeMs } = live.limits
    if (live.expiresAt !== undefined && now >= live.expiresAt) {
      this.terminate(live, { cause: 'credential.expired', code: 'GH_ERR_AUTH_EXPIRED', reason: `the credential this session logged in with (${principal.credential}) expired at ${new Date(live.expiresAt).toISOString()}` })
    } else if (maxAgeMs > 0 && now - info.startedAt >= maxAgeMs) {
      this.terminate(live, { cause: 'sessions.max-age', code: 'GH_ERR_SESSION_LIMIT', reason: `the session is older than the gateway's limit of ${maxAgeMs} ms (limits.sessions.maxAgeMs)` })
    } else if (idleMs > 0 && now - live.lastActive >= idleMs) {
      // a statement running on the server, or a request waiting for its review, is not idleness
      if (live.busy?.() || this.reviews?.holds(info.id)) {
        live.lastActive = now
        return
      }
      this.terminate(live, { cause: 'sessions.idle', code: 'GH_ERR_SESSION_LIMIT', reason: `no traffic for ${idleMs} ms (limits.sessions.idleMs)` })
    }
  }

  private terminate(live: Live, t: Termination): void {
    if (live.terminated) return
    live.terminated = true
    const info = live.handle.info
    const credential = t.cause.startsWith('credential.')
    const byOperator = t.cause.startsWith('admin.')
    if (credential) this.credentialEnds?.inc({ connection: this.connection, cause: t.cause })
    else if (!byOperator) this.limitRefusals?.inc({ connection: this.connection, limit: t.cause })
    void this.protocolEvent(info, { event: credential || byOperator ? t.cause : `limit.${t.cause}`, reason: t.reason, attrs: { code: t.code } })
    if (!live.render) {
      void live.handle.end(t.reason)
      return
    }
    try {
      live.render(t)
    } catch (err) {
      this.logger.error({ err: String(err), session: info.id }, 'adapter failed to render a session termination')
    }
    // The adapter closes and ends the session; if it does not, core does.
    setTimeout(() => void live.handle.end(t.reason), TERMINATE_GRACE_MS).unref()
  }

  /** A session-like record for events no session owns: the audit record gets an id of its own. */
  private sessionless(id: string, protocol: string, clientAddress: string): SessionInfo {
    return { id, connection: this.connection, protocol, clientAddress, tls: false, startedAt: Date.now(), signal: AbortSignal.abort() }
  }

  /**
   * Records that the configuration was reloaded (a `protocol` event `config.reloaded` on this
   * connection, with digests of the policies and identities now in force), so the audit shows
   * from which event on which rules judged.
   */
  recordReload(protocol: string, attrs: Record<string, unknown>): Promise<void> {
    return this.protocolEvent(this.sessionless(randomUUID(), protocol, 'gateway'), { event: 'config.reloaded', reason: 'the configuration was reloaded', attrs })
  }

  limitReached(session: SessionInfo, limit: string, reason: string, opts: { recorded?: boolean } = {}): Promise<void> {
    this.limitRefusals?.inc({ connection: this.connection, limit })
    if (!opts.recorded) return this.protocolEvent(session, { event: `limit.${limit}`, reason })
    this.logger.warn({ session: session.id, limit, reason, client: session.clientAddress }, 'request refused by a limit')
    return Promise.resolve()
  }

  admitConnection(source: string, protocol: string, timedOut: () => void): ConnectionSlot | undefined {
    const r = this.admission.admit(source, (refused) => {
      this.connectionRefused(refused, protocol)
      timedOut()
    })
    if (!isRefused(r)) return r
    this.connectionRefused(r, protocol)
    return undefined
  }

  /** Counts a connection a limit refused or closed before login; logs and audits the first of each burst. */
  private connectionRefused(r: RefusedConnection, protocol: string): void {
    const source = r.source
    this.limitRefusals?.inc({ connection: this.connection, limit: r.limit })
    if (r.firstOfBurst) {
      this.logger.warn({ limit: r.limit, client: source, reason: r.reason }, 'connection refused by a limit (the first of a burst from this address; the rest are counted in gatehouse_limit_refusals_total)')
      void this.protocolEvent(this.sessionless(r.id, protocol, source), { event: `limit.${r.limit}`, reason: r.reason })
    }
  }

  openSession(init: { protocol: string; clientAddress: string; tls: boolean }): SessionHandle {
    const controller = new AbortController()
    const info: SessionInfo = {
      id: randomUUID(),
      connection: this.connection,
      protocol: init.protocol,
      clientAddress: init.clientAddress,
      tls: init.tls,
      startedAt: Date.now(),
      signal: controller.signal,
    }
    const container = this.root.createChildContainer()
    container.registerInstance(SessionInfoToken, info)
    let ended: Promise<void> | undefined
    const handle: SessionHandle = {
      info,
      container,
      touch: () => {
        live.lastActive = Date.now()
      },
      onTerminate: (render) => {
        live.render = render
      },
      busyWhen: (probe) => {
        live.busy = probe
      },
      terminate: (t) => this.terminate(live, t),
      end: (reason?: string) => {
        ended ??= (async () => {
          this.logger.debug({ session: info.id, principal: info.principal?.id, requests: this.requestCounts.get(info) ?? 0, reason }, 'session ended')
          this.open.delete(info)
          this.caps.release(info)
          controller.abort(new GatewayError('GH_ERR_INTERNAL', reason ?? 'session ended'))
          if (info.principal) {
            await this.recorder
              .recordAsync({
                ...this.base(info, `${info.id}:end`),
                type: 'session.end',
                principal: principalRef(info.principal),
                durationMs: Date.now() - info.startedAt,
                requests: this.requestCounts.get(info) ?? 0,
                ...(reason === undefined ? {} : { reason }),
              })
              .catch((err: unknown) => this.logger.error({ err: String(err), session: info.id }, 'could not record session.end'))
          }
          await container.dispose()
        })()
        return ended
      },
    }
    const live: Live = { handle, lastActive: info.startedAt, limits: this.currentLimits.sessions, expiresAt: undefined, render: undefined, busy: undefined, terminated: false }
    this.open.set(info, live)
    if (!this.sweeper) this.rearmSweeper()
    return handle
  }

  /** Ends every open session (used by shutdown after the grace period). */
  /** The sessions open on this connection now, as the admin API lists them. */
  liveSessions(): LiveSession[] {
    const out: LiveSession[] = []
    for (const live of this.open.values()) {
      const info = live.handle.info
      out.push({
        id: info.id,
        connection: info.connection,
        protocol: info.protocol,
        client: info.clientAddress,
        tls: info.tls,
        startedAt: info.startedAt,
        lastActive: live.lastActive,
        ...(info.principal ? { principal: info.principal.id, credential: info.principal.credential } : {}),
        requests: this.requestCounts.get(info) ?? 0,
        ending: live.terminated,
      })
    }
    return out
  }

  /** Ends one session at an operator's word (the admin API); false when it is not open here. */
  terminateSession(id: string, by: string, reason?: string): boolean {
    for (const live of this.open.values()) {
      if (live.handle.info.id !== id) continue
      this.terminate(live, { cause: 'admin.terminated', code: 'GH_ERR_SESSION_TERMINATED', reason: `ended by ${by}${reason ? `: ${reason}` : ''}` })
      return true
    }
    return false
  }

  async endAll(reason: string): Promise<void> {
    await Promise.all([...this.open.values()].map((s) => s.handle.end(reason)))
  }

  /** Common event fields. Event ids derive from session and request ids: unique, stable across retries. */
  private base(session: SessionInfo, id: string) {
    return { id, time: isoNow(), session: session.id, connection: session.connection, protocol: session.protocol }
  }

  private authContext(session: SessionInfo): AuthContext {
    return { session, connection: this.connection, now: Date.now() }
  }

  /**
   * Refuses a login attempt at once while its source address or identity is locked out after
   * failed logins, or after too many failures on this client connection (limits.logins),
   * without checking the credential.
   */
  private throttled(session: SessionInfo, user: string | undefined): GatewayError | undefined {
    const perConnection = this.currentLimits.logins.perConnection
    if ((this.authFailures.get(session) ?? 0) >= perConnection) {
      this.limitRefusals?.inc({ connection: this.connection, limit: 'logins.per-connection' })
      return new GatewayError('GH_ERR_AUTH_THROTTLED', `${perConnection} failed logins on this client connection (limits.logins.perConnection)`, { clientMessage: 'too many failed logins on this connection' })
    }
    const t = this.throttle.check(sourceOf(session.clientAddress), user)
    if (!t) return undefined
    this.limitRefusals?.inc({ connection: this.connection, limit: `logins.per-${t.key}` })
    const seconds = Math.ceil(t.retryAfterMs / 1000)
    return new GatewayError('GH_ERR_AUTH_THROTTLED', `too many failed logins from this ${t.key === 'source' ? 'address' : 'identity'}; locked for ${seconds} s more`, {
      clientMessage: `too many failed logins; try again in ${seconds} s`,
    })
  }

  async authenticate(session: SessionInfo, presented: Credentials): Promise<Principal> {
    const generation = this.generation
    const ctx = this.authContext(session)
    const user = 'user' in presented ? presented.user : undefined
    const locked = this.throttled(session, user)
    if (locked) throw await this.loginFailed(session, user, locked)
    let refusal: GatewayError | undefined
    for (const authenticator of this.chains.authenticators) {
      try {
        const principal = await authenticator.authenticate(presented, ctx)
        if (principal) {
          this.throttle.succeeded(sourceOf(session.clientAddress), principal.id)
          return await this.established(session, principal, generation)
        }
      } catch (err) {
        refusal = toGatewayError(err, 'GH_ERR_AUTH_FAILED')
        break
      }
    }
    throw await this.loginFailed(session, user, refusal ?? new GatewayError('GH_ERR_AUTH_FAILED'))
  }

  async loginRefused(session: SessionInfo, presentedUser: string | undefined, error: GatewayError): Promise<void> {
    await this.loginFailed(session, presentedUser, error)
  }

  loginAttemptsLeft(session: SessionInfo): number {
    return this.currentLimits.logins.perConnection - (this.authFailures.get(session) ?? 0)
  }

  /**
   * One failed login, whatever refused it: a wrong credential counts against the lockouts (an
   * expired or out-of-scope token proved its holder: not a guess), every failure is recorded,
   * and the one that uses up the connection's attempts is counted and recorded as that limit.
   * Returns the error to throw.
   */
  private async loginFailed(session: SessionInfo, user: string | undefined, error: GatewayError): Promise<GatewayError> {
    if (error.code === 'GH_ERR_AUTH_FAILED') this.throttle.failed(sourceOf(session.clientAddress), user)
    await this.authFailed(session, user, error)
    const perConnection = this.currentLimits.logins.perConnection
    if ((this.authFailures.get(session) ?? 0) === perConnection) {
      await this.limitReached(session, 'logins.per-connection', `${perConnection} failed logins on this client connection (limits.logins.perConnection)`)
    }
    return error
  }

  scram(session: SessionInfo, user: string, channelBinding?: { data: Buffer; plus: boolean }): ScramExchange {
    const generation = this.generation
    const ctx = this.authContext(session)
    const candidates = this.chains.authenticators.flatMap((a) => a.scramVerifiers?.(user, ctx) ?? [])
    const first = candidates[0]
    const usable = first ? candidates.filter((c) => c.iterations === first.iterations && c.salt.equals(first.salt)) : []
    // Unknown users get a stable fake salt, so the handshake does not reveal which users exist.
    const mockSalt = createHmac('sha256', MOCK_SALT_KEY).update(user).digest().subarray(0, 16)
    const server = new ScramServer(usable.map((c) => ({ ...c, value: c })), mockSalt, channelBinding)
    return {
      start: (clientFirst) => server.start(clientFirst),
      finish: async (clientFinal) => {
        let result: ReturnType<typeof server.finish>
        let principal: Principal
        const locked = this.throttled(session, user)
        if (locked) throw await this.loginFailed(session, user, locked)
        try {
          result = server.finish(clientFinal)
          if (!result) throw new GatewayError('GH_ERR_AUTH_FAILED')
          principal = result.value.accept()
        } catch (err) {
          throw await this.loginFailed(session, user, toGatewayError(err, 'GH_ERR_AUTH_FAILED'))
        }
        this.throttle.succeeded(sourceOf(session.clientAddress), principal.id)
        try {
          return { principal: await this.established(session, principal, generation), serverFinal: result.serverFinal }
        } catch (err) {
          throw await this.loginFailed(session, user, toGatewayError(err, 'GH_ERR_LIMIT_SESSIONS'))
        }
      },
    }
  }

  /**
   * A login that succeeded becomes a session. `generation`: the config the credential was
   * checked under; if a reload came in between (the check runs off the event loop), the
   * credential is checked again against the config now in force, so a token removed by that
   * reload cannot slip in.
   */
  private async established(session: SessionInfo, principal: Principal, generation: number): Promise<Principal> {
    const live = this.open.get(session)
    // The client left (or its login time ran out) while the credential was being checked: no session.
    if (!live || session.signal.aborted) throw new GatewayError('GH_ERR_SESSION_CLOSED', 'the connection closed while logging in')
    if (generation !== this.generation) {
      const verdict = this.revalidate(session, principal)
      if (!verdict.valid) throw new GatewayError('GH_ERR_AUTH_REVOKED', `${principal.credential} of identity "${principal.id}" is no longer valid: ${verdict.reason}`, { clientMessage: 'credential no longer valid' })
      principal = verdict.principal
    }
    const own = sessionLimitsFor(this.currentLimits.sessions, this.identityLimits.get(principal.id))
    const full = this.caps.take(session, principal.id, principal.credential, own)
    if (full) {
      this.limitRefusals?.inc({ connection: this.connection, limit: full.limit })
      throw new GatewayError('GH_ERR_LIMIT_SESSIONS', full.reason, { clientMessage: `too many sessions: ${full.reason}` })
    }
    session.principal = principal
    live.limits = own
    live.expiresAt = principal.expiresAt
    live.lastActive = Date.now()
    await this.recorder.recordAsync({
      ...this.base(session, `${session.id}:start`),
      type: 'session.start',
      principal: principalRef(principal),
      client: session.clientAddress,
      tls: session.tls,
    })
    this.logger.info({ session: session.id, principal: principal.id, client: session.clientAddress }, 'session authenticated')
    return principal
  }

  private async authFailed(session: SessionInfo, presentedUser: string | undefined, error: GatewayError): Promise<void> {
    // The user name is the client's: bounded, so one cannot fill the audit with it.
    const user = presentedUser === undefined || presentedUser.length <= MAX_AUDITED_USER ? presentedUser : `${presentedUser.slice(0, MAX_AUDITED_USER)}…`
    // One event per attempt, each with its own stable id: a brute force is n events, not one.
    const attempt = (this.authFailures.get(session) ?? 0) + 1
    this.authFailures.set(session, attempt)
    this.logger.warn({ session: session.id, user, code: error.code, reason: error.message, client: session.clientAddress }, 'authentication failed')
    await this.recorder
      .recordAsync({
        ...this.base(session, `${session.id}:auth-failure:${attempt}`),
        type: 'auth.failure',
        client: session.clientAddress,
        ...(user === undefined ? {} : { user }),
        code: error.code,
        reason: error.message,
      })
      .catch((err: unknown) => this.logger.error({ err: String(err) }, 'could not record auth.failure'))
  }

  request(session: SessionInfo, init: { action: string; target?: string; text?: string; attrs: Record<string, unknown>; params?: readonly unknown[]; onHeld?: (hold: HeldNotice) => void; deferReview?: boolean }): GatewayRequest {
    const n = (this.requestCounts.get(session) ?? 0) + 1
    this.requestCounts.set(session, n)
    return {
      id: `${session.id}.${n}`,
      session,
      protocol: session.protocol,
      action: init.action,
      target: init.target ?? this.connection,
      attrs: init.attrs,
      receivedAt: performance.now(),
      text: init.text,
      params: init.params,
      // one shape for every request (no conditional spreads on the hot path)
      onHeld: init.onHeld,
      deferReview: init.deferReview,
    }
  }

  admit(request: GatewayRequest): Admission | Promise<Admission> {
    const principal = request.session.principal
    if (!principal) throw new GatewayError('GH_ERR_INTERNAL', 'admit called before authentication')
    if (this.chains.analyzers.length > 0) return this.admitAfterAnalysis(request, principal)
    // one request in STAGE_SAMPLE has its decide and record stages timed (gatehouse_stage_duration_seconds)
    const sampled = this.stageTimes !== undefined && ++this.sampleCount % STAGE_SAMPLE === 0
    const t0 = sampled ? performance.now() : 0
    let d: Decision | Promise<Decision>
    try {
      d = this.decide(request, principal)
    } catch (err) {
      d = this.decideFailed(request, err)
    }
    if (d instanceof Promise) {
      return d.then((decision) => {
        if (sampled) this.timed('decide', t0)
        return this.conclude(request, principal, decision, sampled)
      })
    }
    if (sampled) this.timed('decide', t0)
    return this.conclude(request, principal, d, sampled)
  }

  private timed(stage: 'decide' | 'record', since: number): void {
    const stages = this.stageTimes as NonNullable<typeof this.stageTimes>
    stages[stage].observe((performance.now() - since) / 1000)
  }

  private async admitAfterAnalysis(request: GatewayRequest, principal: Principal): Promise<Admission> {
    let decision: Decision
    try {
      for (const analyzer of this.chains.analyzers) {
        const r = analyzer.analyze(request)
        if (r !== undefined) await r
      }
      decision = await this.decide(request, principal)
    } catch (err) {
      decision = this.decideFailed(request, err)
    }
    return this.conclude(request, principal, decision)
  }

  async admitAll(requests: readonly GatewayRequest[]): Promise<{ admitted: readonly GatewayRequest[]; error?: GatewayError }> {
    const first = requests[0]
    const principal = first?.session.principal
    if (!first || !principal) throw new GatewayError('GH_ERR_INTERNAL', 'admitAll called before authentication or with no requests')
    const decisions: Decision[] = []
    for (const request of requests) decisions.push(await this.explain(request, principal))
    const denied = decisions.some((d) => d.verdict === 'deny')
    const admitted: GatewayRequest[] = []
    let error: GatewayError | undefined
    for (const [i, request] of requests.entries()) {
      const decision = decisions[i] as Decision
      if (decision.verdict === 'review' && (denied || error)) {
        await this.refuse(request, { rule: 'gatehouse/batch', reason: 'not held for review: another request of the same batch was refused' })
        continue
      }
      const admission = await this.conclude(request, principal, decision)
      if (admission.admitted) admitted.push(request)
      else error ??= admission.error
    }
    return error ? { admitted, error } : { admitted }
  }

  /** The decision for `request` as `admit` would reach it, with nothing recorded (`gatehouse policy explain`). */
  async explain(request: GatewayRequest, principal: Principal): Promise<Decision> {
    try {
      for (const analyzer of this.chains.analyzers) await analyzer.analyze(request)
      return await this.decide(request, principal)
    } catch (err) {
      return this.decideFailed(request, err)
    }
  }

  private decideFailed(request: GatewayRequest, err: unknown): Decision {
    this.logger.error({ err: String(err), request: request.id }, 'decide stage failed; request denied')
    return { verdict: 'deny', rule: 'gatehouse/error', reason: isGatewayError(err) ? err.message : 'policy evaluation failed' }
  }

  /** Records the intent, then answers; synchronous when every required sink took the record synchronously. */
  private conclude(request: GatewayRequest, principal: Principal, decision: Decision, sampled = false): Admission | Promise<Admission> {
    if (decision.verdict === 'review' && this.reviews) {
      // preparing runs nothing: the execution is what waits for the review
      if (request.deferReview) decision = { verdict: 'allow', ...(decision.rule === undefined ? {} : { rule: decision.rule }), reason: `${decision.reason} (prepared now; each execution is held for review)`, ...(decision.obligations ? { obligations: decision.obligations } : {}) }
      else return this.holdForReview(request, principal, decision, this.reviews)
    }
    let pending: Promise<void> | undefined
    const t1 = sampled ? performance.now() : 0
    try {
      pending = this.recordIntent(request, principal, decision)
    } catch (err) {
      return this.intentFailed(request, err)
    }
    if (pending === undefined) {
      if (sampled) this.timed('record', t1)
      return this.verdict(request, decision)
    }
    return pending.then(
      () => {
        if (sampled) this.timed('record', t1)
        return this.verdict(request, decision)
      },
      (err: unknown) => this.intentFailed(request, err),
    )
  }

  /**
   * A request the policy sends to review: let through by a grant in force, or held until people
   * decide. The intent record (verdict `review`, with the review's id) is written before the
   * client is told it waits; the decision is recorded (a `review` event) before the request goes
   * on or is refused. A store or audit that fails refuses the request.
   */
  private async holdForReview(request: GatewayRequest, principal: Principal, decision: Decision & { verdict: 'review' }, reviews: Reviews): Promise<Admission> {
    let grant: Grant | undefined
    try {
      grant = await reviews.grantFor(request, principal, this.connection, decision.rule)
    } catch (err) {
      return this.reviewFailed(request, principal, decision, err)
    }
    if (grant) {
      this.reviewCounts?.inc({ connection: this.connection, result: 'granted' })
      const granted: Decision = { verdict: 'allow', rule: decision.rule ?? `grant:${grant.id}`, reason: `held by rule ${decision.rule ?? 'unnamed'}, let through by grant ${grant.id} of ${grant.createdBy}${grant.review ? ` (review ${grant.review})` : ''}`, ...(decision.obligations ? { obligations: decision.obligations } : {}) }
      return this.conclude(request, principal, granted)
    }
    let result: HoldResult
    try {
      result = await reviews.hold(
        request,
        principal,
        this.connection,
        decision,
        async (review) => {
          await this.recordIntent(request, principal, decision, review.id)
          this.reviewCounts?.inc({ connection: this.connection, result: 'held' })
          request.onHeld?.({ review: review.id, reason: decision.reason, ...(decision.rule === undefined ? {} : { rule: decision.rule }), approvals: review.approvalsRequired, expiresAt: review.expiresAt })
        },
        request.session.signal,
      )
    } catch (err) {
      return this.reviewFailed(request, principal, decision, err)
    }
    const review = result.review
    const ended = result.approved ? 'approved' : review?.status === 'expired' ? 'expired' : 'denied'
    this.reviewCounts?.inc({ connection: this.connection, result: ended })
    try {
      await this.recorder.recordAsync({
        ...this.base(request.session, `${request.id}:review`),
        type: 'review',
        request: request.id,
        principal: principalRef(principal),
        review: review?.id ?? 'unknown',
        decision: ended,
        ...(review?.decidedBy === undefined ? {} : { by: review.decidedBy }),
        ...(review && review.approvals.length > 0 ? { approvals: review.approvals } : {}),
        ...(result.approved ? {} : { reason: result.reason }),
      })
    } catch (err) {
      this.logger.error({ request: request.id, review: review?.id, err: String(err) }, 'the end of a review could not be recorded; request refused')
      return this.refused(request, decision, this.intentError(err))
    }
    if (!result.approved) return this.refused(request, decision, holdRefusal(result))
    // what the allow rules that applied oblige (masks) holds for the approved request too
    const approved: Decision & { verdict: 'allow' } = { verdict: 'allow', ...(decision.rule === undefined ? {} : { rule: decision.rule }), reason: `approved by ${result.review.approvals.join(', ')}`, ...(decision.verdict === 'review' && decision.obligations ? { obligations: decision.obligations } : {}) }
    const admitted = this.admitted.get(request)
    if (admitted) admitted.decision = approved
    return this.verdict(request, approved)
  }

  withdrawHeld(session: SessionInfo, reason: string): boolean {
    return (this.reviews?.withdraw(session.id, reason) ?? 0) > 0
  }

  /** A review that ended without its requester (the gateway restarted while it was held): audited as denied. */
  async recordReviewEnd(review: Review): Promise<void> {
    await this.recorder
      .recordAsync({
        id: `${review.request}:review`,
        time: isoNow(),
        session: review.session,
        connection: review.connection,
        protocol: review.protocol,
        type: 'review',
        request: review.request,
        principal: { id: review.principal, kind: 'unknown', groups: [], credential: 'unknown' },
        review: review.id,
        decision: review.status === 'expired' ? 'expired' : 'denied',
        ...(review.decidedBy === undefined ? {} : { by: review.decidedBy }),
        ...(review.decisionReason === undefined ? {} : { reason: review.decisionReason }),
      })
      .catch((err: unknown) => this.logger.error({ review: review.id, err: String(err) }, 'could not record the end of a review'))
  }

  private reviewFailed(request: GatewayRequest, principal: Principal, decision: Decision, err: unknown): Admission | Promise<Admission> {
    if (isGatewayError(err) && err.code === 'GH_ERR_AUDIT_UNAVAILABLE') return this.intentFailed(request, err)
    this.logger.error({ request: request.id, err: String(err) }, 'could not hold the request for review')
    const error = new GatewayError('GH_ERR_STATE_UNAVAILABLE', `needs approval (rule ${decision.rule ?? 'unnamed'}), and the review could not be created: the state store is unavailable`)
    if (!this.admitted.has(request)) {
      // nothing recorded yet: the refusal is the request's one intent record
      let pending: Promise<void> | undefined
      try {
        pending = this.recordIntent(request, principal, { verdict: 'deny', rule: decision.rule ?? 'gatehouse/review', reason: error.message })
      } catch (e) {
        return this.intentFailed(request, e)
      }
      if (pending) return pending.then(() => this.refused(request, decision, error), (e: unknown) => this.intentFailed(request, e))
    }
    return this.refused(request, decision, error)
  }

  private refused(request: GatewayRequest, decision: Decision, error: GatewayError): Admission {
    this.countDecision(request.action, 'deny')
    this.completeRefused(request, error)
    return { admitted: false, decision, error }
  }

  /** The admission for a recorded decision; a refusal's outcome is recorded here, once for every adapter. */
  private verdict(request: GatewayRequest, decision: Decision): Admission {
    this.countDecision(request.action, decision.verdict)
    // The decision, not the request's text or parameters (the audit has those, under its own access control).
    if (this.logger.isLevelEnabled('trace')) this.logger.trace({ session: request.session.id, request: request.id, action: request.action, verdict: decision.verdict, rule: decision.rule }, 'request decided')
    if (decision.verdict === 'allow') return { admitted: true, decision }
    const refused = this.refusal(decision)
    this.completeRefused(request, refused.error)
    return refused
  }

  /** gatehouse_requests_total, through a cached child per action and verdict (prom-client hashes the labels on every `inc` otherwise). */
  private countDecision(action: string, verdict: Decision['verdict']): void {
    if (!this.decisions) return
    const key = `${action}\0${verdict}`
    let child = this.decisionCounters.get(key)
    if (!child) {
      if (this.decisionCounters.size >= 1024) this.decisionCounters.clear()
      child = this.decisions.labels({ connection: this.connection, action, verdict })
      this.decisionCounters.set(key, child)
    }
    child.inc()
  }

  private completeRefused(request: GatewayRequest, error: GatewayError): void {
    this.complete(request, { error: { code: error.code, message: error.message } })
  }

  private refusal(decision: Decision): Admission & { admitted: false } {
    if (decision.verdict === 'review') {
      return { admitted: false, decision, error: new GatewayError('GH_ERR_POLICY_REVIEW', `needs approval (rule ${decision.rule ?? 'unnamed'}): ${decision.reason}; no approval workflow is configured`, { ...(decision.rule === undefined ? {} : { rule: decision.rule }) }) }
    }
    const ruleText = decision.rule === undefined ? '' : ` by rule "${decision.rule}"`
    return { admitted: false, decision, error: new GatewayError('GH_ERR_POLICY_DENIED', `denied${ruleText}: ${decision.reason}`, { ...(decision.rule === undefined ? {} : { rule: decision.rule }) }) }
  }

  async refuse(request: GatewayRequest, refusal: { rule: string; reason: string; code?: ErrorCode }): Promise<GatewayError> {
    const principal = request.session.principal
    if (!principal) throw new GatewayError('GH_ERR_INTERNAL', 'refuse called before authentication')
    const decision: Decision = { verdict: 'deny', rule: refusal.rule, reason: refusal.reason }
    try {
      await this.recordIntent(request, principal, decision)
    } catch (err) {
      return this.intentFailed(request, err).error
    }
    const error = new GatewayError(refusal.code ?? 'GH_ERR_POLICY_DENIED', refusal.reason, { rule: refusal.rule })
    this.countDecision(request.action, 'deny')
    this.completeRefused(request, error)
    return error
  }

  /**
   * Writes the intent record. Returns undefined when every required sink took it synchronously,
   * otherwise a promise that rejects when a required sink could not take it; may also throw.
   */
  private recordIntent(request: GatewayRequest, principal: Principal, decision: Decision, review?: string): Promise<void> | undefined {
    this.admitted.set(request, { decision, startedAt: request.receivedAt })
    if (!this.recorder.hasSinks) return undefined
    const event: RequestEvent = {
      id: `${request.id}:request`,
      time: isoNow(),
      session: request.session.id,
      connection: request.session.connection,
      protocol: request.protocol,
      type: 'request',
      request: request.id,
      principal: principalRef(principal),
      action: request.action,
      target: request.target,
      text: request.text,
      params: request.params,
      attrs: request.attrs,
      verdict: decision.verdict,
      rule: decision.rule,
      reason: decision.reason,
      review,
    }
    return this.recorder.record(event)
  }

  private intentError(err: unknown): GatewayError {
    return isGatewayError(err) && err.code === 'GH_ERR_AUDIT_UNAVAILABLE' ? err : new GatewayError('GH_ERR_AUDIT_UNAVAILABLE', 'audit is unavailable; request refused', { cause: err })
  }

  private intentFailed(request: GatewayRequest, err: unknown): Admission & { admitted: false } {
    const error = this.intentError(err)
    this.logger.error({ request: request.id, code: error.code, err: String((err as Error).cause ?? err) }, 'intent record failed; request refused')
    const refused: Decision = { verdict: 'deny', rule: 'gatehouse/audit', reason: error.message }
    this.admitted.set(request, { decision: refused, startedAt: request.receivedAt })
    this.completeRefused(request, error)
    return { admitted: false, decision: refused, error }
  }

  /** Deny-overrides: any deny wins, then any review, then allow; no applicable rule means deny. */
  private decide(request: GatewayRequest, principal: Principal): Decision | Promise<Decision> {
    const engines = this.chains.policies
    if (engines.length === 0) return NO_POLICY
    if (engines.length === 1) {
      // The common case, without a promise when the engine answers synchronously.
      try {
        const d = (engines[0] as PolicyEngine).decide(request, principal)
        return d instanceof Promise ? d.catch((err: unknown) => this.policyFailed(request, err)) : d
      } catch (err) {
        return this.policyFailed(request, err)
      }
    }
    return this.decideAll(request, principal, engines)
  }

  private async decideAll(request: GatewayRequest, principal: Principal, engines: readonly PolicyEngine[]): Promise<Decision> {
    let review: Decision | undefined
    let allow: Decision | undefined
    for (const engine of engines) {
      let d: Decision
      try {
        d = await engine.decide(request, principal)
      } catch (err) {
        return this.policyFailed(request, err)
      }
      if (d.verdict === 'deny') return d
      if (d.verdict === 'review') review ??= d
      else allow ??= d
    }
    return review ?? allow ?? DEFAULT_DENY
  }

  private policyFailed(request: GatewayRequest, err: unknown): Decision {
    this.logger.error({ err: String(err), request: request.id }, 'policy plugin threw; request denied')
    return POLICY_ERROR
  }

  complete(request: GatewayRequest, outcome: Outcome): void {
    const principal = request.session.principal
    const admitted = this.admitted.get(request)
    if (!principal || !admitted) return
    this.admitted.delete(request)
    if (!this.recorder.hasSinks) return
    const event: AuditEvent = {
      id: `${request.id}:outcome`,
      time: isoNow(),
      session: request.session.id,
      connection: request.session.connection,
      protocol: request.protocol,
      type: 'outcome',
      request: request.id,
      principal: principalRef(principal),
      action: request.action,
      verdict: admitted.decision.verdict,
      rule: admitted.decision.rule,
      durationMs: Math.round((performance.now() - admitted.startedAt) * 1000) / 1000,
      ...outcome,
      ...(admitted.masked ? { masked: [...new Set([...(outcome.masked ?? []), ...admitted.masked])] } : {}),
    }
    this.recorder.recordLater(event, this.outcomeFailed)
  }

  private readonly outcomeFailed = (err: unknown, event: AuditEvent): void => {
    this.logger.error({ err: String(err), request: (event as OutcomeEvent).request }, 'could not record outcome')
  }

  async protocolEvent(session: SessionInfo, e: { event: string; reason: string; attrs?: Record<string, unknown> }): Promise<void> {
    const n = (this.protocolEventCounts.get(session) ?? 0) + 1
    this.protocolEventCounts.set(session, n)
    this.protocolEvents?.inc({ connection: this.connection, event: e.event })
    this.logger.warn({ session: session.id, event: e.event, reason: e.reason, client: session.clientAddress, ...(session.principal ? { principal: session.principal.id } : {}) }, 'protocol event')
    const event: ProtocolEvent = {
      ...this.base(session, `${session.id}:protocol:${n}`),
      type: 'protocol',
      event: e.event,
      client: session.clientAddress,
      ...(session.principal ? { principal: principalRef(session.principal) } : {}),
      reason: e.reason,
      ...(e.attrs ? { attrs: e.attrs } : {}),
    }
    await this.recorder.recordAsync(event).catch((err: unknown) => this.logger.error({ err: String(err), session: session.id }, 'could not record a protocol event'))
  }

  async integrity(session: SessionInfo, v: { request?: GatewayRequest; expected: string; actual: string; reason: string }): Promise<void> {
    this.integrityViolations?.inc({ connection: this.connection })
    this.logger.error({ session: session.id, request: v.request?.id, expected: v.expected, actual: v.actual, reason: v.reason }, 'integrity violation: the upstream contradicts what the gateway judged; session ended')
    const event: IntegrityEvent = {
      ...this.base(session, `${session.id}:integrity:${v.request?.id ?? 'session'}`),
      type: 'integrity',
      ...(session.principal ? { principal: principalRef(session.principal) } : {}),
      ...(v.request ? { request: v.request.id } : {}),
      expected: v.expected,
      actual: v.actual,
      reason: v.reason,
    }
    await this.recorder.recordAsync(event).catch((err: unknown) => this.logger.error({ err: String(err), session: session.id }, 'could not record an integrity event'))
  }

  transform<T>(request: GatewayRequest, item: T): T {
    const admitted = this.admitted.get(request)
    if (admitted) {
      if (admitted.masks === undefined) admitted.masks = maskPathsOf(admitted.decision) ?? null
      if (admitted.masks !== null) for (const path of maskDocument(item, admitted.masks)) (admitted.masked ??= new Set()).add(path)
    }
    let out = item
    for (const t of this.chains.transformers) out = t.transform(request, out)
    return out
  }
}
