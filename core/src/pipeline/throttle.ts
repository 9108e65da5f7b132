/**
 * Failed logins per source address and per identity: after a number of free failures, each
 * further failure locks the key for twice as long as the last (from `baseDelayMs`, capped), and
 * while locked, attempts are refused at once, without checking the credential (so a flood of
 * guesses also costs the gateway nothing). A success clears the identity's and the source's
 * count. Failures older than the window are forgotten.
 *
 * The per-identity count is shared by every source, so many sources cannot brute-force one
 * identity; its cap is lower, because any source can make it bite (tokens are 256-bit random:
 * the lockout protects the gateway's CPU and the audit more than the secret).
 */
import type { ResolvedLimits } from './limits.js'

/** Longest lockouts, and how long a failure is remembered. */
const MAX_SOURCE_LOCKOUT_MS = 300_000
const MAX_IDENTITY_LOCKOUT_MS = 60_000
const WINDOW_MS = 900_000

interface Entry {
  failures: number
  last: number
  lockedUntil: number
}

export interface Throttled {
  readonly key: 'source' | 'identity'
  readonly retryAfterMs: number
}

/** Keeps at most this many keys of each kind; the oldest are dropped first. */
const MAX_KEYS = 50_000

export class LoginThrottle {
  private readonly sources = new Map<string, Entry>()
  private readonly identities = new Map<string, Entry>()

  /** Replaced on config reload; counts carry over. */
  constructor(public limits: ResolvedLimits['logins']) {}

  /** Whether an attempt from `source` for `identity` is refused now, and for how long. */
  check(source: string, identity: string | undefined, now = Date.now()): Throttled | undefined {
    const s = this.live(this.sources, source, now)
    if (s && s.lockedUntil > now) return { key: 'source', retryAfterMs: s.lockedUntil - now }
    const i = identity === undefined ? undefined : this.live(this.identities, identity, now)
    if (i && i.lockedUntil > now) return { key: 'identity', retryAfterMs: i.lockedUntil - now }
    return undefined
  }

  failed(source: string, identity: string | undefined, now = Date.now()): void {
    this.count(this.sources, source, this.limits.perSource, MAX_SOURCE_LOCKOUT_MS, now)
    if (identity !== undefined) this.count(this.identities, identity, this.limits.perIdentity, MAX_IDENTITY_LOCKOUT_MS, now)
  }

  succeeded(source: string, identity: string): void {
    this.sources.delete(source)
    this.identities.delete(identity)
  }

  private live(map: Map<string, Entry>, key: string, now: number): Entry | undefined {
    const e = map.get(key)
    if (e && now - e.last > WINDOW_MS && e.lockedUntil <= now) {
      map.delete(key)
      return undefined
    }
    return e
  }

  private count(map: Map<string, Entry>, key: string, free: number, maxLockoutMs: number, now: number): void {
    const e = this.live(map, key, now) ?? { failures: 0, last: now, lockedUntil: 0 }
    e.failures++
    e.last = now
    if (e.failures > free) e.lockedUntil = now + Math.min(maxLockoutMs, this.limits.baseDelayMs * 2 ** Math.min(30, e.failures - free - 1))
    map.delete(key)
    map.set(key, e)
    if (map.size > MAX_KEYS) map.delete(map.keys().next().value as string)
  }
}

/** The address part of `host:port` (`127.0.0.1:5555`, `::1:5555`, `[::1]:5555`). */
export function sourceOf(clientAddress: string): string {
  const at = clientAddress.lastIndexOf(':')
  const host = at < 0 ? clientAddress : clientAddress.slice(0, at)
  return host.replace(/^\[(.*)\]$/, '$1')
}
