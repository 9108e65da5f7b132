/**
 * auth-token: gateway tokens presented where a protocol expects a password.
 *
 * Tokens are stored only as hashes under `identities[].tokens` (SCRAM verifiers or sha256),
 * each optionally scoped to connections and given an expiry. Every comparison is constant
 * time; an unknown user costs the same work as a known one so timing does not reveal which
 * identities exist. A refusal never says which part was wrong unless the caller proved it
 * holds a valid token (expired, or out of scope).
 */
import { Type } from '@sinclair/typebox'
import { createHash } from 'node:crypto'
import {
  constructPlugin,
  GatewayConfigToken,
  inject,
  PluginConfig,
  definePlugin,
  injectable,
  deriveScramSecretAsync,
  GatewayError,
  identitySalt,
  NOT_A_TOKEN_HASH,
  parseTokenHash,
  PLUGIN_API_VERSION,
  verifyTokenAsync,
  type AuthContext,
  type Authenticator,
  type Credentials,
  type GatewayConfig,
  type ParsedTokenHash,
  type Principal,
  type ScramVerifier,
} from '@gatehouse/core'

interface TokenRecord {
  readonly id: string
  /** The stored hash as configured: what identifies the token across a config reload. */
  readonly hashText: string
  readonly hash: ParsedTokenHash
  readonly connections?: ReadonlySet<string>
  readonly expiresAt?: number
}

interface IdentityRecord {
  readonly principalBase: Omit<Principal, 'credential' | 'claims'> & { claims: Record<string, unknown> }
  readonly tokens: readonly TokenRecord[]
}

const ConfigSchema = Type.Object(
  {
    /** How many verified (token, identity) pairs to remember so reconnects skip PBKDF2. */
    cacheSize: Type.Integer({ minimum: 0, default: 1024 }),
  },
  { additionalProperties: false },
)

/**
 * The token behind each principal this plugin produced (by its stored hash: ids like `ci#0`
 * shift when an earlier token is removed), for `revalidate` after a config reload. Module-wide:
 * the reloaded instance answers for sessions the old one let in.
 */
const tokenOf = new WeakMap<Principal, string>()

@injectable()
export class TokenAuthenticator implements Authenticator {
  private readonly identities = new Map<string, IdentityRecord>()
  /** sha256(identity NUL token) → the token entry it matched, for tokens already verified once. */
  private readonly verified = new Map<string, TokenRecord>()

  private readonly cacheSize: number

  constructor(@inject(GatewayConfigToken) gateway: Readonly<GatewayConfig>, @inject(PluginConfig) config: { readonly cacheSize: number }) {
    this.cacheSize = config.cacheSize
    gateway.identities.forEach((identity, i) => {
      const tokens = identity.tokens.map((t, j): TokenRecord => {
        const hash = parseTokenHash(t.hash)
        if (!hash) throw new GatewayError('GH_ERR_PLUGIN_CONFIG', `identities[${i}].tokens[${j}].hash: ${NOT_A_TOKEN_HASH}`)
        return {
          id: t.id ?? `${identity.id}#${j}`,
          hashText: t.hash,
          hash,
          ...(t.connections ? { connections: new Set(t.connections) } : {}),
          ...(t.expires ? { expiresAt: Date.parse(t.expires) } : {}),
        }
      })
      this.identities.set(identity.id, {
        principalBase: { id: identity.id, kind: identity.kind, groups: Object.freeze([...identity.groups]), claims: { ...(identity.claims ?? {}) } },
        tokens,
      })
    })
  }

  /**
   * The key derivation (PBKDF2) runs on libuv's thread pool, never on the event loop: a flood of
   * wrong tokens must not hold up the statements of sessions already logged in.
   */
  async authenticate(presented: Credentials, ctx: AuthContext): Promise<Principal | undefined> {
    if (presented.kind !== 'password') return undefined
    const identity = this.identities.get(presented.user)
    if (!identity) {
      // Same work as a real check, so timing does not reveal which users exist.
      await deriveScramSecretAsync(presented.password, identitySalt(presented.user))
      throw new GatewayError('GH_ERR_AUTH_FAILED', `unknown identity or wrong token for user "${presented.user}"`, { clientMessage: 'authentication failed' })
    }
    const cacheKey = createHash('sha256').update(presented.user).update('\0').update(presented.password).digest('base64')
    let match = this.verified.get(cacheKey)
    const cached = match !== undefined
    if (!match) {
      for (const t of identity.tokens) {
        if ((await verifyTokenAsync(presented.password, t.hash)) && match === undefined) match = t
      }
    }
    if (!match) throw new GatewayError('GH_ERR_AUTH_FAILED', `wrong token for identity "${presented.user}"`, { clientMessage: 'authentication failed' })
    // Expiry and scope are checked on every attempt; only the hash comparison is remembered.
    const principal = this.accept(identity, match, ctx)
    if (!cached && this.cacheSize > 0) {
      if (this.verified.size >= this.cacheSize) this.verified.delete(this.verified.keys().next().value as string)
      this.verified.set(cacheKey, match)
    }
    return principal
  }

  scramVerifiers(user: string, ctx: AuthContext): readonly ScramVerifier[] {
    const identity = this.identities.get(user)
    if (!identity) return []
    const out: ScramVerifier[] = []
    for (const t of identity.tokens) {
      if (t.hash.kind !== 'scram') continue
      out.push({ ...t.hash.secret, accept: () => this.accept(identity, t, ctx) })
    }
    return out
  }

  private accept(identity: IdentityRecord, token: TokenRecord, ctx: AuthContext): Principal {
    if (token.expiresAt !== undefined && ctx.now >= token.expiresAt) {
      throw new GatewayError('GH_ERR_AUTH_EXPIRED', `token "${token.id}" of identity "${identity.principalBase.id}" expired at ${new Date(token.expiresAt).toISOString()}`, { clientMessage: 'token expired' })
    }
    if (token.connections && !token.connections.has(ctx.connection)) {
      throw new GatewayError('GH_ERR_AUTH_SCOPE', `token "${token.id}" of identity "${identity.principalBase.id}" is not valid for connection "${ctx.connection}"`, { clientMessage: `token not valid for connection "${ctx.connection}"` })
    }
    const principal: Principal = Object.freeze({
      ...identity.principalBase,
      claims: Object.freeze({ ...identity.principalBase.claims, token: token.id }),
      credential: `token:${token.id}`,
      ...(token.expiresAt === undefined ? {} : { expiresAt: token.expiresAt }),
    })
    tokenOf.set(principal, token.hashText)
    return principal
  }

  /**
   * After a reload: the token must still be configured for the identity, unexpired and valid
   * for this connection; the answer is the principal as the config now describes it.
   */
  revalidate(principal: Principal, ctx: AuthContext): Principal | undefined {
    const hashText = tokenOf.get(principal)
    if (hashText === undefined) return undefined
    const identity = this.identities.get(principal.id)
    const token = identity?.tokens.find((t) => t.hashText === hashText)
    if (!identity || !token) throw new GatewayError('GH_ERR_AUTH_REVOKED', `identity "${principal.id}" no longer has this token in the configuration`)
    return this.accept(identity, token, ctx)
  }
}

export const plugin = definePlugin({
  name: 'auth-token',
  stage: 'authenticate',
  apiVersion: PLUGIN_API_VERSION,
  configSchema: ConfigSchema,
  description: 'gateway tokens (stored as hashes) presented as passwords',
  register(container, config, ctx) {
    return constructPlugin(container, TokenAuthenticator, config, ctx)
  },
})

export default plugin
