/**
 * Short-lived tokens issued at run time, end to end: `gatehouse token issue --admin` against a
 * running gateway's admin API, psql and node-postgres logging in with the token (SCRAM, so the
 * token never crosses the wire), scope to one connection, expiry, revocation ending a live
 * session at once, the admin API refusing callers without an admin token, never showing a hash,
 * and issued tokens surviving a gateway restart (the embedded state store).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { createLogger, Gateway, generateToken, hashToken, IssuedTokens, loadConfigFile, openPostgres, SqlStateStore } from '@gatehouse/core'
import { startPgCluster, type PgCluster } from '../fixtures/pg-cluster.js'
import { psql } from '../fixtures/clients.js'

const REPO = fileURLToPath(new URL('../..', import.meta.url))
const CLI = join(REPO, 'core', 'dist', 'cli.js')

let cluster: PgCluster
let dir: string
const adminToken = generateToken()

beforeAll(async () => {
  cluster = await startPgCluster()
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-issued-'))
}, 60_000)
afterAll(async () => {
  await cluster?.stop()
  rmSync(dir, { recursive: true, force: true })
})

/** A gateway on `dataDir` with two connections to the cluster and an admin API, from a config file. */
async function startOn(dataDir: string): Promise<{ gateway: Gateway; port: (c: string) => number; admin: string; audit: string }> {
  const u = cluster.users.scram
  const upstream = `{ host: 127.0.0.1, port: ${cluster.port}, database: app, user: ${u.user}, password: "${u.password}" }`
  const path = join(dataDir, 'gatehouse.yaml')
  writeFileSync(
    path,
    `dataDir: ${dataDir}
log: { level: silent }
admin: { listen: "127.0.0.1:0", tokens: ["${hashToken(adminToken, 'admin')}"] }
identities:
  - { id: agent-1, groups: [agents] }
plugins:
  - { use: audit-jsonl, config: { path: audit.jsonl } }
connections:
  - { name: orders, adapter: postgres, listen: "127.0.0.1:0", upstream: ${upstream} }
  - { name: billing, adapter: postgres, listen: "127.0.0.1:0", upstream: ${upstream} }
policies:
  - { id: p, principals: { groups: [agents] }, rules: [ { id: reads, effect: allow, match: { sql.statement: [SELECT] } } ] }
`,
  )
  const gateway = await Gateway.build(loadConfigFile(path), { logger: createLogger('silent') })
  await gateway.start()
  return { gateway, port: (c) => gateway.address(c).port, admin: `http://127.0.0.1:${gateway.adminPort}`, audit: join(dataDir, 'audit.jsonl') }
}

function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr })
    })
  })
}

const asAdmin = { GATEHOUSE_ADMIN_TOKEN: adminToken }

describe('tokens issued at run time', () => {
  it('issued by the CLI through the admin API: psql logs in with it on its connection only; revoking it ends a live session at once; a restart keeps the rest', async () => {
    const dataDir = mkdtempSync(join(dir, 'gw-'))
    let gw = await startOn(dataDir)
    try {
      const issue = await cli(['token', 'issue', '--identity', 'agent-1', '--connections', 'orders', '--ttl', '15m', '--admin', gw.admin, '--json', '--description', 'nightly export'], asAdmin)
      expect(issue.code, issue.stderr).toBe(0)
      const issued = JSON.parse(issue.stdout) as { token: string; id: string; identity: string; connections: string[]; expiresAt: string; createdBy: string; hash?: string }
      expect(issued).toMatchObject({ identity: 'agent-1', connections: ['orders'], createdBy: 'admin#0', description: 'nightly export' })
      expect(issued.token).toMatch(/^gh_/)
      expect(issued.hash).toBeUndefined()
      expect(Date.parse(issued.expiresAt) - Date.now()).toBeGreaterThan(14 * 60_000)

      const ok = await psql({ port: gw.port('orders'), user: 'agent-1', password: issued.token }, 'SELECT 40 + 2;\n')
      expect(ok.stdout.trim(), ok.stderr).toBe('42')
      // scoped to orders: billing refuses it
      const scoped = await psql({ port: gw.port('billing'), user: 'agent-1', password: issued.token }, 'SELECT 1;\n')
      expect(scoped.code).not.toBe(0)
      expect(scoped.stderr).toMatch(/not valid for connection "billing"/)

      // the list shows it, without its hash; the token itself is stored nowhere
      const list = await cli(['token', 'list', '--admin', gw.admin, '--identity', 'agent-1'], asAdmin)
      expect(list.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { id: string }).id)).toEqual([issued.id])
      expect(list.stdout).not.toContain('SCRAM')
      expect(list.stdout).not.toContain(issued.token)

      // a second token, then a live session on the first: revoking the first ends it at once
      const second = JSON.parse((await cli(['token', 'issue', '--identity', 'agent-1', '--ttl', '1h', '--admin', gw.admin, '--json'], asAdmin)).stdout) as { token: string; id: string }
      const client = new pg.Client({ host: '127.0.0.1', port: gw.port('orders'), user: 'agent-1', password: issued.token, database: 'app' })
      const ended = new Promise<Error>((resolve) => client.on('error', resolve))
      await client.connect()
      expect((await client.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }])
      const revoke = await cli(['token', 'revoke', issued.id, '--admin', gw.admin, '--reason', 'job finished'], asAdmin)
      expect(revoke.code, revoke.stderr).toBe(0)
      expect(JSON.parse(revoke.stdout)).toMatchObject({ id: issued.id, revokedBy: 'admin#0', revokeReason: 'job finished' })
      const err = await ended
      expect(err.message).toMatch(/credential no longer valid|no longer valid/)
      await client.end().catch(() => undefined)
      const after = await psql({ port: gw.port('orders'), user: 'agent-1', password: issued.token }, 'SELECT 1;\n')
      expect(after.code).not.toBe(0)
      expect(after.stderr).toMatch(/authentication failed|credential no longer valid/)
      // the other token is untouched, on both connections (no scope)
      expect((await psql({ port: gw.port('billing'), user: 'agent-1', password: second.token }, 'SELECT 7;\n')).stdout.trim()).toBe('7')

      // a restart on the same data directory: the store has the tokens, revoked and not
      await gw.gateway.shutdown(0)
      gw = await startOn(dataDir)
      expect((await psql({ port: gw.port('orders'), user: 'agent-1', password: second.token }, 'SELECT 8;\n')).stdout.trim()).toBe('8')
      expect((await psql({ port: gw.port('orders'), user: 'agent-1', password: issued.token }, 'SELECT 1;\n')).code).not.toBe(0)
      const all = await cli(['token', 'list', '--admin', gw.admin, '--all'], asAdmin)
      expect(all.stdout.trim().split('\n').map((l) => JSON.parse(l) as { id: string; revokedAt?: string }).map((t) => [t.id, t.revokedAt !== undefined])).toEqual([
        [second.id, false],
        [issued.id, true],
      ])

      // the audit names the session's end and its cause
      const events = (await import('node:fs')).readFileSync(gw.audit, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { type: string; reason?: string; cause?: string })
      expect(events.some((e) => e.type === 'session.end' && /revoked|no longer valid/.test(JSON.stringify(e)))).toBe(true)
    } finally {
      await gw.gateway.shutdown(0)
    }
  })

  it('expires on time; the admin API refuses callers without an admin token, unknown identities and connections, and lifetimes past the limit', async () => {
    const dataDir = mkdtempSync(join(dir, 'gw-'))
    const gw = await startOn(dataDir)
    try {
      // long enough to log in once under a loaded machine's spawn times, short enough to wait out
      const short = await cli(['token', 'issue', '--identity', 'agent-1', '--ttl', '8s', '--admin', gw.admin, '--json'], asAdmin)
      const t = JSON.parse(short.stdout) as { token: string; expiresAt: string }
      expect((await psql({ port: gw.port('orders'), user: 'agent-1', password: t.token }, 'SELECT 1;\n')).stdout.trim()).toBe('1')
      await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(t.expiresAt) - Date.now() + 200)))
      const late = await psql({ port: gw.port('orders'), user: 'agent-1', password: t.token }, 'SELECT 1;\n')
      expect(late.code).not.toBe(0)
      expect(late.stderr).toMatch(/token expired/)

      const post = (body: unknown, token?: string) => fetch(`${gw.admin}/tokens`, { method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify(body) })
      expect((await post({ identity: 'agent-1', ttl: '15m' })).status).toBe(401)
      expect((await post({ identity: 'agent-1', ttl: '15m' }, generateToken())).status).toBe(401)
      const unknown = await post({ identity: 'nobody', ttl: '15m' }, adminToken)
      expect(unknown.status).toBe(400)
      expect(await unknown.json()).toMatchObject({ error: 'no identity "nobody" in the configuration' })
      expect((await post({ identity: 'agent-1', ttl: '15m', connections: ['nowhere'] }, adminToken)).status).toBe(400)
      expect((await post({ identity: 'agent-1', ttl: '30d' }, adminToken)).status).toBe(400)
      expect((await post({ identity: 'agent-1', ttl: 'soon' }, adminToken)).status).toBe(400)
      expect((await post({ identity: 'agent-1' }, adminToken)).status).toBe(400)
      expect((await fetch(`${gw.admin}/tokens/tok_nope`, { method: 'DELETE', headers: { authorization: `Bearer ${adminToken}` } })).status).toBe(404)

      // the CLI: no admin token, no ttl, a refusal: each a clear error and exit 1
      const noToken = await cli(['token', 'issue', '--identity', 'agent-1', '--ttl', '15m', '--admin', gw.admin], { GATEHOUSE_ADMIN_TOKEN: '' })
      expect(noToken).toMatchObject({ code: 1 })
      expect(noToken.stderr).toMatch(/GATEHOUSE_ADMIN_TOKEN/)
      const noTtl = await cli(['token', 'issue', '--identity', 'agent-1', '--admin', gw.admin], asAdmin)
      expect(noTtl.stderr).toMatch(/--admin needs --ttl/)
      const refused = await cli(['token', 'issue', '--identity', 'nobody', '--ttl', '15m', '--admin', gw.admin], asAdmin)
      expect(refused.code).toBe(1)
      expect(refused.stderr).toMatch(/400 no identity "nobody"/)
    } finally {
      await gw.gateway.shutdown(0)
    }
  })

  it('replicas on one PostgreSQL store: a token issued on one logs in on the other after its poll; a revocation on one is announced on the other', async () => {
    await cluster.psql(`CREATE DATABASE issued_replicas; GRANT ALL ON DATABASE issued_replicas TO ${cluster.users.scram.user};`)
    const url = `postgres://${cluster.users.scram.user}:${encodeURIComponent(cluster.users.scram.password)}@127.0.0.1:${cluster.port}/issued_replicas`
    const config = { identities: [{ id: 'agent-1' }], connections: [{ name: 'orders' }] }
    const stores = [new SqlStateStore('postgres', () => openPostgres(url)), new SqlStateStore('postgres', () => openPostgres(url))]
    const [a, b] = stores.map((s) => new IssuedTokens(s, createLogger('silent'), { load: true })) as [IssuedTokens, IssuedTokens]
    try {
      a.know(config)
      b.know(config)
      await a.start()
      await b.start()
      let announced = 0
      b.onChange(() => announced++)
      const { record } = await a.issue({ identity: 'agent-1', ttlMs: 60_000, by: 'test' })
      expect(b.forIdentity('agent-1')).toEqual([])
      await b.refresh()
      expect(b.forIdentity('agent-1').map((t) => t.id)).toEqual([record.id])
      expect(announced).toBe(0)
      await a.revoke(record.id, 'test', 'done')
      await b.refresh()
      expect(b.forIdentity('agent-1')).toEqual([])
      expect(announced).toBe(1)
    } finally {
      a.stop()
      b.stop()
      for (const s of stores) await s.close()
    }
  })

  it('a read of the store that began before a revocation cannot bring the revoked token back', async () => {
    const record = { id: 'tok_1', identity: 'agent-1', hash: 'sha256:' + '0'.repeat(64), createdAt: 0, createdBy: 't', expiresAt: Date.now() + 60_000 }
    let release: (v: (typeof record)[]) => void = () => undefined
    const store = {
      listTokens: () => new Promise<(typeof record)[]>((r) => (release = r)),
      revokeToken: async () => ({ ...record, revokedAt: Date.now(), revokedBy: 'admin' }),
    } as unknown as ConstructorParameters<typeof IssuedTokens>[0]
    const issued = new IssuedTokens(store, createLogger('silent'), { load: false })
    const stale = issued.refresh()
    await issued.revoke('tok_1', 'admin', 'leaked')
    // the read that started before the revocation answers now, with the token still active
    release([record])
    await stale
    expect(issued.forIdentity('agent-1')).toEqual([])
    expect(issued.get('tok_1')).toBeUndefined()
  })
})
