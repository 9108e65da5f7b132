/**
 * core's ConnectionPipeline in process: the edges pipeline.test.ts and pipeline-lifecycle.test.ts
 * leave open, found by mutation testing (test/mutation/SURVIVORS.md). Which authenticator answers
 * for a session after a reload; how precisely the sweeper applies each limit (and that an
 * unlimited one never ends a session); a session's end as the audit and the log show it; login
 * lockouts; refusals when the audit cannot take the intent; a pipeline without a metrics registry.
 */
import { describe, expect, it } from 'vitest'
import { AuditRecorder, ConnectionPipeline, createLogger, GatewayError, Metrics, MetricsRegistry, ScramClient, type AuditEvent, type Authenticator, type Principal, type SessionHandle } from '@gatehouse/core'
import { container } from 'tsyringe'
import { resolveLimits } from '../../core/dist/pipeline/limits.js'
import { allow, harness, protocolEvents, sleep, tick, type Identity } from './pipeline-harness.js'

const principal = (id: string, credential = `custom:${id}`): Principal => Object.freeze({ id, kind: 'agent', groups: [], claims: {}, credential })

/** An authenticator that takes the password `pw-<id>` for user `<id>`; `revalidate` as given. */
function custom(revalidate?: Authenticator['revalidate']): Authenticator {
  return {
    authenticate: (presented) => ('password' in presented && presented.password === `pw-${presented.user}` ? principal(presented.user) : undefined),
    ...(revalidate ? { revalidate } : {}),
  }
}

/** What core asked the adapter to render, and when. */
function renderInto(h: SessionHandle) {
  const seen: { cause: string; code: string; reason: string; at: number }[] = []
  h.onTerminate((t) => {
    seen.push({ ...t, at: Date.now() })
    void h.end(t.reason)
  })
  return seen
}

async function until(done: () => boolean, ms: number): Promise<void> {
  const started = Date.now()
  while (!done() && Date.now() - started < ms) await sleep(10)
}

describe('after a reload, the authenticator that recognises a session answers for it', () => {
  const loginCustom = async (pipeline: ReturnType<typeof harness>['pipeline'], user = 'svc') => {
    const h = pipeline.openSession({ protocol: 'postgres', clientAddress: '10.2.2.2:1', tls: false })
    await pipeline.authenticate(h.info, { kind: 'password', user, password: `pw-${user}` })
    return h
  }

  it('an authenticator that cannot revalidate keeps its sessions: core cannot tell they are gone', async () => {
    const { pipeline, reload, identities } = harness({ authenticators: () => [custom()] })
    const h = await loginCustom(pipeline)
    const rendered = renderInto(h)
    expect(reload(identities)).toEqual({ ended: 0 })
    expect(rendered).toEqual([])
    expect(h.info.principal).toMatchObject({ id: 'svc', credential: 'custom:svc' })
  })

  it('when every authenticator can answer and none recognises the credential, the session ends', async () => {
    const { pipeline, reload, identities } = harness({ authenticators: () => [custom(() => undefined)] })
    const h = await loginCustom(pipeline)
    const rendered = renderInto(h)
    expect(reload(identities)).toEqual({ ended: 1 })
    expect(rendered.map((r) => [r.cause, r.code, r.reason])).toEqual([
      ['credential.revoked', 'GH_ERR_AUTH_REVOKED', 'the credential this session logged in with (custom:svc) is no longer valid: no configured authenticator accepts it any more'],
    ])
  })

  it('a credential that now proves another identity ends the session; one the plugin refuses with a plain error too, with its message', async () => {
    const { pipeline, reload, identities } = harness({ authenticators: () => [custom((p) => (p.id === 'svc' ? principal('someone-else') : undefined))] })
    const h = await loginCustom(pipeline)
    const rendered = renderInto(h)
    reload(identities)
    expect(rendered.map((r) => r.reason)).toEqual(['the credential this session logged in with (custom:svc) is no longer valid: the credential now proves identity "someone-else"'])

    const thrower = harness({
      authenticators: () => [
        custom(() => {
          throw new Error('key store says no')
        }),
      ],
    })
    const h2 = await loginCustom(thrower.pipeline)
    const rendered2 = renderInto(h2)
    expect(thrower.reload(thrower.identities)).toEqual({ ended: 1 })
    expect(rendered2.map((r) => [r.code, r.reason])).toEqual([['GH_ERR_AUTH_REVOKED', 'the credential this session logged in with (custom:svc) is no longer valid: credential no longer valid']])
  })

  it('an authenticator that does not know the principal passes it on to the next, which keeps it', async () => {
    const { login, reload, identities, pipeline } = harness({ authenticators: (tokens) => [custom(() => undefined), tokens] })
    const h = await login()
    const rendered = renderInto(h)
    expect(reload(identities)).toEqual({ ended: 0 })
    expect(rendered).toEqual([])
    expect(pipeline.sessionCount).toBe(1)
    expect(h.info.principal).toMatchObject({ id: 'agent', credential: 'token:t1' })
  })

  it('a login checked before a reload that keeps its token becomes a session, described as the new config says; one whose client left does not', async () => {
    const { pipeline, reload, token, identities, holdLogins } = harness()
    // the authenticator answers only after the reload
    const release = holdLogins()
    const h = pipeline.openSession({ protocol: 'postgres', clientAddress: '10.1.2.3:1', tls: false })
    const pending = pipeline.authenticate(h.info, { kind: 'password', user: 'agent', password: token })
    const gone = pipeline.openSession({ protocol: 'postgres', clientAddress: '10.1.2.3:2', tls: false })
    const left = pipeline.authenticate(gone.info, { kind: 'password', user: 'agent', password: token }).catch((e: unknown) => e as GatewayError)
    await tick()
    reload([{ ...(identities[0] as Identity), groups: ['reloaded'] }])
    await gone.end('client went away')
    release()
    await expect(pending).resolves.toMatchObject({ id: 'agent', groups: ['reloaded'] })
    expect(h.info.principal?.groups).toEqual(['reloaded'])
    const err = await left
    expect([err.code, err.message]).toEqual(['GH_ERR_SESSION_CLOSED', 'the connection closed while logging in'])
  })

  it('a login undone by a reload tells the client only that its credential is no longer valid', async () => {
    const { pipeline, reload, token, holdLogins } = harness()
    // the authenticator answers only after the reload
    const release = holdLogins()
    const h = pipeline.openSession({ protocol: 'postgres', clientAddress: '10.1.2.3:1', tls: false })
    const pending = pipeline.authenticate(h.info, { kind: 'password', user: 'agent', password: token }).catch((e: unknown) => e as GatewayError)
    await tick()
    reload([])
    release()
    const err = await pending
    expect([err.code, err.clientMessage]).toEqual(['GH_ERR_AUTH_REVOKED', 'credential no longer valid'])
  })
})

describe('the sweeper applies each limit, and only the limits set', () => {
  it('sweeps often enough for the shortest idle limit, the connection’s or an identity’s own', async () => {
    for (const opts of [{ limits: { sessions: { idleMs: 300, maxAgeMs: 0 } } }, { limits: { sessions: { idleMs: 0, maxAgeMs: 0 } }, identityLimits: { agent: { idleMs: 300 } } }]) {
      const { login } = harness(opts)
      const h = await login()
      const loggedIn = Date.now()
      const rendered = renderInto(h)
      await until(() => rendered.length > 0, 3000)
      expect(rendered.map((r) => [r.cause, r.reason])).toEqual([['sessions.idle', 'no traffic for 300 ms (limits.sessions.idleMs)']])
      // swept a quarter of the limit apart: ended well before a second idle period
      expect((rendered[0] as { at: number }).at - loggedIn).toBeGreaterThanOrEqual(290)
      expect((rendered[0] as { at: number }).at - loggedIn).toBeLessThan(900)
    }
  })

  it("an identity's own max age sets the sweep interval too", async () => {
    const { login } = harness({ limits: { sessions: { idleMs: 0, maxAgeMs: 0 } }, identityLimits: { agent: { maxAgeMs: 1000 } } })
    const h = await login()
    const loggedIn = Date.now()
    const rendered = renderInto(h)
    await until(() => rendered.length > 0, 4000)
    expect(rendered.map((r) => r.cause)).toEqual(['sessions.max-age'])
    expect((rendered[0] as { at: number }).at - loggedIn).toBeLessThan(1600)
  })

  it('no maxAge: a busy session lives on; no idle limit: a silent one lives until its max age', async () => {
    const { login } = harness({ limits: { sessions: { idleMs: 300, maxAgeMs: 0 } } })
    const h = await login()
    const rendered = renderInto(h)
    const started = Date.now()
    while (Date.now() - started < 1200) {
      h.touch()
      await sleep(30)
    }
    expect(rendered).toEqual([])
    await h.end()

    const silent = harness({ limits: { sessions: { idleMs: 0, maxAgeMs: 1000 } } })
    const s = await silent.login()
    const ended = renderInto(s)
    await sleep(700)
    expect(ended).toEqual([])
    await until(() => ended.length > 0, 3000)
    expect(ended.map((r) => [r.cause, r.code, r.reason])).toEqual([['sessions.max-age', 'GH_ERR_SESSION_LIMIT', "the session is older than the gateway's limit of 1000 ms (limits.sessions.maxAgeMs)"]])
  })

  it('a connection still logging in is not swept (the login timeout is its limit)', async () => {
    const { pipeline } = harness({ limits: { sessions: { idleMs: 100 } } })
    const h = pipeline.openSession({ protocol: 'postgres', clientAddress: '10.1.2.3:1', tls: false })
    const rendered = renderInto(h)
    await sleep(500)
    expect(rendered).toEqual([])
    expect(pipeline.sessionCount).toBe(1)
    await h.end()
  })

  it('a token that expires later ends its session when it expires, not before', async () => {
    const expiresAt = Date.now() + 800
    const { login } = harness({ expires: new Date(expiresAt).toISOString(), limits: { sessions: { idleMs: 200 } } })
    const h = await login()
    const rendered = renderInto(h)
    while (rendered.length === 0 && Date.now() < expiresAt + 3000) {
      h.touch()
      await sleep(20)
    }
    expect(rendered.map((r) => [r.cause, r.code])).toEqual([['credential.expired', 'GH_ERR_AUTH_EXPIRED']])
    expect((rendered[0] as { at: number }).at).toBeGreaterThanOrEqual(expiresAt)
  })

  it('idle without a busy probe ends as sessions.idle; a busy probe that throws ends the session as sessions.check-failed, logged', async () => {
    const { login, logs } = harness({ limits: { sessions: { idleMs: 100 } } })
    const plain = await login()
    const probing = await login('10.1.2.3:6666')
    probing.busyWhen(() => {
      throw new Error('probe bug')
    })
    const a = renderInto(plain)
    const b = renderInto(probing)
    await until(() => a.length > 0 && b.length > 0, 3000)
    expect(a.map((r) => [r.cause, r.code])).toEqual([['sessions.idle', 'GH_ERR_SESSION_LIMIT']])
    expect(b.map((r) => [r.cause, r.code, r.reason])).toEqual([['sessions.check-failed', 'GH_ERR_INTERNAL', 'the gateway could not check this session against its limits']])
    expect(logs.find((l) => l.msg === 'session limit check failed; ending the session')).toMatchObject({ level: 50, session: probing.info.id, err: 'Error: probe bug' })
  })

  it('a session the adapter terminates twice is rendered, recorded and counted once', async () => {
    const { login, events, counter } = harness()
    const h = await login()
    const rendered = renderInto(h)
    h.terminate({ cause: 'postgres.transaction-idle', code: 'GH_ERR_SESSION_LIMIT', reason: 'idle in transaction' })
    h.terminate({ cause: 'postgres.transaction-idle', code: 'GH_ERR_SESSION_LIMIT', reason: 'idle in transaction' })
    await tick()
    expect(rendered.map((r) => r.cause)).toEqual(['postgres.transaction-idle'])
    expect(protocolEvents(events).map((e) => e.event)).toEqual(['limit.postgres.transaction-idle'])
    expect(await counter('gatehouse_limit_refusals_total', { connection: 'db', limit: 'postgres.transaction-idle' })).toBe(1)
  })
})

describe("a session's end", () => {
  it('records session.end with its duration and request count, the reason only when there is one; aborts the session signal with the reason', async () => {
    const { login, pipeline, events, logs } = harness()
    const h = await login()
    await pipeline.admit(pipeline.request(h.info, { action: 'x', attrs: {} }))
    await sleep(30)
    await h.end('client sent Terminate')
    const end = events.find((e) => e.type === 'session.end') as AuditEvent & { durationMs: number; requests: number; reason?: string }
    expect(end).toMatchObject({ session: h.info.id, requests: 1, reason: 'client sent Terminate' })
    expect(end.durationMs).toBeGreaterThanOrEqual(25)
    expect(end.durationMs).toBeLessThan(10_000)
    expect((h.info.signal.reason as Error).message).toBe('client sent Terminate')
    expect(logs.find((l) => l.msg === 'session ended')).toMatchObject({ level: 20, session: h.info.id, principal: 'agent', requests: 1, reason: 'client sent Terminate' })

    const quiet = await login()
    await quiet.end()
    const quietEnd = events.filter((e) => e.type === 'session.end').at(-1) as AuditEvent
    expect(quietEnd).toMatchObject({ session: quiet.info.id, requests: 0 })
    expect('reason' in quietEnd).toBe(false)
    expect((quiet.info.signal.reason as Error).message).toBe('session ended')
  })

  it('endAll ends every open session with the reason given', async () => {
    const { login, pipeline, events } = harness()
    const a = await login()
    const b = await login('10.9.9.9:1')
    await pipeline.endAll('gateway shutting down')
    expect(pipeline.sessionCount).toBe(0)
    expect(a.info.signal.aborted && b.info.signal.aborted).toBe(true)
    expect(events.filter((e) => e.type === 'session.end').map((e) => (e as AuditEvent & { reason: string }).reason)).toEqual(['gateway shutting down', 'gateway shutting down'])
  })

  it('a sink that cannot take session.end, a protocol event, an integrity event or an auth.failure: each logged, nothing thrown to the adapter', async () => {
    const failing = new Set(['session.end', 'protocol', 'integrity', 'auth.failure'])
    const { login, pipeline, logs } = harness({ sink: { write: (e) => (failing.has(e.type) ? Promise.reject(new Error('disk full')) : undefined) } })
    const h = await login()
    await pipeline.protocolEvent(h.info, { event: 'cancel', reason: 'a cancel' })
    await pipeline.integrity(h.info, { expected: 'SELECT', actual: 'DELETE', reason: 'drift' })
    await h.end('bye')
    const other = pipeline.openSession({ protocol: 'postgres', clientAddress: '10.1.2.3:9', tls: false })
    await pipeline.authenticate(other.info, { kind: 'password', user: 'agent', password: 'gh_wrong' }).catch(() => undefined)
    const errors = logs.filter((l) => l.level === 50 && l.msg.startsWith('could not record')).map((l) => [l.msg, l.err])
    expect(errors).toEqual([
      ['could not record a protocol event', 'GatewayError: audit is unavailable; request refused'],
      ['could not record an integrity event', 'GatewayError: audit is unavailable; request refused'],
      ['could not record session.end', 'GatewayError: audit is unavailable; request refused'],
      ['could not record auth.failure', 'GatewayError: audit is unavailable; request refused'],
    ])
    expect(logs.find((l) => l.msg === 'could not record a protocol event')).toMatchObject({ session: h.info.id })
  })

  it('an integrity event names the principal and the request; a reload is recorded as config.reloaded from the gateway', async () => {
    const { login, pipeline, events } = harness()
    const h = await login()
    const r = pipeline.request(h.info, { action: 'sql.query', text: 'SELECT 1', attrs: {} })
    await pipeline.integrity(h.info, { request: r, expected: 'SELECT', actual: 'DELETE', reason: 'drift' })
    expect(events.find((e) => e.type === 'integrity')).toMatchObject({ principal: { id: 'agent', credential: 'token:t1' }, request: r.id, expected: 'SELECT', actual: 'DELETE' })
    await pipeline.recordReload('postgres', { policies: 'sha256:abc' })
    expect(protocolEvents(events).at(-1)).toMatchObject({ event: 'config.reloaded', reason: 'the configuration was reloaded', client: 'gateway', protocol: 'postgres', connection: 'db', attrs: { policies: 'sha256:abc' } })
  })
})

describe('logins', () => {
  it('a token scoped to this connection logs in; one scoped to another is refused for this one', async () => {
    await expect(harness({ connections: ['db'] }).login()).resolves.toBeDefined()
    await expect(harness({ connections: ['other'] }).login()).rejects.toMatchObject({ code: 'GH_ERR_AUTH_SCOPE' })
  })

  it('limits.logins.perConnection: the failures on one client connection use up its attempts, recorded once; then even the right token is refused', async () => {
    const { pipeline, token, events, counter } = harness({ limits: { logins: { perConnection: 2 } } })
    const h = pipeline.openSession({ protocol: 'postgres', clientAddress: '10.3.3.3:1', tls: false })
    for (let i = 0; i < 2; i++) await pipeline.authenticate(h.info, { kind: 'password', user: 'agent', password: 'gh_wrong' }).catch(() => undefined)
    expect(pipeline.loginAttemptsLeft(h.info)).toBe(0)
    const err = await pipeline.authenticate(h.info, { kind: 'password', user: 'agent', password: token }).catch((e: unknown) => e as GatewayError)
    expect([err.code, err.message, err.clientMessage]).toEqual(['GH_ERR_AUTH_THROTTLED', '2 failed logins on this client connection (limits.logins.perConnection)', 'too many failed logins on this connection'])
    expect(protocolEvents(events).map((e) => [e.event, e.reason])).toEqual([['limit.logins.per-connection', '2 failed logins on this client connection (limits.logins.perConnection)']])
    expect(await counter('gatehouse_limit_refusals_total', { connection: 'db', limit: 'logins.per-connection' })).toBe(2)
  })

  it('wrong tokens from one address lock that address out, by password or by SCRAM; an identity is locked across addresses', async () => {
    const { pipeline, token, counter } = harness({ limits: { logins: { perSource: 2, perIdentity: 100, baseDelayMs: 5000 } } })
    const attempt = (address: string, password: string) => {
      const h = pipeline.openSession({ protocol: 'postgres', clientAddress: address, tls: false })
      return pipeline.authenticate(h.info, { kind: 'password', user: 'agent', password }).catch((e: unknown) => e as GatewayError)
    }
    for (let i = 0; i < 3; i++) await attempt(`10.4.4.4:${i}`, 'gh_wrong')
    const err = (await attempt('10.4.4.4:9', token)) as GatewayError
    expect([err.code, err.message, err.clientMessage]).toEqual(['GH_ERR_AUTH_THROTTLED', 'too many failed logins from this address; locked for 5 s more', 'too many failed logins; try again in 5 s'])
    expect(await counter('gatehouse_limit_refusals_total', { connection: 'db', limit: 'logins.per-source' })).toBe(1)
    // SCRAM with the right token from the locked address: refused before the proof is checked
    const h = pipeline.openSession({ protocol: 'postgres', clientAddress: '10.4.4.4:10', tls: false })
    const client = new ScramClient(token)
    const ex = pipeline.scram(h.info, 'agent')
    await expect(ex.finish(client.final(ex.start(client.first())))).rejects.toMatchObject({ code: 'GH_ERR_AUTH_THROTTLED' })
    // another address is free
    await expect(attempt('10.5.5.5:1', token)).resolves.toMatchObject({ id: 'agent' })

    const byIdentity = harness({ limits: { logins: { perSource: 100, perIdentity: 2, baseDelayMs: 3000 } } })
    for (let i = 0; i < 3; i++) {
      const s = byIdentity.pipeline.openSession({ protocol: 'postgres', clientAddress: `10.6.6.${i}:1`, tls: false })
      await byIdentity.pipeline.authenticate(s.info, { kind: 'password', user: 'agent', password: 'gh_wrong' }).catch(() => undefined)
    }
    const s = byIdentity.pipeline.openSession({ protocol: 'postgres', clientAddress: '10.7.7.7:1', tls: false })
    const locked = await byIdentity.pipeline.authenticate(s.info, { kind: 'password', user: 'agent', password: byIdentity.token }).catch((e: unknown) => e as GatewayError)
    expect([locked.code, locked.message]).toEqual(['GH_ERR_AUTH_THROTTLED', 'too many failed logins from this identity; locked for 3 s more'])
    expect(await byIdentity.counter('gatehouse_limit_refusals_total', { connection: 'db', limit: 'logins.per-identity' })).toBe(1)
  })

  it('a valid token refused for its scope is not a guess: it does not count towards the lockout', async () => {
    const { pipeline, token } = harness({ connections: ['other'], limits: { logins: { perSource: 1, baseDelayMs: 5000 } } })
    for (let i = 0; i < 3; i++) {
      const h = pipeline.openSession({ protocol: 'postgres', clientAddress: `10.8.8.8:${i}`, tls: false })
      await expect(pipeline.authenticate(h.info, { kind: 'password', user: 'agent', password: token })).rejects.toMatchObject({ code: 'GH_ERR_AUTH_SCOPE' })
    }
  })

  it('an authenticator that throws a plain error refuses the login as GH_ERR_AUTH_FAILED, telling the client nothing more', async () => {
    const { pipeline } = harness({
      authenticators: () => [
        {
          authenticate: () => {
            throw new Error('ldap connection reset')
          },
        },
      ],
    })
    const h = pipeline.openSession({ protocol: 'postgres', clientAddress: '10.1.1.1:1', tls: false })
    const err = await pipeline.authenticate(h.info, { kind: 'password', user: 'agent', password: 'x' }).catch((e: unknown) => e as GatewayError)
    expect([err.code, err.message, err.clientMessage]).toEqual(['GH_ERR_AUTH_FAILED', 'authentication failed', 'authentication failed'])
  })

  it('the audited user name is bounded: 256 characters kept whole, a longer one cut with an ellipsis; no user, no field', async () => {
    const { pipeline, events } = harness()
    const h = pipeline.openSession({ protocol: 'postgres', clientAddress: '10.1.1.1:1', tls: false })
    for (const user of ['u'.repeat(256), 'v'.repeat(257)]) await pipeline.authenticate(h.info, { kind: 'password', user, password: 'x' }).catch(() => undefined)
    await pipeline.loginRefused(h.info, undefined, new GatewayError('GH_ERR_AUTH_FAILED', 'no user sent'))
    const failures = events.filter((e) => e.type === 'auth.failure') as (AuditEvent & { user?: string })[]
    expect(failures.map((e) => e.user)).toEqual(['u'.repeat(256), `${'v'.repeat(256)}…`, undefined])
    expect('user' in (failures[2] as object)).toBe(false)
  })

  it('a session cap refusal tells the client why and is counted by limit', async () => {
    const { login, counter } = harness({ limits: { sessions: { perIdentity: 1 } } })
    await login()
    const err = await login().catch((e: unknown) => e as GatewayError)
    expect(err.code).toBe('GH_ERR_LIMIT_SESSIONS')
    expect(err.clientMessage).toBe(`too many sessions: ${err.message}`)
    expect(await counter('gatehouse_limit_refusals_total', { connection: 'db', limit: 'sessions.per-identity' })).toBe(1)
  })
})

describe('requests', () => {
  it('admit and refuse before a login are a bug in the adapter, said so', async () => {
    const { pipeline } = harness()
    const h = pipeline.openSession({ protocol: 'postgres', clientAddress: '10.1.1.1:1', tls: false })
    const r = pipeline.request(h.info, { action: 'x', attrs: {} })
    expect(() => pipeline.admit(r)).toThrow('admit called before authentication')
    await expect(pipeline.refuse(r, { rule: 'r', reason: 'no' })).rejects.toThrow('refuse called before authentication')
  })

  it('the intent cannot be recorded: refused as GH_ERR_AUDIT_UNAVAILABLE, for a refusal too; a sink’s own unavailability message is kept', async () => {
    let failWith: Error = new Error('disk full')
    const { login, pipeline } = harness({ sink: { write: (e) => (e.type === 'request' ? Promise.reject(failWith) : undefined) } })
    const h = await login()
    const a = await pipeline.admit(pipeline.request(h.info, { action: 'x', attrs: {} }))
    expect(a).toMatchObject({ admitted: false, decision: { verdict: 'deny', rule: 'gatehouse/audit' } })
    const error = (a as { error: GatewayError }).error
    expect([error.code, error.message, error.opts.cause]).toEqual(['GH_ERR_AUDIT_UNAVAILABLE', 'audit is unavailable; request refused', failWith])
    const refused = await pipeline.refuse(pipeline.request(h.info, { action: 'x', attrs: {} }), { rule: 'gatehouse/parse', reason: 'unparseable' })
    expect([refused.code, refused.message]).toEqual(['GH_ERR_AUDIT_UNAVAILABLE', 'audit is unavailable; request refused'])
    failWith = new GatewayError('GH_ERR_INTERNAL', 'sink bug')
    const other = await pipeline.admit(pipeline.request(h.info, { action: 'x', attrs: {} }))
    expect([(other as { error: GatewayError }).error.code, (other as { error: GatewayError }).error.message]).toEqual(['GH_ERR_AUDIT_UNAVAILABLE', 'audit is unavailable; request refused'])
    failWith = new GatewayError('GH_ERR_AUDIT_UNAVAILABLE', 'audit sink "siem" is down')
    const b = await pipeline.admit(pipeline.request(h.info, { action: 'x', attrs: {} }))
    expect((b as { error: GatewayError }).error.message).toBe('audit sink "siem" is down')
  })

  it("an outcome's durationMs is the time from the request to its outcome, in milliseconds", async () => {
    const { login, pipeline, events } = harness()
    const h = await login()
    const r = pipeline.request(h.info, { action: 'x', attrs: {} })
    await pipeline.admit(r)
    await sleep(60)
    pipeline.complete(r, { rows: 1 } as never)
    await tick()
    const { durationMs } = events.find((e) => e.type === 'outcome') as AuditEvent & { durationMs: number }
    expect(durationMs).toBeGreaterThanOrEqual(55)
    expect(durationMs).toBeLessThan(10_000)
  })

  it('a pipeline without a metrics registry runs every path that counts', async () => {
    const { login, pipeline, reload, identities } = harness({ noMetrics: true, policies: [{ decide: () => allow }], limits: { unauthenticated: { perSource: 1 } } })
    const h = await login()
    expect(await pipeline.admit(pipeline.request(h.info, { action: 'x', attrs: {} }))).toMatchObject({ admitted: true })
    await pipeline.protocolEvent(h.info, { event: 'cancel', reason: 'a cancel' })
    await pipeline.limitReached(h.info, 'postgres.message-bytes', 'too big')
    await pipeline.integrity(h.info, { expected: 'SELECT', actual: 'DELETE', reason: 'drift' })
    expect(pipeline.admitConnection('10.1.1.1', 'postgres', () => undefined)).toBeDefined()
    expect(pipeline.admitConnection('10.1.1.1', 'postgres', () => undefined)).toBeUndefined()
    h.terminate({ cause: 'sessions.idle', code: 'GH_ERR_SESSION_LIMIT', reason: 'idle' })
    const locked = pipeline.openSession({ protocol: 'postgres', clientAddress: '10.3.3.3:1', tls: false })
    for (let i = 0; i < 7; i++) await pipeline.authenticate(locked.info, { kind: 'password', user: 'agent', password: 'gh_wrong' }).catch(() => undefined)
    await expect(pipeline.authenticate(locked.info, { kind: 'password', user: 'agent', password: 'gh_wrong' })).rejects.toMatchObject({ code: 'GH_ERR_AUTH_THROTTLED' })
    const h2 = await login('10.2.2.2:2')
    expect(reload([{ ...(identities[0] as Identity), tokens: [] }])).toEqual({ ended: 1 })
    await tick()
    expect(h2.info.signal.aborted).toBe(true)
  })

  it('finds the metrics registry in a parent container; its settings are what a reload replaces', async () => {
    const metrics = new MetricsRegistry()
    const top = container.createChildContainer()
    top.registerInstance(Metrics, metrics)
    const chains = { authenticators: [], analyzers: [], policies: [{ decide: () => allow }], transformers: [] }
    const limits = resolveLimits(undefined, undefined)
    const identityLimits = new Map([['agent', { idleMs: 5 }]])
    const pipeline = new ConnectionPipeline('db', chains, new AuditRecorder([], createLogger('silent')), top.createChildContainer(), createLogger('silent'), limits, identityLimits)
    pipeline.limitReached({ id: 's', connection: 'db', protocol: 'postgres', clientAddress: '1.2.3.4:5', tls: false, startedAt: 0, signal: new AbortController().signal }, 'x.y', 'r', { recorded: true })
    expect((await metrics.registry.getSingleMetric('gatehouse_limit_refusals_total')?.get())?.values).toEqual([{ labels: { connection: 'db', limit: 'x.y' }, value: 1 }])
    expect(pipeline.settings).toEqual({ chains, limits, identityLimits })
  })
})
