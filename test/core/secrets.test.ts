/**
 * Secrets never appear in logs, audit events or errors. A real gateway (`gatehouse start`, log
 * level trace) serves a PostgreSQL and an SSH connection through whole sessions — good and bad
 * logins, allowed and denied statements, exec and sftp — with every kind of secret configured:
 * gateway tokens, the upstream database password, the upstream SSH key, the gateway's host key,
 * the audit signing key and a webhook's Authorization header. Then everything the gateway wrote
 * (stdout, stderr, every file under its data directory, what the webhook received) is searched
 * for each secret and for a distinctive piece of each key.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { generateToken, hashToken } from '@gatehouse/core'
import { generateHostKey } from '@gatehouse/adapter-ssh'
import { startPgCluster, type PgCluster } from '../fixtures/pg-cluster.js'
import { generateKeyPair, sftpArgs, sshArgs, startSshd, type KeyPair, type Sshd } from '../fixtures/sshd.js'
import { psql, runClient } from '../fixtures/clients.js'

const CLI = join(fileURLToPath(new URL('../..', import.meta.url)), 'core/dist/cli.js')

let pg: PgCluster
let sshd: Sshd
let dir: string
let agentKey: KeyPair
let hook: Server
const hookBodies: string[] = []
const hookAuth: string[] = []

beforeAll(async () => {
  pg = await startPgCluster()
  sshd = await startSshd()
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-secrets-'))
  chmodSync(dir, 0o755)
  agentKey = await generateKeyPair(dir, 'agent')
  hook = createServer((req, res) => {
    let body = ''
    hookAuth.push(String(req.headers.authorization))
    req.on('data', (d: Buffer) => (body += d.toString()))
    req.on('end', () => {
      hookBodies.push(body)
      res.statusCode = 204
      res.end()
    })
  })
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', () => r()))
}, 60_000)

afterAll(async () => {
  await pg?.stop()
  await sshd?.stop()
  hook?.close()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

/** Every file under `root`, as text. */
function filesUnder(root: string): { path: string; text: string }[] {
  const out: { path: string; text: string }[] = []
  for (const name of readdirSync(root)) {
    const p = join(root, name)
    if (statSync(p).isDirectory()) out.push(...filesUnder(p))
    else out.push({ path: p, text: readFileSync(p).toString('latin1') })
  }
  return out
}

/** A distinctive 24-character run from the middle of a PEM or OpenSSH key body. */
function keyPiece(pem: string): string {
  const body = pem.split('\n').filter((l) => l && !l.startsWith('-----')).join('')
  return body.slice(Math.floor(body.length / 2) - 12, Math.floor(body.length / 2) + 12)
}

describe('secrets never in logs, audit or errors', () => {
  it('a whole PostgreSQL and SSH session at log level trace leaves no secret anywhere the gateway writes', async () => {
    const token = generateToken()
    const wrongToken = generateToken()
    const hookSecret = `hook-${generateToken()}`
    const hostKey = generateHostKey()
    const signing = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
    const dataDir = join(dir, 'data')
    const files = { upstreamKey: join(dir, 'upstream.key'), hostKey: join(dir, 'host.key'), signing: join(dir, 'signing.pem') }
    writeFileSync(files.upstreamKey, sshd.clientPrivateKey, { mode: 0o600 })
    writeFileSync(files.hostKey, hostKey.privateKey, { mode: 0o600 })
    writeFileSync(files.signing, signing, { mode: 0o600 })
    writeFileSync(join(dir, 'artifact.txt'), 'artifact\n')
    const configPath = join(dir, 'gatehouse.yaml')
    writeFileSync(
      configPath,
      `dataDir: ${JSON.stringify(dataDir)}
log: { level: trace }
identities:
  - id: agent-1
    groups: [agents]
    tokens: [{ id: agent-1-token, hash: ${JSON.stringify(hashToken(token, 'agent-1'))} }]
    sshKeys: [${JSON.stringify(agentKey.publicKey)}]
plugins:
  - use: audit-jsonl
    config: { path: ${JSON.stringify(join(dataDir, 'audit.jsonl'))}, required: true, checkpoint: { key: "\${file:${files.signing}}", everyEvents: 3 } }
  - use: audit-webhook
    config: { url: "http://127.0.0.1:${(hook.address() as { port: number }).port}/audit", headers: { Authorization: "Bearer \${env:GH_TEST_HOOK_SECRET}" }, required: false, flushMs: 5 }
connections:
  - name: pg
    adapter: postgres
    listen: "127.0.0.1:0"
    upstream: { host: ${pg.host}, port: ${pg.port}, database: ${pg.database}, user: ${pg.users.scram.user}, password: "\${env:GH_TEST_PG_PASSWORD}" }
    plugins: { record: [audit-jsonl, audit-webhook] }
  - name: web
    adapter: ssh
    listen: "127.0.0.1:0"
    upstream: { host: ${sshd.host}, port: ${sshd.port}, user: ${sshd.user}, privateKey: "\${file:${files.upstreamKey}}", hostKey: ${JSON.stringify(sshd.hostKeyFingerprint)} }
    options: { hostKeys: ["\${file:${files.hostKey}}"] }
    plugins: { record: [audit-jsonl, audit-webhook] }
policies:
  - id: agents
    principals: { groups: [agents] }
    rules:
      - { id: read, effect: allow, match: { sql.statement: [SELECT, SET, SHOW] } }
      - { id: echo, effect: allow, actions: [ssh.exec], match: { ssh.programs: [echo] } }
      - { id: files, effect: allow, actions: [ssh.sftp] }
`,
    )
    const env = { ...process.env, GH_TEST_PG_PASSWORD: pg.users.scram.password, GH_TEST_HOOK_SECRET: hookSecret }
    const child = spawn(process.execPath, [CLI, 'start', '--config', configPath], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (out += d.toString()))
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
    try {
      const ports: Record<string, number> = {}
      for (let i = 0; i < 300 && !out.includes('gateway ready'); i++) await new Promise((r) => setTimeout(r, 50))
      for (const line of out.split('\n').filter((l) => l.startsWith('{'))) {
        const l = JSON.parse(line) as { msg?: string; connection?: string; address?: string }
        if (l.msg === 'listening' && l.connection && l.address) ports[l.connection] = Number(l.address.split(':').at(-1))
      }
      expect(Object.keys(ports).sort(), out.slice(-2000)).toEqual(['pg', 'web'])

      // PostgreSQL: a good session with an allowed and a denied statement, a wrong token, a session error
      const good = await psql({ port: ports.pg as number, user: 'agent-1', password: token }, "SELECT 41 + 1;\nDELETE FROM pg_class;\nSELECT current_setting('server_version') IS NOT NULL;\nSELECT 1/0;\n")
      expect(good.stdout).toBe('42\nt\n')
      expect(good.stderr).toContain('denied')
      const bad = await psql({ port: ports.pg as number, user: 'agent-1', password: wrongToken }, 'SELECT 1;\n')
      expect(bad.stderr).toMatch(/authentication failed|invalid/)
      // SSH: an allowed exec, a denied one, an sftp read
      const ssh = (cmd: string) => runClient('ssh', [...sshArgs({ port: ports.web as number, user: 'agent-1', identityFile: agentKey.privateKeyPath }), cmd])
      expect((await ssh('echo through')).stdout).toBe('through\n')
      expect((await ssh('cat /etc/shadow')).code).not.toBe(0)
      const batch = join(dir, 'batch')
      writeFileSync(batch, `get ${join(dir, 'artifact.txt')} ${join(dir, 'fetched.txt')}\n`)
      const sftp = await runClient('sftp', sftpArgs({ port: ports.web as number, user: 'agent-1', identityFile: agentKey.privateKeyPath, extra: ['-b', batch] }))
      expect(sftp.code, sftp.stderr).toBe(0)
    } finally {
      child.kill('SIGTERM')
    }
    expect(await exited).toBe(0)

    // the log really is at trace level and the sessions really were recorded
    expect(out).toMatch(/"level":10/)
    const written = filesUnder(dataDir)
    const audit = written.find((f) => f.path.endsWith('audit.jsonl'))?.text ?? ''
    expect(audit).toContain('SELECT 41 + 1')
    expect(audit).toContain('echo through')
    expect(audit).toContain('"type":"auth.failure"')
    expect(hookBodies.join('')).toContain('SELECT 41 + 1')
    expect(hookAuth).toContain(`Bearer ${hookSecret}`)

    const secrets: Record<string, string> = {
      'gateway token': token,
      'the body of the gateway token': token.replace(/^gh_/, ''),
      'a wrong token tried at login': wrongToken,
      'upstream PostgreSQL password': pg.users.scram.password,
      'webhook Authorization secret': hookSecret,
      'upstream SSH private key': keyPiece(sshd.clientPrivateKey),
      'gateway SSH host key': keyPiece(hostKey.privateKey),
      'audit signing key': keyPiece(signing),
      "the agent's SSH private key": keyPiece(readFileSync(agentKey.privateKeyPath, 'utf8')),
    }
    const places = [{ path: 'gateway stdout and stderr', text: out }, ...written, { path: 'webhook bodies', text: hookBodies.join('\n') }]
    for (const [what, value] of Object.entries(secrets)) {
      expect(value.length).toBeGreaterThanOrEqual(16)
      for (const place of places) expect(place.text.includes(value), `${what} found in ${place.path}`).toBe(false)
    }
  }, 120_000)
})
