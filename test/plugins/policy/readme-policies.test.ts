/**
 * The policies the README and docs/policy.md show load and behave as they say, and
 * `gatehouse policy explain` prints what docs/policy.md shows, for its own example and the example config.
 */
import { beforeAll, describe, expect, it, vi } from 'vitest'
import { execFile } from 'node:child_process'
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'
import { GatewayConfig, hashToken, validate, type GatewayRequest, type Principal, type SessionInfo } from '@gatehouse/core'
import { RuleEngine, RULE_SETS } from '@gatehouse/plugin-policy'
import { loadSqlParser, SqlAnalyzer } from '@gatehouse/adapter-postgres'

const root = fileURLToPath(new URL('../../..', import.meta.url))
const readme = readFileSync(join(root, 'README.md'), 'utf8')
/** A page of docs/, where the README's reference material lives. */
const doc = (page: string) => readFileSync(join(root, 'docs', `${page}.md`), 'utf8')
const policyDoc = doc('policy')
const analyzer = new SqlAnalyzer()
beforeAll(() => loadSqlParser())

const ci: Principal = Object.freeze({ id: 'ci-runner', kind: 'agent', groups: ['ci'], claims: { team: 'payments' }, credential: 'token:x' })

function judge(engine: RuleEngine, text: string, principal: Principal = ci) {
  const a = analyzer.analyze(text)
  if (!a.ok) throw new Error(a.error)
  const session: SessionInfo = { id: 's', connection: 'orders-db', protocol: 'postgres', clientAddress: 'x', startedAt: 0, tls: false, signal: new AbortController().signal }
  const request: GatewayRequest = { id: 's.1', session, protocol: 'postgres', action: 'sql.query', target: 'orders-db', text, attrs: { sql: a.statements[0]?.facts }, receivedAt: 0 }
  return engine.decide(request, principal)
}

function explain(config: string, sql: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile(process.execPath, [join(root, 'core/dist/cli.js'), 'policy', 'explain', '--config', config, '--identity', 'ci-runner', '--connection', 'orders-db', '--sql', sql, '--json'], { env: { ...process.env, ORDERS_DB_PASSWORD: 'x' } }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  )
}

describe('the configuration reference in the README', () => {
  const yaml = /## Configuration reference[\s\S]*?```yaml\n([\s\S]*?)```/.exec(readme)?.[1] ?? ''
  const policies = (parse(yaml) as { policies: unknown[] }).policies
  const engine = new RuleEngine(validate(GatewayConfig, { connections: [{ name: 'orders-db', adapter: 'postgres', listen: '127.0.0.1:0', upstream: {} }], policies }).policies)

  it('allows reads, denies hidden writes, outbound reach and the payroll table, naming the rules it documents', () => {
    expect(judge(engine, 'SELECT * FROM orders')).toMatchObject({ verdict: 'allow', rule: 'ci-read-only/reads' })
    expect(judge(engine, 'WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d')).toMatchObject({ verdict: 'deny', rule: 'ci-read-only/sql-write/writes' })
    expect(judge(engine, "SELECT pg_read_file('/etc/passwd')")).toMatchObject({ verdict: 'deny', rule: 'ci-read-only/sql-outbound/server-files' })
    expect(judge(engine, 'SELECT * FROM hr.payroll')).toMatchObject({ verdict: 'deny', rule: 'ci-read-only/no-payroll', reason: 'the payroll table is off limits to CI' })
    expect(judge(engine, 'DELETE FROM orders')).toMatchObject({ verdict: 'deny' })
    // copied as is, the read-only policy must not let CI read password hashes
    expect(judge(engine, 'SELECT usename, passwd FROM pg_shadow')).toMatchObject({ verdict: 'deny', rule: expect.stringMatching(/^ci-read-only\/sql-secrets\//) })
  })

  it('the rule shown in the Policies section is valid, CEL and all', () => {
    const block = /## A rule, field by field[\s\S]*?```yaml\n([\s\S]*?)```/.exec(policyDoc)?.[1] ?? ''
    const rules = (parse(block) as { rules: unknown[] }).rules
    const e = new RuleEngine(validate(GatewayConfig, { connections: [{ name: 'orders-db', adapter: 'postgres', listen: '127.0.0.1:0', upstream: {} }], policies: [{ id: 'p', rules }] }).policies)
    // the rule's CEL reads the clock: pin it on each side of 18:00 UTC
    vi.useFakeTimers({ toFake: ['Date'] })
    try {
      vi.setSystemTime(new Date('2026-12-01T10:00:00Z'))
      expect(judge(e, 'SELECT 1')).toMatchObject({ verdict: 'allow', rule: 'p/reads', reason: 'read access for payments CI' })
      expect(judge(e, 'SELECT 1', { ...ci, claims: { team: 'marketing' } })).toMatchObject({ verdict: 'deny', rule: 'default-deny' })
      expect(judge(e, 'UPDATE orders SET n = 1')).toMatchObject({ verdict: 'deny', rule: 'default-deny' })
      vi.setSystemTime(new Date('2026-12-01T18:00:00Z'))
      expect(judge(e, 'SELECT 1')).toMatchObject({ verdict: 'deny', rule: 'default-deny' })
    } finally {
      vi.useRealTimers()
    }
    // the list-of-lists matcher: the exact argv only
    const exec = (argv: string[]) => {
      const session: SessionInfo = { id: 's', connection: 'orders-db', protocol: 'ssh', clientAddress: 'x', startedAt: 0, tls: false, signal: new AbortController().signal }
      return e.decide({ id: 's.1', session, protocol: 'ssh', action: 'ssh.exec', target: 'orders-db', text: argv.join(' '), attrs: { ssh: { argv } }, receivedAt: 0 }, ci)
    }
    expect(exec(['make', 'build'])).toMatchObject({ verdict: 'allow', rule: 'p/build' })
    expect(exec(['make', 'build', 'clean'])).toMatchObject({ verdict: 'deny', rule: 'default-deny' })
    expect(exec(['Make', 'build'])).toMatchObject({ verdict: 'deny', rule: 'default-deny' })
  })

  it('copied as is, with its files in place, the whole reference config validates without a warning (every configured instance is used)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-reference-'))
    try {
      // the certificate files it names (the hash is a placeholder in the README: a real one goes in)
      const openssl = (args: string[]) => new Promise<void>((res, rej) => execFile('openssl', args, { cwd: dir }, (err) => (err ? rej(err) : res())))
      await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'gw.key', '-out', 'gw.crt', '-days', '1', '-subj', '/CN=gw'])
      copyFileSync(join(dir, 'gw.crt'), join(dir, 'ca.pem'))
      const hash = hashToken('gh_reference-test-token', 'ci-runner')
      writeFileSync(join(dir, 'gatehouse.yaml'), yaml.replace('"SCRAM-SHA-256$4096:…"', JSON.stringify(hash)).replace('2026-12-01T00:00:00Z', '2099-01-01T00:00:00Z'))
      const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
        execFile(process.execPath, [join(root, 'core/dist/cli.js'), 'validate', '--config', join(dir, 'gatehouse.yaml')], { env: { ...process.env, ORDERS_DB_PASSWORD: 'x' } }, (err, stdout, stderr) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
        ),
      )
      expect(r.stderr).toBe('')
      expect(r.stdout).toContain(': ok (1 connection(s), 1 identity, 1 policy)')
      expect(r.code).toBe(0)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('documents every built-in rule set and every rule in it', () => {
    for (const [name, set] of Object.entries(RULE_SETS)) {
      expect(policyDoc).toContain(`| \`${name}\` |`)
      for (const r of set.rules) expect(policyDoc, `${name}/${r.id}`).toMatch(new RegExp(`[|,] \`${r.id}\`( |,)`))
    }
  })
})

describe('gatehouse policy explain', () => {
  it('prints the README example decision as one JSON object', async () => {
    const r = await explain(join(root, 'examples/local-postgres/gatehouse.yaml'), 'WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d')
    expect(r.code).toBe(0)
    const out = JSON.parse(r.stdout) as { verdict: string; rule: string; reason: string; attrs: { sql: { kinds: string[]; writes: string[] } } }
    expect(out).toMatchObject({ verdict: 'deny', rule: 'ci-read-only/sql-write/writes', reason: 'the statement changes data or state' })
    expect(out.attrs.sql).toMatchObject({ statement: 'SELECT', kinds: ['SELECT', 'DELETE'], writes: ['orders'] })
    expect(policyDoc).toContain('{"verdict":"deny","rule":"ci-read-only/sql-write/writes","reason":"the statement changes data or state"')
  })

  it('judges every statement of a string and reports the one that decides', async () => {
    const r = await explain(join(root, 'examples/local-postgres/gatehouse.yaml'), "SELECT 1; SELECT lo_import('/etc/shadow')")
    const out = JSON.parse(r.stdout) as { verdict: string; rule: string; statements: { verdict: string; rule: string }[] }
    expect(out.verdict).toBe('deny')
    expect(out.statements.map((s) => s.rule)).toEqual(['ci-read-only/one-statement-at-a-time', 'ci-read-only/sql-outbound/large-object-files'])
  })

  it('reports an unparseable string as denied with the parser message', async () => {
    const r = await explain(join(root, 'examples/local-postgres/gatehouse.yaml'), 'SELECT FROM WHERE (')
    expect(JSON.parse(r.stdout)).toMatchObject({ verdict: 'deny', rule: 'gatehouse/parse', reason: expect.stringContaining('syntax error') })
  })

  it('needs none of the upstream secrets the config references', async () => {
    const env = { ...process.env }
    delete env.ORDERS_DB_PASSWORD
    const r = await new Promise<{ code: number; stdout: string }>((resolve) =>
      execFile(process.execPath, [join(root, 'core/dist/cli.js'), 'policy', 'explain', '-c', join(root, 'examples/local-postgres/gatehouse.yaml'), '-i', 'ci-runner', '--connection', 'orders-db', '--sql', 'SELECT 1', '--json'], { env }, (err, stdout) => resolve({ code: err ? 1 : 0, stdout })),
    )
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ verdict: 'allow', rule: 'ci-read-only/reads' })
  })

  it('exits 1 naming an unknown identity', async () => {
    const r = await new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile(process.execPath, [join(root, 'core/dist/cli.js'), 'policy', 'explain', '-c', join(root, 'examples/local-postgres/gatehouse.yaml'), '-p', 'nobody', '--connection', 'orders-db', '--sql', 'SELECT 1'], { env: { ...process.env, ORDERS_DB_PASSWORD: 'x' } }, (err, _o, stderr) =>
        resolve({ code: err ? 1 : 0, stderr }),
      ),
    )
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('unknown identity "nobody"')
  })
})
