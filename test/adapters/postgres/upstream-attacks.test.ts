/**
 * The gateway's own login to the upstream, attacked from the server side: an impostor where the
 * PostgreSQL server should be (a hijacked address, a man in the middle). The gateway holds the
 * real credential, so the upstream has to prove itself before the gateway sends it anything:
 * verify-full TLS must really verify (CA and name), a SCRAM server must prove it knows the password,
 * and the password never goes out in cleartext over an unencrypted connection.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startPgCluster, type PgCluster } from '../../fixtures/pg-cluster.js'
import { pgUpstream, startGateway } from '../../fixtures/gateway.js'
import { psql } from '../../fixtures/clients.js'
import { startStubUpstream, type StubLogin } from '../../fixtures/pg-stub-upstream.js'

let cluster: PgCluster
let dir: string
let otherCa: string

beforeAll(async () => {
  cluster = await startPgCluster({ tls: true })
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-upstream-attacks-'))
  // A CA that did not sign the server's certificate, with the same subject names.
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', join(dir, 'other.key'), '-out', join(dir, 'other.crt')], { stdio: 'ignore' })
  otherCa = readFileSync(join(dir, 'other.crt'), 'utf8')
})

afterAll(async () => {
  await cluster?.stop()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

/** Runs one statement through a gateway with this upstream config; returns psql's result and the session's end reason. */
async function through(upstream: Record<string, unknown>, sql = 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid();\n') {
  const gw = await startGateway({ upstream })
  try {
    const r = await psql({ port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] as string }, sql)
    const end = (await gw.audit()).find((e) => e.type === 'session.end') as { reason?: string } | undefined
    const log = readFileSync(gw.auditPath, 'utf8')
    return { ...r, endReason: end?.reason ?? '', log }
  } finally {
    await gw.stop()
  }
}

describe('upstream TLS verify-full verifies', () => {
  const ca = () => readFileSync(cluster.tlsCaFile as string, 'utf8')

  it('the right CA and name connect over TLS (the baseline)', async () => {
    const r = await through({ ...pgUpstream(cluster), tls: { mode: 'verify-full', ca: ca() } })
    expect(r.stderr).toBe('')
    expect(r.stdout.trim()).toBe('t')
  })

  it('a certificate from another CA is refused before any login', async () => {
    const r = await through({ ...pgUpstream(cluster), tls: { mode: 'verify-full', ca: otherCa } })
    expect(r.code).not.toBe(0)
    expect(r.stdout).toBe('')
    expect(r.stderr).toContain('upstream of connection "pg" is unavailable')
    expect(r.endReason).toMatch(/GH_ERR_UPSTREAM_UNAVAILABLE.*TLS to upstream failed/)
  })

  it('without a CA the system store is used, which does not know the cluster’s CA: refused', async () => {
    const r = await through({ ...pgUpstream(cluster), tls: { mode: 'verify-full' } })
    expect(r.code).not.toBe(0)
    expect(r.endReason).toMatch(/TLS to upstream failed/)
  })

  it('the right CA with a name the certificate does not carry is refused', async () => {
    const r = await through({ ...pgUpstream(cluster), tls: { mode: 'verify-full', ca: ca(), servername: 'db.internal.example' } })
    expect(r.code).not.toBe(0)
    expect(r.endReason).toMatch(/TLS to upstream failed.*(db\.internal\.example|altnames|Hostname)/i)
  })

  it('mode require encrypts without verifying (what it promises, no more): another CA still connects', async () => {
    const r = await through({ ...pgUpstream(cluster), tls: { mode: 'require', ca: otherCa } })
    expect(r.stderr).toBe('')
    expect(r.stdout.trim()).toBe('t')
  })
})

describe('an impostor upstream that does not know the password', () => {
  const cases: [StubLogin, Record<string, unknown>, RegExp][] = [
    ['scram-wrong-signature', {}, /GH_ERR_UPSTREAM_AUTH.*server signature mismatch/],
    ['scram-skip-final', {}, /GH_ERR_UPSTREAM_AUTH.*without proving it knows the password/],
    ['cleartext', {}, /GH_ERR_UPSTREAM_AUTH.*cleartext over an unencrypted connection/],
    ['none', { auth: 'scram-sha-256' }, /GH_ERR_UPSTREAM_AUTH.*requires SCRAM-SHA-256/],
    ['cleartext', { auth: 'scram-sha-256' }, /GH_ERR_UPSTREAM_AUTH.*requires SCRAM-SHA-256/],
  ]
  for (const [login, extra, reason] of cases) {
    it(`${login}${extra.auth ? ` (auth: ${String(extra.auth)})` : ''}: refused, and it receives neither the password nor a statement`, async () => {
      const stub = await startStubUpstream(login)
      const password = 'upstream-secret-Pw-7731'
      try {
        const r = await through({ host: '127.0.0.1', port: stub.port, database: 'app', user: 'app', password, ...extra }, 'SELECT 1;\n')
        expect(r.code).not.toBe(0)
        expect(r.stderr).toContain('upstream of connection "pg" is unavailable')
        expect(r.endReason).toMatch(reason)
        expect(stub.startups).toBe(1)
        const types = stub.received.map(([t]) => t)
        expect(types.filter((t) => t !== 'p' && t !== 'X')).toEqual([])
        for (const [, body] of stub.received) expect(body).not.toContain(password)
        expect(r.log).not.toContain(password)
      } finally {
        await stub.close()
      }
    })
  }

  it('the real server with auth: scram-sha-256 logs in (the baseline of the strict mode)', async () => {
    const r = await through({ ...pgUpstream(cluster), auth: 'scram-sha-256' }, 'SELECT current_user;\n')
    expect(r.stderr).toBe('')
    expect(r.stdout.trim()).toBe(cluster.users.scram.user)
    // md5 is not SCRAM: the strict mode refuses a server that asks for it
    const md5 = await through({ ...pgUpstream(cluster, 'md5'), auth: 'scram-sha-256' }, 'SELECT 1;\n')
    expect(md5.endReason).toMatch(/requires SCRAM-SHA-256/)
  })

  it('an iteration count meant to stall the gateway runs off the event loop', async () => {
    const stub = await startStubUpstream('scram-huge-iterations')
    const delay = monitorEventLoopDelay({ resolution: 10 })
    try {
      delay.enable()
      const r = await through({ host: '127.0.0.1', port: stub.port, database: 'app', user: 'app', password: 'x', connectTimeoutMs: 60_000 }, 'SELECT 1;\n')
      delay.disable()
      expect(r.endReason).toMatch(/server signature mismatch/)
      // 10 million PBKDF2 rounds take seconds; the loop (shared by every session) never waited that long
      expect(delay.max / 1e6).toBeLessThan(1000)
    } finally {
      await stub.close()
    }
  }, 120_000)
})

describe('an upstream that accepts and then says nothing', () => {
  it('psql gets "unavailable" (08006) after connectTimeoutMs, and the gateway closes its upstream socket', async () => {
    const { createServer } = await import('node:net')
    let accepted = 0
    let closed = 0
    const silent = createServer((s) => {
      accepted++
      s.resume() // reads (and drops) the startup packet, so the gateway's FIN is seen
      s.on('error', () => undefined)
      s.on('close', () => closed++)
    })
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
    const port = (silent.address() as { port: number }).port
    const gw = await startGateway({ upstream: { host: '127.0.0.1', port, database: 'app', user: 'app', password: 'x', connectTimeoutMs: 500 } })
    try {
      const started = Date.now()
      const r = await psql({ port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] as string }, 'SELECT 1;\n')
      // well before the 15 s login timeout of core's limits
      expect(Date.now() - started).toBeLessThan(10_000)
      expect(r.code).not.toBe(0)
      expect(r.stderr).toContain('upstream of connection "pg" is unavailable')
      const end = (await gw.audit()).find((e) => e.type === 'session.end') as { reason?: string } | undefined
      expect(end?.reason).toMatch(/login did not finish within 500 ms/)
      expect(accepted).toBe(1)
      // closed by the gateway, which is still running
      for (let i = 0; i < 100 && closed === 0; i++) await new Promise((r) => setTimeout(r, 20))
      expect(closed).toBe(1)
    } finally {
      await gw.stop()
      silent.close()
    }
  }, 30_000)
})
