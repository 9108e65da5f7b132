/**
 * The one table of gateway error codes. Every error that crosses a stage boundary is a
 * {@link GatewayError} with one of these codes; adapters render it in their protocol's terms
 * (a PostgreSQL ErrorResponse with an SQLSTATE, an SSH exit status, a Kubernetes Status …).
 *
 * `safe` says whether `message` may be shown to the client. Details that are not safe (paths,
 * upstream messages, stack traces) go to the log only.
 */

export type ErrorKind = 'AccessDenied' | 'BadRequest' | 'Unavailable' | 'Timeout' | 'Internal'

interface ErrorSpec {
  readonly kind: ErrorKind
  readonly message: string
  readonly safe: boolean
  readonly fix: string
}

export const ERROR_CODES = {
  GH_ERR_AUTH_FAILED: { kind: 'AccessDenied', safe: true, message: 'authentication failed', fix: 'present a valid, unexpired gateway token for this connection' },
  GH_ERR_AUTH_EXPIRED: { kind: 'AccessDenied', safe: true, message: 'token expired', fix: 'issue a new token (`gatehouse token issue`)' },
  GH_ERR_AUTH_THROTTLED: { kind: 'AccessDenied', safe: true, message: 'too many failed logins; try again later', fix: 'wait for the lockout to pass, and check the token the client presents' },
  GH_ERR_LIMIT_SESSIONS: { kind: 'AccessDenied', safe: true, message: 'too many sessions', fix: 'end sessions you no longer use, or ask an operator to raise limits.sessions' },
  GH_ERR_AUTH_REVOKED: { kind: 'AccessDenied', safe: true, message: 'credential no longer valid', fix: 'the token or key was removed or revoked, or no longer reaches this connection; ask an operator for a new one' },
  GH_ERR_SESSION_TERMINATED: { kind: 'Unavailable', safe: true, message: 'session ended by an operator', fix: 'ask the operator who ended it (the audit names them); reconnect if you may' },
  GH_ERR_SESSION_LIMIT: { kind: 'Timeout', safe: true, message: 'session ended by a gateway limit', fix: 'reconnect; ask an operator to raise limits.sessions.idleMs or maxAgeMs if sessions need to stay open longer' },
  GH_ERR_AUTH_SCOPE: { kind: 'AccessDenied', safe: true, message: 'token not valid for this connection', fix: 'issue a token scoped to this connection' },
  GH_ERR_AUTH_UNSUPPORTED: { kind: 'BadRequest', safe: true, message: 'authentication method not supported', fix: 'use a gateway token as the password' },
  GH_ERR_TLS_REQUIRED: { kind: 'AccessDenied', safe: true, message: 'this connection requires TLS', fix: 'connect with sslmode=require (or stronger)' },
  GH_ERR_POLICY_DENIED: { kind: 'AccessDenied', safe: true, message: 'denied by policy', fix: 'ask an operator to add a rule that allows this request' },
  GH_ERR_POLICY_ERROR: { kind: 'AccessDenied', safe: true, message: 'policy evaluation failed; request refused', fix: 'check the gateway log for the failing rule' },
  GH_ERR_POLICY_REVIEW: { kind: 'AccessDenied', safe: true, message: 'request needs approval, and no approval workflow is configured', fix: 'configure an approval plugin or change the rule effect' },
  GH_ERR_REVIEW_DENIED: { kind: 'AccessDenied', safe: true, message: 'the request was held for review and denied', fix: 'ask the reviewer why, or change the request' },
  GH_ERR_REVIEW_EXPIRED: { kind: 'AccessDenied', safe: true, message: 'the request was held for review and nobody decided in time', fix: 'ask an approver to watch the review queue (gatehouse review list), or raise the rule\'s review timeout' },
  GH_ERR_PARSE_FAILED: { kind: 'BadRequest', safe: true, message: 'request could not be parsed', fix: 'send a statement the gateway can parse' },
  GH_ERR_PROTOCOL: { kind: 'BadRequest', safe: true, message: 'protocol violation', fix: 'the client sent a malformed message' },
  GH_ERR_PROTOCOL_UNSUPPORTED: { kind: 'BadRequest', safe: true, message: 'protocol feature not supported by the gateway', fix: 'use a supported feature' },
  GH_ERR_STATE_UNAVAILABLE: { kind: 'Unavailable', safe: true, message: 'the state store is unavailable', fix: 'check the state store (state.store in the config): the embedded directory, or the PostgreSQL server at state.url' },
  GH_ERR_STATE_SCHEMA: { kind: 'Internal', safe: false, message: "the state store's schema is newer than this gateway", fix: 'upgrade the gateway to the version the other replicas run' },
  GH_ERR_AUDIT_UNAVAILABLE: { kind: 'Unavailable', safe: true, message: 'audit is unavailable; request refused', fix: 'restore the required audit sink' },
  GH_ERR_UPSTREAM_UNAVAILABLE: { kind: 'Unavailable', safe: true, message: 'upstream is unavailable', fix: 'check that the upstream is running and reachable from the gateway' },
  GH_ERR_UPSTREAM_AUTH: { kind: 'Unavailable', safe: true, message: 'gateway could not authenticate to the upstream', fix: 'check the connection\'s upstream credentials' },
  GH_ERR_LOCKED: { kind: 'Unavailable', safe: true, message: 'in use by another gateway', fix: 'stop the other gateway, or give this one its own dataDir (and audit file)' },
  GH_ERR_SHUTTING_DOWN: { kind: 'Unavailable', safe: true, message: 'gateway is shutting down', fix: 'retry against another replica' },
  GH_ERR_SESSION_CLOSED: { kind: 'Unavailable', safe: true, message: 'session closed before the request finished', fix: 'the client or upstream went away; retry' },
  GH_ERR_TIMEOUT: { kind: 'Timeout', safe: true, message: 'timed out', fix: 'retry' },
  GH_ERR_CONFIG_INVALID: { kind: 'BadRequest', safe: false, message: 'configuration invalid', fix: 'run `gatehouse validate --config FILE` and fix the reported paths' },
  GH_ERR_CONFIG_REF: { kind: 'BadRequest', safe: false, message: 'configuration reference could not be resolved', fix: 'set the environment variable or create the file the reference names' },
  GH_ERR_PLUGIN_UNKNOWN: { kind: 'BadRequest', safe: false, message: 'unknown plugin', fix: 'install the package or fix the name' },
  GH_ERR_PLUGIN_DUPLICATE: { kind: 'BadRequest', safe: false, message: 'duplicate plugin name', fix: 'give each plugin instance a unique name' },
  GH_ERR_PLUGIN_INVALID: { kind: 'BadRequest', safe: false, message: 'plugin is malformed', fix: 'the package must export `plugin` created with definePlugin' },
  GH_ERR_PLUGIN_CONFIG: { kind: 'BadRequest', safe: false, message: 'plugin configuration invalid', fix: 'fix the plugin\'s config at the reported path' },
  GH_ERR_PLUGIN_API: { kind: 'BadRequest', safe: false, message: 'plugin requires an incompatible core API version', fix: 'upgrade the plugin or the gateway' },
  GH_ERR_PLUGIN_STAGE: { kind: 'BadRequest', safe: false, message: 'plugin used in the wrong stage', fix: 'list the plugin under the stage it implements' },
  GH_ERR_CONTAINER_SEALED: { kind: 'Internal', safe: false, message: 'registration after the container was sealed', fix: 'register services in a plugin\'s register(), not later' },
  GH_ERR_INTERNAL: { kind: 'Internal', safe: true, message: 'internal gateway error', fix: 'see the gateway log' },
} as const satisfies Record<string, ErrorSpec>

export type ErrorCode = keyof typeof ERROR_CODES

export class GatewayError extends Error {
  override readonly name = 'GatewayError'
  readonly kind: ErrorKind
  readonly safe: boolean
  /**
   * @param code the error code from {@link ERROR_CODES}
   * @param detail what happened; shown to the client only if the code is `safe`
   * @param opts.rule the policy rule behind a denial, if any
   */
  constructor(
    readonly code: ErrorCode,
    detail?: string,
    readonly opts: { rule?: string; cause?: unknown; clientMessage?: string } = {},
  ) {
    super(detail ?? ERROR_CODES[code].message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.kind = ERROR_CODES[code].kind
    this.safe = ERROR_CODES[code].safe
  }

  /** What the client may be told: the detail when safe, the generic message otherwise. */
  get clientMessage(): string {
    if (this.opts.clientMessage !== undefined) return this.opts.clientMessage
    return this.safe ? this.message : ERROR_CODES[this.code].message
  }
}

/** Wraps anything thrown into a GatewayError without leaking its message to clients. */
export function toGatewayError(err: unknown, fallback: ErrorCode = 'GH_ERR_INTERNAL'): GatewayError {
  if (err instanceof GatewayError) return err
  return new GatewayError(fallback, ERROR_CODES[fallback].message, { cause: err })
}

export function isGatewayError(err: unknown): err is GatewayError {
  return err instanceof Error && (err as GatewayError).name === 'GatewayError' && typeof (err as GatewayError).code === 'string'
}
