/**
 * The stage interfaces plugins implement, each with a same-named injection token
 * (`Symbol.for`, so the token is the same object in every package that imports core).
 */
import type { TObject } from '@sinclair/typebox'
import type { InjectionToken } from 'tsyringe'
import type { AuditEvent } from '../audit/events.js'
import type { ConnectionConfig } from '../config/schema.js'
import type { Credentials, Decision, GatewayRequest, Principal, SessionInfo } from '../types.js'
import type { Pipeline } from '../pipeline/pipeline.js'
import type { RuleSet } from './define.js'

export type Stage = 'adapter' | 'authenticate' | 'parse' | 'decide' | 'record' | 'transform'

/** Context an authenticator gets with each attempt. */
export interface AuthContext {
  readonly session: SessionInfo
  readonly connection: string
  readonly now: number
}

/** A SCRAM-SHA-256 verifier (RFC 5802/7677) the gateway can check a proof against. */
export interface ScramVerifier {
  readonly iterations: number
  readonly salt: Buffer
  readonly storedKey: Buffer
  readonly serverKey: Buffer
  /** Called when a proof matched this verifier; returns the principal or throws a GatewayError (expired, out of scope). */
  readonly accept: () => Principal
}

export interface Authenticator {
  /**
   * Turns presented credentials into a principal. Returns `undefined` when the credentials are
   * not of a kind this authenticator handles; throws a GatewayError to refuse. Must compare
   * secrets in constant time and must never log them.
   */
  authenticate(presented: Credentials, ctx: AuthContext): Promise<Principal | undefined> | Principal | undefined
  /**
   * Optional: SCRAM verifiers for `user`, so protocols with a SCRAM handshake (PostgreSQL,
   * MongoDB) can authenticate without the secret crossing the wire. All verifiers returned for
   * one user must share salt and iteration count (the handshake announces one).
   */
  scramVerifiers?(user: string, ctx: AuthContext): readonly ScramVerifier[]
  /**
   * Optional, asked after a config reload for every open session: may a session that logged in
   * as `principal` go on under this authenticator's configuration? Returns `undefined` when the
   * credential is not one this authenticator issues principals for; when it is still valid, the
   * principal as the configuration now describes it (groups, kind, claims, `expiresAt` may have
   * changed; core puts it on the session, so the policies judge it as they would a new login);
   * throws a GatewayError naming why when it no longer is (removed, revoked, out of scope now),
   * and core ends the session. Authenticators without it cannot have their sessions ended or
   * updated by a reload.
   */
  revalidate?(principal: Principal, ctx: AuthContext): Principal | undefined
}
export const Authenticator: InjectionToken<Authenticator> = Symbol.for('gatehouse.Authenticator')

/** Parse stage: enriches a request's attrs before decide. Must not forward or write anything. */
export interface Analyzer {
  analyze(request: GatewayRequest): void | Promise<void>
}
export const Analyzer: InjectionToken<Analyzer> = Symbol.for('gatehouse.Analyzer')

/** Decide stage. Must be pure with respect to the request; throwing counts as deny (fail closed). */
export interface PolicyEngine {
  decide(request: GatewayRequest, principal: Principal): Decision | Promise<Decision>
  /**
   * Optional: called once at boot, after every plugin loaded and before the gateway starts, with
   * the rule sets plugins ship (`PluginDefinition.ruleSets`, by name). An engine whose policies
   * include sets compiles them here; throwing (GH_ERR_CONFIG_INVALID naming the path) stops the
   * boot like any config error.
   */
  useRuleSets?(sets: Readonly<Record<string, RuleSet>>): void
}
export const PolicyEngine: InjectionToken<PolicyEngine> = Symbol.for('gatehouse.PolicyEngine')

export type SinkMode = 'required' | 'best-effort'

/** Record stage. */
export interface AuditSink {
  /** `required`: a request whose intent record this sink cannot take is refused. */
  readonly mode: SinkMode
  /**
   * Takes one event. Returns nothing when the event is already as durable as this sink promises
   * (written synchronously), or a promise that resolves once it is; throws or rejects when it
   * cannot be taken. Events must be written in call order.
   */
  write(event: AuditEvent): Promise<void> | void
  /**
   * Optional: takes an event nobody waits for (an outcome, a session's end) and reports a failure
   * to write it through `failed` instead of a promise. A sink that holds such events back to share
   * a write implements this to spare a promise per event; without it, `write` is used.
   */
  writeLater?(event: AuditEvent, failed: (err: Error, event: AuditEvent) => void): void
  /**
   * Optional: the events this sink stored that `filter` keeps, newest first, at most
   * `filter.limit` (the admin API's audit query). Sinks that cannot read back leave it out.
   */
  query?(filter: AuditQuery): Promise<AuditEvent[]>
  /** Writes everything buffered. Called at shutdown and on demand. */
  flush(): Promise<void>
  /** Flushes and releases resources; no write follows. */
  close(): Promise<void>
}
/** What an audit query asks for: every field given must match; times are ms since the epoch. */
export interface AuditQuery {
  readonly session?: string
  readonly principal?: string
  readonly connection?: string
  readonly action?: string
  readonly verdict?: string
  readonly type?: string
  readonly request?: string
  readonly from?: number
  readonly to?: number
  readonly limit: number
}

/** Whether a stored event matches an audit query (the fields a sink's `query` must honour). */
export function matchesAuditQuery(e: Record<string, unknown>, q: AuditQuery): boolean {
  if (q.type !== undefined ? e.type !== q.type : e.type === 'audit.checkpoint') return false
  if (q.session !== undefined && e.session !== q.session) return false
  if (q.connection !== undefined && e.connection !== q.connection) return false
  if (q.action !== undefined && e.action !== q.action) return false
  if (q.verdict !== undefined && e.verdict !== q.verdict) return false
  if (q.request !== undefined && e.request !== q.request) return false
  if (q.principal !== undefined && (e.principal as { id?: unknown } | undefined)?.id !== q.principal) return false
  if (q.from !== undefined || q.to !== undefined) {
    const t = typeof e.time === 'string' ? Date.parse(e.time) : Number.NaN
    if (Number.isNaN(t) || (q.from !== undefined && t < q.from) || (q.to !== undefined && t > q.to)) return false
  }
  return true
}

export const AuditSink: InjectionToken<AuditSink> = Symbol.for('gatehouse.AuditSink')

/** Response path: applies obligations (masking) to items flowing back to the client. */
export interface Transformer {
  transform<T>(request: GatewayRequest, item: T): T
}
export const Transformer: InjectionToken<Transformer> = Symbol.for('gatehouse.Transformer')

/** An open listener of one connection. */
export interface Listener {
  readonly address: { host: string; port: number }
  /** Stops accepting new clients; existing sessions continue. */
  stopAccepting(): Promise<void>
  /** Ends all sessions now (after the grace deadline). */
  closeAll(reason: string): Promise<void>
  /** Number of open sessions. */
  readonly sessions: number
}

/** A protocol adapter: owns the listener and speaks the protocol on both sides. */
export interface ProtocolAdapter {
  readonly protocol: string
  /** Every request action this adapter produces (`sql.query`, …); policies naming others are rejected at boot. */
  readonly actions?: readonly string[]
  /**
   * The adapter's own limits, as a TypeBox object schema with defaults: configured under
   * `limits.<protocol>` (top level and per connection), validated and resolved by core, read
   * from `pipeline.limits.adapter`. Refusals go through `pipeline.limitReached` or a session
   * handle's `terminate`, so they are counted and audited like core's.
   */
  readonly limits?: TObject
  /** Validates and freezes the adapter-specific part of a connection (`upstream`, `options`). Throws GatewayError GH_ERR_CONFIG_INVALID naming the path. */
  checkConnection?(connection: ConnectionConfig, path: string): void
  listen(connection: ConnectionConfig, pipeline: Pipeline, signal: AbortSignal): Promise<Listener>
  /**
   * For `gatehouse policy explain`: the requests this input would become, analysed as a session
   * would analyse them, without connecting anywhere. A request the adapter would refuse before
   * policy carries that refusal. Adapters without it cannot be explained.
   */
  explain?(input: ExplainInput): Promise<readonly ExplainedRequest[]>
}

/** What `gatehouse policy explain` was asked about; an adapter reads the fields of its protocol. */
export interface ExplainInput {
  readonly sql?: string
  readonly command?: string
  readonly k8s?: string
}

export interface ExplainedRequest {
  readonly action: string
  readonly text: string
  readonly attrs: Record<string, unknown>
  /** Set when the adapter refuses this request before policy (unparseable, unjudgeable). */
  readonly refusal?: { readonly rule: string; readonly reason: string }
}
export const ProtocolAdapter: InjectionToken<ProtocolAdapter> = Symbol.for('gatehouse.ProtocolAdapter')
