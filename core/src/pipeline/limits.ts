/**
 * Core's limits with their defaults, resolved once per connection: the connection's own
 * `limits` over the gateway's `limits` over these defaults (docs/configuration.md, "Limits"). An
 * identity's `limits.sessions` apply over the connection's to that identity's sessions; an
 * adapter's own limits live under `limits.<protocol>`, declared by the adapter and validated here
 * too.
 */
import type { TObject } from '@sinclair/typebox'
import type { Limits } from '../config/schema.js'
import { validate } from '../config/validate.js'

export const LIMIT_DEFAULTS = {
  unauthenticated: { total: 256, perSource: 16, loginTimeoutMs: 15_000 },
  logins: { perSource: 20, perIdentity: 50, baseDelayMs: 1000, perConnection: 6 },
  sessions: { perIdentity: 32, perToken: 32, total: 1024, idleMs: 3_600_000, maxAgeMs: 86_400_000 },
} as const

type Widen<T> = { readonly [K in keyof T]: T[K] extends number ? number : Widen<T[K]> }
export type CoreLimits = Widen<typeof LIMIT_DEFAULTS>
export type SessionLimits = CoreLimits['sessions']

export interface ResolvedLimits extends CoreLimits {
  /** The adapter's own limits (`limits.<protocol>`), with its defaults; empty when it declares none. */
  readonly adapter: Readonly<Record<string, unknown>>
}

const CORE_GROUPS = Object.keys(LIMIT_DEFAULTS) as (keyof CoreLimits)[]

/**
 * The limits of one connection. `adapterSchema` is the adapter's declaration of its own limits;
 * `path` names the connection for errors (`connections[0]`).
 */
export function resolveLimits(gateway: Limits | undefined, connection: Limits | undefined, adapter?: { protocol: string; schema?: TObject; path?: string }): ResolvedLimits {
  const group = <K extends keyof CoreLimits>(key: K): CoreLimits[K] => ({ ...LIMIT_DEFAULTS[key], ...gateway?.[key], ...connection?.[key] }) as CoreLimits[K]
  const core = Object.fromEntries(CORE_GROUPS.map((k) => [k, group(k)])) as unknown as CoreLimits
  let adapterLimits: Record<string, unknown> = {}
  if (adapter?.schema) {
    const own = (l: Limits | undefined) => (l as Record<string, object | undefined> | undefined)?.[adapter.protocol]
    const raw = { ...own(gateway), ...own(connection) }
    adapterLimits = validate(adapter.schema, raw, { base: `${adapter.path ?? ''}.limits.${adapter.protocol}`.replace(/^\./, '') }) as Record<string, unknown>
  }
  return Object.freeze({ ...core, adapter: Object.freeze(adapterLimits) })
}

/** An identity's session limits over the connection's. */
export function sessionLimitsFor(base: SessionLimits, identity: Partial<SessionLimits> | undefined): SessionLimits {
  return identity ? { ...base, ...identity } : base
}

export const isCoreLimitGroup = (key: string): key is keyof CoreLimits => (CORE_GROUPS as string[]).includes(key)
