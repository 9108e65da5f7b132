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
  IssuedTokensToken,
  type IssuedToken,
  type IssuedTokens,
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
  /** Issued at run time (the state store), not configured. */
  readonly issued?: boolean
  readonly revokedAt?: number
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

  constructor(
    @inject(GatewayConfigToken) gateway: Readonly<GatewayConfig>,
    @inject(PluginConfig) config: { readonly cacheSize: number },
    @inject(IssuedTokensToken) private readonly issued?: Pick<IssuedTokens, 'forIdentity' | 'get'>,
  ) {
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
      for (const t of this.tokensOf(presented.user, identity)) {
        if ((await verifyTokenAsync(presented.password, t.hash)) && match === undefined) match = t
      }
    }
    if (!match) throw new GatewayError('GH_ERR_AUTH_FAILED', `wrong token for identity "${presented.user}"`, { clientMessage: 'authentication failed' })
    if (match.issued) {
      // a remembered issued token is looked up again: it may have been revoked since
      const current = this.issued?.get(match.id)
      const record = current ? this.recordOf(current) : undefined
      if (!record) throw new GatewayError('GH_ERR_AUTH_REVOKED', `the issued token of identity "${presented.user}" is no longer active (revoked or expired)`, { clientMessage: 'credential no longer valid' })
      match = record
    }
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
    for (const t of this.tokensOf(user, identity)) {
      if (t.hash.kind !== 'scram') continue
      out.push({ ...t.hash.secret, accept: () => this.accept(identity, t, ctx) })
    }
    return out
  }

  /** The identity's configured tokens, then those issued at run time (state store). */
  private tokensOf(user: string, identity: IdentityRecord): readonly TokenRecord[] {
    const issued = this.issued?.forIdentity(user)
    if (!issued || issued.length === 0) return identity.tokens
    return [...identity.tokens, ...issued.map((t) => this.recordOf(t)).filter((t): t is TokenRecord => t !== undefined)]
  }

  /** An issued token as a token entry (parsed once per stored record). */
  private recordOf(t: IssuedToken): TokenRecord | undefined {
    let r = this.issuedRecords.get(t)
    if (r === undefined) {
      const hash = parseTokenHash(t.hash)
      if (!hash) return undefined
      r = {
        id: t.id,
        hashText: `issued:${t.id}`,
        hash,
        issued: true,
        expiresAt: t.expiresAt,
        ...(t.connections ? { connections: new Set(t.connections) } : {}),
        ...(t.revokedAt === undefined ? {} : { revokedAt: t.revokedAt }),
      }
      this.issuedRecords.set(t, r)
    }
    return r
  }
  private readonly issuedRecords = new WeakMap<IssuedToken, TokenRecord>()

  private accept(identity: IdentityRecord, token: TokenRecord, ctx: AuthContext): Principal {
    if (token.revokedAt !== undefined) {
      throw new GatewayError('GH_ERR_AUTH_REVOKED', `token "${token.id}" of identity "${identity.principalBase.id}" was revoked at ${new Date(token.revokedAt).toISOString()}`, { clientMessage: 'credential no longer valid' })
    }
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
    if (hashText.startsWith('issued:')) {
      // issued at run time: active while the registry holds it unrevoked and unexpired
      const stored = this.issued?.get(hashText.slice('issued:'.length))
      const token = stored && stored.identity === principal.id ? this.recordOf(stored) : undefined
      if (!identity || !token) throw new GatewayError('GH_ERR_AUTH_REVOKED', `the issued token of identity "${principal.id}" is no longer active (revoked or expired)`)
      return this.accept(identity, token, ctx)
    }
    const token = identity?.tokens.find((t) => t.hashText === hashText)
    if (!identity || !token) throw new GatewayError('GH_ERR_AUTH_REVOKED', `identity "${principal.id}" no longer has this token in the configuration`)
    return this.accept(identity, token, ctx)
  }
}

const NO_ISSUED_TOKENS: Pick<IssuedTokens, 'forIdentity' | 'get'> = { forIdentity: () => [], get: () => undefined }

export const plugin = definePlugin({
  name: 'auth-token',
  stage: 'authenticate',
  apiVersion: PLUGIN_API_VERSION,
  configSchema: ConfigSchema,
  description: 'gateway tokens (stored as hashes) presented as passwords',
  register(container, config, ctx) {
    // A container without run-time tokens (a plugin test, a tool that only validates): the config's tokens alone.
    if (container.isRegistered(IssuedTokensToken, true)) return constructPlugin(container, TokenAuthenticator, config, ctx)
    const scope = container.createChildContainer()
    scope.registerInstance(IssuedTokensToken, NO_ISSUED_TOKENS as IssuedTokens)
    return constructPlugin(scope, TokenAuthenticator, config, ctx)
  },
})

export default plugin
