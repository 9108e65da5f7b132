/**
 * core's ConnectionPipeline in process, the parts pipeline.test.ts leaves out: what an operator
 * sees (the log lines and the /metrics counters of each path), a config reload on open sessions
 * (revoked tokens end them, changed identities are re-described), the session sweeper (idle, max
 * age, credential expiry), analyzer plugins, and connection admission before login.
 */
import { describe, expect, it } from 'vitest'
import { generateToken, hashToken, type Analyzer, type GatewayRequest, type SessionHandle } from '@gatehouse/core'
import { allow, deny, harness, protocolEvents, tick, type Identity } from './pipeline-harness.js'

describe('what an operator sees: logs and metrics', () => {
  it('decisions are counted by action and verdict; a deny and a refusal too; the trace log names the decision, never the text', async () => {
    let verdict = allow
    const { pipeline, login, counter, logs } = harness({ policies: [{ decide: () => verdict }] })
    const h = await login()
    for (let i = 0; i < 3; i++) await pipeline.admit(pipeline.request(h.info, { action: 'sql.query', text: 'SELECT secret_text', attrs: {} }))
    verdict = deny
    await pipeline.admit(pipeline.request(h.info, { action: 'sql.query', text: 'DELETE', attrs: {} }))
    await pipeline.refuse(pipeline.request(h.info, { action: 'ssh.exec', attrs: {} }), { rule: 'gatehouse/parse', reason: 'no' })
    expect(await counter('gatehouse_requests_total', { connection: 'db', action: 'sql.query', verdict: 'allow' })).toBe(3)
    expect(await counter('gatehouse_requests_total', { connection: 'db', action: 'sql.query', verdict: 'deny' })).toBe(1)
    expect(await counter('gatehouse_requests_total', { connection: 'db', action: 'ssh.exec', verdict: 'deny' })).toBe(1)
    const decided = logs.filter((l) => l.msg === 'request decided')
    expect(decided).toHaveLength(4)
    expect(decided[0]).toMatchObject({ session: h.info.id, action: 'sql.query', verdict: 'allow', rule: 'p/allow' })
    expect(JSON.stringify(logs)).not.toContain('secret_text')
    const authenticated = logs.find((l) => l.msg === 'session authenticated')
    expect(authenticated).toMatchObject({ session: h.info.id, principal: 'agent', client: '10.1.2.3:5555' })
  })

  it('a policy plugin that throws, an analyzer that throws, a sink that refuses an intent or an outcome: each is logged as an error naming the request', async () => {
    let fail: 'policy' | 'analyzer' | 'sink' | 'outcome' | undefined
    const { pipeline, login, logs } = harness({
      policies: [{ decide: () => { if (fail === 'policy') throw new Error('policy bug'); return allow } }],
      analyzers: [{ analyze: () => { if (fail === 'analyzer') throw new Error('analyzer bug') } }],
      sink: { write: (e) => (fail === 'sink' && e.type === 'request') || (fail === 'outcome' && e.type === 'outcome') ? Promise.reject(new Error('disk full')) : undefined },
    })
    const h = await login()
    const errors = () => logs.filter((l) => l.level >= 50)
    fail = 'policy'
    const r1 = pipeline.request(h.info, { action: 'x', attrs: {} })
    expect(await pipeline.admit(r1)).toMatchObject({ admitted: false, decision: { rule: 'gatehouse/policy-error' } })
    expect(errors().at(-1)).toMatchObject({ msg: 'policy plugin threw; request denied', request: r1.id, err: 'Error: policy bug' })
    fail = 'analyzer'
    const r2 = pipeline.request(h.info, { action: 'x', attrs: {} })
    expect(await pipeline.admit(r2)).toMatchObject({ admitted: false, decision: { verdict: 'deny', rule: 'gatehouse/error', reason: 'policy evaluation failed' } })
    expect(errors().at(-1)).toMatchObject({ msg: 'decide stage failed; request denied', request: r2.id, err: 'Error: analyzer bug' })
    fail = 'sink'
    const r3 = pipeline.request(h.info, { action: 'x', attrs: {} })
    expect(await pipeline.admit(r3)).toMatchObject({ admitted: false, error: { code: 'GH_ERR_AUDIT_UNAVAILABLE' } })
    expect(errors().at(-1)).toMatchObject({ msg: 'intent record failed; request refused', request: r3.id, code: 'GH_ERR_AUDIT_UNAVAILABLE', err: 'Error: disk full' })
    fail = 'outcome'
    const r4 = pipeline.request(h.info, { action: 'x', attrs: {} })
    expect(await pipeline.admit(r4)).toMatchObject({ admitted: true })
    pipeline.complete(r4, { rows: 1 } as never)
    await tick()
    expect(errors().at(-1)).toMatchObject({ msg: 'could not record outcome', request: r4.id })
  })

  it('protocol events, limits and integrity violations are logged and counted per connection', async () => {
    const { pipeline, login, logs, counter } = harness()
    const h = await login()
    await pipeline.protocolEvent(h.info, { event: 'cancel', reason: 'a cancel' })
    await pipeline.limitReached(h.info, 'postgres.message-bytes', 'too big')
    await pipeline.limitReached(h.info, 'postgres.statements-per-query', 'too many', { recorded: true })
    await pipeline.integrity(h.info, { expected: 'SELECT', actual: 'INSERT', reason: 'drift' })
    expect(await counter('gatehouse_protocol_events_total', { connection: 'db', event: 'cancel' })).toBe(1)
    expect(await counter('gatehouse_protocol_events_total', { connection: 'db', event: 'limit.postgres.message-bytes' })).toBe(1)
    expect(await counter('gatehouse_limit_refusals_total', { connection: 'db', limit: 'postgres.message-bytes' })).toBe(1)
    expect(await counter('gatehouse_limit_refusals_total', { connection: 'db', limit: 'postgres.statements-per-query' })).toBe(1)
    expect(await counter('gatehouse_integrity_violations_total', { connection: 'db' })).toBe(1)
    expect(logs.find((l) => l.msg === 'protocol event' && l.event === 'cancel')).toMatchObject({ level: 40, session: h.info.id, reason: 'a cancel', client: '10.1.2.3:5555', principal: 'agent' })
    expect(logs.find((l) => l.msg === 'request refused by a limit')).toMatchObject({ level: 40, session: h.info.id, limit: 'postgres.statements-per-query', reason: 'too many' })
    expect(logs.find((l) => (l.msg as string).startsWith('integrity violation'))).toMatchObject({ level: 50, session: h.info.id, expected: 'SELECT', actual: 'INSERT', reason: 'drift' })
  })

  it('a failed login is logged with the user and the reason, never the password', async () => {
    const { pipeline, logs } = harness()
    const h = pipeline.openSession({ protocol: 'postgres', clientAddress: '10.0.0.9:1', tls: false })
    await pipeline.authenticate(h.info, { kind: 'password', user: 'agent', password: 'gh_not_the_token' }).catch(() => undefined)
    expect(logs.find((l) => l.msg === 'authentication failed')).toMatchObject({ session: h.info.id, user: 'agent', code: 'GH_ERR_AUTH_FAILED' })
    expect(JSON.stringify(logs)).not.toContain('gh_not_the_token')
  })
})

describe('config reload on open sessions', () => {
  /** An adapter's side of a session: what core asked it to render. */
  const renderInto = (h: SessionHandle) => {
    const seen: { cause: string; code: string; reason: string }[] = []
    h.onTerminate((t) => {
      seen.push(t)
      void h.end(t.reason)
    })
    return seen
  }

  it('a token that is gone ends the sessions it opened, as credential.revoked, recorded and counted; the others keep running', async () => {
    const { login, reload, events, counter, identities, pipeline } = harness()
    const h = await login()
    const rendered = renderInto(h)
    const other = generateToken()
    // the same identity, t1 replaced by t2
    expect(reload([{ ...(identities[0] as Identity), tokens: [{ id: 't2', hash: hashToken(other, 'agent') }] }])).toEqual({ ended: 1 })
    expect(rendered).toEqual([{ cause: 'credential.revoked', code: 'GH_ERR_AUTH_REVOKED', reason: 'the credential this session logged in with (token:t1) is no longer valid: identity "agent" no longer has this token in the configuration' }])
    await tick()
    expect(protocolEvents(events).map((e) => [e.event, e.attrs])).toEqual([['credential.revoked', { code: 'GH_ERR_AUTH_REVOKED' }]])
    expect(await counter('gatehouse_sessions_credential_ended_total', { connection: 'db', cause: 'credential.revoked' })).toBe(1)
    expect(pipeline.sessionCount).toBe(0)
    // a reload that keeps the token keeps the session
    const { login: login2, reload: reload2, identities: ids2, pipeline: p2 } = harness()
    const kept = await login2()
    expect(reload2(ids2)).toEqual({ ended: 0 })
    expect(p2.sessionCount).toBe(1)
    await kept.end()
  })

  it('an identity whose groups changed is judged as the new config describes it, with a principal.updated record; unchanged, nothing is recorded', async () => {
    const { login, reload, events, identities, pipeline } = harness({ policies: [{ decide: (_r, p) => (p.groups.includes('admins') ? deny : allow) }] })
    const h = await login()
    expect(reload(identities)).toEqual({ ended: 0 })
    await tick()
    expect(protocolEvents(events)).toEqual([])
    reload([{ ...(identities[0] as Identity), groups: ['admins'] }])
    await tick()
    expect(h.info.principal?.groups).toEqual(['admins'])
    const updated = protocolEvents(events)
    expect(updated[0]?.reason).toBe('a config reload changed the identity this session logged in as; its next requests are judged as the new config describes it')
    expect(updated.map((e) => [e.event, e.attrs])).toEqual([['principal.updated', { before: { kind: 'agent', groups: ['a'], credential: 'token:t1' }, after: { kind: 'agent', groups: ['admins'], credential: 'token:t1' } }]])
    expect(await pipeline.admit(pipeline.request(h.info, { action: 'x', attrs: {} }))).toMatchObject({ admitted: false })
    await h.end()
  })

  it('new limits apply from the reload on: a lower perIdentity refuses the next login', async () => {
    const { login, reload, identities } = harness()
    const first = await login()
    reload(identities, { sessions: { perIdentity: 1 } })
    await expect(login()).rejects.toMatchObject({ code: 'GH_ERR_LIMIT_SESSIONS' })
    await first.end()
    await expect(login()).resolves.toBeDefined()
  })

  it('a login checked under the config before a reload is checked again under the new one', async () => {
    const { pipeline, reload, token, identities, holdLogins } = harness()
    const h = pipeline.openSession({ protocol: 'postgres', clientAddress: '10.1.2.3:1', tls: false })
    // the authenticator answers only after the reload
    const release = holdLogins()
    const pending = pipeline.authenticate(h.info, { kind: 'password', user: 'agent', password: token })
    await tick()
    reload([{ ...(identities[0] as Identity), tokens: [] }])
    release()
    const err = await pending.catch((e: unknown) => e as Error & { code: string })
    expect([err.code, err.message]).toEqual(['GH_ERR_AUTH_REVOKED', 'token:t1 of identity "agent" is no longer valid: identity "agent" no longer has this token in the configuration'])
    // the connection is still there (the adapter ends it), but it never became a session
    expect(h.info.principal).toBeUndefined()
    await h.end()
    expect(pipeline.sessionCount).toBe(0)
  })
})

describe('the session sweeper', () => {
  it('ends a session idle past limits.sessions.idleMs (sessions.idle), unless the adapter says it is busy', async () => {
    const { login, events, counter } = harness({ limits: { sessions: { idleMs: 150 } } })
    const h = await login()
    let busy = true
    h.busyWhen(() => busy)
    const rendered: string[] = []
    h.onTerminate((t) => {
      rendered.push(`${t.cause} ${t.code} ${t.reason}`)
      void h.end(t.reason)
    })
    await new Promise((r) => setTimeout(r, 400))
    expect(rendered).toEqual([])
    busy = false
    const started = Date.now()
    while (rendered.length === 0 && Date.now() - started < 2000) await new Promise((r) => setTimeout(r, 20))
    expect(rendered).toEqual(['sessions.idle GH_ERR_SESSION_LIMIT no traffic for 150 ms (limits.sessions.idleMs)'])
    await tick()
    expect(protocolEvents(events).map((e) => e.event)).toEqual(['limit.sessions.idle'])
    expect(await counter('gatehouse_limit_refusals_total', { connection: 'db', limit: 'sessions.idle' })).toBe(1)
  })

  it('touch keeps a session alive; max age ends it all the same', async () => {
    const { login } = harness({ limits: { sessions: { idleMs: 150, maxAgeMs: 600 } } })
    const h = await login()
    const rendered: string[] = []
    h.onTerminate((t) => {
      rendered.push(t.cause)
      void h.end(t.reason)
    })
    const started = Date.now()
    while (rendered.length === 0 && Date.now() - started < 3000) {
      h.touch()
      await new Promise((r) => setTimeout(r, 30))
    }
    expect(rendered).toEqual(['sessions.max-age'])
    expect(Date.now() - started).toBeGreaterThanOrEqual(550)
  })

  it('ends a session whose token expires while it runs (credential.expired), naming when; without an adapter renderer core ends it', async () => {
    const expires = new Date(Date.now() + 700).toISOString()
    const { login, events, pipeline } = harness({ expires, limits: { sessions: { idleMs: 200 } } })
    const h = await login()
    const started = Date.now()
    while (pipeline.sessionCount > 0 && Date.now() - started < 3000) {
      h.touch()
      await new Promise((r) => setTimeout(r, 30))
    }
    expect(pipeline.sessionCount).toBe(0)
    expect(h.info.signal.aborted).toBe(true)
    await tick()
    const ended = protocolEvents(events)
    expect(ended.map((e) => [e.event, e.reason])).toEqual([['credential.expired', `the credential this session logged in with (token:t1) expired at ${expires}`]])
    expect(events.find((e) => e.type === 'session.end')).toMatchObject({ reason: ended[0]?.reason })
  })

  it('an adapter whose renderer throws: logged, and core ends the session itself after the 5 s grace period', async () => {
    const { login, logs, pipeline } = harness({ limits: { sessions: { idleMs: 100 } } })
    const h = await login()
    h.onTerminate(() => {
      throw new Error('render bug')
    })
    let started = Date.now()
    while (!logs.some((l) => l.msg === 'adapter failed to render a session termination') && Date.now() - started < 2000) await new Promise((r) => setTimeout(r, 20))
    expect(logs.find((l) => l.msg === 'adapter failed to render a session termination')).toMatchObject({ session: h.info.id, err: 'Error: render bug' })
    // the adapter gets its grace period to close the session itself
    await new Promise((r) => setTimeout(r, 1000))
    expect(pipeline.sessionCount).toBe(1)
    started = Date.now()
    while (pipeline.sessionCount > 0 && Date.now() - started < 6000) await new Promise((r) => setTimeout(r, 50))
    expect(pipeline.sessionCount).toBe(0)
    expect(h.info.signal.aborted).toBe(true)
  }, 15_000)
})

describe('analyzers and explain', () => {
  it('analyzers run in order before policy, synchronously or not, and policy sees what they added; explain decides without recording', async () => {
    const seen: unknown[] = []
    const analyzers: Analyzer[] = [
      { analyze: (r: GatewayRequest) => void ((r.attrs as Record<string, unknown>).first = 1) },
      {
        analyze: async (r: GatewayRequest) => {
          // adds its attribute only after a turn of the event loop: policy must wait for it
          await tick()
          ;(r.attrs as Record<string, unknown>).second = (r.attrs as { first: number }).first + 1
        },
      },
    ]
    const { pipeline, login, events } = harness({ analyzers, policies: [{ decide: (r) => (seen.push({ ...r.attrs }), (r.attrs as { second?: number }).second === 2 ? allow : deny) }] })
    const h = await login()
    const before = events.length
    const r = pipeline.request(h.info, { action: 'x', attrs: {} })
    expect(await pipeline.explain(r, h.info.principal as never)).toEqual(allow)
    expect(events.length).toBe(before)
    const r2 = pipeline.request(h.info, { action: 'x', attrs: {} })
    expect(await pipeline.admit(r2)).toMatchObject({ admitted: true, decision: allow })
    expect(seen).toEqual([{ first: 1, second: 2 }, { first: 1, second: 2 }])
    expect(events.filter((e) => e.type === 'request').map((e) => e.request)).toEqual([r2.id])
  })

  it('explain of a request whose analyzer or policy throws is the deny admit would give', async () => {
    const { pipeline, login } = harness({ analyzers: [{ analyze: () => { throw new Error('bad') } }] })
    const h = await login()
    expect(await pipeline.explain(pipeline.request(h.info, { action: 'x', attrs: {} }), h.info.principal as never)).toEqual({ verdict: 'deny', rule: 'gatehouse/error', reason: 'policy evaluation failed' })
  })
})

describe('connections before login', () => {
  it('past unauthenticated.perSource, a connection is refused: the first of a burst logged and recorded, every one counted', async () => {
    const { pipeline, events, logs, counter } = harness({ limits: { unauthenticated: { perSource: 1 } } })
    const slot = pipeline.admitConnection('10.7.7.7', 'postgres', () => undefined)
    expect(slot).toBeDefined()
    expect(pipeline.admitConnection('10.7.7.7', 'postgres', () => undefined)).toBeUndefined()
    expect(pipeline.admitConnection('10.7.7.7', 'postgres', () => undefined)).toBeUndefined()
    await tick()
    const refused = protocolEvents(events)
    expect(refused).toHaveLength(1)
    expect(refused[0]).toMatchObject({ event: 'limit.unauthenticated.per-source', client: '10.7.7.7', protocol: 'postgres' })
    expect(logs.filter((l) => (l.msg as string).startsWith('connection refused by a limit'))).toHaveLength(1)
    expect(logs.find((l) => (l.msg as string).startsWith('connection refused by a limit'))).toMatchObject({ level: 40, limit: 'unauthenticated.per-source', client: '10.7.7.7', reason: expect.any(String) })
    expect(await counter('gatehouse_limit_refusals_total', { connection: 'db', limit: 'unauthenticated.per-source' })).toBe(2)
    // another address is not affected
    expect(pipeline.admitConnection('10.8.8.8', 'postgres', () => undefined)).toBeDefined()
  })

  it('a connection that does not log in within loginTimeoutMs is timed out: the adapter is told, and it is counted and recorded', async () => {
    const { pipeline, events, counter } = harness({ limits: { unauthenticated: { loginTimeoutMs: 100 } } })
    let timedOut = 0
    expect(pipeline.admitConnection('10.6.6.6', 'ssh', () => timedOut++)).toBeDefined()
    await new Promise((r) => setTimeout(r, 300))
    expect(timedOut).toBe(1)
    expect(protocolEvents(events).map((e) => [e.event, e.protocol])).toEqual([['limit.unauthenticated.login-timeout', 'ssh']])
    expect(await counter('gatehouse_limit_refusals_total', { connection: 'db', limit: 'unauthenticated.login-timeout' })).toBe(1)
  })
})
