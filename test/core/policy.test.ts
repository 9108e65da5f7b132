/**
 * The policy plugin's RuleEngine (docs/architecture.md, "The built-in plugins"; docs/policy.md):
 * deny-overrides over every applicable rule of every applicable policy; no applicable rule means
 * deny.
 */
import { describe, expect, it } from 'vitest'
import { GatewayConfig, validate, type GatewayRequest, type Policy, type Principal, type SessionInfo } from '@gatehouse/core'
import { GatewayConfigToken } from '@gatehouse/core'
import { container as tsyringeContainer } from 'tsyringe'
import { DEFAULT_DENY, RuleEngine, plugin } from '@gatehouse/plugin-policy'

const agent: Principal = Object.freeze({ id: 'agent-1', kind: 'agent', groups: ['agents', 'readers'], claims: {}, credential: 'token:t' })
const human: Principal = Object.freeze({ id: 'alice', kind: 'human', groups: ['dba'], claims: {}, credential: 'token:a' })
const service: Principal = Object.freeze({ id: 'etl', kind: 'service', groups: [], claims: {}, credential: 'token:e' })

function request(attrs: Record<string, unknown>, opts: { action?: string; connection?: string } = {}): GatewayRequest {
  const session: SessionInfo = {
    id: 's1',
    connection: opts.connection ?? 'orders',
    protocol: 'postgres',
    clientAddress: '127.0.0.1:1',
    startedAt: 0,
    tls: false,
    signal: new AbortController().signal,
  }
  return { id: 's1.1', session, protocol: 'postgres', action: opts.action ?? 'sql.query', target: session.connection, attrs, receivedAt: 0 }
}

const sql = (statement: string[] | string, extra: Record<string, unknown> = {}) => ({ sql: { statement, ...extra } })

/** Validates policies through the config schema, as the gateway does. */
function engine(policies: unknown[]): RuleEngine {
  const config = validate(GatewayConfig, {
    connections: [
      { name: 'orders', adapter: 'postgres', listen: '127.0.0.1:0', upstream: {} },
      { name: 'billing', adapter: 'postgres', listen: '127.0.0.1:0', upstream: {} },
    ],
    policies,
  })
  return new RuleEngine(config.policies)
}

describe('combining rules', () => {
  const allowSelect = { id: 'allow-select', effect: 'allow', match: { 'sql.statement': ['SELECT'] } }
  const denyFn = { id: 'no-dblink', effect: 'deny', match: { 'sql.functions': ['dblink'] }, reason: 'no network reach from SQL' }

  it('deny overrides allow when the deny rule comes after the allow rule', () => {
    const d = engine([{ id: 'p', rules: [allowSelect, denyFn] }]).decide(request(sql('SELECT', { functions: ['dblink'] })), agent)
    expect(d).toEqual({ verdict: 'deny', rule: 'p/no-dblink', reason: 'no network reach from SQL' })
  })

  it('deny overrides allow when the deny rule comes first', () => {
    const d = engine([{ id: 'p', rules: [denyFn, allowSelect] }]).decide(request(sql('SELECT', { functions: ['dblink'] })), agent)
    expect(d.verdict).toBe('deny')
    expect(d.rule).toBe('p/no-dblink')
  })

  it('deny overrides allow across policies, in either policy order', () => {
    const a = { id: 'a', rules: [allowSelect] }
    const b = { id: 'b', rules: [denyFn] }
    const req = request(sql('SELECT', { functions: ['dblink'] }))
    expect(engine([a, b]).decide(req, agent).rule).toBe('b/no-dblink')
    expect(engine([b, a]).decide(req, agent).rule).toBe('b/no-dblink')
  })

  it('allows when only an allow rule matches, naming the rule', () => {
    const d = engine([{ id: 'p', rules: [denyFn, allowSelect] }]).decide(request(sql('SELECT', { functions: ['count'] })), agent)
    expect(d).toMatchObject({ verdict: 'allow', rule: 'p/allow-select' })
  })

  it('review beats allow, in either order', () => {
    const review = { id: 'review-writes', effect: 'review', match: { 'sql.statement': ['UPDATE'] } }
    const allowAll = { id: 'allow-all', effect: 'allow' }
    const req = request(sql('UPDATE'))
    const d1 = engine([{ id: 'p', rules: [allowAll, review] }]).decide(req, agent)
    const d2 = engine([{ id: 'p', rules: [review, allowAll] }]).decide(req, agent)
    for (const d of [d1, d2]) {
      expect(d.verdict).toBe('review')
      expect(d.rule).toBe('p/review-writes')
      expect(d.reason).toMatch(/review rule p\/review-writes/)
    }
  })

  it('deny beats review', () => {
    const d = engine([{ id: 'p', rules: [{ effect: 'review' }, { id: 'never', effect: 'deny' }] }]).decide(request({}), agent)
    expect(d.verdict).toBe('deny')
    expect(d.rule).toBe('p/never')
  })

  it('no matching rule means deny with rule default-deny', () => {
    const d = engine([{ id: 'p', rules: [allowSelect] }]).decide(request(sql('DELETE')), agent)
    expect(d).toEqual(DEFAULT_DENY)
    expect(d).toMatchObject({ verdict: 'deny', rule: 'default-deny' })
  })

  it('no policies at all means deny', () => {
    expect(engine([]).decide(request(sql('SELECT')), agent).rule).toBe('default-deny')
  })

  it('names unnamed rules by policy id and index', () => {
    const d = engine([{ id: 'p', rules: [{ effect: 'deny', match: { 'sql.statement': ['DROP'] } }, { effect: 'allow' }] }]).decide(request(sql('SELECT')), agent)
    expect(d.rule).toBe('p/1')
  })
})

describe('which policies apply', () => {
  const allowAll = [{ effect: 'allow' }]

  it('principals.groups: applies when the principal is in any listed group', () => {
    const e = engine([{ id: 'p', principals: { groups: ['dba', 'readers'] }, rules: allowAll }])
    expect(e.decide(request({}), agent).verdict).toBe('allow')
    expect(e.decide(request({}), human).verdict).toBe('allow')
    expect(e.decide(request({}), service).verdict).toBe('deny')
  })

  it('principals.ids: applies only to the listed identities', () => {
    const e = engine([{ id: 'p', principals: { ids: ['alice'] }, rules: allowAll }])
    expect(e.decide(request({}), human).verdict).toBe('allow')
    expect(e.decide(request({}), agent).verdict).toBe('deny')
  })

  it('principals.kinds: applies only to the listed kinds', () => {
    const e = engine([{ id: 'p', principals: { kinds: ['service', 'human'] }, rules: allowAll }])
    expect(e.decide(request({}), service).verdict).toBe('allow')
    expect(e.decide(request({}), human).verdict).toBe('allow')
    expect(e.decide(request({}), agent).verdict).toBe('deny')
  })

  it('principal filters combine: every listed filter must match', () => {
    const e = engine([{ id: 'p', principals: { kinds: ['agent'], groups: ['dba'] }, rules: allowAll }])
    expect(e.decide(request({}), agent).verdict).toBe('deny') // agent, but not in dba
    expect(e.decide(request({}), human).verdict).toBe('deny') // in dba, but human
  })

  it('connections: applies only on the listed connections', () => {
    const e = engine([{ id: 'p', connections: ['billing'], rules: allowAll }])
    expect(e.decide(request({}, { connection: 'billing' }), agent).verdict).toBe('allow')
    expect(e.decide(request({}, { connection: 'orders' }), agent).verdict).toBe('deny')
  })

  it('a deny in a policy that does not apply to the principal has no effect', () => {
    const e = engine([
      { id: 'humans', principals: { kinds: ['human'] }, rules: [{ id: 'no', effect: 'deny' }] },
      { id: 'all', rules: allowAll },
    ])
    expect(e.decide(request({}), agent).verdict).toBe('allow')
    expect(e.decide(request({}), human).verdict).toBe('deny')
  })

  it('the per-principal rule cache does not leak a decision to a principal with other groups', () => {
    const e = engine([{ id: 'p', principals: { groups: ['dba'] }, rules: allowAll }])
    const aliceAsIntern: Principal = { id: 'alice', kind: 'human', groups: ['interns'], claims: {}, credential: 'token:x' }
    expect(e.decide(request({}), human).verdict).toBe('allow')
    expect(e.decide(request({}), aliceAsIntern).verdict).toBe('deny')
  })
})

describe('the rule cache keeps principals apart', () => {
  const allowAll = [{ effect: 'allow' }]
  it('a group name with a comma is not two groups', () => {
    const e = engine([{ id: 'p', principals: { groups: ['dba'] }, rules: allowAll }])
    const two: Principal = { id: 'x', kind: 'agent', groups: ['interns', 'dba'], claims: {}, credential: 'token:1' }
    const one: Principal = { id: 'x', kind: 'agent', groups: ['interns,dba'], claims: {}, credential: 'token:2' }
    expect(e.decide(request({}), two).verdict).toBe('allow')
    expect(e.decide(request({}), one)).toEqual(DEFAULT_DENY)
  })

  it('principals that differ only in their claims get their own rules when a policy filters on claims', () => {
    const e = engine([{ id: 'p', principals: { claims: { team: ['payments'] } }, rules: allowAll }])
    const payments: Principal = { id: 'ci', kind: 'agent', groups: [], claims: { team: 'payments' }, credential: 'jwt:1' }
    const marketing: Principal = { id: 'ci', kind: 'agent', groups: [], claims: { team: 'marketing' }, credential: 'jwt:2' }
    expect(e.decide(request({}), payments).verdict).toBe('allow')
    expect(e.decide(request({}), marketing)).toEqual(DEFAULT_DENY)
    expect(e.decide(request({}), { ...payments, credential: 'jwt:3' }).verdict).toBe('allow')
  })

  it('a missing or null claim matches no accepted value, not even the text "undefined" or "null"', () => {
    const e = engine([{ id: 'p', principals: { claims: { team: ['undefined', 'null'] } }, rules: allowAll }])
    const none: Principal = { id: 'a', kind: 'agent', groups: [], claims: {}, credential: 't:1' }
    const nul: Principal = { id: 'b', kind: 'agent', groups: [], claims: { team: null }, credential: 't:2' }
    const listed: Principal = { id: 'c', kind: 'agent', groups: [], claims: { team: ['x', 'null'] }, credential: 't:3' }
    expect(e.decide(request({}), none)).toEqual(DEFAULT_DENY)
    expect(e.decide(request({}), nul)).toEqual(DEFAULT_DENY)
    expect(e.decide(request({}), listed).verdict).toBe('allow')
  })

  it('the same principal on two connections gets each connection\'s rules', () => {
    const e = engine([{ id: 'p', connections: ['billing'], rules: allowAll }])
    expect(e.decide(request({}, { connection: 'billing' }), agent).verdict).toBe('allow')
    expect(e.decide(request({}, { connection: 'orders' }), agent)).toEqual(DEFAULT_DENY)
    expect(e.decide(request({}, { connection: 'billing' }), agent).verdict).toBe('allow')
  })
})

describe('decisions say why', () => {
  it('a rule without a reason gets one naming what it did', () => {
    const e = engine([{ id: 'p', rules: [
      { id: 'r', effect: 'review', actions: ['sql.review'] },
      { id: 'd', effect: 'deny', actions: ['sql.deny'] },
      { id: 'a', effect: 'allow', actions: ['sql.query'] },
    ] }])
    expect(e.decide(request({}), agent)).toEqual({ verdict: 'allow', rule: 'p/a', reason: 'allowed' })
    expect(e.decide(request({}, { action: 'sql.deny' }), agent)).toEqual({ verdict: 'deny', rule: 'p/d', reason: 'matched deny rule p/d' })
    expect(e.decide(request({}, { action: 'sql.review' }), agent)).toEqual({ verdict: 'review', rule: 'p/r', reason: 'matched review rule p/r' })
  })

  it('a condition that fails or is not a boolean denies, naming the rule and the cause', () => {
    const e = engine([{ id: 'p', rules: [{ id: 'odd', effect: 'allow', when: 'request.sql.statement' }] }])
    expect(e.decide(request(sql('SELECT')), agent)).toEqual({ verdict: 'deny', rule: 'p/odd', reason: 'rule p/odd could not be evaluated: its condition gave string, not a boolean' })
    const missing = e.decide(request({}), agent)
    expect(missing).toMatchObject({ verdict: 'deny', rule: 'p/odd', reason: expect.stringMatching(/^rule p\/odd could not be evaluated: .+/) })
    expect(missing.reason).not.toContain('its condition gave')
  })

  it('code the gateway cannot analyse is named in the refusal of an allow rule without allowOpaque', () => {
    const e = engine([{ id: 'p', rules: [{ id: 'a', effect: 'allow' }] }])
    const opaque = (v: Record<string, unknown>) => e.decide(request({ other: null, text: 'x', sql: { statement: ['DO'], opaque: true, ...v } }), agent)
    expect(opaque({ code: [{ analysed: true, language: 'sql' }, { analysed: false, language: 'plpython3u', why: 'no parser for it' }] }).reason).toBe('the request carries code the gateway cannot analyse (plpython3u: no parser for it); rule p/a would allow it but does not set allowOpaque')
    expect(opaque({ code: [{ analysed: false }] }).reason).toContain('(code: not analysed)')
    expect(opaque({}).reason).toContain('(code the gateway cannot analyse)')
    expect(opaque({ code: [{ analysed: true, language: 'plpgsql' }] }).reason).toContain('(code the gateway cannot analyse)')
    // not opaque: the same rule allows
    expect(e.decide(request({ other: null, sql: { statement: ['DO'], opaque: false } }), agent).verdict).toBe('allow')
  })
})

describe('rule matchers', () => {
  it('match lists are case-sensitive except on sql.* attributes (SQL keywords and unquoted names fold)', () => {
    const ssh = (attrs: Record<string, unknown>) => request({ ssh: attrs }, { action: 'ssh.exec' })
    const e = engine([{ id: 'p', rules: [{ effect: 'allow', match: { 'ssh.commands': ['make'], 'ssh.path': ['/srv/Artifacts'] } }] }])
    expect(e.decide(ssh({ commands: ['make'], path: '/srv/Artifacts' }), agent).verdict).toBe('allow')
    expect(e.decide(ssh({ commands: ['MAKE'], path: '/srv/Artifacts' }), agent).verdict).toBe('deny')
    expect(e.decide(ssh({ commands: ['make'], path: '/srv/artifacts' }), agent).verdict).toBe('deny')
    const tables = engine([{ id: 'p', rules: [{ id: 'no-secrets', effect: 'deny', match: { 'sql.tables': ['Secrets'] } }, { effect: 'allow' }] }])
    expect(tables.decide(request(sql('SELECT', { tables: ['secrets'] })), agent).rule).toBe('p/no-secrets')
  })

  it('a list of word lists matches an attribute equal to one of them, word for word and case-sensitively', () => {
    const e = engine([{ id: 'p', rules: [{ id: 'exact', effect: 'allow', actions: ['ssh.exec'], match: { 'ssh.argv': [['make', 'build'], ['make', 'test']] } }] }])
    const argv = (words: unknown) => request({ ssh: { argv: words } }, { action: 'ssh.exec' })
    expect(e.decide(argv(['make', 'build']), agent).verdict).toBe('allow')
    expect(e.decide(argv(['make', 'test']), agent).verdict).toBe('allow')
    for (const words of [['make', 'BUILD'], ['make', 'build', 'extra'], ['make'], ['make', 'build test'], ['build', 'make'], 'make build', undefined, [['make', 'build']]]) {
      expect(e.decide(argv(words), agent).verdict, JSON.stringify(words)).toBe('deny')
    }
  })

  it('sql.* lists match case-insensitively', () => {
    const e = engine([{ id: 'p', rules: [{ effect: 'allow', match: { 'sql.statement': ['select'] } }] }])
    expect(e.decide(request(sql('SELECT')), agent).verdict).toBe('allow')
    expect(e.decide(request(sql('Select')), agent).verdict).toBe('allow')
    const upper = engine([{ id: 'p', rules: [{ effect: 'allow', match: { 'sql.statement': ['SELECT'] } }] }])
    expect(upper.decide(request(sql('select')), agent).verdict).toBe('allow')
  })

  it('a when list matches when any element of an array attribute is listed', () => {
    const e = engine([{ id: 'p', rules: [{ id: 'no-drop', effect: 'deny', match: { 'sql.statement': ['DROP'] } }, { effect: 'allow' }] }])
    expect(e.decide(request(sql(['SELECT', 'DROP', 'SELECT'])), agent).rule).toBe('p/no-drop')
    expect(e.decide(request(sql(['SELECT', 'INSERT'])), agent).verdict).toBe('allow')
  })

  it('a when list does not match an empty array or a missing attribute', () => {
    const e = engine([{ id: 'p', rules: [{ effect: 'allow', match: { 'sql.statement': ['SELECT'] } }] }])
    expect(e.decide(request(sql([])), agent).verdict).toBe('deny')
    expect(e.decide(request({}), agent).verdict).toBe('deny')
    expect(e.decide(request({ sql: 'SELECT' }), agent).verdict).toBe('deny') // not an object at the path
  })

  it('a when list compares numbers and booleans by their text', () => {
    const e = engine([{ id: 'p', rules: [{ effect: 'allow', match: { 'http.status': ['200'], 'k8s.tty': ['true'] } }] }])
    expect(e.decide(request({ http: { status: 200 }, k8s: { tty: true } }), agent).verdict).toBe('allow')
    expect(e.decide(request({ http: { status: 404 }, k8s: { tty: true } }), agent).verdict).toBe('deny')
  })

  it('every when key must match', () => {
    const e = engine([{ id: 'p', rules: [{ effect: 'allow', match: { 'sql.statement': ['SELECT'], 'sql.tables': ['public.orders'] } }] }])
    expect(e.decide(request(sql('SELECT', { tables: ['public.orders'] })), agent).verdict).toBe('allow')
    expect(e.decide(request(sql('SELECT', { tables: ['public.users'] })), agent).verdict).toBe('deny')
  })

  it('a boolean true matcher matches a present, non-empty attribute', () => {
    const e = engine([{ id: 'p', rules: [{ id: 'has-fn', effect: 'allow', match: { 'sql.functions': true } }] }])
    expect(e.decide(request(sql('SELECT', { functions: ['now'] })), agent).verdict).toBe('allow')
    expect(e.decide(request(sql('SELECT', { functions: [] })), agent).verdict).toBe('deny')
    expect(e.decide(request(sql('SELECT')), agent).verdict).toBe('deny')
    expect(e.decide(request(sql('SELECT', { functions: false })), agent).verdict).toBe('deny')
    expect(e.decide(request(sql('SELECT', { functions: '' })), agent).verdict).toBe('deny')
  })

  it('a boolean false matcher matches an absent or empty attribute', () => {
    const e = engine([{ id: 'p', rules: [{ id: 'no-fn', effect: 'allow', match: { 'sql.functions': false } }] }])
    expect(e.decide(request(sql('SELECT')), agent).verdict).toBe('allow')
    expect(e.decide(request(sql('SELECT', { functions: [] })), agent).verdict).toBe('allow')
    expect(e.decide(request(sql('SELECT', { functions: ['now'] })), agent).verdict).toBe('deny')
  })

  it('actions restrict a rule to the listed actions', () => {
    const e = engine([
      {
        id: 'p',
        rules: [
          { id: 'no-fcall', effect: 'deny', actions: ['sql.function-call'] },
          { id: 'queries', effect: 'allow', actions: ['sql.query'] },
        ],
      },
    ])
    expect(e.decide(request({}, { action: 'sql.query' }), agent)).toMatchObject({ verdict: 'allow', rule: 'p/queries' })
    expect(e.decide(request({}, { action: 'sql.function-call' }), agent)).toMatchObject({ verdict: 'deny', rule: 'p/no-fcall' })
    expect(e.decide(request({}, { action: 'ssh.exec' }), agent).rule).toBe('default-deny')
  })

  it('a rule without actions or when applies to every request', () => {
    const e = engine([{ id: 'p', rules: [{ effect: 'allow' }] }])
    expect(e.decide(request({}, { action: 'anything' }), agent).verdict).toBe('allow')
  })
})

describe('policy plugin definition', () => {
  it('is a decide-stage plugin whose register() builds a RuleEngine over the gateway policies', async () => {
    const config = validate(GatewayConfig, {
      connections: [{ name: 'orders', adapter: 'postgres', listen: '127.0.0.1:0', upstream: {} }],
      policies: [{ id: 'p', rules: [{ id: 'r', effect: 'allow', match: { 'sql.statement': ['SELECT'] } }] }] satisfies Policy[],
    })
    expect(plugin.stage).toBe('decide')
    const e = await plugin.register(rootWith(config), {}, { gateway: config, instance: 'policy', logger: undefined as never, dataDir: '/tmp' })
    expect(await e.decide(request(sql('SELECT')), agent)).toMatchObject({ verdict: 'allow', rule: 'p/r' })
    expect((await e.decide(request(sql('DELETE')), agent)).verdict).toBe('deny')
  })
})

/** A root container holding what core registers before plugins: the gateway config. */
function rootWith(config: unknown) {
  const root = tsyringeContainer.createChildContainer()
  root.registerInstance(GatewayConfigToken, config as never)
  return root
}

describe('matchers on odd attributes', () => {
  it('a null on the way to an attribute is a missing attribute, never an error', () => {
    const e = engine([{ id: 'p', rules: [{ id: 'a', effect: 'allow', match: { 'sql.statement': ['SELECT'] } }, { id: 'w', effect: 'deny', match: { 'sql.write': true } }] }])
    expect(e.decide(request({ sql: null }), agent)).toEqual(DEFAULT_DENY)
    expect(e.decide(request({ sql: { statement: 'SELECT', write: null } }), agent).verdict).toBe('allow')
    expect(e.decide(request({ sql: { statement: 'SELECT', write: [] } }), agent).verdict).toBe('allow')
    expect(e.decide(request({ sql: { statement: 'SELECT', write: ['t'] } }), agent)).toMatchObject({ verdict: 'deny', rule: 'p/w' })
  })

  it('an object attribute never equals a listed text, even "[object Object]"', () => {
    const e = engine([{ id: 'p', rules: [{ effect: 'allow', match: { 'ssh.program': ['[object Object]'] } }] }])
    expect(e.decide(request({ ssh: { program: {} } }, { action: 'ssh.exec' }), agent)).toEqual(DEFAULT_DENY)
  })

  it('a list of word lists matches a list of texts only: an argv with a non-text word never matches', () => {
    const e = engine([{ id: 'p', rules: [{ id: 'a', effect: 'allow', match: { 'ssh.argv': [['make', 'build'], ['uptime']] } }] }])
    const argv = (a: unknown) => e.decide(request({ ssh: { argv: a } }, { action: 'ssh.exec' }), agent).verdict
    expect(argv(['uptime'])).toBe('allow')
    expect(argv(['make', 'build'])).toBe('allow')
    expect(argv('uptime')).toBe('deny')
    expect(argv(['make'])).toBe('deny')
    expect(argv(['make', 1])).toBe('deny')
  })

  it('rule sets can be included by name or with an effect, and an unknown one is named with the list of sets', () => {
    const byName = engine([{ id: 'p', include: ['sql-write'], rules: [{ effect: 'allow' }] }])
    expect(byName.decide(request(sql('DELETE', { write: ['t'], writes: ['t'] })), agent)).toMatchObject({ verdict: 'deny', rule: expect.stringMatching(/^p\/sql-write\//) })
    expect(() => engine([{ id: 'p', include: ['no-such-set'], rules: [] }])).toThrow(/policies\[0\]\.include\[0\]: unknown rule set "no-such-set"; built-in sets are sql-outbound, sql-privilege, sql-dynamic, sql-secrets, sql-write, sql-ddl, k8s-exec, k8s-portforward, k8s-host-access, k8s-escalation/)
  })
})

