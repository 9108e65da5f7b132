/**
 * Core's limits with their defaults, resolved once per connection: the connection's own
 * `limits` over the gateway's `limits` over these defaults (README, "Limits").
 */
import type { Limits } from '../config/schema.js'

export const LIMIT_DEFAULTS = {
  unauthenticated: { total: 256, perSource: 16 },
  logins: { perSource: 20, perIdentity: 50, baseDelayMs: 1000 },
  sessions: { perIdentity: 32, perToken: 32, total: 1024 },
} as const

export interface ResolvedLimits {
  readonly unauthenticated: { readonly total: number; readonly perSource: number }
  readonly logins: { readonly perSource: number; readonly perIdentity: number; readonly baseDelayMs: number }
  readonly sessions: { readonly perIdentity: number; readonly perToken: number; readonly total: number }
}

export function resolveLimits(gateway: Limits | undefined, connection: Limits | undefined): ResolvedLimits {
  const group = <K extends keyof ResolvedLimits>(key: K): ResolvedLimits[K] => ({ ...LIMIT_DEFAULTS[key], ...gateway?.[key], ...connection?.[key] }) as ResolvedLimits[K]
  return { unauthenticated: group('unauthenticated'), logins: group('logins'), sessions: group('sessions') }
}
