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
import type { Counter } from 'prom-client'
import { Metrics } from '../metrics.js'
import { principalRef, type AuditEvent, type IntegrityEvent, type ProtocolEvent, type RequestEvent } from '../audit/events.js'
import type { AuditRecorder } from '../audit/recorder.js'
import { ScramServer } from '../auth/scram.js'
import { ConnectionAdmission, isRefused, SessionCaps, type ConnectionSlot } from './admission.js'
import { LoginThrottle, sourceOf } from './throttle.js'
import { resolveLimits, type ResolvedLimits } from './limits.js'
import { GatewayError, isGatewayError, toGatewayError, type ErrorCode } from '../errors.js'
import type { Logger } from '../logger.js'
import type { Analyzer, AuthContext, Authenticator, PolicyEngine, Transformer } from '../plugin/stages.js'
import type { Admission, Credentials, Decision, GatewayRequest, Outcome, Principal, SessionInfo } from '../types.js'

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
   * once the client has logged in and `release()` when the connection closes.
   */
  admitConnection(source: string, protocol: string): ConnectionSlot | undefined
  /** Opens a session for an accepted client. Called once per client connection. */
  openSession(init: { protocol: string; clientAddress: string; tls: boolean }): SessionHandle
  /** Turns presented credentials into a principal (and records session.start), or throws GatewayError. */
  authenticate(session: SessionInfo, presented: Credentials): Promise<Principal>
  /** Starts a SCRAM-SHA-256 exchange for `user`; a principal results only from a valid proof. */
  scram(session: SessionInfo, user: string): ScramExchange
  /** Builds a request with a fresh id. */
  request(session: SessionInfo, init: { action: string; target?: string; text?: string; attrs: Record<string, unknown>; params?: readonly unknown[] }): GatewayRequest
  /**
   * Enrich → decide → record intent; never forwards anything itself. Answers synchronously when
   * every stage did (the common case: a cached analysis, a synchronous policy, a sink that wrote
   * the intent at once), otherwise with a promise. Never rejects: failures become refusals.
   */
  admit(request: GatewayRequest): Admission | Promise<Admission>
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
  /** Applies transform plugins to a response item. */
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
}

const MOCK_SALT_KEY = randomBytes(32)
const NO_POLICY: Decision = Object.freeze({ verdict: 'deny', rule: 'gatehouse/no-policy', reason: 'no policy plugin is configured for this connection' })
const POLICY_ERROR: Decision = Object.freeze({ verdict: 'deny', rule: 'gatehouse/policy-error', reason: 'policy evaluation failed' })
const DEFAULT_DENY: Decision = Object.freeze({ verdict: 'deny', rule: 'gatehouse/default-deny', reason: 'no rule allows this request' })

export class ConnectionPipeline implements Pipeline {
  private readonly open = new Set<SessionHandle>()
  private readonly admitted = new WeakMap<GatewayRequest, Admitted>()
  private readonly requestCounts = new WeakMap<SessionInfo, number>()
  private readonly authFailures = new WeakMap<SessionInfo, number>()

  constructor(
    readonly connection: string,
    private readonly chains: Chains,
    private readonly recorder: AuditRecorder,
    private readonly root: DependencyContainer,
    private readonly logger: Logger,
    limits: ResolvedLimits = resolveLimits(undefined, undefined),
  ) {
    this.admission = new ConnectionAdmission(limits.unauthenticated)
    this.throttle = new LoginThrottle(limits.logins)
    this.caps = new SessionCaps(limits.sessions)
    // Requests decided, by connection, action and verdict, for the admin API's /metrics.
    const metrics = root.isRegistered(Metrics, true) ? root.resolve(Metrics) : undefined
    this.decisions = metrics?.counter('gatehouse_requests_total', 'requests decided, by connection, action and verdict', ['connection', 'action', 'verdict'])
    this.protocolEvents = metrics?.counter('gatehouse_protocol_events_total', 'protocol-level events (startup refusals, cancels, refused names, limits), by connection and event', ['connection', 'event'])
    this.limitRefusals = metrics?.counter('gatehouse_limit_refusals_total', 'connections and requests refused by a limit, by connection and limit', ['connection', 'limit'])
    this.integrityViolations = metrics?.counter('gatehouse_integrity_violations_total', "sessions ended because the upstream's answer contradicted what the gateway judged, by connection", ['connection'])
  }

  private readonly decisions: Counter<'connection' | 'action' | 'verdict'> | undefined
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

  admitConnection(source: string, protocol: string): ConnectionSlot | undefined {
    const r = this.admission.admit(source)
    if (!isRefused(r)) return r
    this.limitRefusals?.inc({ connection: this.connection, limit: r.limit })
    if (r.firstOfBurst) {
      this.logger.warn({ connection: this.connection, limit: r.limit, client: source, reason: r.reason }, 'connection refused by a limit (the first of a burst from this address; the rest are counted in gatehouse_limit_refusals_total)')
      // no session exists yet: the audit record gets an id of its own
      const info: SessionInfo = { id: r.id, connection: this.connection, protocol, clientAddress: source, tls: false, startedAt: Date.now(), signal: AbortSignal.abort() }
      void this.protocolEvent(info, { event: `limit.${r.limit}`, reason: r.reason })
    }
    return undefined
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
      end: (reason?: string) => {
        ended ??= (async () => {
          this.open.delete(handle)
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
    this.open.add(handle)
    return handle
  }

  /** Ends every open session (used by shutdown after the grace period). */
  async endAll(reason: string): Promise<void> {
    await Promise.all([...this.open].map((s) => s.end(reason)))
  }

  /** Common event fields. Event ids derive from session and request ids: unique, stable across retries. */
  private base(session: SessionInfo, id: string) {
    return { id, time: new Date().toISOString(), session: session.id, connection: session.connection, protocol: session.protocol }
  }

  private authContext(session: SessionInfo): AuthContext {
    return { session, connection: this.connection, now: Date.now() }
  }

  /**
   * Refuses a login attempt at once while its source address or identity is locked out after
   * failed logins (limits.logins), without checking the credential.
   */
  private throttled(session: SessionInfo, user: string | undefined): GatewayError | undefined {
    const t = this.throttle.check(sourceOf(session.clientAddress), user)
    if (!t) return undefined
    this.limitRefusals?.inc({ connection: this.connection, limit: `logins.per-${t.key}` })
    const seconds = Math.ceil(t.retryAfterMs / 1000)
    return new GatewayError('GH_ERR_AUTH_THROTTLED', `too many failed logins from this ${t.key === 'source' ? 'address' : 'identity'}; locked for ${seconds} s more`, {
      clientMessage: `too many failed logins; try again in ${seconds} s`,
    })
  }

  async authenticate(session: SessionInfo, presented: Credentials): Promise<Principal> {
    const ctx = this.authContext(session)
    const user = 'user' in presented ? presented.user : undefined
    const locked = this.throttled(session, user)
    if (locked) {
      await this.authFailed(session, user, locked)
      throw locked
    }
    let refusal: GatewayError | undefined
    for (const authenticator of this.chains.authenticators) {
      try {
        const principal = await authenticator.authenticate(presented, ctx)
        if (principal) {
          this.throttle.succeeded(sourceOf(session.clientAddress), principal.id)
          return await this.established(session, principal)
        }
      } catch (err) {
        refusal = toGatewayError(err, 'GH_ERR_AUTH_FAILED')
        break
      }
    }
    const error = refusal ?? new GatewayError('GH_ERR_AUTH_FAILED')
    // an expired or out-of-scope token proved its holder: not a guess
    if (error.code === 'GH_ERR_AUTH_FAILED') this.throttle.failed(sourceOf(session.clientAddress), user)
    await this.authFailed(session, user, error)
    throw error
  }

  scram(session: SessionInfo, user: string): ScramExchange {
    const ctx = this.authContext(session)
    const candidates = this.chains.authenticators.flatMap((a) => a.scramVerifiers?.(user, ctx) ?? [])
    const first = candidates[0]
    const usable = first ? candidates.filter((c) => c.iterations === first.iterations && c.salt.equals(first.salt)) : []
    // Unknown users get a stable fake salt, so the handshake does not reveal which users exist.
    const mockSalt = createHmac('sha256', MOCK_SALT_KEY).update(user).digest().subarray(0, 16)
    const server = new ScramServer(usable.map((c) => ({ ...c, value: c })), mockSalt)
    return {
      start: (clientFirst) => server.start(clientFirst),
      finish: async (clientFinal) => {
        let result: ReturnType<typeof server.finish>
        let principal: Principal
        const locked = this.throttled(session, user)
        if (locked) {
          await this.authFailed(session, user, locked)
          throw locked
        }
        try {
          result = server.finish(clientFinal)
          if (!result) throw new GatewayError('GH_ERR_AUTH_FAILED')
          principal = result.value.accept()
        } catch (err) {
          const error = toGatewayError(err, 'GH_ERR_AUTH_FAILED')
          if (error.code === 'GH_ERR_AUTH_FAILED') this.throttle.failed(sourceOf(session.clientAddress), user)
          await this.authFailed(session, user, error)
          throw error
        }
        this.throttle.succeeded(sourceOf(session.clientAddress), principal.id)
        try {
          return { principal: await this.established(session, principal), serverFinal: result.serverFinal }
        } catch (err) {
          const error = toGatewayError(err, 'GH_ERR_LIMIT_SESSIONS')
          await this.authFailed(session, user, error)
          throw error
        }
      },
    }
  }

  private async established(session: SessionInfo, principal: Principal): Promise<Principal> {
    const full = this.caps.take(session, principal.id, principal.credential)
    if (full) {
      this.limitRefusals?.inc({ connection: this.connection, limit: full.limit })
      throw new GatewayError('GH_ERR_LIMIT_SESSIONS', full.reason, { clientMessage: `too many sessions: ${full.reason}` })
    }
    session.principal = principal
    await this.recorder.recordAsync({
      ...this.base(session, `${session.id}:start`),
      type: 'session.start',
      principal: principalRef(principal),
      client: session.clientAddress,
      tls: session.tls,
    })
    this.logger.info({ session: session.id, connection: this.connection, principal: principal.id, client: session.clientAddress }, 'session authenticated')
    return principal
  }

  private async authFailed(session: SessionInfo, presentedUser: string | undefined, error: GatewayError): Promise<void> {
    // The user name is the client's: bounded, so one cannot fill the audit with it.
    const user = presentedUser === undefined || presentedUser.length <= MAX_AUDITED_USER ? presentedUser : `${presentedUser.slice(0, MAX_AUDITED_USER)}…`
    // One event per attempt, each with its own stable id: a brute force is n events, not one.
    const attempt = (this.authFailures.get(session) ?? 0) + 1
    this.authFailures.set(session, attempt)
    this.logger.warn({ session: session.id, connection: this.connection, user, code: error.code, reason: error.message, client: session.clientAddress }, 'authentication failed')
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

  request(session: SessionInfo, init: { action: string; target?: string; text?: string; attrs: Record<string, unknown>; params?: readonly unknown[] }): GatewayRequest {
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
    }
  }

  admit(request: GatewayRequest): Admission | Promise<Admission> {
    const principal = request.session.principal
    if (!principal) throw new GatewayError('GH_ERR_INTERNAL', 'admit called before authentication')
    if (this.chains.analyzers.length > 0) return this.admitAfterAnalysis(request, principal)
    let d: Decision | Promise<Decision>
    try {
      d = this.decide(request, principal)
    } catch (err) {
      d = this.decideFailed(request, err)
    }
    if (d instanceof Promise) return d.then((decision) => this.conclude(request, principal, decision))
    return this.conclude(request, principal, d)
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
  private conclude(request: GatewayRequest, principal: Principal, decision: Decision): Admission | Promise<Admission> {
    let pending: Promise<void> | undefined
    try {
      pending = this.recordIntent(request, principal, decision)
    } catch (err) {
      return this.intentFailed(request, err)
    }
    if (pending === undefined) return this.verdict(request, decision)
    return pending.then(
      () => this.verdict(request, decision),
      (err: unknown) => this.intentFailed(request, err),
    )
  }

  /** The admission for a recorded decision; a refusal's outcome is recorded here, once for every adapter. */
  private verdict(request: GatewayRequest, decision: Decision): Admission {
    this.decisions?.inc({ connection: this.connection, action: request.action, verdict: decision.verdict })
    if (decision.verdict === 'allow') return { admitted: true, decision }
    const refused = this.refusal(decision)
    this.completeRefused(request, refused.error)
    return refused
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
    this.decisions?.inc({ connection: this.connection, action: request.action, verdict: 'deny' })
    this.completeRefused(request, error)
    return error
  }

  /**
   * Writes the intent record. Returns undefined when every required sink took it synchronously,
   * otherwise a promise that rejects when a required sink could not take it; may also throw.
   */
  private recordIntent(request: GatewayRequest, principal: Principal, decision: Decision): Promise<void> | undefined {
    this.admitted.set(request, { decision, startedAt: request.receivedAt })
    if (!this.recorder.hasSinks) return undefined
    const event: RequestEvent = {
      id: `${request.id}:request`,
      time: new Date().toISOString(),
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
    }
    return this.recorder.record(event)
  }

  private intentFailed(request: GatewayRequest, err: unknown): Admission & { admitted: false } {
    const error = isGatewayError(err) && err.code === 'GH_ERR_AUDIT_UNAVAILABLE' ? err : new GatewayError('GH_ERR_AUDIT_UNAVAILABLE', 'audit is unavailable; request refused', { cause: err })
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
      time: new Date().toISOString(),
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
    }
    this.recorder.recordAsync(event).catch((err: unknown) => this.logger.error({ err: String(err), request: request.id }, 'could not record outcome'))
  }

  async protocolEvent(session: SessionInfo, e: { event: string; reason: string; attrs?: Record<string, unknown> }): Promise<void> {
    const n = (this.protocolEventCounts.get(session) ?? 0) + 1
    this.protocolEventCounts.set(session, n)
    this.protocolEvents?.inc({ connection: this.connection, event: e.event })
    this.logger.warn({ session: session.id, connection: this.connection, event: e.event, reason: e.reason, client: session.clientAddress, ...(session.principal ? { principal: session.principal.id } : {}) }, 'protocol event')
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
    this.logger.error({ session: session.id, connection: this.connection, request: v.request?.id, expected: v.expected, actual: v.actual, reason: v.reason }, 'integrity violation: the upstream contradicts what the gateway judged; session ended')
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
    let out = item
    for (const t of this.chains.transformers) out = t.transform(request, out)
    return out
  }
}
