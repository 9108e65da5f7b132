/**
 * auth-token: TokenAuthenticator (gateway tokens stored as hashes) and the SCRAM primitives
 * in core it builds on.
 */
import { describe, expect, it } from 'vitest'
import {
  createLogger,
  Gateway,
  GatewayConfig,
  GatewayError,
  ScramClient,
  ScramServer,
  generateToken,
  hashToken,
  identitySalt,
  parseTokenHash,
  validate,
  type AuthContext,
  type Principal,
  type ScramSecret,
  type SessionInfo,
} from '@gatehouse/core'
import { GatewayConfigToken } from '@gatehouse/core'
import { container as tsyringeContainer } from 'tsyringe'
import { TokenAuthenticator, plugin } from '@gatehouse/plugin-auth-token'

const NOW = Date.parse('2030-06-01T12:00:00Z')
const HOUR = 3_600_000

interface TokenSpec {
  id?: string
  token: string
  algorithm?: 'scram-sha-256' | 'sha256'
  connections?: string[]
  expires?: string
}

function gatewayConfig(identities: { id: string; kind?: string; groups?: string[]; claims?: Record<string, unknown>; tokens: TokenSpec[] }[]): GatewayConfig {
  return validate(GatewayConfig, {
    connections: [
      { name: 'orders', adapter: 'postgres', listen: '127.0.0.1:0', upstream: {} },
      { name: 'billing', adapter: 'postgres', listen: '127.0.0.1:0', upstream: {} },
    ],
    identities: identities.map((i) => ({
      id: i.id,
      ...(i.kind ? { kind: i.kind } : {}),
      ...(i.groups ? { groups: i.groups } : {}),
      ...(i.claims ? { claims: i.claims } : {}),
      tokens: i.tokens.map((t) => ({
        ...(t.id ? { id: t.id } : {}),
        hash: hashToken(t.token, i.id, t.algorithm),
        ...(t.connections ? { connections: t.connections } : {}),
        ...(t.expires ? { expires: t.expires } : {}),
      })),
    })),
  })
}

function ctx(connection = 'orders', now = NOW): AuthContext {
  const session: SessionInfo = {
    id: 'session-1',
    connection,
    protocol: 'postgres',
    clientAddress: '127.0.0.1:5000',
    startedAt: now,
    tls: false,
    signal: new AbortController().signal,
  }
  return { session, connection, now }
}

async function refusal(fn: () => unknown): Promise<GatewayError> {
  try {
    await fn()
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError)
    return err as GatewayError
  }
  throw new Error('expected the authenticator to refuse')
}

const password = (user: string, pw: string) => ({ kind: 'password' as const, user, password: pw })

describe('TokenAuthenticator.authenticate', () => {
  const good = generateToken()
  const auth = new TokenAuthenticator(gatewayConfig([{ id: 'ci', kind: 'service', groups: ['ci', 'readers'], claims: { team: 'platform' }, tokens: [{ id: 'ci-2030', token: good }] }]), { cacheSize: 16 })

  it('accepts the correct token and returns the identity as principal', async () => {
    const p = (await auth.authenticate(password('ci', good), ctx())) as Principal
    expect(p).toEqual({ id: 'ci', kind: 'service', groups: ['ci', 'readers'], claims: { team: 'platform', token: 'ci-2030' }, credential: 'token:ci-2030' })
    expect(Object.isFrozen(p)).toBe(true)
  })

  it('refuses a wrong token with GH_ERR_AUTH_FAILED and a generic client message', async () => {
    const err = await refusal(() => auth.authenticate(password('ci', generateToken()), ctx()))
    expect(err.code).toBe('GH_ERR_AUTH_FAILED')
    expect(err.clientMessage).toBe('authentication failed')
    expect(err.message).not.toContain(good)
  })

  it('refuses an unknown identity with the same GH_ERR_AUTH_FAILED and client message as a wrong token', async () => {
    const wrong = await refusal(() => auth.authenticate(password('ci', generateToken()), ctx()))
    const unknown = await refusal(() => auth.authenticate(password('nobody', good), ctx()))
    expect(unknown.code).toBe('GH_ERR_AUTH_FAILED')
    expect(unknown.kind).toBe(wrong.kind)
    expect(unknown.clientMessage).toBe(wrong.clientMessage)
  })

  it('refuses a token of another identity', async () => {
    const other = generateToken()
    const a = new TokenAuthenticator(gatewayConfig([{ id: 'ci', tokens: [{ token: good }] }, { id: 'ops', tokens: [{ token: other }] }]), { cacheSize: 16 })
    expect((await refusal(() => a.authenticate(password('ci', other), ctx()))).code).toBe('GH_ERR_AUTH_FAILED')
    expect(((await a.authenticate(password('ops', other), ctx())) as Principal).id).toBe('ops')
  })

  it('ignores credentials that are not passwords (another authenticator may handle them)', async () => {
    expect(await auth.authenticate({ kind: 'bearer', token: good, user: 'ci' }, ctx())).toBeUndefined()
  })

  it('names a default token id after the identity and the token index', async () => {
    const t2 = generateToken()
    const a = new TokenAuthenticator(gatewayConfig([{ id: 'ci', tokens: [{ token: generateToken() }, { token: t2 }] }]), { cacheSize: 16 })
    expect(((await a.authenticate(password('ci', t2), ctx())) as Principal).credential).toBe('token:ci#1')
  })

  it('refuses an expired token with GH_ERR_AUTH_EXPIRED', async () => {
    const t = generateToken()
    const a = new TokenAuthenticator(gatewayConfig([{ id: 'ci', tokens: [{ id: 'old', token: t, expires: new Date(NOW - HOUR).toISOString() }] }]), { cacheSize: 16 })
    const err = await refusal(() => a.authenticate(password('ci', t), ctx()))
    expect(err.code).toBe('GH_ERR_AUTH_EXPIRED')
    expect(err.clientMessage).toBe('token expired')
  })

  it('accepts a token before its expiry and refuses it from the expiry instant on', async () => {
    const t = generateToken()
    const expires = new Date(NOW + HOUR).toISOString()
    const a = new TokenAuthenticator(gatewayConfig([{ id: 'ci', tokens: [{ token: t, expires }] }]), { cacheSize: 16 })
    expect(((await a.authenticate(password('ci', t), ctx('orders', NOW + HOUR - 1))) as Principal).id).toBe('ci')
    // the second check hits the verified-token cache: expiry must still be enforced
    expect((await refusal(() => a.authenticate(password('ci', t), ctx('orders', NOW + HOUR)))).code).toBe('GH_ERR_AUTH_EXPIRED')
  })

  it('does not reveal expiry to someone presenting a wrong token', async () => {
    const a = new TokenAuthenticator(gatewayConfig([{ id: 'ci', tokens: [{ token: generateToken(), expires: new Date(NOW - HOUR).toISOString() }] }]), { cacheSize: 16 })
    expect((await refusal(() => a.authenticate(password('ci', generateToken()), ctx()))).code).toBe('GH_ERR_AUTH_FAILED')
  })

  it('refuses a token on a connection outside its scope with GH_ERR_AUTH_SCOPE', async () => {
    const t = generateToken()
    const a = new TokenAuthenticator(gatewayConfig([{ id: 'ci', tokens: [{ token: t, connections: ['orders'] }] }]), { cacheSize: 16 })
    expect(((await a.authenticate(password('ci', t), ctx('orders'))) as Principal).id).toBe('ci')
    const err = await refusal(() => a.authenticate(password('ci', t), ctx('billing')))
    expect(err.code).toBe('GH_ERR_AUTH_SCOPE')
    expect(err.clientMessage).toContain('billing')
  })

  it('a token without connections is valid for every connection', async () => {
    expect(((await auth.authenticate(password('ci', good), ctx('billing'))) as Principal).id).toBe('ci')
  })

  it('picks the matching token among several (rotation), each with its own scope', async () => {
    const oldT = generateToken()
    const newT = generateToken()
    const a = new TokenAuthenticator(
      gatewayConfig([{ id: 'ci', tokens: [{ id: 'old', token: oldT, connections: ['orders'] }, { id: 'new', token: newT, connections: ['billing'] }] }]),
      { cacheSize: 16 },
    )
    expect(((await a.authenticate(password('ci', newT), ctx('billing'))) as Principal).credential).toBe('token:new')
    expect(((await a.authenticate(password('ci', oldT), ctx('orders'))) as Principal).credential).toBe('token:old')
    expect((await refusal(() => a.authenticate(password('ci', oldT), ctx('billing')))).code).toBe('GH_ERR_AUTH_SCOPE')
  })

  it('accepts sha256-form hashes and refuses a wrong token against them', async () => {
    const t = generateToken()
    const hash = hashToken(t, 'ci', 'sha256')
    expect(hash).toMatch(/^sha256:[0-9a-f]{64}$/)
    const a = new TokenAuthenticator(gatewayConfig([{ id: 'ci', tokens: [{ token: t, algorithm: 'sha256' }] }]), { cacheSize: 0 })
    expect(((await a.authenticate(password('ci', t), ctx())) as Principal).id).toBe('ci')
    expect((await refusal(() => a.authenticate(password('ci', `${t}x`), ctx()))).code).toBe('GH_ERR_AUTH_FAILED')
  })

  it('works without a cache (cacheSize 0) for repeated logins', async () => {
    const a = new TokenAuthenticator(gatewayConfig([{ id: 'ci', tokens: [{ token: good }] }]), { cacheSize: 0 })
    for (let i = 0; i < 2; i++) expect(((await a.authenticate(password('ci', good), ctx())) as Principal).id).toBe('ci')
    expect((await refusal(() => a.authenticate(password('ci', 'gh_wrong'), ctx()))).code).toBe('GH_ERR_AUTH_FAILED')
  })

  it('refuses a config with a malformed hash, naming its path', async () => {
    const config = gatewayConfig([{ id: 'ci', tokens: [{ token: good }] }, { id: 'ops', tokens: [{ token: good }] }])
    const broken = { ...config, identities: [config.identities[0]!, { ...config.identities[1]!, tokens: [{ hash: 'md5:abcdef0123' }] }] }
    const err = await refusal(() => new TokenAuthenticator(broken, { cacheSize: 16 }))
    expect(err.code).toBe('GH_ERR_PLUGIN_CONFIG')
    expect(err.message).toContain('identities[1].tokens[0].hash')
  })

  // Bug (plugins/auth-token/src/index.ts, authenticate): the verified-token cache maps
  // (user, token) → token *id*, and a hit is resolved with `tokens.find(t => t.id === cachedId)`.
  // Token ids are not checked for uniqueness within an identity, so when two entries share an id
  // the cache resolves to the first one. The cache entry is also written before accept() checks
  // expiry/scope. Result: an expired (or out-of-scope) token is refused once, then accepted on
  // the second attempt with the other entry's expiry and scope.
  it('an expired token stays refused on a second attempt even if another token entry shares its id', async () => {
    const valid = generateToken()
    const expired = generateToken()
    const a = new TokenAuthenticator(
      gatewayConfig([{ id: 'ci', tokens: [{ id: 'ci-token', token: valid }, { id: 'ci-token', token: expired, expires: new Date(NOW - HOUR).toISOString() }] }]),
      { cacheSize: 16 },
    )
    expect((await refusal(() => a.authenticate(password('ci', expired), ctx()))).code).toBe('GH_ERR_AUTH_EXPIRED')
    expect((await refusal(() => a.authenticate(password('ci', expired), ctx()))).code).toBe('GH_ERR_AUTH_EXPIRED')
  })
})

describe('TokenAuthenticator.scramVerifiers', () => {
  const t1 = generateToken()
  const t2 = generateToken()
  const t3 = generateToken()
  const auth = new TokenAuthenticator(
    gatewayConfig([
      {
        id: 'ci',
        groups: ['ci'],
        tokens: [
          { id: 'scoped', token: t1, connections: ['orders'] },
          { id: 'expiring', token: t2, expires: new Date(NOW + HOUR).toISOString() },
          { id: 'plain', token: t3, algorithm: 'sha256' },
        ],
      },
    ]),
    16,
  )

  it('returns one verifier per SCRAM-form token (sha256 tokens cannot do SCRAM), all with the identity salt', async () => {
    const vs = auth.scramVerifiers('ci', ctx())
    expect(vs).toHaveLength(2)
    for (const v of vs) {
      expect(v.iterations).toBe(4096)
      expect(v.salt.equals(identitySalt('ci'))).toBe(true)
      expect(v.storedKey).toHaveLength(32)
      expect(v.serverKey).toHaveLength(32)
    }
    const parsed = parseTokenHash(hashToken(t1, 'ci'))
    expect(parsed?.kind).toBe('scram')
    expect(vs[0]?.storedKey.equals((parsed as { secret: ScramSecret }).secret.storedKey)).toBe(true)
  })

  it('returns no verifiers for an unknown user', async () => {
    expect(auth.scramVerifiers('nobody', ctx())).toEqual([])
  })

  it("a verifier's accept() returns the principal when expiry and scope allow", async () => {
    const [scoped, expiring] = auth.scramVerifiers('ci', ctx('orders'))
    expect(scoped?.accept()).toMatchObject({ id: 'ci', groups: ['ci'], credential: 'token:scoped' })
    expect(expiring?.accept()).toMatchObject({ id: 'ci', credential: 'token:expiring' })
  })

  it("a verifier's accept() enforces the token's connection scope", async () => {
    const [scoped, expiring] = auth.scramVerifiers('ci', ctx('billing'))
    expect((await refusal(() => scoped?.accept())).code).toBe('GH_ERR_AUTH_SCOPE')
    expect(expiring?.accept().id).toBe('ci')
  })

  it("a verifier's accept() enforces the token's expiry", async () => {
    const [, expiring] = auth.scramVerifiers('ci', ctx('orders', NOW + 2 * HOUR))
    expect((await refusal(() => expiring?.accept())).code).toBe('GH_ERR_AUTH_EXPIRED')
  })
})

describe('SCRAM-SHA-256 round trip (core ScramClient ↔ ScramServer) with verifiers from hashToken', () => {
  const verifier = (token: string, identity: string, value: string) => {
    const parsed = parseTokenHash(hashToken(token, identity))
    if (parsed?.kind !== 'scram') throw new Error('expected a SCRAM hash')
    return { ...parsed.secret, value }
  }

  function exchange(presented: string, candidates: ReturnType<typeof verifier>[]) {
    const client = new ScramClient(presented)
    const server = new ScramServer(candidates, identitySalt('fallback'))
    const serverFirst = server.start(client.first())
    const result = server.finish(client.final(serverFirst))
    return { client, serverFirst, result }
  }

  it('the correct token matches, and the server signature verifies on the client', async () => {
    const token = generateToken()
    const { client, serverFirst, result } = exchange(token, [verifier(token, 'ci', 'ci-token')])
    expect(serverFirst).toContain(`s=${identitySalt('ci').toString('base64')}`)
    expect(serverFirst).toContain('i=4096')
    expect(result?.value).toBe('ci-token')
    expect(result?.serverFinal).toMatch(/^v=[A-Za-z0-9+/]+=*$/)
    expect(() => client.verify(result!.serverFinal)).not.toThrow()
  })

  it('picks the matching candidate among several tokens of one identity', async () => {
    const a = generateToken()
    const b = generateToken()
    const { result } = exchange(b, [verifier(a, 'ci', 'a'), verifier(b, 'ci', 'b')])
    expect(result?.value).toBe('b')
  })

  it('a wrong token does not match', async () => {
    const { result } = exchange(generateToken(), [verifier(generateToken(), 'ci', 'ci-token')])
    expect(result).toBeUndefined()
  })

  it('with no candidates (unknown user) the exchange still runs and does not match', async () => {
    const { serverFirst, result } = exchange(generateToken(), [])
    expect(serverFirst).toContain(`s=${identitySalt('fallback').toString('base64')}`)
    expect(result).toBeUndefined()
  })

  it('the client refuses a forged server signature', async () => {
    const token = generateToken()
    const { client } = exchange(token, [verifier(token, 'ci', 'x')])
    const forged = `v=${Buffer.alloc(32, 7).toString('base64')}`
    let err: unknown
    try {
      client.verify(forged)
    } catch (e) {
      err = e
    }
    expect((err as GatewayError).code).toBe('GH_ERR_UPSTREAM_AUTH')
  })

  it('the server refuses a client-final with a tampered nonce as a protocol error', async () => {
    const token = generateToken()
    const client = new ScramClient(token)
    const server = new ScramServer([verifier(token, 'ci', 'x')], identitySalt('x'))
    const final = client.final(server.start(client.first()))
    expect(() => server.finish(final.replace(/r=([^,]+)/, 'r=$1X'))).toThrow(expect.objectContaining({ code: 'GH_ERR_PROTOCOL' }))
  })

  it('without TLS channel binding data the server refuses a client that asks for channel binding, with GH_ERR_AUTH_UNSUPPORTED', async () => {
    const server = new ScramServer([], identitySalt('x'))
    expect(() => server.start('p=tls-server-end-point,,n=*,r=abc')).toThrow(expect.objectContaining({ code: 'GH_ERR_AUTH_UNSUPPORTED' }))
  })

  it('with channel binding offered: a "y" client is a downgrade, PLUS without p= is refused, and the proof must carry the binding data', async () => {
    const data = Buffer.from('end-point-hash')
    expect(() => new ScramServer([], identitySalt('x'), { data, plus: false }).start('y,,n=*,r=abc')).toThrow(expect.objectContaining({ code: 'GH_ERR_PROTOCOL', message: expect.stringContaining('downgrade') }))
    expect(() => new ScramServer([], identitySalt('x'), { data, plus: true }).start('n,,n=*,r=abc')).toThrow(expect.objectContaining({ code: 'GH_ERR_PROTOCOL' }))
    expect(() => new ScramServer([], identitySalt('x'), { data, plus: true }).start('p=tls-unique,,n=*,r=abc')).toThrow(expect.objectContaining({ code: 'GH_ERR_AUTH_UNSUPPORTED' }))
    // a plain client on a TLS connection that offered PLUS too is fine
    expect(new ScramServer([], identitySalt('x'), { data, plus: false }).start('n,,n=*,r=abc')).toMatch(/^r=abc/)
    const server = new ScramServer([], identitySalt('x'), { data, plus: true })
    const nonce = /r=([^,]+)/.exec(server.start('p=tls-server-end-point,,n=*,r=abc'))?.[1]
    const proof = Buffer.alloc(32).toString('base64')
    const without = `c=${Buffer.from('p=tls-server-end-point,,').toString('base64')},r=${nonce}`
    expect(() => server.finish(`${without},p=${proof}`)).toThrow(expect.objectContaining({ code: 'GH_ERR_PROTOCOL', message: expect.stringContaining('channel binding data') }))
  })
})

describe('auth-token plugin definition', () => {
  it('is an authenticate-stage plugin whose register() builds a TokenAuthenticator from the gateway identities', async () => {
    const token = generateToken()
    const config = gatewayConfig([{ id: 'ci', tokens: [{ token }] }])
    expect(plugin.name).toBe('auth-token')
    expect(plugin.stage).toBe('authenticate')
    const a = await plugin.register(rootWith(config), { cacheSize: 4 }, { gateway: config, instance: 'auth-token', logger: undefined as never, dataDir: '/tmp' })
    expect(a).toBeInstanceOf(TokenAuthenticator)
    expect(((await a.authenticate(password('ci', token), ctx())) as Principal).id).toBe('ci')
  })
})

/** A root container holding what core registers before plugins: the gateway config. */
function rootWith(config: unknown) {
  const root = tsyringeContainer.createChildContainer()
  root.registerInstance(GatewayConfigToken, config as never)
  return root
}

describe('TokenAuthenticator: what the tests above leave open', () => {
  it('names the wrong part only in the log message; the principal carries the identity claims, the token id, and the expiry', async () => {
    const t = generateToken()
    const expires = new Date(NOW + HOUR).toISOString()
    const a = new TokenAuthenticator(gatewayConfig([{ id: 'ci', claims: { team: 'platform' }, tokens: [{ id: 'tk', token: t, expires }] }]), { cacheSize: 16 })
    const p = (await a.authenticate(password('ci', t), ctx())) as Principal
    expect(p).toEqual({ id: 'ci', kind: 'agent', groups: [], claims: { team: 'platform', token: 'tk' }, credential: 'token:tk', expiresAt: Date.parse(expires) })
    const never = new TokenAuthenticator(gatewayConfig([{ id: 'ci', tokens: [{ id: 'tk', token: t }] }]), { cacheSize: 16 })
    expect('expiresAt' in ((await never.authenticate(password('ci', t), ctx())) as Principal)).toBe(false)
    expect((await refusal(() => a.authenticate(password('nobody', t), ctx()))).message).toBe('unknown identity or wrong token for user "nobody"')
    expect((await refusal(() => a.authenticate(password('ci', `${t}x`), ctx()))).message).toBe('wrong token for identity "ci"')
    expect((await refusal(() => a.authenticate(password('ci', t), ctx('orders', Date.parse(expires))))).message).toBe(`token "tk" of identity "ci" expired at ${expires.replace(/\.\d+Z$/, '.000Z')}`)
    const scoped = new TokenAuthenticator(gatewayConfig([{ id: 'ci', tokens: [{ id: 'tk', token: t, connections: ['orders'] }] }]), { cacheSize: 16 })
    expect(await refusal(() => scoped.authenticate(password('ci', t), ctx('billing')))).toMatchObject({ message: 'token "tk" of identity "ci" is not valid for connection "billing"', clientMessage: 'token not valid for connection "billing"' })
  })

  it('a remembered login is bound to its identity: "ci" + token is not "c" + "i" + token', async () => {
    const t = generateToken()
    const other = generateToken()
    const a = new TokenAuthenticator(gatewayConfig([{ id: 'ci', tokens: [{ token: t }] }, { id: 'c', tokens: [{ token: other }] }]), { cacheSize: 16 })
    expect(((await a.authenticate(password('ci', t), ctx())) as Principal).id).toBe('ci')
    expect((await refusal(() => a.authenticate(password('c', `i${t}`), ctx()))).code).toBe('GH_ERR_AUTH_FAILED')
    expect(((await a.authenticate(password('c', other), ctx())) as Principal).id).toBe('c')
  })

  it('of one token listed twice (two scopes), the first entry that matches is the one used', async () => {
    const t = generateToken()
    const a = new TokenAuthenticator(gatewayConfig([{ id: 'ci', tokens: [{ id: 'first', token: t }, { id: 'second', token: t }] }]), { cacheSize: 0 })
    expect(((await a.authenticate(password('ci', t), ctx())) as Principal).credential).toBe('token:first')
  })

  it('revalidate after a reload: the same token still configured gives the principal as the new config describes it; a removed one is revoked; a principal of another plugin is not its business', async () => {
    const t = generateToken()
    const before = new TokenAuthenticator(gatewayConfig([{ id: 'ci', groups: ['old'], tokens: [{ id: 'tk', token: t }] }]), { cacheSize: 16 })
    const principal = (await before.authenticate(password('ci', t), ctx())) as Principal
    const after = new TokenAuthenticator(gatewayConfig([{ id: 'ci', groups: ['new'], tokens: [{ id: 'renamed', token: generateToken() }, { id: 'tk2', token: t }] }]), { cacheSize: 16 })
    expect(after.revalidate(principal, ctx())).toMatchObject({ id: 'ci', groups: ['new'], credential: 'token:tk2' })
    const removed = new TokenAuthenticator(gatewayConfig([{ id: 'ci', tokens: [{ id: 'tk', token: generateToken() }] }]), { cacheSize: 16 })
    expect(() => removed.revalidate(principal, ctx())).toThrow(expect.objectContaining({ code: 'GH_ERR_AUTH_REVOKED', message: 'identity "ci" no longer has this token in the configuration' }))
    const gone = new TokenAuthenticator(gatewayConfig([{ id: 'ops', tokens: [{ token: t }] }]), { cacheSize: 16 })
    expect(() => gone.revalidate(principal, ctx())).toThrow(expect.objectContaining({ code: 'GH_ERR_AUTH_REVOKED' }))
    // now expired, or no longer scoped here: refused as a login would be
    const expired = new TokenAuthenticator(gatewayConfig([{ id: 'ci', tokens: [{ id: 'tk', token: t, expires: new Date(NOW - HOUR).toISOString() }] }]), { cacheSize: 16 })
    expect(() => expired.revalidate(principal, ctx())).toThrow(expect.objectContaining({ code: 'GH_ERR_AUTH_EXPIRED' }))
    const foreign: Principal = Object.freeze({ id: 'ci', kind: 'agent', groups: [], claims: {}, credential: 'ssh-key:x' })
    expect(after.revalidate(foreign, ctx())).toBeUndefined()
  })

  it('its config takes cacheSize, a whole number from 0, and nothing else', async () => {
    const build = (config: unknown) =>
      Gateway.build(validate(GatewayConfig, { dataDir: '/tmp/gatehouse-auth-token-config', connections: [{ name: 'orders', adapter: 'postgres', listen: '127.0.0.1:0', upstream: { host: '127.0.0.1', database: 'x', user: 'x' } }], plugins: [{ use: 'auth-token', config }] }), { logger: createLogger('silent') })
    await expect(build({ cacheSize: 0 })).resolves.toBeDefined()
    await expect(build({})).resolves.toBeDefined()
    await expect(build({ cacheSize: -1 })).rejects.toMatchObject({ code: 'GH_ERR_PLUGIN_CONFIG', message: expect.stringContaining('plugins[0].config.cacheSize') })
    await expect(build({ cacheSize: 4, extra: true })).rejects.toMatchObject({ code: 'GH_ERR_PLUGIN_CONFIG', message: 'plugins[0].config.extra: unknown field' })
    expect(plugin.description).toBe('gateway tokens (stored as hashes) presented as passwords')
  })
})
