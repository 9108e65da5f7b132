/**
 * Authentication on both sides of the PostgreSQL adapter: gateway tokens from the client
 * (SCRAM-SHA-256, or cleartext over TLS), TLS requirements, and injected upstream credentials
 * (SCRAM, md5, trust, TLS to the upstream).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import type { AuditEvent } from '@gatehouse/core'
import { startPgCluster, type PgCluster } from '../../fixtures/pg-cluster.js'
import { pgUpstream, startGateway, type TestGateway } from '../../fixtures/gateway.js'
import { psql } from '../../fixtures/clients.js'
import { freePort } from '../../fixtures/net.js'
import { errorFields, RawPgClient, requestPacket, SSL_REQUEST, startupPacket } from '../../fixtures/pg-raw.js'

let cluster: PgCluster
let certDir: string
let tls: { cert: string; key: string; caFile: string }

beforeAll(async () => {
  cluster = await startPgCluster({ tls: true })
  certDir = mkdtempSync(join(tmpdir(), 'gatehouse-cert-'))
  const key = join(certDir, 'gw.key')
  const cert = join(certDir, 'gw.crt')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', key, '-out', cert], { stdio: 'ignore' })
  tls = { cert: readFileSync(cert, 'utf8'), key: readFileSync(key, 'utf8'), caFile: cert }
})

afterAll(async () => {
  await cluster?.stop()
  if (certDir) rmSync(certDir, { recursive: true, force: true })
})

const authFailures = (events: AuditEvent[]) => events.filter((e) => e.type === 'auth.failure')

describe('gateway tokens', () => {
  let gw: TestGateway
  beforeAll(async () => {
    gw = await startGateway({
      upstream: pgUpstream(cluster),
      identities: [
        { id: 'agent-1' },
        { id: 'scoped', token: { connections: ['other'] } },
        { id: 'expired', token: { expires: '2020-01-01T00:00:00Z' } },
      ],
      extraConnections: [{ name: 'other', upstream: pgUpstream(cluster) }],
    })
  })
  afterAll(() => gw?.stop())

  it('accepts the right token over SCRAM-SHA-256 and runs as the upstream user', async () => {
    const r = await psql({ port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] }, 'SELECT current_user;\n')
    expect(r.stderr).toBe('')
    expect(r.stdout.trim()).toBe('app_scram')
  })

  it('refuses a wrong token and records the failure', async () => {
    const r = await psql({ port: gw.port, user: 'agent-1', password: `${gw.tokens['agent-1']}x` }, 'SELECT 1;\n')
    expect(r.code).not.toBe(0)
    expect(r.stderr).toContain('gatehouse: authentication failed for user "agent-1"')
    const failures = authFailures(await gw.audit())
    expect(failures.at(-1)).toMatchObject({ type: 'auth.failure', user: 'agent-1', code: 'GH_ERR_AUTH_FAILED' })
  })

  it('refuses an unknown user the same way as a wrong token', async () => {
    const r = await psql({ port: gw.port, user: 'nobody', password: gw.tokens['agent-1'] }, 'SELECT 1;\n')
    expect(r.stderr).toContain('gatehouse: authentication failed for user "nobody"')
  })

  it('refuses a token scoped to another connection, and accepts it there', async () => {
    const r = await psql({ port: gw.port, user: 'scoped', password: gw.tokens.scoped }, 'SELECT 1;\n')
    expect(r.code).not.toBe(0)
    expect(r.stderr).toContain('token not valid for connection "pg"')
    const ok = await psql({ port: gw.portOf('other'), user: 'scoped', password: gw.tokens.scoped }, 'SELECT 41 + 1;\n')
    expect(ok.stdout.trim()).toBe('42')
    expect(authFailures(await gw.audit()).at(-1)).toMatchObject({ code: 'GH_ERR_AUTH_SCOPE', user: 'scoped' })
  })

  it('refuses an expired token', async () => {
    const r = await psql({ port: gw.port, user: 'expired', password: gw.tokens.expired }, 'SELECT 1;\n')
    expect(r.code).not.toBe(0)
    expect(r.stderr).toContain('gatehouse: token expired')
    expect(authFailures(await gw.audit()).at(-1)).toMatchObject({ code: 'GH_ERR_AUTH_EXPIRED' })
  })

  it('never writes a token to the audit', async () => {
    const text = readFileSync(gw.auditPath, 'utf8')
    for (const t of Object.values(gw.tokens)) expect(text).not.toContain(t)
  })
})

describe('TLS toward the client', () => {
  let gw: TestGateway
  beforeAll(async () => {
    gw = await startGateway({ upstream: pgUpstream(cluster), connection: { tls: { cert: tls.cert, key: tls.key, required: true } } })
  })
  afterAll(() => gw?.stop())

  it('binds the SCRAM proof to the TLS connection when the client requires it (SCRAM-SHA-256-PLUS, tls-server-end-point)', async () => {
    const r = await psql({ port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'], sslmode: 'verify-full' }, 'SELECT 1 AS bound;\n', [], { PGSSLROOTCERT: tls.caFile, PGCHANNELBINDING: 'require' })
    expect(r.stderr).toBe('')
    expect(r.stdout.trim()).toBe('1')
    // a wrong token still fails, channel binding or not
    const wrong = await psql({ port: gw.port, user: 'agent-1', password: 'gh_wrong', sslmode: 'verify-full' }, 'SELECT 1;\n', [], { PGSSLROOTCERT: tls.caFile, PGCHANNELBINDING: 'require' })
    expect(wrong.stderr).toContain('authentication failed')
  })

  it('refuses a plaintext client when TLS is required', async () => {
    const r = await psql({ port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'], sslmode: 'disable' }, 'SELECT 1;\n')
    expect(r.code).not.toBe(0)
    expect(r.stderr).toContain('requires TLS')
  })

  it('serves a client that verifies the gateway certificate', async () => {
    const r = await psql({ port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'], sslmode: 'verify-full' }, 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid();\n', [], { PGSSLROOTCERT: tls.caFile })
    expect(r.stderr).toBe('')
    // the upstream leg is plaintext here; the client leg was TLS (verify-full would have failed otherwise)
    expect(r.stdout.trim()).toBe('f')
  })

  it('refuses plaintext smuggled behind an SSLRequest', async () => {
    const c = await RawPgClient.connect(gw.port)
    c.write(Buffer.concat([requestPacket(SSL_REQUEST), startupPacket({ user: 'agent-1', database: 'app' })]))
    let fields: Record<string, string> | undefined
    for (let m = await c.next(); m; m = await c.next()) if (m.type === 'E') fields = errorFields(m.body)
    expect(fields).toMatchObject({ C: '08P01', M: expect.stringContaining('unexpected data after SSLRequest') })
  })

  it('accepts cleartext tokens (sha256 hashes) only over TLS', async () => {
    const clear = await startGateway({
      upstream: pgUpstream(cluster),
      identities: [{ id: 'agent-1', token: { algorithm: 'sha256' } }],
      connection: { tls: { cert: tls.cert, key: tls.key, required: true }, options: { clientAuth: 'cleartext' } },
    })
    try {
      const r = await psql({ port: clear.port, user: 'agent-1', password: clear.tokens['agent-1'], sslmode: 'require' }, 'SELECT 7 * 6;\n')
      expect(r.stderr).toBe('')
      expect(r.stdout.trim()).toBe('42')
    } finally {
      await clear.stop()
    }
    await expect(
      startGateway({ upstream: pgUpstream(cluster), connection: { options: { clientAuth: 'cleartext' } } }),
    ).rejects.toThrow(/cleartext tokens need TLS/)
  })
})

describe('upstream credentials', () => {
  it.each(['md5', 'trust'] as const)('logs in to the upstream with %s credentials the client never sees', async (kind) => {
    const gw = await startGateway({ upstream: pgUpstream(cluster, kind) })
    try {
      const r = await psql({ port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] }, 'SELECT current_user;\n')
      expect(r.stderr).toBe('')
      expect(r.stdout.trim()).toBe(cluster.users[kind].user)
    } finally {
      await gw.stop()
    }
  })

  it('connects to the upstream over verified TLS', async () => {
    const gw = await startGateway({ upstream: { ...pgUpstream(cluster), tls: { mode: 'verify-full', ca: readFileSync(cluster.tlsCaFile as string, 'utf8') } } })
    try {
      const r = await psql({ port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] }, 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid();\n')
      expect(r.stderr).toBe('')
      expect(r.stdout.trim()).toBe('t')
    } finally {
      await gw.stop()
    }
  })

  it('reports a wrong upstream password as unavailable, without the password', async () => {
    const gw = await startGateway({ upstream: { ...pgUpstream(cluster), password: 'not-the-password' } })
    try {
      const r = await psql({ port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] }, 'SELECT 1;\n')
      expect(r.code).not.toBe(0)
      expect(r.stderr).toContain('gatehouse: upstream of connection "pg" is unavailable')
      expect(r.stderr).not.toContain('not-the-password')
      const end = (await gw.audit()).find((e) => e.type === 'session.end')
      expect(end).toMatchObject({ reason: expect.stringContaining('GH_ERR_UPSTREAM_AUTH') })
      expect(readFileSync(gw.auditPath, 'utf8')).not.toContain('not-the-password')
    } finally {
      await gw.stop()
    }
  })

  it('gives a clear error and an audit record when the upstream is down', async () => {
    const deadPort = await freePort()
    const gw = await startGateway({ upstream: { host: '127.0.0.1', port: deadPort, database: 'app', user: 'app_scram', password: 'x', connectTimeoutMs: 2000 } })
    try {
      const r = await psql({ port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] }, 'SELECT 1;\n')
      expect(r.code).not.toBe(0)
      expect(r.stderr).toContain('upstream of connection "pg" is unavailable')
      const events = await gw.audit()
      expect(events.map((e) => e.type)).toEqual(['session.start', 'protocol', 'session.end'])
      expect(events[1]).toMatchObject({ event: 'startup.upstream-unavailable', attrs: { code: 'GH_ERR_UPSTREAM_UNAVAILABLE' } })
      expect(events[2]).toMatchObject({ reason: expect.stringContaining('GH_ERR_UPSTREAM_UNAVAILABLE') })
      // the pg driver sees SQLSTATE 08006
      const c = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'], database: 'app' })
      await expect(c.connect()).rejects.toMatchObject({ code: '08006' })
    } finally {
      await gw.stop()
    }
  })
})

