/**
 * auth-jwt end to end: psql over TLS presents a workload JWT as its password (clientAuth:
 * cleartext) to a gateway that verifies it against a JWKS served over HTTP on loopback (and, in
 * one case, read from a file). Accepted: a token from the issuer for the audience, its claims on
 * the principal and in the audit; the session ends when the JWT expires. Refused, as
 * "authentication failed" or "token expired" and never a reason the caller could learn from: an
 * expired token, an unknown key, a wrong audience or issuer, a token for another user name, an
 * HMAC or unsigned token, a token without `exp`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { execFileSync } from 'node:child_process'
import { createServer, type Server } from 'node:http'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose'
import { startPgCluster, type PgCluster } from '../../fixtures/pg-cluster.js'
import { pgUpstream, startGateway, type TestGateway } from '../../fixtures/gateway.js'
import { psql } from '../../fixtures/clients.js'

let cluster: PgCluster
let dir: string
let tls: { cert: string; key: string; caFile: string }
let jwks: Server
let jwksUrl: string
let fetches = 0
let signing: CryptoKey
let stranger: CryptoKey
let publicJwk: JWK
let gw: TestGateway

const ISSUER = 'https://ci.example.test'
const AUDIENCE = 'gatehouse'

beforeAll(async () => {
  cluster = await startPgCluster()
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-jwt-'))
  const key = join(dir, 'gw.key')
  const cert = join(dir, 'gw.crt')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' })
  tls = { cert: readFileSync(cert, 'utf8'), key: readFileSync(key, 'utf8'), caFile: cert }
  const pair = await generateKeyPair('ES256', { extractable: true })
  signing = pair.privateKey
  publicJwk = { ...(await exportJWK(pair.publicKey)), kid: 'ci-1', alg: 'ES256', use: 'sig' }
  stranger = (await generateKeyPair('ES256')).privateKey
  jwks = createServer((_req, res) => {
    fetches++
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [publicJwk] }))
  })
  await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r))
  jwksUrl = `http://127.0.0.1:${(jwks.address() as { port: number }).port}/jwks.json`
  gw = await gatewayWith({ jwksUrl })
}, 60_000)

afterAll(async () => {
  await gw?.stop()
  jwks?.close()
  await cluster?.stop()
  rmSync(dir, { recursive: true, force: true })
})

function gatewayWith(source: { jwksUrl: string } | { jwksFile: string }): Promise<TestGateway> {
  return startGateway({
    upstream: pgUpstream(cluster),
    connection: { tls: { cert: tls.cert, key: tls.key, required: true }, options: { clientAuth: 'cleartext' }, plugins: { authenticate: ['auth-jwt'], decide: ['policy'], record: ['audit-jsonl'] } },
    extraPlugins: [{ use: 'auth-jwt', config: { issuer: ISSUER, audience: AUDIENCE, ...source, principal: { groupsClaim: 'groups', groups: ['ci'], claims: ['repository'] } } }],
    policies: [{ id: 'ci', principals: { groups: ['agents'] }, rules: [{ id: 'reads', effect: 'allow', match: { 'sql.statement': ['SELECT'] } }] }],
  })
}

interface Claims {
  sub?: string
  iss?: string
  aud?: string
  exp?: number | null
  groups?: unknown
  [k: string]: unknown
}

async function jwt(claims: Claims = {}, key: CryptoKey = signing, kid = 'ci-1'): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  const { exp, iss, aud, sub, ...rest } = claims
  const builder = new SignJWT({ groups: ['agents'], repository: 'acme/orders', ...rest })
    .setProtectedHeader({ alg: 'ES256', kid })
    .setIssuer(iss ?? ISSUER)
    .setAudience(aud ?? AUDIENCE)
    .setSubject(sub ?? 'repo-acme-orders')
    .setIssuedAt(now)
    .setJti(`run-${Math.random().toString(36).slice(2)}`)
  if (exp !== null) builder.setExpirationTime(exp ?? now + 600)
  return builder.sign(key)
}

const login = (password: string, user = 'repo-acme-orders', sql = 'SELECT 40 + 2;\n') => psql({ port: gw.port, user, password, sslmode: 'verify-full' }, sql, [], { PGSSLROOTCERT: tls.caFile })

describe('auth-jwt', () => {
  it('accepts a token from the issuer for the audience: the principal is its subject, with groups and claims from it, in the audit', async () => {
    const token = await jwt()
    const r = await login(token)
    expect(r.stdout.trim(), r.stderr).toBe('42')
    const events = await gw.audit()
    const start = events.find((e) => e.type === 'session.start') as unknown as { principal: { id: string; groups: string[]; credential: string } }
    expect(start.principal.id).toBe('repo-acme-orders')
    expect(start.principal.groups).toEqual(expect.arrayContaining(['ci', 'agents']))
    expect(start.principal.credential).toMatch(/^jwt:https:\/\/ci\.example\.test#run-/)
    // the token itself is in no event
    expect(JSON.stringify(events)).not.toContain(token)
    expect(fetches).toBeGreaterThan(0)
  })

  it('refuses, with nothing the caller could learn from: an unknown key, a wrong audience or issuer, another user name, no exp, HMAC and unsigned tokens', async () => {
    const now = Math.floor(Date.now() / 1000)
    const hmac = await new SignJWT({ groups: ['agents'] }).setProtectedHeader({ alg: 'HS256', kid: 'ci-1' }).setIssuer(ISSUER).setAudience(AUDIENCE).setSubject('repo-acme-orders').setExpirationTime(now + 600).sign(new TextEncoder().encode('a-secret-anyone-could-guess-0123'))
    const [header, payload] = (await jwt()).split('.')
    const unsigned = `${Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url')}.${payload}.`
    const cases: [string, string, string?][] = [
      ['signed by a key not in the JWKS', await jwt({}, stranger)],
      ['an unknown kid', await jwt({}, stranger, 'other-kid')],
      ['another audience', await jwt({ aud: 'someone-else' })],
      ['another issuer', await jwt({ iss: 'https://evil.example.test' })],
      ['another user name than its subject', await jwt(), 'repo-other'],
      ['no exp', await jwt({ exp: null })],
      ['HS256', hmac],
      ['alg none (no signature part)', unsigned],
      ['a tampered payload', `${header}.${Buffer.from(JSON.stringify({ sub: 'repo-acme-orders', iss: ISSUER, aud: AUDIENCE, exp: now + 600, groups: ['admins'] })).toString('base64url')}.${(await jwt()).split('.')[2]}`],
    ]
    for (const [what, token, user] of cases) {
      const r = await login(token, user)
      expect(r.code, what).not.toBe(0)
      expect(r.stderr, what).toMatch(/authentication failed/)
      expect(r.stderr, what).not.toMatch(/audience|issuer|kid|signature|algorithm/i)
    }
  })

  it('an expired token is "token expired"; a session ends when its token expires', async () => {
    const now = Math.floor(Date.now() / 1000)
    const expired = await jwt({ exp: now - 120 })
    const r = await login(expired)
    expect(r.code).not.toBe(0)
    expect(r.stderr).toMatch(/token expired/)

    const short = await jwt({ exp: now + 3 })
    const client = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'repo-acme-orders', password: short, database: 'app', ssl: { ca: tls.cert } })
    const ended = new Promise<Error>((resolve) => client.on('error', resolve))
    await client.connect()
    expect((await client.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }])
    const err = await ended
    expect(err.message).toMatch(/expired|no longer valid|session ended/)
    await client.end().catch(() => undefined)
  }, 20_000)

  it('reads a JWKS from a file too', async () => {
    const file = join(dir, 'jwks.json')
    writeFileSync(file, JSON.stringify({ keys: [publicJwk] }))
    const other = await gatewayWith({ jwksFile: file })
    try {
      const r = await psql({ port: other.port, user: 'repo-acme-orders', password: await jwt(), sslmode: 'verify-full' }, 'SELECT 5;\n', [], { PGSSLROOTCERT: tls.caFile })
      expect(r.stdout.trim(), r.stderr).toBe('5')
      const refused = await psql({ port: other.port, user: 'repo-acme-orders', password: await jwt({}, stranger), sslmode: 'verify-full' }, 'SELECT 5;\n', [], { PGSSLROOTCERT: tls.caFile })
      expect(refused.stderr).toMatch(/authentication failed/)
    } finally {
      await other.stop()
    }
  })

  it('proves callers of the admin API too (admin.authenticate): roles by group, 403 without one, 401 for a token it refuses', async () => {
    const file = join(dir, 'admin-jwks.json')
    writeFileSync(file, JSON.stringify({ keys: [publicJwk] }))
    const admin = await startGateway({
      upstream: pgUpstream(cluster),
      extraPlugins: [{ use: 'auth-jwt', name: 'admin-jwt', config: { issuer: ISSUER, audience: AUDIENCE, jwksFile: file, principal: { groupsClaim: 'groups' } } }],
      admin: { listen: '127.0.0.1:0', authenticate: ['admin-jwt'], roles: { approver: ['reviewers'], auditor: ['ops'] } },
    })
    try {
      const base = `http://127.0.0.1:${admin.gateway.adminPort}`
      const call = async (method: string, path: string, token: string) => (await fetch(`${base}${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, ...(method === 'POST' ? { body: '{}' } : {}) })).status
      const ops = await jwt({ sub: 'olga', groups: ['ops'] })
      const reviewer = await jwt({ sub: 'rita', groups: ['reviewers'] })
      expect(await call('GET', '/reviews', ops)).toBe(200)
      expect(await call('POST', '/reviews/rev_nope/approve', ops)).toBe(403)
      // authorised to vote: the review just does not exist
      expect(await call('POST', '/reviews/rev_nope/approve', reviewer)).toBe(404)
      expect(await call('POST', '/tokens', reviewer)).toBe(403)
      expect(await call('GET', '/reviews', await jwt({ sub: 'nina', groups: ['nobody'] }))).toBe(403)
      expect(await call('GET', '/reviews', await jwt({ sub: 'olga', groups: ['ops'], exp: Math.floor(Date.now() / 1000) - 120 }))).toBe(401)
      expect(await call('GET', '/reviews', await jwt({ sub: 'olga', groups: ['ops'] }, stranger))).toBe(401)
      expect(await call('GET', '/reviews', 'gh_not_a_jwt')).toBe(401)
    } finally {
      await admin.stop()
    }
  })
})
