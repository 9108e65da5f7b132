/**
 * TLS in the Redis example, both ways, with real clients and a real server: redis-cli --tls and the
 * `redis` Node client reach the gateway over TLS (core's acceptTls: TLS-only, or either, told apart
 * by the first byte); the gateway reaches a redis-server that takes TLS only and asks for a client
 * certificate (tls-auth-clients yes). The upstream password is sent only over a link whose
 * certificate checked out: a server with a certificate the configured CA did not sign receives no
 * byte of it. And a listener beyond loopback does not take tokens in plain text unless told to.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createClient } from 'redis'
import { createLogger, Gateway, generateToken, hashToken, loadConfigFile } from '@gatehouse/core'
import { generateCertificates } from '@gatehouse/adapter-kubernetes'
import { freePort, waitForPort } from '../fixtures/net.js'
import { readAuditFile, waitForAuditEvent } from '../fixtures/audit-file.js'

const root = join(import.meta.dirname, '../..')
const UPSTREAM_PASSWORD = `upstream-${Math.random().toString(36).slice(2)}`
const token = generateToken()
let dir: string
let redis: ChildProcess
let impostor: TlsServer
/** Bytes the impostor server received after a handshake (none is the point), and the connections it saw. */
const impostorReceived: Buffer[] = []
let impostorConnections = 0
let gateway: Gateway
let gatewayCa: string

const audit = () => readAuditFile(join(dir, 'audit.jsonl'))
const port = (name: string) => gateway.address(name).port

function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 10_000 }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}`.trim() }))
  })
}

/** redis-cli to the gateway's `connection` as agent-1, over TLS (trusting the gateway's CA) or not. */
function cli(connection: string, tls: boolean, args: string[]) {
  const over = tls ? ['--tls', '--cacert', join(dir, 'gateway-ca.crt')] : []
  return run('redis-cli', ['-h', '127.0.0.1', '-p', String(port(connection)), ...over, '--user', 'agent-1', '--pass', token, '--no-auth-warning', ...args])
}

/** A client certificate signed by `ca` (for the server's tls-auth-clients), made with openssl. */
async function clientCertificate(ca: { caCert: string; caKey: string }): Promise<{ cert: string; key: string }> {
  writeFileSync(join(dir, 'upstream-ca.key'), ca.caKey)
  writeFileSync(join(dir, 'client.ext'), 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n')
  const ok = async (args: string[]) => {
    const r = await run('openssl', args)
    if (r.code !== 0) throw new Error(`openssl ${args[0]}: ${r.out}`)
  }
  await ok(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, 'client.key'), '-out', join(dir, 'client.csr'), '-subj', '/CN=gatehouse-gateway'])
  await ok(['x509', '-req', '-in', join(dir, 'client.csr'), '-CA', join(dir, 'upstream-ca.crt'), '-CAkey', join(dir, 'upstream-ca.key'), '-set_serial', '0x01', '-days', '2', '-extfile', join(dir, 'client.ext'), '-out', join(dir, 'client.crt')])
  const { readFileSync } = await import('node:fs')
  return { cert: readFileSync(join(dir, 'client.crt'), 'utf8'), key: readFileSync(join(dir, 'client.key'), 'utf8') }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-redis-tls-'))
  // one CA for the server side (redis-server and the gateway's client certificate), one for the gateway's listener
  const upstreamCerts = await generateCertificates(['127.0.0.1'])
  const gatewayCerts = await generateCertificates(['127.0.0.1', 'localhost'])
  gatewayCa = gatewayCerts.caCert
  const files: Record<string, string> = { 'upstream-ca.crt': upstreamCerts.caCert, 'upstream.crt': upstreamCerts.cert, 'upstream.key': upstreamCerts.key, 'gateway-ca.crt': gatewayCerts.caCert, 'gateway.crt': gatewayCerts.cert, 'gateway.key': gatewayCerts.key }
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text)
  const client = await clientCertificate(upstreamCerts)
  writeFileSync(join(dir, 'client.crt'), client.cert)

  const redisPort = await freePort()
  redis = spawn('redis-server', ['--port', '0', '--tls-port', String(redisPort), '--bind', '127.0.0.1', '--tls-cert-file', join(dir, 'upstream.crt'), '--tls-key-file', join(dir, 'upstream.key'), '--tls-ca-cert-file', join(dir, 'upstream-ca.crt'), '--tls-auth-clients', 'yes', '--requirepass', UPSTREAM_PASSWORD, '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' })
  await waitForPort(redisPort, '127.0.0.1', 10_000)

  // a server whose certificate the upstream CA did not sign (the gateway's own): it keeps what it is sent
  impostor = createTlsServer({ cert: gatewayCerts.cert, key: gatewayCerts.key }, (s) => {
    s.on('data', (d: Buffer) => impostorReceived.push(d))
    s.on('error', () => undefined)
  })
  impostor.on('connection', () => impostorConnections++)
  impostor.on('tlsClientError', () => undefined)
  await new Promise<void>((r) => impostor.listen(0, '127.0.0.1', r))
  const impostorPort = (impostor.address() as { port: number }).port

  mkdirSync(join(dir, 'node_modules'))
  symlinkSync(join(root, 'examples', 'redis-adapter'), join(dir, 'node_modules', 'gatehouse-adapter-redis'))
  const f = (name: string) => `\${file:${join(dir, name)}}`
  const verified = `tls: { mode: verify-full, ca: "${f('upstream-ca.crt')}", cert: "${f('client.crt')}", key: "${f('client.key')}" }`
  const listenerTls = (required: boolean) => `tls: { cert: "${f('gateway.crt')}", key: "${f('gateway.key')}", required: ${required} }`
  writeFileSync(
    join(dir, 'gatehouse.yaml'),
    `dataDir: ${dir}
log: { level: silent }
identities:
  - { id: agent-1, groups: [agents], tokens: [ { hash: "${hashToken(token, 'agent-1')}" } ] }
plugins:
  - { use: audit-jsonl, config: { path: audit.jsonl } }
connections:
  - { name: tls-only, adapter: gatehouse-adapter-redis, listen: "127.0.0.1:0", ${listenerTls(true)}, upstream: { port: ${redisPort}, password: "${UPSTREAM_PASSWORD}", ${verified} } }
  - { name: either, adapter: gatehouse-adapter-redis, listen: "127.0.0.1:0", ${listenerTls(false)}, upstream: { port: ${redisPort}, password: "${UPSTREAM_PASSWORD}", ${verified} } }
  - { name: unverified, adapter: gatehouse-adapter-redis, listen: "127.0.0.1:0", upstream: { port: ${redisPort}, password: "${UPSTREAM_PASSWORD}", tls: { mode: require, cert: "${f('client.crt')}", key: "${f('client.key')}" } } }
  - { name: no-client-cert, adapter: gatehouse-adapter-redis, listen: "127.0.0.1:0", upstream: { port: ${redisPort}, password: "${UPSTREAM_PASSWORD}", tls: { mode: verify-full, ca: "${f('upstream-ca.crt')}" } } }
  - { name: impostor, adapter: gatehouse-adapter-redis, listen: "127.0.0.1:0", upstream: { port: ${impostorPort}, password: "${UPSTREAM_PASSWORD}", tls: { mode: verify-full, ca: "${f('upstream-ca.crt')}" } } }
  - { name: plaintext-upstream, adapter: gatehouse-adapter-redis, listen: "127.0.0.1:0", upstream: { port: ${redisPort}, password: "${UPSTREAM_PASSWORD}" } }
policies:
  - id: all
    principals: { groups: [agents] }
    rules:
      - { id: all, effect: allow, actions: [redis.command] }
`,
  )
  gateway = await Gateway.build(loadConfigFile(join(dir, 'gatehouse.yaml')), { logger: createLogger('silent'), pluginSearchDirs: [dir] })
  await gateway.start()
}, 60_000)

afterAll(async () => {
  await gateway?.shutdown(0)
  redis?.kill('SIGTERM')
  impostor?.close()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

/** The session.start events of `connection`, in order. */
const starts = (connection: string) => audit().filter((e) => e.type === 'session.start' && (e as { connection?: string }).connection === connection)

describe('the redis adapter over TLS', () => {
  it('redis-cli --tls reaches a TLS-only listener, and the gateway a TLS-only server that checks its client certificate', async () => {
    expect(await cli('tls-only', true, ['SET', 'tls:greeting', 'hello'])).toEqual({ code: 0, out: 'OK' })
    expect(await cli('tls-only', true, ['GET', 'tls:greeting'])).toEqual({ code: 0, out: 'hello' })
    expect(starts('tls-only').length).toBeGreaterThan(0)
    expect(starts('tls-only').every((e) => e.tls === true)).toBe(true)
  })

  it('the redis Node client over TLS (RESP3, pipelined)', async () => {
    const c = createClient({ socket: { host: '127.0.0.1', port: port('tls-only'), tls: true, ca: gatewayCa }, username: 'agent-1', password: token, RESP: 3 })
    c.on('error', () => undefined)
    await c.connect()
    try {
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => c.set(`tls:p:${i}`, String(i))))
      expect(results.every((r) => r === 'OK')).toBe(true)
      expect(await c.get('tls:p:19')).toBe('19')
    } finally {
      await c.quit().catch(() => undefined)
    }
  })

  it('a plaintext client of a TLS-only listener is refused before anything is read; others go on', async () => {
    const before = audit().length
    const r = await cli('tls-only', false, ['GET', 'tls:greeting'])
    expect(r.out).not.toContain('hello')
    expect(audit().slice(before).some((e) => e.type === 'request')).toBe(false)
    expect(await cli('tls-only', true, ['GET', 'tls:greeting'])).toEqual({ code: 0, out: 'hello' })
  })

  it('a listener with tls.required false takes both, told apart by the first byte, and records which', async () => {
    expect(await cli('either', false, ['GET', 'tls:greeting'])).toEqual({ code: 0, out: 'hello' })
    expect(await cli('either', true, ['GET', 'tls:greeting'])).toEqual({ code: 0, out: 'hello' })
    expect(starts('either').map((e) => e.tls)).toEqual([false, true])
  })

  it('mode require encrypts without checking the certificate; a server that wants a client certificate refuses a gateway without one', async () => {
    expect(await cli('unverified', false, ['GET', 'tls:greeting'])).toEqual({ code: 0, out: 'hello' })
    expect((await cli('no-client-cert', false, ['GET', 'tls:greeting'])).out).toMatch(/ERR gatehouse: the upstream is unavailable/)
  })

  it('the upstream password never reaches a server whose certificate the configured CA did not sign', async () => {
    expect((await cli('impostor', false, ['GET', 'tls:greeting'])).out).toMatch(/ERR gatehouse: the upstream is unavailable/)
    // the gateway did connect, and left at the certificate
    expect(impostorConnections).toBeGreaterThan(0)
    expect(Buffer.concat(impostorReceived).includes(UPSTREAM_PASSWORD)).toBe(false)
    expect(impostorReceived).toHaveLength(0)
  })

  it('a plaintext upstream of a TLS-only server fails at login; the session records no token or password', async () => {
    expect((await cli('plaintext-upstream', false, ['GET', 'tls:greeting'])).out).toMatch(/ERR gatehouse: the upstream is unavailable/)
    const text = JSON.stringify(audit())
    expect(text).not.toContain(token)
    expect(text).not.toContain(UPSTREAM_PASSWORD)
    expect(await waitForAuditEvent(audit, (e) => e.type === 'session.end' && (e as { connection?: string }).connection === 'plaintext-upstream')).toBeDefined()
  })
})

describe('tokens in plain text beyond loopback', () => {
  const build = (listen: string, extra: string) => {
    const path = join(dir, `beyond-${Math.random().toString(36).slice(2)}.yaml`)
    writeFileSync(
      path,
      `dataDir: ${dir}
log: { level: silent }
identities:
  - { id: agent-1, tokens: [ { hash: "${hashToken(token, 'agent-1')}" } ] }
connections:
  - { name: c, adapter: gatehouse-adapter-redis, listen: "${listen}", upstream: { port: 6379 }${extra} }
`,
    )
    return Gateway.build(loadConfigFile(path), { logger: createLogger('silent'), pluginSearchDirs: [dir] })
  }
  const f = (name: string) => `\${file:${join(dir, name)}}`

  it('a listener beyond loopback without tls.required is a config error that says why and what to do', async () => {
    await expect(build('0.0.0.0:0', '')).rejects.toThrow(/connections\[0\]: listening on 0\.0\.0\.0:0 without tls\.required: true would take callers' tokens in plain text/)
    await expect(build('0.0.0.0:0', `, tls: { cert: "${f('gateway.crt')}", key: "${f('gateway.key')}", required: false }`)).rejects.toThrow(/without tls\.required: true/)
  })

  it('is accepted with tls.required, on loopback, or with options.plaintextTokens', async () => {
    for (const [listen, extra] of [
      ['0.0.0.0:0', `, tls: { cert: "${f('gateway.crt')}", key: "${f('gateway.key')}", required: true }`],
      ['[::1]:0', ''],
      ['127.0.0.2:0', ''],
      ['0.0.0.0:0', ', options: { plaintextTokens: true }'],
    ] as const) {
      const g = await build(listen, extra)
      await g.shutdown(0)
    }
  })

  it('a client certificate without its key, or TLS settings without a mode, is a config error', async () => {
    await expect(build('127.0.0.1:0', '').then((g) => g.shutdown(0))).resolves.toBeUndefined()
    const withUpstream = async (tls: string) => {
      const path = join(dir, `upstream-${Math.random().toString(36).slice(2)}.yaml`)
      writeFileSync(path, `dataDir: ${dir}\nlog: { level: silent }\nconnections:\n  - { name: c, adapter: gatehouse-adapter-redis, listen: "127.0.0.1:0", upstream: { port: 6379, tls: ${tls} } }\n`)
      return Gateway.build(loadConfigFile(path), { logger: createLogger('silent'), pluginSearchDirs: [dir] })
    }
    await expect(withUpstream(`{ mode: verify-full, cert: "${f('client.crt')}" }`)).rejects.toThrow(/upstream\.tls: a client certificate needs both cert and key/)
    await expect(withUpstream(`{ ca: "${f('upstream-ca.crt')}" }`)).rejects.toThrow(/upstream\.tls: ca, cert and servername are used only with mode require or verify-full/)
  })
})
