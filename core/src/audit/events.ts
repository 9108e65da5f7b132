/**
 * The audit event union (docs/architecture.md, "The stages", `AuditSink`; every type is listed in
 * docs/audit.md). Every event is self-describing JSON; sinks store them as given.
 */
import type { Decision, Outcome, Principal } from '../types.js'

interface EventBase {
  /** Stable, unique id (sinks use it for idempotent writes). */
  readonly id: string
  readonly time: string
  readonly session: string
  readonly connection: string
  readonly protocol: string
}

export interface PrincipalRef {
  readonly id: string
  readonly kind: string
  readonly groups: readonly string[]
  readonly credential: string
}

export interface SessionStartEvent extends EventBase {
  readonly type: 'session.start'
  readonly principal: PrincipalRef
  readonly client: string
  readonly tls: boolean
}

export interface SessionEndEvent extends EventBase {
  readonly type: 'session.end'
  readonly principal?: PrincipalRef
  readonly durationMs: number
  readonly requests: number
  readonly reason?: string
}

/** A failed authentication attempt: recorded even though no principal exists. */
export interface AuthFailureEvent extends EventBase {
  readonly type: 'auth.failure'
  readonly client: string
  readonly user?: string
  readonly code: string
  readonly reason: string
}

/** The intent record: written before the request is forwarded (or refused). */
export interface RequestEvent extends EventBase {
  readonly type: 'request'
  readonly request: string
  readonly principal: PrincipalRef
  readonly action: string
  readonly target: string
  readonly text?: string
  readonly params?: readonly unknown[]
  readonly attrs: Record<string, unknown>
  readonly verdict: Decision['verdict']
  readonly rule?: string
  readonly reason?: string
  /** The review holding the request (verdict `review`). */
  readonly review?: string
}

/** How a held request's review ended, recorded before the request goes on or is refused. */
export interface ReviewEvent extends EventBase {
  readonly type: 'review'
  readonly request: string
  /** The requester. */
  readonly principal: PrincipalRef
  readonly review: string
  readonly decision: 'approved' | 'denied' | 'expired'
  /** Who decided: the last approver, the denier, or `gatehouse` (timeout, client gone, restart). */
  readonly by?: string
  readonly approvals?: readonly string[]
  readonly reason?: string
}

/** The outcome record: after the upstream answered, correlated to its request by `request`. */
export interface OutcomeEvent extends EventBase {
  readonly type: 'outcome'
  readonly request: string
  readonly principal: PrincipalRef
  readonly action: string
  readonly verdict: Decision['verdict']
  readonly rule?: string
  readonly durationMs: number
  readonly rows?: number
  readonly status?: Outcome['status']
  readonly bytesIn?: number
  readonly bytesOut?: number
  readonly error?: Outcome['error']
  readonly skipped?: boolean
  readonly recording?: string
  readonly masked?: Outcome['masked']
}

/**
 * Something at the protocol level that no request event covers: a connection refused at startup
 * (protocol version, replication, TLS, encoding), a CancelRequest (valid or not), a statement or
 * portal name the gateway refuses, a session ended by a limit. Recorded with or without a principal.
 */
export interface ProtocolEvent extends EventBase {
  readonly type: 'protocol'
  /** What happened, dotted: `startup.refused`, `cancel`, `name.refused`, `limit.timeout`, … */
  readonly event: string
  readonly client: string
  readonly principal?: PrincipalRef
  readonly reason: string
  readonly attrs?: Record<string, unknown>
}

/**
 * The upstream's answer contradicts what the gateway judged (a statement judged as a SELECT
 * completed as `DELETE 5`): the gateway's model of the session drifted. The session is ended.
 */
export interface IntegrityEvent extends EventBase {
  readonly type: 'integrity'
  readonly principal?: PrincipalRef
  /** The request whose outcome contradicted its judgement. */
  readonly request?: string
  readonly expected: string
  readonly actual: string
  readonly reason: string
}

export type AuditEvent = SessionStartEvent | SessionEndEvent | AuthFailureEvent | RequestEvent | ReviewEvent | OutcomeEvent | ProtocolEvent | IntegrityEvent

const refs = new WeakMap<Principal, PrincipalRef>()

/** The principal as recorded in events: frozen and shared, so its JSON is built once. */
export function principalRef(p: Principal): PrincipalRef {
  let ref = refs.get(p)
  if (!ref) {
    ref = Object.freeze({ id: p.id, kind: p.kind, groups: Object.freeze([...p.groups]), credential: p.credential })
    refs.set(p, ref)
  }
  return ref
}

let isoMs = -1
let isoText = ''
/**
 * The current time as an ISO 8601 text, for audit events: the same text as
 * `new Date().toISOString()`, formatted once per millisecond (two events per statement on the hot
 * path ask within the same millisecond).
 */
export function isoNow(): string {
  const ms = Date.now()
  if (ms !== isoMs) {
    isoMs = ms
    isoText = new Date(ms).toISOString()
  }
  return isoText
}
