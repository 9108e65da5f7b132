/**
 * SCRAM-SHA-256 (RFC 5802, RFC 7677) for both sides of the gateway:
 * - server side, so a client proves it holds a gateway token without sending it;
 * - client side, so the gateway logs in to an upstream without the upstream password crossing the wire.
 * Channel binding is not offered (the gateway terminates TLS itself, so `tls-server-end-point`
 * would bind to the gateway's certificate, which is what the client sees anyway; clients that
 * insist on channel binding are refused with a clear message).
 */
import { createHash, createHmac, pbkdf2, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto'
import { GatewayError } from '../errors.js'

export const SCRAM_MECHANISM = 'SCRAM-SHA-256'
export const DEFAULT_ITERATIONS = 4096

const hmac = (key: Buffer, data: string | Buffer): Buffer => createHmac('sha256', key).update(data).digest()
const sha256 = (data: Buffer): Buffer => createHash('sha256').update(data).digest()

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length)
  for (let i = 0; i < a.length; i++) out[i] = (a[i] as number) ^ (b[i] as number)
  return out
}

/** RFC 4013 SASLprep, approximated by NFKC; gateway tokens are ASCII, where it is the identity. */
export function saslPrep(password: string): string {
  return password.normalize('NFKC')
}

export interface ScramSecret {
  readonly iterations: number
  readonly salt: Buffer
  readonly storedKey: Buffer
  readonly serverKey: Buffer
}

/** The verifier from SaltedPassword (RFC 5802 §3). */
const secretOf = (salted: Buffer, salt: Buffer, iterations: number): ScramSecret => ({ iterations, salt, storedKey: sha256(hmac(salted, 'Client Key')), serverKey: hmac(salted, 'Server Key') })

export function deriveScramSecret(password: string, salt: Buffer, iterations = DEFAULT_ITERATIONS): ScramSecret {
  return secretOf(pbkdf2Sync(saslPrep(password), salt, iterations, 32, 'sha256'), salt, iterations)
}

/** PostgreSQL's verifier text form: `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>` (base64). */
export function formatScramSecret(s: ScramSecret): string {
  return `${SCRAM_MECHANISM}$${s.iterations}:${s.salt.toString('base64')}$${s.storedKey.toString('base64')}:${s.serverKey.toString('base64')}`
}

export function parseScramSecret(text: string): ScramSecret | undefined {
  // Canonical base64 only (a decoder would skip what follows the padding): 32-byte keys are 44 characters.
  const m = /^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]{43}=):([A-Za-z0-9+/]{43}=)$/i.exec(text)
  if (!m) return undefined
  const iterations = Number(m[1])
  const storedKey = Buffer.from(m[3] as string, 'base64')
  const serverKey = Buffer.from(m[4] as string, 'base64')
  if (!Number.isSafeInteger(iterations) || iterations < 1 || storedKey.length !== 32 || serverKey.length !== 32) return undefined
  return { iterations, salt: Buffer.from(m[2] as string, 'base64'), storedKey, serverKey }
}

/**
 * `deriveScramSecret` on libuv's thread pool: PBKDF2 of 4,096 rounds takes a few milliseconds
 * of CPU, and a flood of wrong passwords on the event loop would hold up every session.
 */
export function deriveScramSecretAsync(password: string, salt: Buffer, iterations = DEFAULT_ITERATIONS): Promise<ScramSecret> {
  return new Promise((resolve, reject) =>
    pbkdf2(saslPrep(password), salt, iterations, 32, 'sha256', (err, salted) => (err ? reject(err) : resolve(secretOf(salted, salt, iterations)))),
  )
}

/** Constant-time check of a cleartext secret against a verifier. */
export function verifyScramSecret(password: string, secret: ScramSecret): boolean {
  const derived = deriveScramSecret(password, secret.salt, secret.iterations)
  return timingSafeEqual(derived.storedKey, secret.storedKey)
}

/** `verifyScramSecret` off the event loop. */
export async function verifyScramSecretAsync(password: string, secret: ScramSecret): Promise<boolean> {
  const derived = await deriveScramSecretAsync(password, secret.salt, secret.iterations)
  return timingSafeEqual(derived.storedKey, secret.storedKey)
}

function attrs(message: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const part of message.split(',')) {
    const eq = part.indexOf('=')
    if (eq === 1) out.set(part[0] as string, part.slice(2))
  }
  return out
}

function protocolError(detail: string): GatewayError {
  return new GatewayError('GH_ERR_PROTOCOL', `malformed SCRAM message: ${detail}`)
}

/**
 * The server half of one SCRAM exchange. `candidates` share salt and iteration count; the proof
 * is checked against each (several tokens of one identity during a rotation).
 */
export class ScramServer<T> {
  private clientFirstBare = ''
  private serverFirst = ''
  private gs2Header = ''
  private nonce = ''
  private readonly salt: Buffer
  private readonly iterations: number

  private channelData: Buffer = Buffer.alloc(0)

  /**
   * @param channelBinding the `tls-server-end-point` data of the connection (RFC 5929), when the
   * client connected over TLS and the mechanism offered was SCRAM-SHA-256-PLUS; `plus` says
   * whether the client chose that mechanism.
   */
  constructor(
    private readonly candidates: readonly (ScramSecret & { readonly value: T })[],
    fallbackSalt: Buffer,
    private readonly channelBinding?: { readonly data: Buffer; readonly plus: boolean },
  ) {
    this.salt = candidates[0]?.salt ?? fallbackSalt
    this.iterations = candidates[0]?.iterations ?? DEFAULT_ITERATIONS
  }

  /** Takes client-first-message, returns server-first-message. */
  start(clientFirst: string): string {
    const m = /^([ny]|p=[^,]*),(a=[^,]*)?,(.*)$/s.exec(clientFirst)
    if (!m) throw protocolError('client-first')
    const flag = m[1] as string
    const cb = this.channelBinding
    if (flag.startsWith('p=')) {
      if (!cb?.plus) throw new GatewayError('GH_ERR_AUTH_UNSUPPORTED', 'SCRAM channel binding needs SCRAM-SHA-256-PLUS over TLS; use channel_binding=disable or prefer on a plaintext connection')
      if (flag !== 'p=tls-server-end-point') throw new GatewayError('GH_ERR_AUTH_UNSUPPORTED', `SCRAM channel binding type ${flag.slice(2)} is not supported (tls-server-end-point is)`)
      this.channelData = cb.data
    } else if (cb?.plus) {
      throw protocolError('channel binding flag: SCRAM-SHA-256-PLUS needs p=tls-server-end-point')
    } else if (flag === 'y' && cb) {
      // The client can bind but believes the server cannot, while this server offered to: a downgrade (RFC 5802 §6).
      throw protocolError('channel binding downgrade: the server supports channel binding')
    }
    this.gs2Header = `${flag},${m[2] ?? ''},`
    this.clientFirstBare = m[3] as string
    const clientNonce = attrs(this.clientFirstBare).get('r')
    if (!clientNonce || /[^\x21-\x2b\x2d-\x7e]/.test(clientNonce)) throw protocolError('nonce')
    this.nonce = clientNonce + randomBytes(18).toString('base64')
    this.serverFirst = `r=${this.nonce},s=${this.salt.toString('base64')},i=${this.iterations}`
    return this.serverFirst
  }

  /** Takes client-final-message; returns the matched candidate and server-final-message, or undefined. */
  finish(clientFinal: string): { value: T; serverFinal: string } | undefined {
    // Before start() every expected value is empty: an empty nonce and binding would match.
    if (this.serverFirst === '') throw protocolError('client-final before client-first')
    const pIdx = clientFinal.lastIndexOf(',p=')
    if (pIdx < 0) throw protocolError('client-final')
    const withoutProof = clientFinal.slice(0, pIdx)
    const a = attrs(withoutProof)
    if (a.get('r') !== this.nonce) throw protocolError('nonce mismatch')
    if (a.get('c') !== Buffer.concat([Buffer.from(this.gs2Header), this.channelData]).toString('base64')) throw protocolError('channel binding data')
    const proof = Buffer.from(clientFinal.slice(pIdx + 3), 'base64')
    if (proof.length !== 32) throw protocolError('proof length')
    const authMessage = `${this.clientFirstBare},${this.serverFirst},${withoutProof}`
    let matched: (ScramSecret & { value: T }) | undefined
    for (const c of this.candidates) {
      const clientKey = xor(proof, hmac(c.storedKey, authMessage))
      // Check every candidate, so timing does not reveal which one matched.
      if (timingSafeEqual(sha256(clientKey), c.storedKey) && matched === undefined) matched = c
    }
    if (!matched) return undefined
    return { value: matched.value, serverFinal: `v=${hmac(matched.serverKey, authMessage).toString('base64')}` }
  }
}

/** The client half, used by adapters to log in to upstreams. */
export class ScramClient {
  private readonly clientNonce = randomBytes(18).toString('base64')
  private clientFirstBare = ''
  private expectedServerSignature: Buffer | undefined
  private serverVerified = false

  /** @param user the name in client-first-message: `*` for PostgreSQL (which takes it from the startup packet); MongoDB reads it from here. */
  constructor(
    private readonly password: string,
    private readonly user = '*',
  ) {}

  /** client-first-message (no channel binding, empty authzid). */
  first(): string {
    this.clientFirstBare = `n=${this.user.replace(/=/g, '=3D').replace(/,/g, '=2C')},r=${this.clientNonce}`
    return `n,,${this.clientFirstBare}`
  }

  /** Takes server-first-message, returns client-final-message (the key derivation on the event loop: for tests and tools). */
  final(serverFirst: string): string {
    const first = this.parseServerFirst(serverFirst)
    return this.finish(serverFirst, first.nonce, pbkdf2Sync(saslPrep(this.password), first.salt, first.iterations, 32, 'sha256'))
  }

  /**
   * `final` with the key derivation off the event loop. The server chooses the iteration count: an
   * upstream (or an impostor in its place) asking for millions must not stall every session.
   */
  async finalAsync(serverFirst: string): Promise<string> {
    const first = this.parseServerFirst(serverFirst)
    const salted = await new Promise<Buffer>((resolve, reject) => pbkdf2(saslPrep(this.password), first.salt, first.iterations, 32, 'sha256', (err, key) => (err ? reject(err) : resolve(key))))
    return this.finish(serverFirst, first.nonce, salted)
  }

  private parseServerFirst(serverFirst: string): { nonce: string; salt: Buffer; iterations: number } {
    if (this.clientFirstBare === '') throw protocolError('server-first-message before client-first-message')
    if (this.expectedServerSignature !== undefined) throw protocolError('a second server-first-message')
    const a = attrs(serverFirst)
    const nonce = a.get('r')
    const salt = a.get('s')
    const iterations = Number(a.get('i'))
    if (!nonce || !nonce.startsWith(this.clientNonce) || nonce.length === this.clientNonce.length) throw protocolError('server nonce')
    if (!salt || !Number.isSafeInteger(iterations) || iterations < 1 || iterations > 10_000_000) throw protocolError('server salt or iterations')
    return { nonce, salt: Buffer.from(salt, 'base64'), iterations }
  }

  private finish(serverFirst: string, nonce: string, salted: Buffer): string {
    const clientKey = hmac(salted, 'Client Key')
    const withoutProof = `c=biws,r=${nonce}`
    const authMessage = `${this.clientFirstBare},${serverFirst},${withoutProof}`
    const proof = xor(clientKey, hmac(sha256(clientKey), authMessage))
    this.expectedServerSignature = hmac(hmac(salted, 'Server Key'), authMessage)
    return `${withoutProof},p=${proof.toString('base64')}`
  }

  /** Checks server-final-message; a server that cannot prove it knows the secret is refused. */
  verify(serverFinal: string): void {
    const v = attrs(serverFinal).get('v')
    if (!v || !this.expectedServerSignature || this.serverVerified) throw protocolError('server-final')
    const got = Buffer.from(v, 'base64')
    if (got.length !== 32 || !timingSafeEqual(got, this.expectedServerSignature)) throw new GatewayError('GH_ERR_UPSTREAM_AUTH', 'upstream SCRAM server signature mismatch')
    this.serverVerified = true
  }

  /** Whether the server proved it knows the secret (a valid server-final-message was checked). */
  get verified(): boolean {
    return this.serverVerified
  }
}

/**
 * The `tls-server-end-point` channel binding data of a certificate (RFC 5929 §4.1): its DER
 * encoding hashed with the hash of its signature algorithm, SHA-256 when that is MD5 or SHA-1.
 * Undefined for signature algorithms with no single hash (Ed25519, RSASSA-PSS): PostgreSQL offers
 * no channel binding then either.
 */
export function tlsServerEndPoint(certDer: Buffer): Buffer | undefined {
  const hash = signatureHash(certDer)
  return hash === undefined ? undefined : createHash(hash).update(certDer).digest()
}

/** OIDs of certificate signature algorithms, DER-encoded, and the hash tls-server-end-point uses for each. */
const SIGNATURE_HASHES: ReadonlyMap<string, string> = new Map([
  ['2a864886f70d010104', 'sha256'], // md5WithRSAEncryption
  ['2a864886f70d010105', 'sha256'], // sha1WithRSAEncryption
  ['2a864886f70d01010b', 'sha256'],
  ['2a864886f70d01010c', 'sha384'],
  ['2a864886f70d01010d', 'sha512'],
  ['2a864886f70d01010e', 'sha224'],
  ['2a8648ce3d040301', 'sha256'], // ecdsa-with-SHA1
  ['2a8648ce3d040302', 'sha256'],
  ['2a8648ce3d040303', 'sha384'],
  ['2a8648ce3d040304', 'sha512'],
])

/** The signature algorithm of a DER certificate: SEQUENCE { tbsCertificate, SEQUENCE { OID … }, … }. */
function signatureHash(der: Buffer): string | undefined {
  const header = (at: number): { content: number; end: number } | undefined => {
    if (at + 2 > der.length) return undefined
    const first = der[at + 1] as number
    if (first < 0x80) return { content: at + 2, end: at + 2 + first }
    const n = first & 0x7f
    if (n < 1 || n > 4 || at + 2 + n > der.length) return undefined
    let len = 0
    for (let i = 0; i < n; i++) len = len * 256 + (der[at + 2 + i] as number)
    return { content: at + 2 + n, end: at + 2 + n + len }
  }
  const cert = header(0)
  const tbs = cert && header(cert.content)
  const alg = tbs && header(tbs.end)
  const oid = alg && der[alg.content] === 0x06 ? header(alg.content) : undefined
  if (!oid || oid.end > der.length) return undefined
  return SIGNATURE_HASHES.get(der.subarray(oid.content, oid.end).toString('hex'))
}
