/**
 * The session model's invariant, tested as a property: random interleavings of Parse, Bind,
 * Describe, Execute, Close, Sync, Flush and simple Query over a few names and texts (some failing at Parse,
 * some at Bind, transactions opened and closed), pipelined in one write, sent both straight to
 * PostgreSQL and through the gateway.
 *
 * Asserted for every interleaving:
 * - the client sees the same sequence of answers through the gateway as from PostgreSQL itself
 *   (the gateway renames every statement and portal, and answers some conflicts itself, yet is
 *   transparent);
 * - every statement the server executed completed with the command tag of the text the gateway
 *   judged for it (each text in the pool has its own tag), and no integrity or desync event.
 *
 * CI runs a bounded number of cases; `npm run fuzz:pg` runs many more (GATEHOUSE_FUZZ_RUNS).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import fc from 'fast-check'
import type { AuditEvent, OutcomeEvent, RequestEvent } from '@gatehouse/core'
import { startPgCluster, type PgCluster } from '../../fixtures/pg-cluster.js'
import { pgUpstream, startGateway, type TestGateway } from '../../fixtures/gateway.js'
import { errorFields, rawDirect, RawPgClient, wire } from '../../fixtures/pg-raw.js'

const RUNS = Number(process.env.GATEHOUSE_FUZZ_RUNS ?? 120)
/** Interleavings per gateway (the audit is checked, and the gateway replaced, after each batch). */
const BATCH = 2000

/**
 * Each text completes with its own tag, so the audit can tell which one the server ran (a portal
 * executed again after it ran to completion reports 0 rows).
 */
const TEXTS: readonly { sql: string; tag?: RegExp }[] = [
  { sql: 'SELECT generate_series(1,1)', tag: /^SELECT [01]$/ },
  { sql: 'SELECT generate_series(1,2)', tag: /^SELECT [02]$/ },
  { sql: 'SELECT generate_series(1,3)', tag: /^SELECT [03]$/ },
  { sql: 'INSERT INTO fuzz_marks SELECT generate_series(1,4)', tag: /^INSERT 0 [04]$/ },
  { sql: 'DELETE FROM fuzz_marks WHERE v > 100', tag: /^DELETE 0$/ },
  { sql: 'SELECT * FROM nosuch_fuzz' }, // fails at Parse
  { sql: 'SELECT 1/0' }, // fails at Bind (constant folding while planning)
  { sql: 'BEGIN', tag: /^BEGIN$/ },
  { sql: 'COMMIT', tag: /^(COMMIT|ROLLBACK)$/ },
  { sql: 'ROLLBACK', tag: /^ROLLBACK$/ },
  { sql: 'DEALLOCATE ALL', tag: /^DEALLOCATE ALL$/ },
]
const TAG_OF = new Map(TEXTS.map((t) => [t.sql, t.tag]))

type Msg =
  | { m: 'parse'; name: string; text: string }
  | { m: 'bind'; portal: string; statement: string }
  | { m: 'describe'; kind: 'S' | 'P'; name: string }
  | { m: 'execute'; portal: string }
  | { m: 'close'; kind: 'S' | 'P'; name: string }
  | { m: 'sync' }
  | { m: 'flush' }
  | { m: 'query'; text: string }

const statementName = fc.constantFrom('', 'a', 'b')
const portalName = fc.constantFrom('', 'p', 'q')
const msgArb: fc.Arbitrary<Msg> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ m: fc.constant('parse' as const), name: statementName, text: fc.constantFrom(...TEXTS.map((t) => t.sql)) }) },
  { weight: 4, arbitrary: fc.record({ m: fc.constant('bind' as const), portal: portalName, statement: statementName }) },
  { weight: 4, arbitrary: fc.record({ m: fc.constant('execute' as const), portal: portalName }) },
  { weight: 1, arbitrary: fc.oneof(fc.record({ m: fc.constant('describe' as const), kind: fc.constant('S' as const), name: statementName }), fc.record({ m: fc.constant('describe' as const), kind: fc.constant('P' as const), name: portalName })) },
  { weight: 2, arbitrary: fc.oneof(fc.record({ m: fc.constant('close' as const), kind: fc.constant('S' as const), name: statementName }), fc.record({ m: fc.constant('close' as const), kind: fc.constant('P' as const), name: portalName })) },
  { weight: 3, arbitrary: fc.constant({ m: 'sync' as const }) },
  { weight: 1, arbitrary: fc.constant({ m: 'flush' as const }) },
  { weight: 1, arbitrary: fc.record({ m: fc.constant('query' as const), text: fc.constantFrom(...TEXTS.map((t) => t.sql)) }) },
)
/** What clients send most: Parse, Bind, Execute of one statement (pieces of it may be reordered by the shuffle below). */
const statementRun: fc.Arbitrary<Msg[]> = fc
  .record({ name: statementName, portal: portalName, text: fc.constantFrom(...TEXTS.map((t) => t.sql)), parse: fc.boolean() })
  .map(({ name, portal, text, parse }) => [...(parse ? [{ m: 'parse' as const, name, text }] : []), { m: 'bind' as const, portal, statement: name }, { m: 'execute' as const, portal }])
const interleaving = fc
  .array(fc.oneof({ weight: 3, arbitrary: msgArb.map((x) => [x]) }, { weight: 2, arbitrary: statementRun }), { minLength: 1, maxLength: 12 })
  .map((steps) => steps.flat())

/** Ends every case: after it, the answers of both connections are complete. */
const END = "SELECT 'end of case' AS marker"

function encode(msgs: readonly Msg[]): Buffer {
  const out: Buffer[] = []
  for (const x of msgs) {
    if (x.m === 'parse') out.push(wire.parse(x.name, x.text))
    else if (x.m === 'bind') out.push(wire.bind(x.portal, x.statement))
    else if (x.m === 'describe') out.push(wire.describe(x.kind, x.name))
    else if (x.m === 'execute') out.push(wire.execute(x.portal))
    else if (x.m === 'close') out.push(wire.close(x.kind, x.name))
    else if (x.m === 'flush') out.push(wire.flush)
    else if (x.m === 'query') out.push(wire.query(x.text))
    else out.push(wire.sync)
  }
  // Always end with Sync (a Query sent while the server skips to Sync is skipped too), ROLLBACK
  // whatever transaction is left, and the marker, so each case ends settled and recognisably.
  out.push(wire.sync, wire.query('ROLLBACK'), wire.query(END))
  return Buffer.concat(out)
}

/** The answers up to the marker's, one token each (`E` with its SQLSTATE), without notices and parameter status. */
async function answers(c: RawPgClient): Promise<string[]> {
  const tokens: string[] = []
  for (;;) {
    const m = await c.next(10_000)
    if (!m) throw new Error(`connection closed; answers so far: ${tokens.join(' ')}`)
    if (m.type === 'N' || m.type === 'S') continue
    tokens.push(m.type === 'E' ? `E:${errorFields(m.body).C}` : m.type)
    if (m.type === 'D' && m.body.includes('end of case')) {
      await c.until('Z', 10_000)
      return tokens
    }
  }
}

/**
 * The deliberate differences (adapters/postgres/README.md, "What differs from a direct connection"):
 * - after a Bind of the unnamed portal failed while planning inside a transaction, PostgreSQL
 *   keeps an undefined portal and answers an Execute of it with EmptyQueryResponse; the gateway
 *   does not know that portal and answers 34000. Nothing runs either way, and the gateway will
 *   not forward an Execute it cannot judge;
 * - a Parse or Bind of a name still in use is answered by the gateway (42P05, 42P03) before the
 *   server sees it; PostgreSQL reports an error in the text or the parameters first, if there is
 *   one. Both are errors and nothing is created.
 */
function sameAnswers(direct: readonly string[], viaGateway: readonly string[]): boolean {
  if (direct.length !== viaGateway.length) return false
  return direct.every((d, i) => {
    const g = viaGateway[i] as string
    if (d === g) return true
    if (d === 'I' && g === 'E:34000') return true
    return d.startsWith('E:') && (g === 'E:42P05' || g === 'E:42P03')
  })
}

let cluster: PgCluster

beforeAll(async () => {
  cluster = await startPgCluster()
  await cluster.psql('CREATE TABLE fuzz_marks (v int); GRANT ALL ON fuzz_marks TO app_scram, app_trust')
})

afterAll(async () => {
  await cluster?.stop()
})

const ALLOW = [{ id: 'fuzz', rules: [{ id: 'all', effect: 'allow', match: { 'sql.statement': ['SELECT', 'INSERT', 'DELETE', 'BEGIN', 'COMMIT', 'ROLLBACK', 'DEALLOCATE'] } }] }]

/** Every executed statement completed with its judged text's tag; nothing drifted. */
function checkAudit(events: AuditEvent[]): number {
  expect(events.filter((e) => e.type === 'integrity')).toEqual([])
  expect(events.filter((e) => e.type === 'protocol' && e.event === 'upstream.desync')).toEqual([])
  const outcomes = new Map<string, OutcomeEvent>()
  for (const e of events) if (e.type === 'outcome') outcomes.set(e.request, e)
  let executed = 0
  for (const e of events) {
    // Executions: each Execute, and each statement of a simple Query (no phase).
    if (e.type !== 'request' || (e as RequestEvent).attrs.phase === 'parse') continue
    const r = e as RequestEvent
    const status = outcomes.get(r.request)?.status
    if (typeof status !== 'string' || status === 'suspended') continue
    if (r.text === END) continue
    const tag = TAG_OF.get(r.text ?? '')
    expect(tag, `a text outside the pool was judged: ${r.text}`).toBeDefined()
    expect(status, `judged "${r.text}", the server completed "${status}"`).toMatch(tag as RegExp)
    executed++
  }
  return executed
}

describe('random extended-protocol interleavings', () => {
  it(`answer as PostgreSQL does, and every executed tag matches the judged text (${RUNS} cases)`, { timeout: Math.max(120_000, RUNS * 200) }, async () => {
    let executed = 0
    for (let done = 0; done < RUNS; done += BATCH) {
      const gw: TestGateway = await startGateway({ upstream: pgUpstream(cluster), policies: ALLOW })
      try {
        await fc.assert(
          fc.asyncProperty(interleaving, async (msgs) => {
            const bytes = encode(msgs)
            const direct = await rawDirect(cluster.port, 'app_trust', 'app')
            const viaGateway = await RawPgClient.connect(gw.port)
            try {
              await viaGateway.login('agent-1', gw.tokens['agent-1'] as string)
              direct.write(bytes)
              viaGateway.write(bytes)
              const [expected, got] = await Promise.all([answers(direct), answers(viaGateway)])
              if (!sameAnswers(expected, got)) expect(got.join(' '), JSON.stringify(msgs)).toBe(expected.join(' '))
            } finally {
              direct.close()
              viaGateway.close()
            }
          }),
          { numRuns: Math.min(BATCH, RUNS - done), ...(process.env.GATEHOUSE_FUZZ_SEED ? { seed: Number(process.env.GATEHOUSE_FUZZ_SEED) } : {}) },
        )
        executed += checkAudit(await gw.audit())
      } finally {
        await gw.stop()
      }
    }
    // The generator does reach executions (a vacuous pass would check nothing).
    expect(executed).toBeGreaterThan(RUNS / 10)
  })
})
