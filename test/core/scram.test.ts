/**
 * core's SCRAM-SHA-256 (both halves), its verifier format, token hashes and the certificate hash
 * SCRAM channel binding uses, in process and against outside references: a verifier PostgreSQL
 * made, RFC 7677's example exchange, and OpenSSL's digest of real certificates.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { execFileSync } from 'node:child_process'
import { createHash, createHmac, pbkdf2Sync } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  deriveScramSecret,
  deriveScramSecretAsync,
  formatScramSecret,
  GatewayError,
  generateToken,
  hashToken,
  identitySalt,
  parseDuration,
  parseScramSecret,
  parseTokenHash,
  saslPrep,
  ScramClient,
  ScramServer,
  tlsServerEndPoint,
  verifyScramSecret,
  verifyScramSecretAsync,
  verifyToken,
  verifyTokenAsync,
} from '@gatehouse/core'

/** Made by PostgreSQL 15: `SET password_encryption = 'scram-sha-256'; CREATE ROLE … PASSWORD 'pencil'`. */
const PG_VERIFIER = 'SCRAM-SHA-256$4096:dfQxcwE08iLBGtQr+YMYWw==$B6JtmDXgLUINKbrL+d4AT95RkusfoLMcDFIPVF8YMlA=:5b5dKE/Bn57KHyCDBuiMr4+O+ERcBBEA9uWId45TQZ8='

const thrown = (fn: () => unknown): GatewayError => {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError)
    return err as GatewayError
  }
  throw new Error('expected a GatewayError')
}
const malformed = (detail: string) => ({ code: 'GH_ERR_PROTOCOL', message: `malformed SCRAM message: ${detail}` })

describe('verifiers: PostgreSQL text form', () => {
  it('reads a verifier PostgreSQL made, which proves the password it was made from, and writes it back the same', () => {
    const s = parseScramSecret(PG_VERIFIER)
    expect(s).toBeDefined()
    expect(s?.iterations).toBe(4096)
    expect(verifyScramSecret('pencil', s!)).toBe(true)
    expect(verifyScramSecret('pencil ', s!)).toBe(false)
    expect(formatScramSecret(s!)).toBe(PG_VERIFIER)
    expect(formatScramSecret(deriveScramSecret('pencil', s!.salt, 4096))).toBe(PG_VERIFIER)
  })

  it('refuses text around it, a zero iteration count, and keys that are not 32 bytes', () => {
    expect(parseScramSecret(` ${PG_VERIFIER}`)).toBeUndefined()
    expect(parseScramSecret(`x${PG_VERIFIER}`)).toBeUndefined()
    expect(parseScramSecret(`${PG_VERIFIER} `)).toBeUndefined()
    expect(parseScramSecret(`${PG_VERIFIER}x`)).toBeUndefined()
    expect(parseScramSecret(PG_VERIFIER.replace('$4096:', '$0:'))).toBeUndefined()
    expect(parseScramSecret(PG_VERIFIER.replace('$4096:', '$1:'))).toMatchObject({ iterations: 1 })
    expect(parseScramSecret(PG_VERIFIER.replace('$4096:', '$99999999999999999999:'))).toBeUndefined()
    const [head, keys] = [PG_VERIFIER.slice(0, PG_VERIFIER.lastIndexOf('$') + 1), PG_VERIFIER.slice(PG_VERIFIER.lastIndexOf('$') + 1)]
    const [stored, server] = keys.split(':') as [string, string]
    const short = Buffer.alloc(31).toString('base64')
    expect(parseScramSecret(`${head}${short}:${server}`)).toBeUndefined()
    expect(parseScramSecret(`${head}${stored}:${short}`)).toBeUndefined()
    expect(parseScramSecret(`${head}${stored}:${server}`)).toBeDefined()
  })

  it('derives off the event loop exactly what it derives on it', async () => {
    const salt = Buffer.from('0123456789abcdef')
    expect(await deriveScramSecretAsync('pencil', salt, 16)).toEqual(deriveScramSecret('pencil', salt, 16))
    expect(await deriveScramSecretAsync('pencil', salt)).toEqual(deriveScramSecret('pencil', salt, 4096))
    const s = parseScramSecret(PG_VERIFIER)!
    expect(await verifyScramSecretAsync('pencil', s)).toBe(true)
    expect(await verifyScramSecretAsync('pencil!', s)).toBe(false)
  })

  it('prepares passwords with NFKC (an ASCII token is itself)', () => {
    expect(saslPrep('ﬁ')).toBe('fi')
    const t = generateToken()
    expect(saslPrep(t)).toBe(t)
  })
})

describe('tokens', () => {
  it('hashes as a SCRAM verifier salted by the identity by default, or as sha256 hex; both verify, sync and async', async () => {
    const token = generateToken()
    expect(token).toMatch(/^gh_[A-Za-z0-9_-]{43}$/)
    const scram = hashToken(token, 'ci')
    expect(scram).toBe(hashToken(token, 'ci', 'scram-sha-256'))
    expect(scram.startsWith(`SCRAM-SHA-256$4096:${identitySalt('ci').toString('base64')}$`)).toBe(true)
    expect(hashToken(token, 'ci', 'sha256')).toBe(`sha256:${createHash('sha256').update(token).digest('hex')}`)
    expect(identitySalt('ci')).toEqual(createHash('sha256').update('gatehouse-token-salt:ci').digest().subarray(0, 16))
    for (const alg of ['scram-sha-256', 'sha256'] as const) {
      const parsed = parseTokenHash(hashToken(token, 'ci', alg))!
      expect(parsed.kind).toBe(alg === 'sha256' ? 'sha256' : 'scram')
      expect(verifyToken(token, parsed)).toBe(true)
      expect(verifyToken(`${token}x`, parsed)).toBe(false)
      expect(await verifyTokenAsync(token, parsed)).toBe(true)
      expect(await verifyTokenAsync(`${token}x`, parsed)).toBe(false)
    }
  })

  it('reads only whole hashes: 64 hex digits after sha256:, either case; a SCRAM verifier; nothing else', () => {
    const hex = 'ab'.repeat(32)
    expect(parseTokenHash(`sha256:${hex}`)).toEqual({ kind: 'sha256', digest: Buffer.from(hex, 'hex') })
    expect(parseTokenHash(`sha256:${hex.toUpperCase()}`)).toMatchObject({ kind: 'sha256' })
    expect(parseTokenHash(`sha256:${hex}0`)).toBeUndefined()
    expect(parseTokenHash(`xsha256:${hex}`)).toBeUndefined()
    expect(parseTokenHash(`sha256:${hex.slice(2)}`)).toBeUndefined()
    expect(parseTokenHash(PG_VERIFIER)).toMatchObject({ kind: 'scram' })
    expect(parseTokenHash('nope')).toBeUndefined()
  })

  it('parses durations in ms, s, m, h and d, with spaces around; refuses anything else naming it', () => {
    expect(parseDuration('250ms')).toBe(250)
    expect(parseDuration('90s')).toBe(90_000)
    expect(parseDuration('15m')).toBe(900_000)
    expect(parseDuration('12h')).toBe(43_200_000)
    expect(parseDuration('7d')).toBe(604_800_000)
    expect(parseDuration(' 2 h ')).toBe(7_200_000)
    expect(parseDuration('10 m')).toBe(600_000)
    for (const bad of ['', 'h', '1', '1w', '1.5h', '-1h', 'x1h', '1hx', 'ms']) expect(() => parseDuration(bad)).toThrow(`invalid duration "${bad}" (use e.g. 30m, 12h, 7d)`)
  })
})

/** RFC 7677 §3: user "user", password "pencil". Our client sends `n=*` (as PostgreSQL's libpq does), so only the server half replays it. */
describe('the server half against RFC 7677', () => {
  it('accepts the RFC’s client-final and answers with the RFC’s server-final', () => {
    const salt = Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64')
    const secret = { ...deriveScramSecret('pencil', salt, 4096), value: 'user' }
    const server = new ScramServer([secret], salt)
    const first = server.start('n,,n=user,r=rOprNGfwEbeRWgbNEkqO')
    expect(first).toMatch(/^r=rOprNGfwEbeRWgbNEkqO[A-Za-z0-9+/=]{24},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096$/)
    // the server nonce is random: recompute the RFC's proof over this exchange with the RFC's formulas
    const nonce = /r=([^,]+)/.exec(first)?.[1] as string
    const withoutProof = `c=biws,r=${nonce}`
    const authMessage = `n=user,r=rOprNGfwEbeRWgbNEkqO,${first},${withoutProof}`
    const salted = pbkdf2Sync('pencil', salt, 4096, 32, 'sha256')
    const clientKey = createHmac('sha256', salted).update('Client Key').digest()
    const signature = createHmac('sha256', createHash('sha256').update(clientKey).digest()).update(authMessage).digest()
    const proof = Buffer.from(clientKey.map((b, i) => b ^ (signature[i] as number)))
    const done = server.finish(`${withoutProof},p=${proof.toString('base64')}`)
    const serverKey = createHmac('sha256', salted).update('Server Key').digest()
    expect(done).toEqual({ value: 'user', serverFinal: `v=${createHmac('sha256', serverKey).update(authMessage).digest('base64')}` })
  })
})

describe('the server half refuses malformed and hostile messages', () => {
  const secret = (pw: string, value: string) => ({ ...deriveScramSecret(pw, Buffer.from('salt-salt-salt!!'), 16), value })
  const server = () => new ScramServer([secret('pencil', 'a')], Buffer.from('fallback-salt-16'))

  it('client-first: a GS2 header at the very start, an authzid of any length, a printable nonce without commas', () => {
    expect(thrown(() => server().start('garbage'))).toMatchObject(malformed('client-first'))
    expect(thrown(() => server().start('xn,,n=*,r=abc'))).toMatchObject(malformed('client-first'))
    expect(server().start('n,a=admin,n=*,r=abc')).toMatch(/^r=abc/)
    expect(server().start('y,,n=*,r=abc')).toMatch(/^r=abc/) // a client that could bind, to a server that offered nothing
    expect(thrown(() => server().start('n,,n=*'))).toMatchObject(malformed('nonce'))
    expect(thrown(() => server().start('n,,n=*,r='))).toMatchObject(malformed('nonce'))
    expect(thrown(() => server().start('n,,n=*,r=ab c'))).toMatchObject(malformed('nonce'))
    expect(thrown(() => server().start('n,,n=*,r=ab\u00e9'))).toMatchObject(malformed('nonce'))
    // attributes are one letter: a longer name does not stand in for r
    expect(server().start('n,,n=*,r=abc,rr=zzz')).toMatch(/^r=abc[^,]/)
    expect(server().start('n,,n=*,r=abc,x,r2=q')).toMatch(/^r=abc[^,]/)
    // the salt and count the server names are the first candidate's, or the fallback's for no candidate
    expect(server().start('n,,n=*,r=abc')).toContain(`,s=${Buffer.from('salt-salt-salt!!').toString('base64')},i=16`)
    expect(new ScramServer([], Buffer.from('fallback-salt-16')).start('n,,n=*,r=abc')).toContain(`,s=${Buffer.from('fallback-salt-16').toString('base64')},i=4096`)
  })

  it('channel binding: names what it needs and what it does not support', () => {
    expect(thrown(() => server().start('p=tls-server-end-point,,n=*,r=abc'))).toMatchObject({ code: 'GH_ERR_AUTH_UNSUPPORTED', message: 'SCRAM channel binding needs SCRAM-SHA-256-PLUS over TLS; use channel_binding=disable or prefer on a plaintext connection' })
    const plus = () => new ScramServer([], Buffer.from('x'), { data: Buffer.from('cb'), plus: true })
    expect(thrown(() => plus().start('p=tls-unique,,n=*,r=abc'))).toMatchObject({ code: 'GH_ERR_AUTH_UNSUPPORTED', message: 'SCRAM channel binding type tls-unique is not supported (tls-server-end-point is)' })
    expect(thrown(() => plus().start('n,,n=*,r=abc'))).toMatchObject(malformed('channel binding flag: SCRAM-SHA-256-PLUS needs p=tls-server-end-point'))
  })

  it('client-final: before client-first, without a proof, with the wrong nonce or binding, a proof that is not 32 bytes', () => {
    const proof = Buffer.alloc(32).toString('base64')
    expect(thrown(() => server().finish(`c=biws,r=,p=${proof}`))).toMatchObject(malformed('client-final before client-first'))
    const s = server()
    const nonce = /r=([^,]+)/.exec(s.start('n,,n=*,r=abc'))?.[1] as string
    expect(thrown(() => s.finish(`c=biws,r=${nonce}`))).toMatchObject(malformed('client-final'))
    expect(thrown(() => s.finish(`,p=${proof}`))).toMatchObject(malformed('nonce mismatch'))
    expect(thrown(() => s.finish(`c=biws,r=${nonce}x,p=${proof}`))).toMatchObject(malformed('nonce mismatch'))
    expect(thrown(() => s.finish(`c=eSws,r=${nonce},p=${proof}`))).toMatchObject(malformed('channel binding data'))
    expect(thrown(() => s.finish(`c=biws,r=${nonce},p=${Buffer.alloc(31).toString('base64')}`))).toMatchObject(malformed('proof length'))
    expect(s.finish(`c=biws,r=${nonce},p=${proof}`)).toBeUndefined()
  })

  it('of two candidates that both match (one token listed twice), the first one configured wins', () => {
    const client = new ScramClient('pencil')
    const s = new ScramServer([secret('pencil', 'first'), secret('pencil', 'second')], Buffer.from('x'))
    expect(s.finish(client.final(s.start(client.first())))?.value).toBe('first')
  })
})

describe('the client half (the gateway logging in to an upstream) refuses an upstream that does not play by the rules', () => {
  const serverFor = (pw: string) => new ScramServer([{ ...deriveScramSecret(pw, Buffer.from('s'.repeat(16)), 16), value: 'v' }], Buffer.from('x'))
  const nonceOf = (first: string) => /r=([^,]+)/.exec(first)?.[1] as string

  it('logs in, proves it, and checks the server proved it too, once', async () => {
    const client = new ScramClient('pencil')
    const s = serverFor('pencil')
    const first = client.first()
    expect(first).toMatch(/^n,,n=\*,r=[A-Za-z0-9+/]{24}$/)
    const done = s.finish(await client.finalAsync(s.start(first)))
    expect(done?.value).toBe('v')
    expect(client.verified).toBe(false)
    client.verify(done!.serverFinal)
    expect(client.verified).toBe(true)
    expect(thrown(() => client.verify(done!.serverFinal))).toMatchObject(malformed('server-final'))
  })

  it('a server-first before our client-first is a protocol error (nothing to prove against)', () => {
    const client = new ScramClient('pencil')
    expect(thrown(() => client.final(`r=x,s=${Buffer.from('salt').toString('base64')},i=1`))).toMatchObject(malformed('server-first-message before client-first-message'))
  })

  it('a server-first whose nonce does not extend ours, or only repeats it; a missing salt; an iteration count out of range; a second server-first', () => {
    const client = new ScramClient('pencil')
    const ours = nonceOf(client.first())
    const salt = Buffer.from('salt').toString('base64')
    expect(thrown(() => client.final(`s=${salt},i=16`))).toMatchObject(malformed('server nonce'))
    expect(thrown(() => client.final(`r=X${ours}Y,s=${salt},i=16`))).toMatchObject(malformed('server nonce'))
    expect(thrown(() => client.final(`r=${ours},s=${salt},i=16`))).toMatchObject(malformed('server nonce'))
    for (const bad of [`r=${ours}Y,i=16`, `r=${ours}Y,s=${salt},i=0`, `r=${ours}Y,s=${salt},i=-1`, `r=${ours}Y,s=${salt},i=abc`, `r=${ours}Y,s=${salt},i=10000001`, `r=${ours}Y,s=${salt}`]) {
      expect(thrown(() => client.final(bad))).toMatchObject(malformed('server salt or iterations'))
    }
    expect(client.final(`r=${ours}Y,s=${salt},i=1`)).toMatch(new RegExp(`^c=biws,r=${ours.replace(/[+/]/g, '\\$&')}Y,p=`))
    expect(thrown(() => client.final(`r=${ours}Y,s=${salt},i=1`))).toMatchObject(malformed('a second server-first-message'))
  })

  it('a server-final before client-final, without v=, with a signature of the wrong length or value', async () => {
    expect(thrown(() => new ScramClient('pencil').verify(`v=${Buffer.alloc(32).toString('base64')}`))).toMatchObject(malformed('server-final'))
    const client = new ScramClient('pencil')
    const s = serverFor('pencil')
    s.finish(client.final(s.start(client.first())))
    expect(thrown(() => client.verify('e=other-error'))).toMatchObject(malformed('server-final'))
    expect(thrown(() => client.verify(`v=${Buffer.alloc(31).toString('base64')}`))).toMatchObject({ code: 'GH_ERR_UPSTREAM_AUTH', message: 'upstream SCRAM server signature mismatch' })
    expect(thrown(() => client.verify(`v=${Buffer.alloc(32).toString('base64')}`))).toMatchObject({ code: 'GH_ERR_UPSTREAM_AUTH', message: 'upstream SCRAM server signature mismatch' })
    expect(client.verified).toBe(false)
  })
})

describe('tls-server-end-point: the hash of the certificate SCRAM-SHA-256-PLUS binds to', () => {
  let dir: string
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'gatehouse-cb-'))
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  /** A self-signed certificate (DER) made by OpenSSL, and OpenSSL's own digest of it with `hash`. */
  function cert(name: string, keyArgs: string[], sign: string[]): Buffer {
    const key = join(dir, `${name}.key`)
    const der = join(dir, `${name}.der`)
    execFileSync('openssl', ['req', '-x509', ...keyArgs, '-nodes', '-keyout', key, '-outform', 'DER', '-out', der, '-days', '1', '-subj', `/CN=${name}`, ...sign], { stdio: 'ignore' })
    return readFileSync(der)
  }
  const digest = (der: Buffer, hash: string) => createHash(hash).update(der).digest()

  it.each([
    ['rsa-sha256', ['-newkey', 'rsa:2048'], ['-sha256'], 'sha256'],
    ['rsa-sha384', ['-newkey', 'rsa:2048'], ['-sha384'], 'sha384'],
    ['rsa-sha512', ['-newkey', 'rsa:2048'], ['-sha512'], 'sha512'],
    ['rsa-sha224', ['-newkey', 'rsa:2048'], ['-sha224'], 'sha224'],
    ['rsa-sha1', ['-newkey', 'rsa:2048'], ['-sha1'], 'sha256'], // RFC 5929: SHA-1 is replaced by SHA-256
    ['ecdsa-sha256', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], ['-sha256'], 'sha256'],
    ['ecdsa-sha384', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'], ['-sha384'], 'sha384'],
    ['ecdsa-sha512', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'], ['-sha512'], 'sha512'],
  ])('%s: hashed with %s', (name, keyArgs, sign, hash) => {
    const der = cert(name, keyArgs, sign)
    expect(tlsServerEndPoint(der)).toEqual(digest(der, hash))
  })

  it('none for Ed25519 (no single hash), as PostgreSQL', () => {
    expect(tlsServerEndPoint(cert('ed25519', ['-newkey', 'ed25519'], []))).toBeUndefined()
  })

  /** DER TLV with the length in the form asked: short (< 128), or long with `bytes` length bytes. */
  const tlv = (tag: number, content: Buffer, bytes = 0): Buffer => {
    if (bytes === 0) return Buffer.concat([Buffer.from([tag, content.length]), content])
    const len = Buffer.alloc(bytes)
    len.writeUIntBE(content.length, 0, bytes)
    return Buffer.concat([Buffer.from([tag, 0x80 | bytes]), len, content])
  }
  const SHA384_RSA = Buffer.from('2a864886f70d01010c', 'hex')
  /** SEQUENCE { tbs SEQUENCE, SEQUENCE { OID } } with the lengths in the forms given. */
  const shaped = (o: { certLen?: number; tbsLen?: number; algLen?: number; oidLen?: number; tbs?: Buffer; oid?: Buffer } = {}) =>
    tlv(0x30, Buffer.concat([tlv(0x30, o.tbs ?? Buffer.from([2, 1, 0]), o.tbsLen), tlv(0x30, tlv(0x06, o.oid ?? SHA384_RSA, o.oidLen), o.algLen)]), o.certLen)

  it('reads DER lengths in every form: short, and long with 1 to 4 length bytes, anywhere in the path to the algorithm', () => {
    for (const form of [0, 1, 2, 3, 4]) {
      for (const part of ['certLen', 'tbsLen', 'algLen', 'oidLen'] as const) {
        const der = shaped({ [part]: form })
        expect(tlsServerEndPoint(der), `${part} in form ${form}`).toEqual(digest(der, 'sha384'))
      }
    }
    // a tbsCertificate of 127 and of 128 bytes: the last short length and the first long one
    for (const size of [125, 126, 200, 300, 70000]) {
      const der = shaped({ tbs: Buffer.alloc(size, 1), tbsLen: size < 128 ? 0 : size < 256 ? 1 : size < 65536 ? 2 : 3, certLen: 3 })
      expect(tlsServerEndPoint(der), `tbs of ${size}`).toEqual(digest(der, 'sha384'))
    }
  })

  it('gives none, and never throws, for what is not a certificate: truncated, indefinite or oversized lengths, no OID, an unknown algorithm', () => {
    const good = shaped()
    for (let cut = 0; cut < good.length; cut++) expect(tlsServerEndPoint(good.subarray(0, cut)), `cut at ${cut}`).toBeUndefined()
    expect(tlsServerEndPoint(Buffer.concat([good, Buffer.from([0])]))).toEqual(digest(Buffer.concat([good, Buffer.from([0])]), 'sha384'))
    // 0x80: the indefinite form, which DER forbids; 0x85: five length bytes
    expect(tlsServerEndPoint(Buffer.from([0x30, 0x80, ...good.subarray(2)]))).toBeUndefined()
    expect(tlsServerEndPoint(Buffer.from([0x30, 0x85, 0, 0, 0, 0, good.length - 2, ...good.subarray(2)]))).toBeUndefined()
    // the algorithm's first element is not an OID
    const notOid = tlv(0x30, Buffer.concat([tlv(0x30, Buffer.from([2, 1, 0])), tlv(0x30, tlv(0x04, SHA384_RSA))]))
    expect(tlsServerEndPoint(notOid)).toBeUndefined()
    // an OID no hash is known for, and one that runs past the end
    expect(tlsServerEndPoint(shaped({ oid: Buffer.from('2a864886f70d010101', 'hex') }))).toBeUndefined()
    const past = Buffer.from(shaped())
    past[past.length - SHA384_RSA.length - 1] = 0x7f
    expect(tlsServerEndPoint(past)).toBeUndefined()
  })
})
