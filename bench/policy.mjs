#!/usr/bin/env node
// bench:policy — the cost of judging one SQL statement, in microseconds, measured in-process:
//
//   analysis hit    SqlAnalyzer.analyze of a text already in the cache (a lookup)
//   analysis miss   SqlAnalyzer.analyze of a text never seen (a parse with libpg-query + facts)
//   decide          RuleEngine.decide with the read-only policy: all five built-in rule sets,
//                   an allow rule and a CEL condition
//   decide (1 rule) RuleEngine.decide with one allow rule: the baseline in the same run
//
// and the totals an adapter pays per statement: hit = analysis hit + decide, miss = analysis
// miss + decide. The last line is:
//   policy_us hit=X.XX miss=Y.YY decide=Z.ZZ baseline_decide=W.WW
//
// Environment: BENCH_ITERATIONS (default 200000 for hits, a tenth of that for misses).
import 'reflect-metadata'
import { GatewayConfig, validate } from '@gatehouse/core'
import { RuleEngine } from '@gatehouse/plugin-policy'
import { loadSqlParser, SqlAnalyzer } from '@gatehouse/adapter-postgres'

const N = Number(process.env.BENCH_ITERATIONS ?? 200_000)
const QUERY = 'SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.created_at > now() - interval \'1 day\' AND o.status = $1 ORDER BY o.total DESC LIMIT 50'

const connections = [{ name: 'db', adapter: 'postgres', listen: '127.0.0.1:0', upstream: {} }]
const readOnly = validate(GatewayConfig, {
  connections,
  policies: [
    {
      id: 'ro',
      include: ['sql-outbound', 'sql-privilege', 'sql-dynamic', 'sql-write', 'sql-ddl'],
      rules: [
        { id: 'reads', effect: 'allow', actions: ['sql.query'], match: { 'sql.statement': ['SELECT', 'SHOW', 'EXPLAIN'] } },
        { id: 'no-payroll', effect: 'deny', when: 'request.sql.tables.exists(t, t == "payroll")' },
      ],
    },
  ],
}).policies
const oneRule = validate(GatewayConfig, { connections, policies: [{ id: 'p', rules: [{ id: 'all', effect: 'allow' }] }] }).policies

const principal = Object.freeze({ id: 'agent', kind: 'agent', groups: ['agents'], claims: {}, credential: 'token:x' })
const session = { id: 's', connection: 'db', protocol: 'postgres', clientAddress: '127.0.0.1:1', startedAt: 0, principal, tls: false, signal: new AbortController().signal }
const request = (facts) => ({ id: 's.1', session, protocol: 'postgres', action: 'sql.query', target: 'db', text: QUERY, attrs: { sql: facts }, receivedAt: 0 })

function measure(label, iterations, fn) {
  for (let i = 0; i < Math.min(iterations, 2000); i++) fn(i) // warm-up
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < iterations; i++) fn(i)
  const us = Number(process.hrtime.bigint() - t0) / 1000 / iterations
  process.stdout.write(`${label.padEnd(18)} ${us.toFixed(2).padStart(8)} µs   (${iterations} iterations)\n`)
  return us
}

await loadSqlParser()
const analyzer = new SqlAnalyzer(8192)
const first = analyzer.analyze(QUERY)
if (!first.ok) throw new Error(first.error)
const facts = first.statements[0].facts
const engine = new RuleEngine(readOnly)
const baseline = new RuleEngine(oneRule)
if (engine.decide(request(facts), principal).verdict !== 'allow') throw new Error('the benchmark query must be allowed')

let sink = 0
const hit = measure('analysis hit', N, () => {
  sink += analyzer.analyze(QUERY).ok ? 1 : 0
})
// Unique column aliases: numeric literals are normalized away, identifiers are not.
const missAnalyzer = new SqlAnalyzer(1024)
const miss = measure('analysis miss', Math.max(1000, Math.floor(N / 10)), (i) => {
  sink += missAnalyzer.analyze(QUERY.replace('o.total,', `o.total AS t${i},`)).ok ? 1 : 0
})
const req = request(facts)
const decide = measure('decide', N, () => {
  sink += engine.decide(req, principal).verdict.length
})
const base = measure('decide (1 rule)', N, () => {
  sink += baseline.decide(req, principal).verdict.length
})
if (sink === 0) throw new Error('unreachable')
process.stdout.write(`policy_us hit=${(hit + decide).toFixed(2)} miss=${(miss + decide).toFixed(2)} decide=${decide.toFixed(2)} baseline_decide=${base.toFixed(2)}\n`)
