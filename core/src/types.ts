/** The gateway's vocabulary (docs/architecture.md, "The vocabulary"). Plain data: every stage and adapter shares these shapes. */

export type PrincipalKind = 'agent' | 'human' | 'service'

/** The authenticated caller. Immutable once authentication has produced it. */
export interface Principal {
  readonly id: string
  readonly kind: PrincipalKind
  readonly groups: readonly string[]
  /** Claims from the credential (JWT claims; for tokens: `{ token: <token id> }`). */
  readonly claims: Readonly<Record<string, unknown>>
  /** Which credential proved the identity, e.g. `token:ci-2026-11` — recorded in every audit event. */
  readonly credential: string
  /** When that credential stops being valid (ms since the epoch): core ends the session then. */
  readonly expiresAt?: number
}

/** One client connection through the gateway, from accept to close. */
export interface SessionInfo {
  readonly id: string
  readonly connection: string
  readonly protocol: string
  readonly clientAddress: string
  readonly startedAt: number
  /** Set once authentication succeeded. */
  principal?: Principal
  readonly tls: boolean
  /** Aborted when the session ends; stages pass it to their I/O. */
  readonly signal: AbortSignal
}

/** One unit that policy judges: a SQL statement, an SSH exec, a Kubernetes API call … */
export interface GatewayRequest {
  readonly id: string
  readonly session: SessionInfo
  readonly protocol: string
  /** 'sql.query', 'ssh.exec', 'ssh.forward', 'k8s.exec', 'mongo.command', 'http.request', … */
  readonly action: string
  /** What the request touches, e.g. the connection name or 'pods/default/web-1'. */
  readonly target: string
  /** The human-readable form: the SQL text, the command line. */
  readonly text?: string
  /** Structured facts for policy; analyzers add to it before decide. */
  readonly attrs: Record<string, unknown>
  /** Values that go to the audit but not to policy matching (bound parameters …). */
  readonly params?: readonly unknown[]
  readonly receivedAt: number
  /**
   * Set by the adapter: called when the request is held for review (policy verdict `review`),
   * to tell the client it waits and for which review (a PostgreSQL NoticeResponse, a line on
   * SSH stderr). The request's admission settles once the review is decided.
   */
  readonly onHeld?: (hold: HeldNotice) => void
  /**
   * Set by the adapter on a request that only prepares what a later request executes (a
   * PostgreSQL Parse): a `review` verdict does not hold it, since nothing runs yet; the request
   * that executes it is judged (and held) with everything the approver must see, parameters too.
   */
  readonly deferReview?: boolean
}

/** What a client is told of its held request. */
export interface HeldNotice {
  readonly review: string
  readonly reason: string
  readonly rule?: string
  readonly approvals: number
  readonly expiresAt: number
}

export interface Obligation {
  readonly kind: string
  readonly [key: string]: unknown
}

export type Decision =
  | { readonly verdict: 'allow'; readonly rule?: string; readonly reason?: string; readonly obligations?: readonly Obligation[] }
  | { readonly verdict: 'deny'; readonly rule?: string; readonly reason: string }
  | {
      readonly verdict: 'review'
      readonly rule?: string
      readonly reason: string
      readonly approvers?: readonly string[]
      readonly approvals?: number
      readonly timeoutMs?: number
      /** Obligations that hold once the request is let through (approved, or by a grant): the masks of the allow rules that applied. */
      readonly obligations?: readonly Obligation[]
    }

/** What `Pipeline.admit` answers: go ahead (with obligations), or refuse with a renderable error. */
export type Admission =
  | { readonly admitted: true; readonly decision: Decision & { verdict: 'allow' } }
  | { readonly admitted: false; readonly decision: Decision; readonly error: import('./errors.js').GatewayError }

/** How a request ended, recorded after forward. */
export interface Outcome {
  /** Rows returned or affected, when the protocol knows. */
  readonly rows?: number
  /** Protocol status: a command tag, an exit code, an HTTP status. */
  readonly status?: string | number
  readonly bytesIn?: number
  readonly bytesOut?: number
  /** Error code and message if the request failed (upstream error or refusal). */
  readonly error?: { readonly code: string; readonly message: string }
  /** True when the request was admitted but never executed (its batch was refused or aborted). */
  readonly skipped?: boolean
  /** The terminal recording the request produced (a shell, or an exec with a pty), once it exists. */
  readonly recording?: string
  /** What of the response the gateway replaced before the client saw it (Secret values, masked fields): names, never values. */
  readonly masked?: readonly string[]
}

/** What a client presented to prove who it is. Adapters produce these; authenticators judge them. */
export type Credentials =
  | { readonly kind: 'password'; readonly user: string; readonly password: string }
  | { readonly kind: 'bearer'; readonly token: string; readonly user?: string }
  | { readonly kind: 'public-key'; readonly user: string; readonly algorithm: string; readonly key: Buffer }
