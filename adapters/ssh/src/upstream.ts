/**
 * The gateway's own SSH connection to the target host, made with the brokered credential from
 * config. The target's host key must match the configured fingerprint; any other key is
 * refused before authentication, so a man in the middle never receives the credential.
 */
import { createHash } from 'node:crypto'
import ssh2, { type Client } from 'ssh2'
import type { UpstreamConfig } from './config.js'

/**
 * OpenSSH's fingerprint of a public key blob: `SHA256:` + unpadded base64 of its SHA-256 (32 bytes
 * are 44 base64 characters, the last one the single `=` of padding).
 */
export function fingerprint(keyBlob: Buffer): string {
  return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').slice(0, 43)}`
}

export class UpstreamError extends Error {
  constructor(
    message: string,
    readonly reason: 'host-key' | 'auth' | 'unreachable',
  ) {
    super(message)
  }
}

/** Connects and authenticates; rejects with an UpstreamError whose message holds no secret. */
export function connectUpstream(config: UpstreamConfig, signal: AbortSignal): Promise<Client> {
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client()
    let presented: string | undefined
    let settled = false
    const fail = (err: UpstreamError) => {
      if (settled) return
      settled = true
      client.end()
      reject(err)
    }
    const onAbort = () => fail(new UpstreamError('the session ended before the target was reached', 'unreachable'))
    signal.addEventListener('abort', onAbort, { once: true })
    client.once('ready', () => {
      settled = true
      client.setNoDelay(true)
      signal.removeEventListener('abort', onAbort)
      resolve(client)
    })
    client.on('error', (err: Error & { level?: string }) => {
      if (presented !== undefined && presented !== config.hostKey) {
        fail(new UpstreamError(`target host key ${presented} does not match the configured ${config.hostKey}`, 'host-key'))
      } else if (err.level === 'client-authentication') {
        fail(new UpstreamError(`the target refused the gateway's credential for ${config.user}`, 'auth'))
      } else {
        fail(new UpstreamError(`cannot reach ${config.host}:${config.port}: ${err.message}`, 'unreachable'))
      }
    })
    client.connect({
      host: config.host,
      port: config.port,
      username: config.user,
      ...(config.privateKey ? { privateKey: config.privateKey } : {}),
      ...(config.passphrase ? { passphrase: config.passphrase } : {}),
      ...(config.password ? { password: config.password } : {}),
      readyTimeout: config.readyTimeoutMs,
      keepaliveInterval: 15000,
      tryKeyboard: false,
      hostVerifier: (key: Buffer) => {
        presented = fingerprint(key)
        return presented === config.hostKey
      },
    })
  })
}
