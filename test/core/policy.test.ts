/**
 * The policy plugin's RuleEngine (DESIGN §6): deny-overrides over every applicable rule of
 * every applicable policy; no applicable rule means deny.
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
