/**
 * @gatehouse/testkit — the conformance suite a protocol adapter runs from its own vitest tests.
 *
 * `describeConformance(subject)` starts a real gateway with the adapter, an upstream the subject
 * starts (and can look into: `seen(marker)`), the kit's own required audit sink, a policy of three
 * rules and an admin API, then checks through the subject's real client what core promises for
 * every adapter: a wrong credential refused and audited; a denied request answered with the
 * protocol's own error and never reaching the upstream; the intent recorded before the request
 * is forwarded; a required sink that is down refusing requests; a held request waiting until an
 * approval releases it (and a refusal refusing it); session start and end recorded once; session
 * limits; `explain`; shutdown ending sessions within the grace period.
 *
 * Every request the kit asks for carries a fresh marker (letters and digits): the client puts it
 * in the request (its text or a bound parameter), the upstream probe counts what arrived with it.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createLogger, Gateway, generateToken, hashToken, loadConfigFile, type AuditEvent, type ExplainInput, type Rule } from '@gatehouse/core'
import { carries, dropProbe, newProbe, type AuditProbe } from './probe.js'

export { AuditProbe } from './probe.js'

/** The three kinds of request the kit asks a client to send; the policy's rules tell them apart. */
export type RequestKind = 'allowed' | 'denied' | 'held'

/** What the client got for one request. `error` is the protocol's own error as the client showed it. */
export type ClientResult = { readonly ok: true } | { readonly ok: false; readonly error: string }

/** Where the gateway listens and who to log in as. */
export interface Endpoint {
  readonly host: string
  readonly port: number
  readonly identity: string
  readonly token: string
  /** What the upstream added to the connection's config (the database it serves, a CA to trust …). */
  readonly connection: Readonly<Record<string, unknown>>
}

/** One logged-in connection of the protocol's real client. */
export interface ClientSession {
  /** Sends one request of `kind` carrying `marker`; resolves with what the client got (never rejects for a refusal). */
  send(kind: RequestKind, marker: string): Promise<ClientResult>
  /** Settles when the connection is closed by the other side (the client noticed). */
  readonly closed: Promise<void>
  /** Closes the connection from the client's side. */
  close(): Promise<void>
}

export interface ConformanceClient {
  /**
   * Opens a connection and logs in, with a round trip if the protocol needs one to know the login
   * worked; rejects (with the client's own error) when the gateway refuses the login.
   */
  connect(endpoint: Endpoint): Promise<ClientSession>
}

/** The upstream for one gateway. */
export interface ConformanceUpstream {
  /** Keys merged into the connection's config: `upstream`, and `options`/`tls` if the adapter needs them. */
  readonly connection: Readonly<Record<string, unknown>>
  /** How many requests carrying `marker` reached the upstream (executed there). */
  seen(marker: string): Promise<number>
  close(): Promise<void>
}

export interface ConformanceSubject {
  /** Shown in the suite's name. */
  readonly name: string
  /** The connection's `adapter:` (a built-in short name, or an npm package name). */
  readonly adapter: string
  /** Where the gateway finds `adapter` (directories holding node_modules). */
  readonly pluginSearchDirs?: readonly string[]
  /** Starts an upstream; called once for each gateway the kit starts (twice in all). */
  startUpstream(): Promise<ConformanceUpstream>
  /**
   * The parts of the policy's rules that tell the kinds apart (`actions`, `match`, `when`). The
   * kit adds ids and effects: `ck/deny`, `ck/review`, and an allow rule for everything else.
   */
  readonly rules: { readonly denied: Partial<Rule>; readonly held: Partial<Rule> }
  readonly client: ConformanceClient
  /** A sample for `gatehouse policy explain` that the `denied` rule denies. */
  readonly explainDenied: ExplainInput
  /** How long a test may take (default 30 s). */
  readonly timeoutMs?: number
}

const POLICY = 'ck'
const DENY_RULE = `${POLICY}/deny`
const REVIEW_RULE = `${POLICY}/review`

/** A marker: letters and digits only, so it survives every protocol's quoting. */
export function marker(): string {
  return `ck${randomBytes(6).toString('hex')}`
}

interface Running {
  readonly gateway: Gateway
  readonly probe: AuditProbe
  readonly upstream: ConformanceUpstream
  readonly dir: string
  readonly tokens: { agent: string; limited: string; approver: string }
  endpoint(identity?: 'ck-agent' | 'ck-limited', token?: string): Endpoint
  close(): Promise<void>
}

async function startGateway(subject: ConformanceSubject): Promise<Running> {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-conformance-'))
  const id = `probe-${randomBytes(8).toString('hex')}`
  const probe = newProbe(id)
  // the probe, loadable by package name like any plugin
  const pkg = join(dir, 'node_modules', 'gatehouse-conformance-probe')
  mkdirSync(pkg, { recursive: true })
  writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: 'gatehouse-conformance-probe', version: '0.0.0', type: 'module', main: 'index.js' }))
  writeFileSync(join(pkg, 'index.js'), `export { plugin } from ${JSON.stringify(new URL('./probe.js', import.meta.url).href)}\n`)
  const upstream = await subject.startUpstream()
  const tokens = { agent: generateToken(), limited: generateToken(), approver: generateToken() }
  const config = {
    dataDir: join(dir, 'data'),
    log: { level: 'silent' },
    identities: [
      { id: 'ck-agent', groups: ['ck'], tokens: [{ hash: hashToken(tokens.agent, 'ck-agent') }] },
      { id: 'ck-limited', groups: ['ck'], tokens: [{ hash: hashToken(tokens.limited, 'ck-limited') }], limits: { sessions: { perIdentity: 1 } } },
    ],
    plugins: [{ use: 'gatehouse-conformance-probe', config: { id } }],
    connections: [{ name: 'subject', adapter: subject.adapter, listen: '127.0.0.1:0', ...upstream.connection, plugins: { authenticate: ['auth-token'], decide: ['policy'], record: ['gatehouse-conformance-probe'] } }],
    policies: [
      {
        id: POLICY,
        principals: { groups: ['ck'] },
        rules: [
          { ...subject.rules.denied, id: 'deny', effect: 'deny', reason: 'the conformance kit denies this' },
          { ...subject.rules.held, id: 'review', effect: 'review', reason: 'the conformance kit holds this', review: { timeoutSeconds: 120 } },
          { id: 'allow', effect: 'allow' },
        ],
      },
    ],
    admin: { listen: '127.0.0.1:0', tokens: [{ id: 'ck-approver', role: 'approver', hash: hashToken(tokens.approver, 'ck-approver') }] },
  }
  const file = join(dir, 'gatehouse.json')
  writeFileSync(file, JSON.stringify(config, null, 2))
  let gateway: Gateway
  try {
    gateway = await Gateway.build(loadConfigFile(file), { logger: createLogger('silent'), pluginSearchDirs: [dir, ...(subject.pluginSearchDirs ?? [])] })
    await gateway.start()
  } catch (err) {
    await upstream.close()
    dropProbe(id)
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
  const port = gateway.address('subject').port
  let closed = false
  return {
    gateway,
    probe,
    upstream,
    dir,
    tokens,
    endpoint: (identity = 'ck-agent', token) => ({ host: '127.0.0.1', port, identity, token: token ?? (identity === 'ck-agent' ? tokens.agent : tokens.limited), connection: upstream.connection }),
    close: async () => {
      if (closed) return
      closed = true
      await gateway.shutdown(0)
      await upstream.close()
      dropProbe(id)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Polls `get` until it returns something (or `timeoutMs` passes: undefined). */
async function eventually<T>(get: () => T | undefined | Promise<T | undefined>, timeoutMs = 10_000): Promise<T | undefined> {
  const until = Date.now() + timeoutMs
  for (;;) {
    const v = await get()
    if (v !== undefined) return v
    if (Date.now() > until) return undefined
    await sleep(25)
  }
}

/** Whether `p` is still pending after a moment. */
async function pending(p: Promise<unknown>, ms = 50): Promise<boolean> {
  let settled = false
  p.then(
    () => (settled = true),
    () => (settled = true),
  )
  await sleep(ms)
  return !settled
}

const requestWith = (events: readonly AuditEvent[], m: string) => events.find((e): e is Extract<AuditEvent, { type: 'request' }> => carries(e, m))

/** Registers the conformance suite for `subject` with vitest. */
export function describeConformance(subject: ConformanceSubject): void {
  const timeout = subject.timeoutMs ?? 30_000
  describe(`conformance: ${subject.name}`, () => {
    let gw: Running
    const sessions: ClientSession[] = []
    const connect = async (endpoint: Endpoint) => {
      const s = await subject.client.connect(endpoint)
      sessions.push(s)
      return s
    }
    const admin = async (path: string, body?: unknown) => {
      const r = await fetch(`http://127.0.0.1:${gw.gateway.adminPort}${path}`, {
        method: body === undefined ? 'GET' : 'POST',
        headers: { authorization: `Bearer ${gw.tokens.approver}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      })
      expect(r.status, `${path}: ${r.status}`).toBeLessThan(300)
      return (await r.json()) as Record<string, unknown>
    }
    const reviewOf = (m: string) =>
      eventually(async () => ((await admin('/reviews')).reviews as { id: string }[]).find((r) => JSON.stringify(r).includes(m))?.id)

    beforeAll(async () => {
      gw = await startGateway(subject)
    }, 60_000)

    afterAll(async () => {
      await Promise.all(sessions.map((s) => s.close().catch(() => undefined)))
      await gw?.close()
    }, 60_000)

    it('an allowed request reaches the upstream and is recorded with its outcome', async () => {
      const m = marker()
      const s = await connect(gw.endpoint())
      expect(await s.send('allowed', m)).toEqual({ ok: true })
      expect(await gw.upstream.seen(m), 'the upstream saw the allowed request').toBeGreaterThan(0)
      const request = requestWith(gw.probe.events, m)
      expect(request).toMatchObject({ verdict: 'allow', rule: `${POLICY}/allow`, principal: { id: 'ck-agent' } })
      expect(await eventually(() => gw.probe.events.find((e) => e.type === 'outcome' && e.request === request?.request))).toBeDefined()
      await s.close()
    }, timeout)

    it('a wrong credential is refused and audited, and reaches no upstream', async () => {
      const before = gw.probe.events.length
      const wrong = generateToken()
      await expect(connect(gw.endpoint('ck-agent', wrong))).rejects.toBeDefined()
      const failure = await eventually(() => gw.probe.events.slice(before).find((e) => e.type === 'auth.failure'))
      expect(failure, 'an auth.failure event').toBeDefined()
      expect(gw.probe.events.slice(before).some((e) => e.type === 'session.start')).toBe(false)
      // no secret in the audit: neither the presented token nor the identity's real one
      expect(JSON.stringify(gw.probe.events)).not.toContain(wrong)
      expect(JSON.stringify(gw.probe.events)).not.toContain(gw.tokens.agent)
    }, timeout)

    it("a denied request gets the protocol's own error naming the rule, never reaches the upstream, and the connection stays usable", async () => {
      const m = marker()
      const s = await connect(gw.endpoint())
      const r = await s.send('denied', m)
      expect(r.ok).toBe(false)
      expect(r.ok ? '' : r.error).toContain(DENY_RULE)
      expect(gw.probe.events.some((e) => carries(e, m) && e.type === 'request' && e.verdict === 'deny' && e.rule === DENY_RULE)).toBe(true)
      expect(await gw.upstream.seen(m), 'the upstream saw the denied request').toBe(0)
      const after = marker()
      expect(await s.send('allowed', after)).toEqual({ ok: true })
      expect(await gw.upstream.seen(after)).toBeGreaterThan(0)
      await s.close()
    }, timeout)

    it('the intent is recorded before the request is forwarded: while the record is being written the upstream has seen nothing', async () => {
      const m = marker()
      const s = await connect(gw.endpoint())
      const gate = gw.probe.holdIntent(m)
      const result = s.send('allowed', m)
      const intent = await Promise.race([gate.arrived, sleep(10_000).then(() => undefined)])
      expect(intent, 'the intent record reached the sink').toBeDefined()
      await sleep(300)
      expect(await gw.upstream.seen(m), 'forwarded before its intent record was written').toBe(0)
      expect(await pending(result)).toBe(true)
      gate.release()
      expect(await result).toEqual({ ok: true })
      expect(await gw.upstream.seen(m)).toBeGreaterThan(0)
      await s.close()
    }, timeout)

    it('a required audit sink that is down refuses requests: nothing reaches the upstream', async () => {
      const m = marker()
      const s = await connect(gw.endpoint())
      gw.probe.failing = true
      let r: ClientResult
      try {
        r = await s.send('allowed', m)
      } finally {
        gw.probe.failing = false
      }
      expect(r.ok, 'a request went through with its audit sink down').toBe(false)
      expect(await gw.upstream.seen(m)).toBe(0)
      // once the sink is back, a new connection works
      const s2 = await connect(gw.endpoint())
      const after = marker()
      expect(await s2.send('allowed', after)).toEqual({ ok: true })
      await s.close()
      await s2.close()
    }, timeout)

    it('a held request waits, unsent, until an approval releases it; a refused one never runs', async () => {
      const s = await connect(gw.endpoint())
      const m = marker()
      const result = s.send('held', m)
      const id = await reviewOf(m)
      expect(id, 'a pending review for the held request').toBeDefined()
      // (a protocol that prepares before it executes may record the preparation as allowed first)
      expect(gw.probe.events.some((e) => carries(e, m) && e.type === 'request' && e.verdict === 'review' && e.rule === REVIEW_RULE && e.review === id)).toBe(true)
      expect(await pending(result, 300)).toBe(true)
      expect(await gw.upstream.seen(m), 'the held request ran before approval').toBe(0)
      await admin(`/reviews/${id}/approve`, {})
      expect(await result).toEqual({ ok: true })
      expect(await gw.upstream.seen(m)).toBeGreaterThan(0)
      expect(gw.probe.events.some((e) => e.type === 'review' && e.review === id && e.decision === 'approved')).toBe(true)

      const refused = marker()
      const second = s.send('held', refused)
      const id2 = await reviewOf(refused)
      expect(id2).toBeDefined()
      await admin(`/reviews/${id2}/deny`, { reason: 'not today' })
      const r = await second
      expect(r.ok).toBe(false)
      expect(await gw.upstream.seen(refused)).toBe(0)
      await s.close()
    }, timeout)

    it('session start and end are recorded once each', async () => {
      const m = marker()
      const s = await connect(gw.endpoint())
      expect(await s.send('allowed', m)).toEqual({ ok: true })
      const session = requestWith(gw.probe.events, m)?.session
      expect(session).toBeDefined()
      await s.close()
      expect(await eventually(() => gw.probe.events.find((e) => e.type === 'session.end' && e.session === session))).toBeDefined()
      await sleep(200)
      const of = (type: string) => gw.probe.events.filter((e) => e.type === type && e.session === session).length
      expect(of('session.start')).toBe(1)
      expect(of('session.end')).toBe(1)
    }, timeout)

    it('session limits apply: a second session over an identity’s limit is refused and recorded, and sends nothing', async () => {
      const first = await connect(gw.endpoint('ck-limited'))
      const m = marker()
      const second = await connect(gw.endpoint('ck-limited')).then(
        async (s) => ({ sent: await s.send('allowed', m) }),
        (err: unknown) => ({ refused: err }),
      )
      expect('refused' in second || !second.sent.ok, 'a second session over perIdentity 1 was let through').toBe(true)
      expect(await gw.upstream.seen(m)).toBe(0)
      // recorded as a refused login (auth.failure GH_ERR_LIMIT_SESSIONS) or, by adapters that count sessions before login, a limit event
      const recorded = await eventually(() => gw.probe.events.find((e) => (e.type === 'auth.failure' && e.code === 'GH_ERR_LIMIT_SESSIONS' && e.user === 'ck-limited') || (e.type === 'protocol' && e.event === 'limit.sessions.per-identity')))
      expect(recorded, 'the refusal was recorded').toBeDefined()
      await first.close()
      // the slot is free again once the first session ended
      const ended = await eventually(async () => {
        try {
          const again = await connect(gw.endpoint('ck-limited'))
          const r = await again.send('allowed', marker())
          await again.close()
          return r.ok ? true : undefined
        } catch {
          return undefined
        }
      })
      expect(ended).toBe(true)
    }, timeout)

    it('explain answers for a sample request without sending or recording anything', async () => {
      const before = gw.probe.events.length
      const explained = await gw.gateway.explain('subject', 'ck-agent', subject.explainDenied)
      expect(explained.length).toBeGreaterThan(0)
      expect(explained.some((r) => r.decision.verdict === 'deny' && r.decision.rule === DENY_RULE)).toBe(true)
      expect(gw.probe.events.length).toBe(before)
    }, timeout)

    it('shutdown ends open sessions within the grace period, recording their end', async () => {
      const own = await startGateway(subject)
      try {
        const s = await subject.client.connect(own.endpoint())
        const m = marker()
        expect(await s.send('allowed', m)).toEqual({ ok: true })
        const session = requestWith(own.probe.events, m)?.session
        const grace = 1000
        const t0 = Date.now()
        await own.gateway.shutdown(grace)
        expect(Date.now() - t0, 'shutdown overran its grace period').toBeLessThan(grace + 5000)
        const noticed = await Promise.race([s.closed.then(() => true), sleep(5000).then(() => false)])
        expect(noticed, 'the client noticed its session end').toBe(true)
        expect(own.probe.events.filter((e) => e.type === 'session.end' && e.session === session)).toHaveLength(1)
        await s.close().catch(() => undefined)
      } finally {
        await own.close()
      }
    }, timeout)
  })
}
