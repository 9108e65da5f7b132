/**
 * Sessions that core ends, through real clients: a token that expires mid-session (psql gets a
 * FATAL naming it, OpenSSH a disconnect message), idle time and session age, per-identity caps
 * and overrides, and config reload — a token removed from the config ends its sessions, a policy
 * change applies to open sessions, an invalid or restart-only change leaves the config in force.
 * Every ending is audited (protocol event, then session.end with the reason) and counted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pgDriver from 'pg'
import { ConfigError, generateToken, hashToken, type AuditEvent, type GatewayConfig } from '@gatehouse/core'
import { generateHostKey } from '@gatehouse/adapter-ssh'
import { psql, runClient } from '../fixtures/clients.js'
import { connect } from 'node:net'
import { RawPgClient, errorFields, wire } from '../fixtures/pg-raw.js'
import { pgUpstream, startGateway, type StartGatewayOptions, type TestGateway } from '../fixtures/gateway.js'
import { startPgCluster, type PgCluster } from '../fixtures/pg-cluster.js'
import { generateKeyPair, sshArgs, startSshd, type KeyPair, type Sshd } from '../fixtures/sshd.js'

let pg: PgCluster
let sshd: Sshd
let dir: string
let key: KeyPair
const adminToken = generateToken()
const ALLOW_ALL = [{ id: 'p', principals: { groups: ['agents'] }, rules: [{ id: 'all', effect: 'allow' }] }]

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-session-limits-'))
  pg = await startPgCluster()
  sshd = await startSshd()
  key = await generateKeyPair(dir, 'agent')
}, 60_000)

afterAll(async () => {
  await sshd?.stop()
  await pg?.stop()
  rmSync(dir, { recursive: true, force: true })
})

/** A gateway with a postgres connection `pg`, an ssh connection `ssh` and the admin API. */
async function gatewayWith(opts: Partial<StartGatewayOptions> & { sshLimits?: Record<string, unknown> } = {}): Promise<TestGateway & { metric(name: string, labels: string): Promise<number> }> {
  const gw = await startGateway({
    upstream: pgUpstream(pg),
    policies: ALLOW_ALL,
    ...opts,
    extraConnections: [
      {
        name: 'ssh',
        adapter: 'ssh',
        upstream: { host: sshd.host, port: sshd.port, user: sshd.user, privateKey: sshd.clientPrivateKey, hostKey: sshd.hostKeyFingerprint },
        options: { hostKeys: [generateHostKey().privateKey] },
        ...(opts.sshLimits ? { limits: opts.sshLimits } : {}),
      },
    ],
    // port 0: the admin API binds a free port itself (a port picked beforehand can be taken meanwhile)
    admin: { listen: '127.0.0.1:0', tokens: [hashToken(adminToken, 'admin')] },
  })
  const adminPort = gw.gateway.adminPort as number
  return Object.assign(gw, {
    metric: async (name: string, labels: string): Promise<number> => {
      const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`, { headers: { authorization: `Bearer ${adminToken}` } })).text()
      const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`))
      return line ? Number(line.split(' ').at(-1)) : 0
    },
  })
}

const pgTarget = (gw: TestGateway, id = 'agent-1') => ({ host: '127.0.0.1', port: gw.port, user: id, password: gw.tokens[id] as string })

function pgClient(gw: TestGateway, id = 'agent-1'): pgDriver.Client & { lost: Promise<Error> } {
  const c = new pgDriver.Client({ ...pgTarget(gw, id), database: 'app' })
  const lost = new Promise<Error>((resolve) => c.on('error', resolve))
  return Object.assign(c, { lost })
}

/** Runs ssh with the identity's token as the password (the only SSH credential that expires). */
async function sshWithToken(gw: TestGateway, id: string, command: string) {
  const askpass = join(dir, `askpass-${id}-${Date.now()}.sh`)
  writeFileSync(askpass, `#!/bin/sh\necho '${gw.tokens[id]}'\n`)
  chmodSync(askpass, 0o700)
  return runClient(
    'ssh',
    [...sshArgs({ port: gw.portOf('ssh'), user: id, password: true, extra: ['-o', 'LogLevel=INFO', '-o', 'PreferredAuthentications=password', '-o', 'PubkeyAuthentication=no'] }), command],
    { env: { SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: 'force', DISPLAY: ':0' }, timeoutMs: 20_000 },
  )
}

/** Runs a client; `reached` resolves once its output contains `marker` (the session is up and running). */
function runUntil(cmd: string, args: string[], marker: string, opts: Parameters<typeof runClient>[2] = {}) {
  let reach: () => void = () => undefined
  const reached = new Promise<void>((resolve) => (reach = resolve))
  const done = runClient(cmd, args, { ...opts, onStdout: (text) => text.includes(marker) && reach() })
  return { reached: Promise.race([reached, done.then(() => undefined)]), done }
}

const protocolEvents = (events: AuditEvent[], event: string) => events.filter((e) => e.type === 'protocol' && (e as { event?: string }).event === event) as (AuditEvent & { client?: string; reason?: string })[]
const sessionEnd = (events: AuditEvent[], session: string) => events.find((e) => e.type === 'session.end' && e.session === session) as (AuditEvent & { reason?: string }) | undefined
const inMs = (ms: number) => new Date(Date.now() + ms).toISOString()

describe('before login', () => {
  it('a connection that does not log in in time is closed (PostgreSQL with a FATAL); audited once per burst per address, each counted', async () => {
    const gw = await gatewayWith({ connection: { limits: { unauthenticated: { loginTimeoutMs: 500 } } }, sshLimits: { unauthenticated: { loginTimeoutMs: 500 } } })
    try {
      const hold = (port: number) =>
        new Promise<{ ms: number; data: string }>((resolve) => {
          const started = Date.now()
          const s = connect({ port, host: '127.0.0.1', localAddress: '127.0.0.2' })
          let data = ''
          s.on('data', (d: Buffer) => (data += d.toString('latin1')))
          s.on('error', () => undefined)
          s.on('close', () => resolve({ ms: Date.now() - started, data }))
          setTimeout(() => s.destroy(), 5000)
        })
      const closed = await Promise.all([hold(gw.port), hold(gw.port), hold(gw.port), hold(gw.portOf('ssh')), hold(gw.portOf('ssh')), hold(gw.portOf('ssh'))])
      for (const c of closed) expect(c.ms).toBeLessThan(2500)
      for (const c of closed.slice(0, 3)) expect(c.data).toContain('startup timed out: the client did not log in within 500 ms')
      const events = protocolEvents(await gw.audit(), 'limit.unauthenticated.login-timeout')
      expect(events.map((e) => [e.connection, e.client]).sort()).toEqual([
        ['pg', '127.0.0.2'],
        ['ssh', '127.0.0.2'],
      ])
      expect(await gw.metric('gatehouse_limit_refusals_total', 'connection="pg",limit="unauthenticated.login-timeout"')).toBe(3)
      expect(await gw.metric('gatehouse_limit_refusals_total', 'connection="ssh",limit="unauthenticated.login-timeout"')).toBe(3)
    } finally {
      await gw.stop()
    }
  })

  it('a flood of wrong tokens from one address is locked out; psql from another address still logs in at once', async () => {
    const gw = await gatewayWith({ connection: { limits: { unauthenticated: { perSource: 64 } } } })
    let flooding = true
    let attempts = 0
    const flood = async () => {
      while (flooding) {
        // a locked-out address may be reset at connect: that is the lockout working, keep flooding
        const c = await RawPgClient.connect(gw.port, '127.0.0.2').catch(() => undefined)
        if (!c) continue
        await c.login('agent-1', generateToken()).catch(() => undefined)
        c.close()
        attempts++
      }
    }
    try {
      // how long a login takes on this machine today, with no flood
      let quiet = 0
      for (let i = 0; i < 2; i++) {
        const started = Date.now()
        expect((await psql(pgTarget(gw), 'SELECT 1;')).stdout.trim()).toBe('1')
        quiet = Math.max(quiet, Date.now() - started)
      }
      const floods = Array.from({ length: 8 }, flood)
      await new Promise((r) => setTimeout(r, 1000))
      for (let i = 0; i < 3; i++) {
        const started = Date.now()
        const r = await psql(pgTarget(gw), 'SELECT 1;')
        expect(r.stdout.trim()).toBe('1')
        // not held up by the flood: within a few quiet logins' time (a starved login waits for the flood's key derivations)
        expect(Date.now() - started).toBeLessThan(Math.max(1000, 4 * quiet))
      }
      flooding = false
      await Promise.all(floods)
      expect(attempts).toBeGreaterThan(50)
      expect(await gw.metric('gatehouse_limit_refusals_total', 'connection="pg",limit="logins.per-source"')).toBeGreaterThan(0)
    } finally {
      flooding = false
      await gw.stop()
    }
  })

  it('SSH: a client that fails too many keys on one connection is disconnected with the reason, and it is counted', async () => {
    const gw = await gatewayWith({ identities: [{ id: 'agent-1', sshKeys: [key.publicKey] }], sshLimits: { logins: { perConnection: 2 } } })
    try {
      const strangers = await Promise.all([1, 2, 3].map((i) => generateKeyPair(dir, `stranger-${i}`)))
      const args = sshArgs({ port: gw.portOf('ssh'), user: 'agent-1', extra: ['-o', 'LogLevel=INFO', ...strangers.flatMap((k) => ['-i', k.privateKeyPath])] })
      const r = await runClient('ssh', [...args, 'echo in'])
      expect(r.stdout).toBe('')
      expect(r.stderr).toMatch(/Received disconnect from .*gatehouse: too many authentication failures/)
      expect(await gw.metric('gatehouse_limit_refusals_total', 'connection="ssh",limit="logins.per-connection"')).toBe(1)
      expect(protocolEvents(await gw.audit(), 'limit.logins.per-connection')).toHaveLength(1)
    } finally {
      await gw.stop()
    }
  })

  it('PostgreSQL: a message over limits.postgres.messageBytes ends the session with a FATAL naming the limit, counted and audited', async () => {
    const gw = await gatewayWith({ connection: { limits: { postgres: { messageBytes: 1024 } } } })
    const c = await RawPgClient.connect(gw.port)
    try {
      await c.login('agent-1', gw.tokens['agent-1'] as string)
      c.write(wire.query(`SELECT '${'x'.repeat(2000)}'`))
      const e = await c.until('E', 5000)
      expect(errorFields((e[e.length - 1] as { body: Buffer }).body)).toMatchObject({ S: 'FATAL', C: '08P01', M: expect.stringContaining('(limits.postgres.messageBytes)') })
      expect(protocolEvents(await gw.audit(), 'limit.postgres.message-bytes')).toHaveLength(1)
      expect(await gw.metric('gatehouse_limit_refusals_total', 'connection="pg",limit="postgres.message-bytes"')).toBe(1)
    } finally {
      c.close()
      await gw.stop()
    }
  })
})

describe('a token that expires ends the sessions it opened', () => {
  it('PostgreSQL: psql in the middle of a statement gets a FATAL naming the expired token; audited and counted', async () => {
    const gw = await gatewayWith({ identities: [{ id: 'agent-1', token: { expires: inMs(4000) } }] })
    try {
      const started = Date.now()
      const r = await psql(pgTarget(gw), 'SELECT 1 AS before; SELECT pg_sleep(10); SELECT 2 AS after;')
      expect(Date.now() - started).toBeLessThan(8000)
      expect(r.stdout.trim().split('\n')[0]).toBe('1')
      expect(r.stdout).not.toMatch(/^2$/m)
      expect(r.stderr).toMatch(/FATAL:\s+gatehouse: terminating the session: the credential this session logged in with \(token:agent-1-token\) expired at/)
      const events = await gw.audit()
      const [ended] = protocolEvents(events, 'credential.expired')
      expect(ended).toBeDefined()
      expect(ended?.client).toMatch(/^127\.0\.0\.1:\d+$/)
      expect(sessionEnd(events, ended?.session as string)?.reason).toContain('expired at')
      expect(await gw.metric('gatehouse_sessions_credential_ended_total', 'connection="pg",cause="credential.expired"')).toBe(1)
      // and the token no longer logs in
      const again = await psql(pgTarget(gw), 'SELECT 1;')
      expect(again.stderr).toContain('token expired')
    } finally {
      await gw.stop()
    }
  })

  it('SSH: a command still running is cut off with a disconnect message that says why', async () => {
    const gw = await gatewayWith({ identities: [{ id: 'agent-1', token: { expires: inMs(5000) } }] })
    try {
      const started = Date.now()
      const r = await sshWithToken(gw, 'agent-1', 'echo started; sleep 12; echo late')
      expect(Date.now() - started).toBeLessThan(10_000)
      expect(r.stdout).toBe('started\n')
      expect(r.stderr).toMatch(/Received disconnect from .*gatehouse: session ended: the credential this session logged in with \(token:agent-1-token\) expired at/)
      const events = await gw.audit()
      expect(protocolEvents(events, 'credential.expired').filter((e) => e.connection === 'ssh')).toHaveLength(1)
    } finally {
      await gw.stop()
    }
  })
})

describe('idle time and session age', () => {
  it('PostgreSQL: an idle session is ended with 57P05 naming the limit; one whose statement runs long is not idle', async () => {
    const gw = await gatewayWith({ connection: { limits: { sessions: { idleMs: 1000 } } } })
    const idle = pgClient(gw)
    const working = pgClient(gw)
    try {
      await idle.connect()
      await working.connect()
      expect((await idle.query('SELECT 1 AS n')).rows).toEqual([{ n: 1 }])
      // no bytes move while the server sleeps: the session is working, not idle
      expect((await working.query('SELECT pg_sleep(2.5), 7 AS n')).rows[0].n).toBe(7)
      const lost = (await idle.lost) as Error & { code?: string }
      expect(lost.code).toBe('57P05')
      expect(lost.message).toContain('no traffic for 1000 ms (limits.sessions.idleMs)')
      const events = await gw.audit()
      const limited = protocolEvents(events, 'limit.sessions.idle')
      expect(limited.length).toBeGreaterThanOrEqual(1)
      expect(limited[0]?.client).toMatch(/^127\.0\.0\.1:\d+$/)
      expect(await gw.metric('gatehouse_limit_refusals_total', 'connection="pg",limit="sessions.idle"')).toBeGreaterThanOrEqual(1)
    } finally {
      await idle.end().catch(() => undefined)
      await working.end().catch(() => undefined)
      await gw.stop()
    }
  })

  it('SSH: a silent command is work, not idleness; the session is still ended at its maximum age', async () => {
    const gw = await gatewayWith({ identities: [{ id: 'agent-1', sshKeys: [key.publicKey] }], sshLimits: { sessions: { idleMs: 1500, maxAgeMs: 10_000 } } })
    try {
      const quiet = await runClient('ssh', [...sshArgs({ port: gw.portOf('ssh'), user: 'agent-1', identityFile: key.privateKeyPath }), 'sleep 3; echo done'])
      expect(quiet.stdout).toBe('done\n')
      const started = Date.now()
      const old = await runClient('ssh', [...sshArgs({ port: gw.portOf('ssh'), user: 'agent-1', identityFile: key.privateKeyPath, extra: ['-o', 'LogLevel=INFO'] }), 'echo up; sleep 20; echo late'])
      expect(Date.now() - started).toBeLessThan(16_000)
      expect(old.stdout).toBe('up\n')
      expect(old.stderr).toMatch(/Received disconnect from .*gatehouse: session ended: the session is older than the gateway's limit of 10000 ms \(limits.sessions.maxAgeMs\)/)
      expect(protocolEvents(await gw.audit(), 'limit.sessions.max-age')).toHaveLength(1)
    } finally {
      await gw.stop()
    }
  })
})

describe('idle SSH sessions', () => {
  it('keepalives are not traffic: ssh -N with ServerAliveInterval=1 is still ended as idle, with the reason', async () => {
    const gw = await gatewayWith({ identities: [{ id: 'agent-1', sshKeys: [key.publicKey] }], sshLimits: { sessions: { idleMs: 2500 } } })
    try {
      const started = Date.now()
      const r = await runClient('ssh', [...sshArgs({ port: gw.portOf('ssh'), user: 'agent-1', identityFile: key.privateKeyPath, extra: ['-N', '-o', 'LogLevel=INFO', '-o', 'ServerAliveInterval=1', '-o', 'ServerAliveCountMax=10'] })])
      expect(Date.now() - started).toBeLessThan(6000)
      expect(r.stderr).toMatch(/Received disconnect from .*gatehouse: session ended: no traffic for 2500 ms \(limits.sessions.idleMs\)/)
    } finally {
      await gw.stop()
    }
  })
})

describe('per-identity limits', () => {
  it('an identity’s own session cap applies to it alone; OpenSSH past the cap is told why', async () => {
    const gw = await gatewayWith({
      identities: [
        { id: 'agent-1', sshKeys: [key.publicKey], limits: { sessions: { perIdentity: 1 } } },
        { id: 'agent-2' },
      ],
    })
    const first = pgClient(gw, 'agent-1')
    const others = [pgClient(gw, 'agent-2'), pgClient(gw, 'agent-2')]
    try {
      await first.connect()
      for (const c of others) await c.connect()
      const refused = await psql(pgTarget(gw, 'agent-1'), 'SELECT 1;')
      expect(refused.stderr).toContain('too many sessions: identity "agent-1" has 1 sessions open on this connection (limits.sessions.perIdentity)')
      // SSH: one session open, the second is disconnected with the reason
      const held = runUntil('ssh', [...sshArgs({ port: gw.portOf('ssh'), user: 'agent-1', identityFile: key.privateKeyPath }), 'echo in; sleep 2; echo held'], 'in')
      await held.reached
      const second = await runClient('ssh', [...sshArgs({ port: gw.portOf('ssh'), user: 'agent-1', identityFile: key.privateKeyPath, extra: ['-o', 'LogLevel=INFO'] }), 'echo second'])
      expect(second.stdout).toBe('')
      expect(second.stderr).toMatch(/Received disconnect from .*gatehouse: too many sessions: identity "agent-1" has 1 sessions open/)
      expect((await held.done).stdout).toBe('in\nheld\n')
    } finally {
      for (const c of [first, ...others]) await c.end().catch(() => undefined)
      await gw.stop()
    }
  })
})

describe('config reload', () => {
  /** The running config with `change` applied to a deep copy. */
  const edited = (gw: TestGateway, change: (c: GatewayConfig) => void): GatewayConfig => {
    const next = structuredClone(gw.gateway.config)
    change(next)
    return next
  }

  it('a token removed from the config ends its live sessions; others go on, and it no longer logs in', async () => {
    const gw = await gatewayWith({ identities: [{ id: 'agent-1', sshKeys: [key.publicKey] }, { id: 'agent-2' }] })
    const removed = pgClient(gw, 'agent-1')
    const kept = pgClient(gw, 'agent-2')
    try {
      await removed.connect()
      await kept.connect()
      const ssh = runUntil('ssh', [...sshArgs({ port: gw.portOf('ssh'), user: 'agent-1', identityFile: key.privateKeyPath, extra: ['-o', 'LogLevel=INFO'] }), 'echo up; sleep 8; echo late'], 'up')
      await ssh.reached
      const { ended } = await gw.gateway.reload(
        edited(gw, (c) => {
          const agent = c.identities.find((i) => i.id === 'agent-1')
          if (agent) {
            agent.tokens = []
            agent.sshKeys = []
          }
        }),
      )
      expect(ended).toBe(2)
      const lost = (await removed.lost) as Error & { code?: string }
      expect(lost.code).toBe('57P01')
      expect(lost.message).toContain('token:agent-1-token) is no longer valid')
      const r = await ssh.done
      expect(r.stdout).toBe('up\n')
      expect(r.stderr).toMatch(/Received disconnect from .*gatehouse: session ended: the credential this session logged in with \(ssh-key:[^)]*\) is no longer valid: the key is no longer registered to identity/)
      expect((await kept.query('SELECT 3 AS n')).rows).toEqual([{ n: 3 }])
      const again = await psql(pgTarget(gw, 'agent-1'), 'SELECT 1;')
      expect(again.stderr).toContain('authentication failed')
      const events = await gw.audit()
      expect(protocolEvents(events, 'credential.revoked')).toHaveLength(2)
      expect(await gw.metric('gatehouse_sessions_credential_ended_total', 'connection="pg",cause="credential.revoked"')).toBe(1)
    } finally {
      await removed.end().catch(() => undefined)
      await kept.end().catch(() => undefined)
      await gw.stop()
    }
  })

  it('a login whose credential was checked before a reload removed it does not become a session', async () => {
    const gw = await gatewayWith({})
    const c = await RawPgClient.connect(gw.port)
    try {
      // the SCRAM exchange started under the old config; the reload lands before its last round
      const login = c.login('agent-1', gw.tokens['agent-1'] as string, {
        beforeFinal: () =>
          gw.gateway.reload(
            edited(gw, (cfg) => {
              ;(cfg.identities[0] as { tokens: unknown[] }).tokens = []
            }),
          ),
      })
      await expect(login).rejects.toThrow(/credential no longer valid/)
      const failure = (await gw.audit()).find((e) => e.type === 'auth.failure' && (e as { code?: string }).code === 'GH_ERR_AUTH_REVOKED')
      expect(failure).toBeDefined()
      expect((await gw.audit()).filter((e) => e.type === 'session.start')).toHaveLength(0)
    } finally {
      c.close()
      await gw.stop()
    }
  })

  it('a new policy and new limits apply to open sessions and to the next logins', async () => {
    const gw = await gatewayWith({})
    const open = pgClient(gw)
    try {
      await open.connect()
      expect((await open.query('SELECT 1 AS n')).rows).toEqual([{ n: 1 }])
      await gw.gateway.reload(
        edited(gw, (c) => {
          c.policies = [{ id: 'p', principals: { groups: ['agents'] }, rules: [{ id: 'no-select', effect: 'deny', match: { 'sql.statement': ['SELECT'] }, reason: 'reads are paused' }, { id: 'all', effect: 'allow' }] }]
          c.limits = { sessions: { perIdentity: 1 } }
        }),
      )
      await expect(open.query('SELECT 1')).rejects.toThrow(/denied by rule "p\/no-select": reads are paused/)
      expect((await open.query('SHOW server_version_num')).rows).toHaveLength(1)
      const second = await psql(pgTarget(gw), 'SHOW server_version_num;')
      expect(second.stderr).toContain('(limits.sessions.perIdentity)')
      // the audit shows from where on the new rules judged
      const reloads = protocolEvents(await gw.audit(), 'config.reloaded') as (AuditEvent & { attrs?: { policies?: string } })[]
      expect(reloads.map((e) => e.connection).sort()).toEqual(['pg', 'ssh'])
      expect(reloads[0]?.attrs?.policies).toMatch(/^sha256:[0-9a-f]{64}$/)
    } finally {
      await open.end().catch(() => undefined)
      await gw.stop()
    }
  })

  it('an identity taken out of a group loses what the group allowed in its open sessions too', async () => {
    const gw = await gatewayWith({})
    const open = pgClient(gw)
    try {
      await open.connect()
      expect((await open.query('SELECT 1 AS n')).rows).toEqual([{ n: 1 }])
      const { ended } = await gw.gateway.reload(edited(gw, (c) => ((c.identities[0] as { groups: string[] }).groups = ['contractors'])))
      expect(ended).toBe(0)
      await expect(open.query('SELECT 1')).rejects.toThrow(/no rule allows this request/)
      const [updated] = protocolEvents(await gw.audit(), 'principal.updated') as (AuditEvent & { attrs?: { before?: { groups?: string[] }; after?: { groups?: string[] } } })[]
      expect(updated?.attrs?.before?.groups).toEqual(['agents'])
      expect(updated?.attrs?.after?.groups).toEqual(['contractors'])
    } finally {
      await open.end().catch(() => undefined)
      await gw.stop()
    }
  })

  it('an invalid config, or one that changes what needs a restart, is refused and the config in force stays', async () => {
    const gw = await gatewayWith({})
    const open = pgClient(gw)
    try {
      await open.connect()
      const invalid = await gw.gateway.reload(edited(gw, (c) => (c.policies[0] as { rules: { actions?: string[] }[] }).rules.push({ effect: 'deny', actions: ['sql.querry'] } as never))).catch((e: unknown) => e)
      expect(invalid).toBeInstanceOf(ConfigError)
      expect((invalid as ConfigError).issues).toEqual([{ path: 'policies[0].rules[1].actions[0]', message: expect.stringContaining('unknown action "sql.querry"') }])
      const restart = await gw.gateway.reload(edited(gw, (c) => ((c.connections[0] as { listen: string }).listen = '127.0.0.1:1'))).catch((e: unknown) => e)
      expect((restart as ConfigError).issues).toEqual([{ path: 'connections[0].listen', message: 'changing this needs a restart; nothing was reloaded' }])
      // the config in force is unchanged: the open session and new logins work as before
      expect((await open.query('SELECT 5 AS n')).rows).toEqual([{ n: 5 }])
      expect((await psql(pgTarget(gw), 'SELECT 6;')).stdout.trim()).toBe('6')
    } finally {
      await open.end().catch(() => undefined)
      await gw.stop()
    }
  })
})
