/**
 * Core's limits on connections still logging in, through real clients: one source address that
 * holds sockets open (never sending a greeting or a startup packet) takes only its own share of
 * the slots, so psql and OpenSSH from another address still log in; the refusal is audited with
 * the source address and counted in /metrics.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connect, type Socket } from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pgDriver from 'pg'
import { generateToken, hashToken, type AuditEvent } from '@gatehouse/core'
import { generateHostKey } from '@gatehouse/adapter-ssh'
import { psql, runClient } from '../fixtures/clients.js'
import { pgUpstream, startGateway, type TestGateway } from '../fixtures/gateway.js'
import { freePort } from '../fixtures/net.js'
import { startPgCluster, type PgCluster } from '../fixtures/pg-cluster.js'
import { generateKeyPair, sshArgs, startSshd, type KeyPair, type Sshd } from '../fixtures/sshd.js'

const ATTACKER = '127.0.0.2'
const PER_SOURCE = 3

let pg: PgCluster
let sshd: Sshd
let gw: TestGateway
let dir: string
let key: KeyPair
let adminPort: number
const adminToken = generateToken()
const held = new Set<Socket>()

/** A socket from `from` that sends nothing; resolves when the gateway closes it, with what it sent and how long it took. */
function hold(port: number, from: string): { closed: Promise<{ ms: number; data: string }> } {
  const started = Date.now()
  const s = connect({ port, host: '127.0.0.1', localAddress: from })
  held.add(s)
  let data = ''
  s.on('data', (d: Buffer) => (data += d.toString('latin1')))
  s.on('error', () => undefined)
  return { closed: new Promise((resolve) => s.on('close', () => resolve({ ms: Date.now() - started, data }))) }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-limits-'))
  pg = await startPgCluster()
  sshd = await startSshd()
  key = await generateKeyPair(dir, 'agent')
  adminPort = await freePort()
  gw = await startGateway({
    upstream: pgUpstream(pg),
    identities: [{ id: 'agent-1', groups: ['agents'], sshKeys: [key.publicKey] }],
    connection: { limits: { unauthenticated: { perSource: PER_SOURCE }, logins: { perSource: 5, baseDelayMs: 2000 }, sessions: { perIdentity: 3 } } },
    extraConnections: [
      {
        name: 'ssh',
        adapter: 'ssh',
        upstream: { host: sshd.host, port: sshd.port, user: sshd.user, privateKey: sshd.clientPrivateKey, hostKey: sshd.hostKeyFingerprint },
        options: { hostKeys: [generateHostKey().privateKey] },
        limits: { unauthenticated: { perSource: PER_SOURCE } },
      },
    ],
    admin: { listen: `127.0.0.1:${adminPort}`, tokens: [hashToken(adminToken, 'admin')] },
    policies: [{ id: 'p', principals: { groups: ['agents'] }, rules: [{ id: 'all', effect: 'allow' }] }],
  })
}, 60_000)

afterAll(async () => {
  for (const s of held) s.destroy()
  await gw?.stop()
  await sshd?.stop()
  await pg?.stop()
  rmSync(dir, { recursive: true, force: true })
})

const metric = async (limit: string, connection: string): Promise<number> => {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`, { headers: { authorization: `Bearer ${adminToken}` } })).text()
  const m = new RegExp(`gatehouse_limit_refusals_total\\{connection="${connection}",limit="${limit}"\\} (\\d+)`).exec(text)
  return m ? Number(m[1]) : 0
}

describe('connections still logging in, per source address', () => {
  it('PostgreSQL: one address holding sockets gets 53300 past its share; psql from another address logs in', async () => {
    for (let i = 0; i < PER_SOURCE; i++) hold(gw.port, ATTACKER)
    await new Promise((r) => setTimeout(r, 200))
    const extra = await hold(gw.port, ATTACKER).closed
    expect(extra.ms).toBeLessThan(2000)
    expect(extra.data).toContain('53300')
    expect(extra.data).toContain('too many connections are logging in from this address')
    const r = await psql({ host: '127.0.0.1', port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] as string }, 'SELECT 1 AS ok;')
    expect(r.stdout.trim()).toBe('1')
    const events = await gw.audit()
    const refused = events.filter((e: AuditEvent) => e.type === 'protocol' && (e as { event?: string }).event === 'limit.unauthenticated.per-source' && e.connection === 'pg')
    expect(refused.length).toBe(1)
    expect((refused[0] as { client?: string }).client).toBe(ATTACKER)
    expect(await metric('unauthenticated.per-source', 'pg')).toBeGreaterThanOrEqual(1)
  })

  it('SSH: one address holding sockets is dropped past its share; OpenSSH from another address logs in', async () => {
    const port = gw.portOf('ssh')
    for (let i = 0; i < PER_SOURCE; i++) hold(port, ATTACKER)
    await new Promise((r) => setTimeout(r, 200))
    // a burst: dropped at once, logged and audited once
    const extras = await Promise.all([hold(port, ATTACKER).closed, hold(port, ATTACKER).closed, hold(port, ATTACKER).closed])
    for (const e of extras) expect(e.ms).toBeLessThan(2000)
    const r = await runClient('ssh', [...sshArgs({ port, user: 'agent-1', identityFile: key.privateKeyPath }), 'echo served'])
    expect(r.stdout).toBe('served\n')
    const events = await gw.audit()
    const refused = events.filter((e: AuditEvent) => e.type === 'protocol' && (e as { event?: string }).event === 'limit.unauthenticated.per-source' && e.connection === 'ssh')
    expect(refused.length).toBe(1)
    expect(await metric('unauthenticated.per-source', 'ssh')).toBe(3)
  })
})

describe('failed logins', () => {
  it('PostgreSQL: after the free failures an address is locked out, even with the right token, then let in once the lockout passes', async () => {
    const target = (password: string) => ({ host: '127.0.0.1', port: gw.port, user: 'agent-1', password })
    for (let i = 0; i < 6; i++) {
      const r = await psql(target(`gh_wrong_${i}`), 'SELECT 1;')
      expect(r.stderr, `attempt ${i}`).toContain('authentication failed')
    }
    const locked = await psql(target(gw.tokens['agent-1'] as string), 'SELECT 1;')
    expect(locked.stdout).toBe('')
    expect(locked.stderr).toMatch(/too many failed logins; try again in \d+ s/)
    await new Promise((r) => setTimeout(r, 2100))
    const after = await psql(target(gw.tokens['agent-1'] as string), 'SELECT 1 AS ok;')
    expect(after.stdout.trim()).toBe('1')
    const throttled = (await gw.audit()).filter((e: AuditEvent) => e.type === 'auth.failure' && (e as { code?: string }).code === 'GH_ERR_AUTH_THROTTLED')
    expect(throttled.length).toBe(1)
    expect(await metric('logins.per-source', 'pg')).toBe(1)
  })
})

describe('sessions per identity', () => {
  it('PostgreSQL: past the cap a login gets 53300 naming the limit, and gets in once a session ends', async () => {
    const open: pgDriver.Client[] = []
    try {
      for (let i = 0; i < 3; i++) {
        const c = new pgDriver.Client({ host: '127.0.0.1', port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'], database: 'app' })
        await c.connect()
        open.push(c)
      }
      const refused = await psql({ host: '127.0.0.1', port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] as string }, 'SELECT 1;')
      expect(refused.stdout).toBe('')
      expect(refused.stderr).toContain('too many sessions')
      expect(refused.stderr).toContain('limits.sessions.perIdentity')
      await (open.pop() as pgDriver.Client).end()
      await new Promise((r) => setTimeout(r, 200))
      const after = await psql({ host: '127.0.0.1', port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] as string }, 'SELECT 1 AS ok;')
      expect(after.stdout.trim()).toBe('1')
      expect(await metric('sessions.per-identity', 'pg')).toBe(1)
      const failure = (await gw.audit()).find((e: AuditEvent) => e.type === 'auth.failure' && (e as { code?: string }).code === 'GH_ERR_LIMIT_SESSIONS')
      expect(failure).toBeDefined()
    } finally {
      await Promise.all(open.map((c) => c.end()))
    }
  })
})

