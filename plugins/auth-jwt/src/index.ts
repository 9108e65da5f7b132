/**
 * auth-jwt: a workload's JWT (a CI provider's OIDC token, say) as its gateway credential.
 *
 * The caller presents the JWT where the protocol expects a password (PostgreSQL with
 * `clientAuth: cleartext`, over TLS; SSH password authentication) or as a bearer token. It is
 * verified with `jose` against a JWKS — a URL (fetched and cached by jose, refetched for an
 * unknown key id, at most every `jwksCooldownSeconds`) or a file — for its signature, one of the
 * allowed algorithms (never `none`, never an HMAC whose secret would be a public key), the
 * issuer, the audience, `exp` (required) and `nbf`. Claims map to the principal: its id (one
 * claim, `sub` by default), its groups (a claim holding a list or a space-separated string, plus
 * fixed groups), its kind. The user name the caller presents must be that id, so a log line and
 * the audit never disagree about who logged in.
 *
 * A refusal tells the client only "authentication failed" (or "token expired", once the
 * signature proved the token is genuine); the reason goes to the gateway log. Sessions end when
 * the JWT expires (the principal's `expiresAt`).
 */
import { Type, type Static } from '@sinclair/typebox'
import { readFileSync } from 'node:fs'
import { createLocalJWKSet, createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose'
import {
  constructPlugin,
  definePlugin,
  GatewayError,
  inject,
  injectable,
  PluginConfig,
  PluginContextToken,
  PLUGIN_API_VERSION,
  type AuthContext,
  type Authenticator,
  type Credentials,
  type Logger,
  type PluginContext,
  type Principal,
} from '@gatehouse/core'

/** Asymmetric algorithms only: an HMAC key in a JWKS would let anyone who can read it sign. */
const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const

const ConfigSchema = Type.Object(
  {
    issuer: Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })], { description: 'the `iss` a token must carry (one of these)' }),
    audience: Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })], { description: 'an `aud` a token must carry (one of these)' }),
    jwksUrl: Type.Optional(Type.String({ pattern: '^https?://', description: "the issuer's JWKS (https; http for loopback tests)" })),
    jwksFile: Type.Optional(Type.String({ minLength: 1, description: 'a JWKS JSON file ({"keys": [...]}), read at start' })),
    algorithms: Type.Array(Type.Union(ALGORITHMS.map((a) => Type.Literal(a))), { minItems: 1, default: ['RS256', 'ES256', 'EdDSA'] }),
    clockToleranceSeconds: Type.Integer({ minimum: 0, maximum: 300, default: 30 }),
    maxAgeSeconds: Type.Optional(Type.Integer({ minimum: 1, description: 'refuse tokens issued (`iat`) longer ago than this' })),
    jwksCooldownSeconds: Type.Integer({ minimum: 1, default: 30, description: 'least time between two fetches of the JWKS URL' }),
    principal: Type.Object(
      {
        idClaim: Type.String({ minLength: 1, default: 'sub', description: 'the claim that is the principal id (and the user name the caller presents)' }),
        groupsClaim: Type.Optional(Type.String({ minLength: 1, description: 'a claim holding groups: a list of strings, or a space-separated string' })),
        groups: Type.Array(Type.String({ minLength: 1 }), { default: [], description: 'groups every principal of this plugin has' }),
        kind: Type.Union([Type.Literal('agent'), Type.Literal('human'), Type.Literal('service')], { default: 'agent' }),
        claims: Type.Array(Type.String({ minLength: 1 }), { default: [], description: 'more claims to copy onto the principal (recorded in the audit; policies can match them)' }),
      },
      { additionalProperties: false, default: {} },
    ),
  },
  { additionalProperties: false },
)
type JwtConfig = Static<typeof ConfigSchema>

/** Three base64url parts: anything else is not for this plugin (another authenticator may take it). */
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/
/** A principal id from a claim: the same characters identity ids may have. */
const ID_SHAPE = /^[A-Za-z0-9][A-Za-z0-9._@:/-]{0,127}$/

/** The principals this plugin produced (to tell its own apart in `revalidate`). */
const mine = new WeakSet<Principal>()

@injectable()
export class JwtAuthenticator implements Authenticator {
  private readonly keys: JWTVerifyGetKey
  private readonly logger: Logger

  constructor(@inject(PluginConfig) private readonly config: JwtConfig, @inject(PluginContextToken) ctx: PluginContext) {
    this.logger = ctx.logger
    if ((config.jwksUrl === undefined) === (config.jwksFile === undefined)) throw new GatewayError('GH_ERR_PLUGIN_CONFIG', 'auth-jwt: set exactly one of jwksUrl and jwksFile')
    if (config.jwksFile !== undefined) {
      let jwks: unknown
      try {
        jwks = JSON.parse(readFileSync(config.jwksFile, 'utf8'))
      } catch (err) {
        throw new GatewayError('GH_ERR_PLUGIN_CONFIG', `auth-jwt jwksFile ${config.jwksFile}: ${(err as Error).message}`)
      }
      if (!jwks || typeof jwks !== 'object' || !Array.isArray((jwks as { keys?: unknown }).keys)) throw new GatewayError('GH_ERR_PLUGIN_CONFIG', `auth-jwt jwksFile ${config.jwksFile}: not a JWKS ({"keys": [...]})`)
      this.keys = createLocalJWKSet(jwks as Parameters<typeof createLocalJWKSet>[0])
    } else {
      this.keys = createRemoteJWKSet(new URL(config.jwksUrl as string), { cooldownDuration: config.jwksCooldownSeconds * 1000, timeoutDuration: 5000 })
    }
  }

  async authenticate(presented: Credentials, ctx: AuthContext): Promise<Principal | undefined> {
    const token = presented.kind === 'password' ? presented.password : presented.kind === 'bearer' ? presented.token : undefined
    if (token === undefined || !JWT_SHAPE.test(token)) return undefined
    const user = presented.kind === 'password' || presented.kind === 'bearer' ? presented.user : undefined
    let payload: JWTPayload
    try {
      ;({ payload } = await jwtVerify(token, this.keys, {
        issuer: this.config.issuer,
        audience: this.config.audience,
        algorithms: [...this.config.algorithms],
        clockTolerance: this.config.clockToleranceSeconds,
        currentDate: new Date(ctx.now),
        requiredClaims: ['exp'],
        ...(this.config.maxAgeSeconds === undefined ? {} : { maxTokenAge: this.config.maxAgeSeconds }),
      }))
    } catch (err) {
      // Expired, once the signature checked out, may be said; everything else is "authentication failed".
      if (err instanceof joseErrors.JWTExpired) {
        throw new GatewayError('GH_ERR_AUTH_EXPIRED', `JWT of "${String(err.payload.sub ?? '?')}" from ${String(err.payload.iss ?? '?')} expired`, { clientMessage: 'token expired' })
      }
      throw new GatewayError('GH_ERR_AUTH_FAILED', `JWT refused: ${describe(err)}`, { clientMessage: 'authentication failed' })
    }
    const id = payload[this.config.principal.idClaim]
    if (typeof id !== 'string' || !ID_SHAPE.test(id)) {
      throw new GatewayError('GH_ERR_AUTH_FAILED', `JWT refused: claim "${this.config.principal.idClaim}" is not a usable principal id`, { clientMessage: 'authentication failed' })
    }
    if (user !== undefined && user !== id) {
      throw new GatewayError('GH_ERR_AUTH_FAILED', `JWT refused: it proves "${id}", but the client logged in as "${user}"`, { clientMessage: 'authentication failed' })
    }
    const groups = new Set(this.config.principal.groups)
    if (this.config.principal.groupsClaim) for (const g of groupsOf(payload[this.config.principal.groupsClaim])) groups.add(g)
    const claims: Record<string, unknown> = { iss: payload.iss, sub: payload.sub }
    if (payload.jti !== undefined) claims.jti = payload.jti
    for (const c of this.config.principal.claims) if (payload[c] !== undefined) claims[c] = payload[c]
    const principal: Principal = Object.freeze({
      id,
      kind: this.config.principal.kind,
      groups: Object.freeze([...groups]),
      claims: Object.freeze(claims),
      credential: `jwt:${String(payload.iss)}${payload.jti === undefined ? '' : `#${String(payload.jti)}`}`,
      expiresAt: (payload.exp as number) * 1000,
    })
    mine.add(principal)
    this.logger.debug({ principal: id, iss: payload.iss, exp: payload.exp }, 'JWT accepted')
    return principal
  }

  /** After a reload: a session of this plugin goes on until its JWT expires (core ends it then). */
  revalidate(principal: Principal, ctx: AuthContext): Principal | undefined {
    if (!mine.has(principal)) return undefined
    if (principal.expiresAt !== undefined && ctx.now >= principal.expiresAt) throw new GatewayError('GH_ERR_AUTH_EXPIRED', `JWT of "${principal.id}" expired`, { clientMessage: 'token expired' })
    return principal
  }
}

function groupsOf(v: unknown): string[] {
  const list = typeof v === 'string' ? v.split(' ') : Array.isArray(v) ? v : []
  return list.filter((g): g is string => typeof g === 'string' && ID_SHAPE.test(g))
}

/** jose's reason, without the token. */
function describe(err: unknown): string {
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `claim ${err.claim}: ${err.reason}`
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'no key in the JWKS matches the token (unknown kid or algorithm)'
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'signature does not verify'
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'algorithm not allowed'
  if (err instanceof joseErrors.JOSEError) return `${err.code}: ${err.message}`
  return String((err as Error)?.message ?? err)
}

export const plugin = definePlugin({
  name: 'auth-jwt',
  stage: 'authenticate',
  apiVersion: PLUGIN_API_VERSION,
  configSchema: ConfigSchema,
  description: 'workload JWTs verified against a JWKS (issuer, audience, expiry, algorithms), claims mapped to the principal',
  register(container, config, ctx) {
    return constructPlugin(container, JwtAuthenticator, config, ctx)
  },
})

export default plugin
