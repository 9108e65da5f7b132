/**
 * core's ConnectionPipeline in process, driven as an adapter drives it (open a session, log in,
 * build requests, admit, complete, end), with a recording sink and policy engines that answer as
 * told: the exact audit records, refusals and error codes of every step. The same guards are
 * checked through real clients in guards.test.ts, session-limits.test.ts and the adapters' tests;
 * here every branch is reached without a network, so a broken one fails fast.
 */
import { describe, expect, it } from 'vitest'
import {
  AuditRecorder,
  ConnectionPipeline,
  createLogger,
  GatewayConfig,
  GatewayError,
  generateToken,
  hashToken,
  ScramClient,
  validate,
  type AuditEvent,
  type AuditSink,
  type Decision,
  type GatewayRequest,
  type PolicyEngine,
  type Principal,
} from '@gatehouse/core'
import { container } from 'tsyringe'
import { TokenAuthenticator } from '@gatehouse/plugin-auth-token'
import { resolveLimits } from '../../core/dist/pipeline/limits.js'

type Answer = Decision | (() => Decision | Promise<Decision>)
const engine = (answer: Answer): PolicyEngine => ({ decide: () => (typeof answer === 'function' ? answer() : answer) })
const allow: Decision = { verdict: 'allow', rule: 'p/allow', reason: 'allowed' }
const deny: Decision = { verdict: 'deny', rule: 'p/deny', reason: 'no writes' }
const review: Decision = { verdict: 'review', rule: 'p/review', reason: 'a person looks' }

function harness(opts: { policies?: PolicyEngine[]; sink?: Partial<AuditSink>; limits?: Record<string, unknown>; transformers?: { transform: (r: GatewayRequest, x: unknown) => unknown }[] } = {}) {
  const token = generateToken()
  const config = validate(GatewayConfig, {
    connections: [{ name: 'db', adapter: 'postgres', listen: '127.0.0.1:0', upstream: { host: 'h', database: 'd', user: 'u' } }],
    identities: [{ id: 'agent', groups: ['a'], tokens: [{ id: 't1', hash: hashToken(token, 'agent') }] }],
  })
  const events: AuditEvent[] = []
  const sink: AuditSink = { mode: 'required', write: (e) => void events.push(e), flush: async () => {}, close: async () => {}, ...opts.sink }
  const recorder = new AuditRecorder([{ name: 'mem', sink }], createLogger('silent'))
  const pipeline = new ConnectionPipeline(
    'db',
    { authenticators: [new TokenAuthenticator(config, { cacheSize: 0 })], analyzers: [], policies: opts.policies ?? [engine(allow)], transformers: (opts.transformers ?? []) as never },
    recorder,
    container.createChildContainer(),
    createLogger('silent'),
    resolveLimits(opts.limits as never, undefined),
  )
  const login = async (pw = token) => {
    const h = pipeline.openSession({ protocol: 'postgres', clientAddress: '10.1.2.3:5555', tls: false })
    const principal = await pipeline.authenticate(h.info, { kind: 'password', user: 'agent', password: pw })
    return { h, principal }
  }
  return { pipeline, events, token, login, recorder }
}

describe('sessions', () => {
  it('opens a session with what the adapter said; login records session.start; end records session.end once, with the request count', async () => {
    const { pipeline, events, login } = harness()
    const { h, principal } = await login()
    expect(h.info).toMatchObject({ connection: 'db', protocol: 'postgres', clientAddress: '10.1.2.3:5555', tls: false, principal })
    expect(h.info.id).toMatch(/^[0-9a-f-]{36}$/)
    expect(pipeline.sessionCount).toBe(1)
    expect(principal).toMatchObject({ id: 'agent', credential: 'token:t1' })
    expect(events).toEqual([expect.objectContaining({ id: `${h.info.id}:start`, type: 'session.start', session: h.info.id, connection: 'db', protocol: 'postgres', client: '10.1.2.3:5555', tls: false, principal: { id: 'agent', kind: 'agent', groups: ['a'], credential: 'token:t1' } })])
    pipeline.request(h.info, { action: 'sql.query', attrs: {} })
    pipeline.request(h.info, { action: 'sql.query', attrs: {} })
    await Promise.all([h.end('client closed'), h.end('again')])
    expect(h.info.signal.aborted).toBe(true)
    expect(pipeline.sessionCount).toBe(0)
    const ends = events.filter((e) => e.type === 'session.end')
    expect(ends).toEqual([expect.objectContaining({ id: `${h.info.id}:end`, requests: 2, reason: 'client closed' })])
    expect((ends[0] as { durationMs: number }).durationMs).toBeGreaterThanOrEqual(0)
  })

  it('a session that never logged in ends without a session.end record', async () => {
    const { pipeline, events } = harness()
    const h = pipeline.openSession({ protocol: 'postgres', clientAddress: '10.1.2.3:5555', tls: true })
    await h.end()
    expect(events).toEqual([])
    expect(pipeline.sessionCount).toBe(0)
  })

  it('a wrong token is recorded as auth.failure (one per attempt, the user bounded), counts down the attempts, and at the last one the limit is recorded', async () => {
    const { pipeline, events } = harness({ limits: { logins: { perConnection: 2 } } })
    const h = pipeline.openSession({ protocol: 'postgres', clientAddress: '10.9.9.9:1', tls: false })
    expect(pipeline.loginAttemptsLeft(h.info)).toBe(2)
    await expect(pipeline.authenticate(h.info, { kind: 'password', user: 'agent', password: 'gh_wrong' })).rejects.toMatchObject({ code: 'GH_ERR_AUTH_FAILED' })
    expect(pipeline.loginAttemptsLeft(h.info)).toBe(1)
    const long = 'u'.repeat(300)
    await expect(pipeline.authenticate(h.info, { kind: 'password', user: long, password: 'x' })).rejects.toMatchObject({ code: 'GH_ERR_AUTH_FAILED' })
    expect(pipeline.loginAttemptsLeft(h.info)).toBe(0)
    const failures = events.filter((e) => e.type === 'auth.failure') as (AuditEvent & { user?: string; code: string })[]
    expect(failures.map((e) => e.id)).toEqual([`${h.info.id}:auth-failure:1`, `${h.info.id}:auth-failure:2`])
    expect(failures[0]).toMatchObject({ user: 'agent', code: 'GH_ERR_AUTH_FAILED', client: '10.9.9.9:1' })
    expect(failures[1]?.user).toBe(`${'u'.repeat(256)}…`)
    expect(events.filter((e) => e.type === 'protocol')).toEqual([expect.objectContaining({ event: 'limit.logins.per-connection' })])
    // a third attempt is refused without checking the credential
    const third = await pipeline.authenticate(h.info, { kind: 'password', user: 'agent', password: 'anything' }).catch((e: unknown) => e as GatewayError)
    expect(third).toMatchObject({ code: 'GH_ERR_AUTH_THROTTLED', message: '2 failed logins on this client connection (limits.logins.perConnection)' })
  })

  it('credentials no authenticator takes are a plain failure; loginRefused records an adapter-side refusal the same way', async () => {
    const { pipeline, events } = harness()
    const h = pipeline.openSession({ protocol: 'ssh', clientAddress: '10.0.0.1:2', tls: false })
    await expect(pipeline.authenticate(h.info, { kind: 'public-key', user: 'agent', algorithm: 'ssh-ed25519', key: Buffer.alloc(8) })).rejects.toMatchObject({ code: 'GH_ERR_AUTH_FAILED' })
    await pipeline.loginRefused(h.info, 'agent', new GatewayError('GH_ERR_AUTH_FAILED', 'signature does not verify'))
    expect(events.map((e) => [e.type, (e as { reason?: string }).reason])).toEqual([
      ['auth.failure', 'authentication failed'],
      ['auth.failure', 'signature does not verify'],
    ])
  })

  it('a login whose connection closed while the token was checked is no session', async () => {
    const { pipeline, token, events } = harness()
    const h = pipeline.openSession({ protocol: 'postgres', clientAddress: '10.1.2.3:5555', tls: false })
    const pending = pipeline.authenticate(h.info, { kind: 'password', user: 'agent', password: token })
    await h.end('closed')
    await expect(pending).rejects.toMatchObject({ code: 'GH_ERR_SESSION_CLOSED' })
    expect(events.some((e) => e.type === 'session.start')).toBe(false)
  })

  it('perIdentity sessions: the next login of the same identity is refused with GH_ERR_LIMIT_SESSIONS; one ending frees a place', async () => {
    const { login } = harness({ limits: { sessions: { perIdentity: 1 } } })
    const first = await login()
    await expect(login()).rejects.toMatchObject({ code: 'GH_ERR_LIMIT_SESSIONS' })
    await first.h.end()
    await expect(login()).resolves.toBeDefined()
  })

  it('SCRAM through core: a valid proof logs in (session.start), a wrong one is an auth.failure', async () => {
    const { pipeline, events, token } = harness()
    const h = pipeline.openSession({ protocol: 'postgres', clientAddress: '10.1.2.3:5555', tls: false })
    const client = new ScramClient(token)
    const ex = pipeline.scram(h.info, 'agent')
    const done = await ex.finish(client.final(ex.start(client.first())))
    client.verify(done.serverFinal)
    expect(done.principal).toMatchObject({ id: 'agent' })
    const h2 = pipeline.openSession({ protocol: 'postgres', clientAddress: '10.1.2.3:5556', tls: false })
    const wrong = new ScramClient('gh_wrong')
    const ex2 = pipeline.scram(h2.info, 'agent')
    await expect(ex2.finish(wrong.final(ex2.start(wrong.first())))).rejects.toMatchObject({ code: 'GH_ERR_AUTH_FAILED' })
    // an unknown user gets a salt all the same, the same one each time
    const salt = (user: string) => /s=([^,]+)/.exec(pipeline.scram(h2.info, user).start('n,,n=*,r=abc'))?.[1]
    expect(salt('nobody')).toBe(salt('nobody'))
    expect(salt('nobody')).not.toBe(salt('someone'))
    expect(events.map((e) => e.type)).toEqual(['session.start', 'auth.failure'])
  })
})

describe('requests: decide, record the intent, then answer', () => {
  it('numbers requests per session and targets the connection unless told', async () => {
    const { pipeline, login } = harness()
    const { h } = await login()
    const a = pipeline.request(h.info, { action: 'sql.query', text: 'SELECT 1', attrs: { x: 1 }, params: ['p'] })
    const b = pipeline.request(h.info, { action: 'ssh.exec', target: 'other', attrs: {} })
    expect(a).toMatchObject({ id: `${h.info.id}.1`, session: h.info, protocol: 'postgres', action: 'sql.query', target: 'db', text: 'SELECT 1', attrs: { x: 1 }, params: ['p'] })
    expect(b).toMatchObject({ id: `${h.info.id}.2`, target: 'other' })
  })

  it('allowed: admitted synchronously after the intent record, which carries the decision; complete records the outcome once', async () => {
    const { pipeline, events, login } = harness()
    const { h } = await login()
    events.length = 0
    const r = pipeline.request(h.info, { action: 'sql.query', text: 'SELECT 1', attrs: { sql: { statement: 'SELECT' } } })
    const a = pipeline.admit(r)
    expect(a).not.toBeInstanceOf(Promise)
    expect(a).toEqual({ admitted: true, decision: allow })
    expect(events).toEqual([expect.objectContaining({ id: `${r.id}:request`, type: 'request', request: r.id, action: 'sql.query', target: 'db', text: 'SELECT 1', attrs: { sql: { statement: 'SELECT' } }, verdict: 'allow', rule: 'p/allow', reason: 'allowed', principal: expect.objectContaining({ id: 'agent' }) })])
    pipeline.complete(r, { rows: 3, status: 'ok' } as never)
    pipeline.complete(r, { rows: 4 } as never)
    await new Promise((res) => setImmediate(res))
    const outcomes = events.filter((e) => e.type === 'outcome')
    expect(outcomes).toEqual([expect.objectContaining({ id: `${r.id}:outcome`, verdict: 'allow', rule: 'p/allow', rows: 3 })])
    expect((outcomes[0] as { durationMs: number }).durationMs).toBeGreaterThanOrEqual(0)
  })

  it('denied, or held for review with no workflow: refused with the protocol-neutral error, the outcome recorded by core', async () => {
    for (const [decision, code, message] of [
      [deny, 'GH_ERR_POLICY_DENIED', 'denied by rule "p/deny": no writes'],
      [{ verdict: 'deny', reason: 'unnamed' } as Decision, 'GH_ERR_POLICY_DENIED', 'denied: unnamed'],
      [review, 'GH_ERR_POLICY_REVIEW', 'needs approval (rule p/review): a person looks; no approval workflow is configured'],
      [{ verdict: 'review', reason: 'who knows' } as Decision, 'GH_ERR_POLICY_REVIEW', 'needs approval (rule unnamed): who knows; no approval workflow is configured'],
    ] as const) {
      const { pipeline, events, login } = harness({ policies: [engine(decision)] })
      const { h } = await login()
      const r = pipeline.request(h.info, { action: 'sql.query', attrs: {} })
      const a = (await pipeline.admit(r)) as { admitted: false; error: GatewayError; decision: Decision }
      expect(a.admitted).toBe(false)
      expect(a.decision).toEqual(decision)
      expect(a.error).toMatchObject({ code, message })
      expect(a.error.opts.rule).toBe(decision.rule)
      await new Promise((res) => setImmediate(res))
      expect(events.filter((e) => e.request === r.id).map((e) => [e.type, (e as { verdict?: string }).verdict])).toEqual([['request', decision.verdict], ['outcome', decision.verdict]])
      expect(events.find((e) => e.type === 'outcome')).toMatchObject({ error: { code, message } })
    }
  })

  it('deny-overrides across engines, in any order and answering as promises; a throwing or rejecting engine denies; none configured denies', async () => {
    const cases: [PolicyEngine[], string][] = [
      [[engine(allow), engine(deny)], 'p/deny'],
      [[engine(deny), engine(allow)], 'p/deny'],
      [[engine(() => Promise.resolve(allow)), engine(() => Promise.resolve(review))], 'p/review'],
      [[engine(review), engine(deny)], 'p/deny'],
      [[engine(allow), engine({ ...allow, rule: 'p/second' })], 'p/allow'],
      [[engine(allow), engine(() => { throw new Error('bug') })], 'gatehouse/policy-error'],
      [[engine(allow), engine(() => Promise.reject(new Error('bug')))], 'gatehouse/policy-error'],
      [[engine(() => { throw new Error('bug') })], 'gatehouse/policy-error'],
      [[engine(() => Promise.reject(new Error('bug')))], 'gatehouse/policy-error'],
      [[], 'gatehouse/no-policy'],
    ]
    for (const [policies, rule] of cases) {
      const { pipeline, login } = harness({ policies })
      const { h } = await login()
      const a = await pipeline.admit(pipeline.request(h.info, { action: 'sql.query', attrs: {} }))
      expect(a.decision.rule, rule).toBe(rule)
      expect(a.admitted).toBe(rule === 'p/allow')
    }
  })

  it('an engine that answers nothing applicable: default deny across several', async () => {
    const { pipeline, login } = harness({ policies: [engine(() => Promise.resolve(allow)), engine(allow)] })
    const { h } = await login()
    expect(await pipeline.admit(pipeline.request(h.info, { action: 'x', attrs: {} }))).toMatchObject({ admitted: true })
    const none = harness({ policies: [] })
    const s = await none.login()
    expect(await none.pipeline.admit(none.pipeline.request(s.h.info, { action: 'x', attrs: {} }))).toMatchObject({ admitted: false, decision: { rule: 'gatehouse/no-policy', reason: 'no policy plugin is configured for this connection' } })
  })

  it('a required sink that fails the intent record, at once or later, refuses the request with GH_ERR_AUDIT_UNAVAILABLE; one that takes it late delays the answer until it has', async () => {
    for (const write of [() => { throw new Error('disk full') }, () => Promise.reject(new Error('disk full'))]) {
      let failing = false
      const { pipeline, login } = harness({ sink: { write: (e: AuditEvent) => (failing && e.type === 'request' ? write() : undefined) } })
      const { h } = await login()
      failing = true
      const a = (await pipeline.admit(pipeline.request(h.info, { action: 'sql.query', attrs: {} }))) as { admitted: false; error: GatewayError; decision: Decision }
      expect(a.admitted).toBe(false)
      expect(a.error.code).toBe('GH_ERR_AUDIT_UNAVAILABLE')
      expect(a.decision).toEqual({ verdict: 'deny', rule: 'gatehouse/audit', reason: 'audit is unavailable; request refused' })
    }
    let release: () => void = () => {}
    const gate = new Promise<void>((res) => (release = res))
    let late = false
    const { pipeline, login } = harness({ sink: { write: (e: AuditEvent) => (late && e.type === 'request' ? gate : undefined) } })
    const { h } = await login()
    late = true
    let answered = false
    const a = pipeline.admit(pipeline.request(h.info, { action: 'sql.query', attrs: {} }))
    expect(a).toBeInstanceOf(Promise)
    void (a as Promise<unknown>).then(() => (answered = true))
    await new Promise((res) => setTimeout(res, 20))
    expect(answered).toBe(false)
    release()
    expect(await a).toMatchObject({ admitted: true })
  })

  it('refuse(): recorded as a denied request with its outcome, the error code as asked; admit and refuse need a logged-in session', async () => {
    const { pipeline, events, login } = harness()
    const { h } = await login()
    const r = pipeline.request(h.info, { action: 'sql.query', text: 'garbage', attrs: {} })
    const err = await pipeline.refuse(r, { rule: 'gatehouse/parse', reason: 'syntax error', code: 'GH_ERR_PARSE_FAILED' })
    expect(err).toMatchObject({ code: 'GH_ERR_PARSE_FAILED', message: 'syntax error', opts: { rule: 'gatehouse/parse' } })
    expect((await pipeline.refuse(pipeline.request(h.info, { action: 'x', attrs: {} }), { rule: 'r', reason: 'no' })).code).toBe('GH_ERR_POLICY_DENIED')
    await new Promise((res) => setImmediate(res))
    expect(events.filter((e) => e.request === r.id).map((e) => [e.type, (e as { verdict?: string }).verdict, (e as { rule?: string }).rule])).toEqual([['request', 'deny', 'gatehouse/parse'], ['outcome', 'deny', 'gatehouse/parse']])
    const anon = pipeline.openSession({ protocol: 'postgres', clientAddress: '1.1.1.1:1', tls: false })
    const req = pipeline.request(anon.info, { action: 'x', attrs: {} })
    expect(() => pipeline.admit(req)).toThrow(expect.objectContaining({ code: 'GH_ERR_INTERNAL' }))
    await expect(pipeline.refuse(req, { rule: 'r', reason: 'x' })).rejects.toMatchObject({ code: 'GH_ERR_INTERNAL' })
    pipeline.complete(req, {} as never)
    expect(events.some((e) => e.request === req.id)).toBe(false)
  })

  it('transformers apply in order; protocol and integrity events are recorded with the principal when there is one', async () => {
    const { pipeline, events, login } = harness({ transformers: [{ transform: (_r, x) => `${x}a` }, { transform: (_r, x) => `${x}b` }] })
    const { h } = await login()
    const r = pipeline.request(h.info, { action: 'x', attrs: {} })
    expect(pipeline.transform(r, '')).toBe('ab')
    await pipeline.protocolEvent(h.info, { event: 'cancel', reason: 'a cancel', attrs: { pid: 1 } })
    await pipeline.protocolEvent(h.info, { event: 'cancel', reason: 'again' })
    await pipeline.integrity(h.info, { request: r, expected: 'a', actual: 'b', reason: 'drift' })
    await pipeline.integrity(h.info, { expected: 'c', actual: 'd', reason: 'session drift' })
    const anon = pipeline.openSession({ protocol: 'postgres', clientAddress: '1.1.1.1:1', tls: false })
    await pipeline.protocolEvent(anon.info, { event: 'startup.refused', reason: 'no' })
    const pe = events.filter((e) => e.type === 'protocol')
    expect(pe.map((e) => e.id)).toEqual([`${h.info.id}:protocol:1`, `${h.info.id}:protocol:2`, `${anon.info.id}:protocol:1`])
    expect(pe[0]).toMatchObject({ event: 'cancel', reason: 'a cancel', attrs: { pid: 1 }, client: '10.1.2.3:5555', principal: expect.objectContaining({ id: 'agent' }) })
    expect('attrs' in (pe[1] as object)).toBe(false)
    expect('principal' in (pe[2] as object)).toBe(false)
    const ie = events.filter((e) => e.type === 'integrity')
    expect(ie.map((e) => e.id)).toEqual([`${h.info.id}:integrity:${r.id}`, `${h.info.id}:integrity:session`])
    expect(ie[0]).toMatchObject({ request: r.id, expected: 'a', actual: 'b', reason: 'drift' })
    expect('request' in (ie[1] as object)).toBe(false)
  })
})
