/**
 * auth-ssh-key: SSH public keys registered to identities (`identities[].sshKeys`, in
 * authorized_keys form) prove who a client is.
 *
 * The adapter has already checked the client's signature with the key (proof of possession);
 * this stage only answers whether that key belongs to the identity the client named. Keys are
 * compared as whole wire-format blobs, algorithm included.
 */
import { Type } from '@sinclair/typebox'
import { timingSafeEqual } from 'node:crypto'
import { constructPlugin, definePlugin, GatewayConfigToken, GatewayError, inject, injectable, PLUGIN_API_VERSION, type AuthContext, type Authenticator, type Credentials, type GatewayConfigRef, type Principal } from '@gatehouse/core'

interface RegisteredKey {
  readonly algorithm: string
  readonly blob: Buffer
  /** The authorized_keys comment, or the key's position; recorded as the credential. */
  readonly label: string
}

interface IdentityKeys {
  readonly principal: Omit<Principal, 'credential'>
  readonly keys: readonly RegisteredKey[]
}

/** `ssh-ed25519 AAAA… comment` → its algorithm, wire blob and comment. */
export function parseAuthorizedKey(line: string): { algorithm: string; blob: Buffer; comment: string } {
  const [algorithm = '', b64 = '', ...rest] = line.trim().split(/\s+/)
  const blob = Buffer.from(b64, 'base64')
  // The blob starts with its own algorithm name as an SSH string: a mismatch is a corrupt key.
  const nameLength = blob.length >= 4 ? blob.readUInt32BE(0) : -1
  if (nameLength < 0 || blob.subarray(4, 4 + nameLength).toString('latin1') !== algorithm) throw new Error(`not a valid ${algorithm || 'SSH'} public key`)
  return { algorithm, blob, comment: rest.join(' ') }
}

/**
 * The key blob behind each principal this plugin produced, for `revalidate` after a config
 * reload (module-wide: the reloaded instance answers for sessions the old one let in).
 */
const keyOf = new WeakMap<Principal, Buffer>()

@injectable()
export class SshKeyAuthenticator implements Authenticator {
  private readonly identities = new Map<string, IdentityKeys>()

  constructor(@inject(GatewayConfigToken) gateway: GatewayConfigRef) {
    gateway.identities.forEach((identity, i) => {
      const keys = (identity.sshKeys ?? []).map((line, j): RegisteredKey => {
        let parsed: ReturnType<typeof parseAuthorizedKey>
        try {
          parsed = parseAuthorizedKey(line)
        } catch (err) {
          throw new GatewayError('GH_ERR_CONFIG_INVALID', `identities[${i}].sshKeys[${j}]: ${(err as Error).message}`)
        }
        return { algorithm: parsed.algorithm, blob: parsed.blob, label: parsed.comment || `key${j}` }
      })
      if (keys.length === 0) return
      this.identities.set(identity.id, {
        principal: Object.freeze({ id: identity.id, kind: identity.kind, groups: Object.freeze([...identity.groups]), claims: Object.freeze({ ...(identity.claims ?? {}) }) }),
        keys,
      })
    })
  }

  authenticate(presented: Credentials, _ctx: AuthContext): Principal | undefined {
    if (presented.kind !== 'public-key') return undefined
    const identity = this.identities.get(presented.user)
    const key = identity?.keys.find((k) => k.blob.length === presented.key.length && timingSafeEqual(k.blob, presented.key))
    if (!identity || !key) throw new GatewayError('GH_ERR_AUTH_FAILED', `public key not registered to identity "${presented.user}"`, { clientMessage: 'authentication failed' })
    const principal: Principal = Object.freeze({ ...identity.principal, claims: Object.freeze({ ...identity.principal.claims, sshKey: key.label }), credential: `ssh-key:${key.label}` })
    keyOf.set(principal, key.blob)
    return principal
  }

  /** After a reload: the key must still be registered to the identity; the answer is the principal as the config now describes it. */
  revalidate(principal: Principal, ctx: AuthContext): Principal | undefined {
    const blob = keyOf.get(principal)
    if (!blob) return undefined
    const identity = this.identities.get(principal.id)
    const key = identity?.keys.find((k) => k.blob.equals(blob))
    if (!key) throw new GatewayError('GH_ERR_AUTH_REVOKED', `the key is no longer registered to identity "${principal.id}"`)
    return this.authenticate({ kind: 'public-key', user: principal.id, algorithm: key.algorithm, key: blob }, ctx)
  }
}

export const plugin = definePlugin({
  name: 'auth-ssh-key',
  stage: 'authenticate',
  apiVersion: PLUGIN_API_VERSION,
  configSchema: Type.Object({}, { additionalProperties: false }),
  description: 'SSH public keys registered under identities[].sshKeys',
  register(container, config, ctx): Authenticator {
    return constructPlugin(container, SshKeyAuthenticator, config, ctx)
  },
})

export default plugin
