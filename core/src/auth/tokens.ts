/**
 * Gateway tokens: random secrets that callers present where a protocol expects a password.
 * The config stores only a hash. Two hash forms:
 * - `SCRAM-SHA-256$…` (default): a SCRAM verifier, so protocols with a SCRAM handshake never
 *   see the token; the salt is derived from the identity id so every token of one identity can
 *   be tried in one handshake (tokens are 256-bit random, so per-token salts add nothing).
 * - `sha256:<hex>`: a plain SHA-256, for protocols that only ever receive the token itself.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { DEFAULT_ITERATIONS, deriveScramSecret, formatScramSecret, parseScramSecret, verifyScramSecret, verifyScramSecretAsync, type ScramSecret } from './scram.js'

export const TOKEN_PREFIX = 'gh_'

export function generateToken(): string {
  return TOKEN_PREFIX + randomBytes(32).toString('base64url')
}

export function identitySalt(identityId: string): Buffer {
  return createHash('sha256').update(`gatehouse-token-salt:${identityId}`).digest().subarray(0, 16)
}

export type TokenHashAlgorithm = 'scram-sha-256' | 'sha256'

export function hashToken(token: string, identityId: string, algorithm: TokenHashAlgorithm = 'scram-sha-256'): string {
  if (algorithm === 'sha256') return `sha256:${createHash('sha256').update(token).digest('hex')}`
  return formatScramSecret(deriveScramSecret(token, identitySalt(identityId), DEFAULT_ITERATIONS))
}

export type ParsedTokenHash = { kind: 'scram'; secret: ScramSecret } | { kind: 'sha256'; digest: Buffer }

/** What a config says when a token hash is not one `parseTokenHash` reads. */
export const NOT_A_TOKEN_HASH = 'not a token hash (expected SCRAM-SHA-256$… or sha256:<64 hex>; use `gatehouse token issue`)'

export function parseTokenHash(hash: string): ParsedTokenHash | undefined {
  if (/^sha256:[0-9a-f]{64}$/i.test(hash)) return { kind: 'sha256', digest: Buffer.from(hash.slice(7), 'hex') }
  const secret = parseScramSecret(hash)
  return secret ? { kind: 'scram', secret } : undefined
}

/** Constant-time check of a presented token against a stored hash. */
export function verifyToken(token: string, hash: ParsedTokenHash): boolean {
  return hash.kind === 'sha256' ? sha256Matches(token, hash.digest) : verifyScramSecret(token, hash.secret)
}

/** `verifyToken` with the key derivation off the event loop (what the gateway uses for every login). */
export async function verifyTokenAsync(token: string, hash: ParsedTokenHash): Promise<boolean> {
  return hash.kind === 'sha256' ? sha256Matches(token, hash.digest) : verifyScramSecretAsync(token, hash.secret)
}

const sha256Matches = (token: string, digest: Buffer): boolean => timingSafeEqual(createHash('sha256').update(token).digest(), digest)

/** Parses durations like `90s`, `15m`, `12h`, `7d`. */
export function parseDuration(text: string): number {
  const m = /^(\d+)\s*(ms|s|m|h|d)$/.exec(text.trim())
  if (!m) throw new Error(`invalid duration "${text}" (use e.g. 30m, 12h, 7d)`)
  const n = Number(m[1])
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms']
  return n * unit
}
