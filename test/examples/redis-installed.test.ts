/**
 * Installed the way a user installs it: core (with its CLI), the built-in plugins the config
 * uses, and the Redis adapter from examples/ are packed with `npm pack`, the tarballs installed
 * into an empty directory with `npm install`, and the gateway started from there with its own
 * `gatehouse start`, from a config that names the adapter by package name. redis-cli talks to it.
 * The conformance kit is packed and installed too, with vitest and the redis client, and a test
 * file written there the way a vendor would write one runs the kit against the installed adapter.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateToken, hashToken } from '@gatehouse/core'
import { freePort, waitForPort } from '../fixtures/net.js'

const root = join(import.meta.dirname, '../..')
const PACKAGES = ['core', 'plugins/auth-token', 'plugins/policy', 'plugins/audit-jsonl', 'examples/redis-adapter', 'testkit']
/** What a vendor's own tests install beside it, at the versions this checkout uses (from the npm cache). */
const TEST_DEPENDENCIES = ['vitest', 'redis'].map((name) => `${name}@${(JSON.parse(readFileSync(join(import.meta.dirname, '../../node_modules', name, 'package.json'), 'utf8')) as { version: string }).version}`)
const UPSTREAM_PASSWORD = `upstream-${Math.random().toString(36).slice(2)}`
const token = generateToken()
let dir: string
let redis: ChildProcess
let gateway: ChildProcess
let port: number
let gatewayLog = ''

function run(cmd: string, args: string[], cwd: string, timeout = 240_000): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(cmd, args, { cwd, timeout, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' } }, (err, stdout, stderr) => (err ? reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${stdout}\n${stderr}`)) : resolve(stdout))),
  )
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-installed-'))
  const packs = join(dir, 'packs')
  const app = join(dir, 'app')
  mkdirSync(packs)
  mkdirSync(app)
  const tarballs: string[] = []
  for (const p of PACKAGES) {
    const out = await run('npm', ['pack', '--silent', '--pack-destination', packs], join(root, p))
    tarballs.push(join(packs, out.trim().split('\n').at(-1) as string))
  }
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'my-gateway', private: true, type: 'module' }))
  // dependencies from the npm cache the checkout's own install filled (the registry if not there)
  await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', ...tarballs, ...TEST_DEPENDENCIES], app)

  const redisPort = await freePort()
  redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--requirepass', UPSTREAM_PASSWORD, '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' })
  await waitForPort(redisPort, '127.0.0.1', 10_000)
  port = await freePort()
  writeFileSync(
    join(app, 'gatehouse.yaml'),
    `log: { level: warn }
identities:
  - { id: agent-1, groups: [agents], tokens: [ { hash: "${hashToken(token, 'agent-1')}" } ] }
plugins:
  - { use: audit-jsonl, config: { path: audit.jsonl } }
connections:
  - name: cache
    adapter: gatehouse-adapter-redis
    listen: "127.0.0.1:${port}"
    upstream: { host: 127.0.0.1, port: ${redisPort}, password: "\${env:REDIS_PASSWORD}" }
    # only what was installed: gateway tokens, the policy engine, the JSONL audit
    plugins: { authenticate: [auth-token], decide: [policy], record: [audit-jsonl] }
policies:
  - id: r
    principals: { groups: [agents] }
    include: [redis-dangerous]
    rules:
      - { id: all, effect: allow, actions: [redis.command] }
`,
  )
  gateway = spawn(join(app, 'node_modules/.bin/gatehouse'), ['start', '--config', 'gatehouse.yaml'], { cwd: app, env: { ...process.env, REDIS_PASSWORD: UPSTREAM_PASSWORD }, stdio: ['ignore', 'pipe', 'pipe'] })
  gateway.stdout?.on('data', (d: Buffer) => (gatewayLog += d.toString()))
  gateway.stderr?.on('data', (d: Buffer) => (gatewayLog += d.toString()))
  await waitForPort(port, '127.0.0.1', 30_000).catch((err: unknown) => {
    throw new Error(`the installed gateway did not start: ${(err as Error).message}\n${gatewayLog}`)
  })
}, 300_000)

afterAll(async () => {
  if (gateway && gateway.exitCode === null) {
    gateway.kill('SIGTERM')
    await new Promise((r) => gateway.once('close', r))
  }
  redis?.kill('SIGTERM')
  if (dir) rmSync(dir, { recursive: true, force: true })
})

const cli = (args: string[]) =>
  new Promise<string>((resolve) => execFile('redis-cli', ['-p', String(port), '--user', 'agent-1', '--pass', token, '--no-auth-warning', ...args], { timeout: 10_000 }, (_e, out, err) => resolve(`${out}${err}`.trim())))

/** The vendor's own conformance test, as the package's README would have it: plain JS, run by the vitest installed beside it. */
const VENDOR_TEST = `import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createClient } from 'redis'
import { describeConformance } from '@gatehouse/testkit'

const freePort = () => new Promise((resolve) => { const s = createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)) }) })

describeConformance({
  name: 'gatehouse-adapter-redis, installed',
  adapter: 'gatehouse-adapter-redis',
  pluginSearchDirs: [process.cwd()],
  rules: {
    denied: { actions: ['redis.command'], when: 'request.redis.keys.exists(k, k.startsWith("ck:denied:"))' },
    held: { actions: ['redis.command'], when: 'request.redis.keys.exists(k, k.startsWith("ck:held:"))' },
  },
  explainDenied: { command: 'SET ck:denied:sample 1' },
  async startUpstream() {
    const port = await freePort()
    const password = 'pw-' + Math.random().toString(36).slice(2)
    const dir = mkdtempSync(join(tmpdir(), 'vendor-redis-'))
    const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--requirepass', password, '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' })
    let look
    for (let i = 0; ; i++) {
      look = createClient({ socket: { host: '127.0.0.1', port, reconnectStrategy: false }, password })
      look.on('error', () => undefined)
      try { await look.connect(); break } catch (err) { if (i > 100) throw err; await new Promise((r) => setTimeout(r, 50)) }
    }
    return {
      connection: { upstream: { host: '127.0.0.1', port, password } },
      seen: async (marker) => (await look.keys('*' + marker + '*')).length,
      close: async () => { await look.quit().catch(() => undefined); server.kill('SIGTERM'); rmSync(dir, { recursive: true, force: true }) },
    }
  },
  client: {
    async connect({ host, port, identity, token }) {
      const c = createClient({ socket: { host, port, reconnectStrategy: false }, username: identity, password: token })
      const closed = new Promise((resolve) => { c.on('end', resolve); c.on('error', (e) => { if (/socket closed/i.test(e.message)) resolve() }) })
      await c.connect()
      const key = { allowed: 'ck:allowed:', denied: 'ck:denied:', held: 'ck:held:' }
      return {
        closed,
        send: async (kind, marker) => { try { await c.sendCommand(['SET', key[kind] + marker, '1']); return { ok: true } } catch (err) { return { ok: false, error: err.message } } },
        close: async () => { if (c.isOpen) await c.close() },
      }
    },
  },
})
`

describe('the Redis adapter installed from tarballs', () => {
  it('the gateway installed with npm loads it by package name; redis-cli works through it and a denial by the rule set the package ships reads as NOPERM', async () => {
    const installed = JSON.parse(readFileSync(join(dir, 'app', 'node_modules', 'gatehouse-adapter-redis', 'package.json'), 'utf8')) as { peerDependencies: Record<string, string> }
    expect(installed.peerDependencies['@gatehouse/core']).toBe('^0.1.0')
    expect(await cli(['SET', 'installed', 'yes'])).toBe('OK')
    expect(await cli(['GET', 'installed'])).toBe('yes')
    expect(await cli(['FLUSHALL'])).toMatch(/NOPERM gatehouse: denied by rule "r\/redis-dangerous\/wipe"/)
    const audit = readFileSync(join(dir, 'app', '.gatehouse', 'audit.jsonl'), 'utf8')
    expect(audit).toContain('"text":"SET installed yes"')
  })

  it('passes the conformance kit installed from its tarball, run by the vitest installed beside it, as a vendor’s own tests would', async () => {
    const app = join(dir, 'app')
    writeFileSync(join(app, 'conformance.test.mjs'), VENDOR_TEST)
    const out = await run(join(app, 'node_modules/.bin/vitest'), ['run', '--reporter=default', '--reporter=json', '--outputFile.json=report.json'], app).catch((err: Error) => err.message)
    const report = JSON.parse(readFileSync(join(app, 'report.json'), 'utf8')) as { numPassedTests: number; numFailedTests: number; testResults: { message?: string; assertionResults: { title: string; status: string; failureMessages: string[] }[] }[] }
    const why = report.testResults.flatMap((f) => [f.message ?? '', ...f.assertionResults.flatMap((a) => a.failureMessages)]).filter(Boolean).join('\n')
    expect(report.numFailedTests, why || out).toBe(0)
    expect(report.numPassedTests, why || out).toBe(10)
  }, 180_000)
})
