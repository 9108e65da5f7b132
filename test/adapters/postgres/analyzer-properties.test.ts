/**
 * Properties of the SQL analysis: random text (and SQL-shaped token soup) never crashes the
 * analyzer, and whatever the parser rejects is refused — by `explain` and by a real gateway,
 * whose session stays usable afterwards.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import fc from 'fast-check'
import pg from 'pg'
import { explainSql, loadSqlParser, SqlAnalyzer } from '@gatehouse/adapter-postgres'
import { startPgCluster, type PgCluster } from '../../fixtures/pg-cluster.js'
import { pgUpstream, startGateway, type TestGateway } from '../../fixtures/gateway.js'

const FRAGMENTS = [
  'SELECT', 'select', 'FROM', 'WHERE', 'WITH', 'AS', 'DELETE', 'INSERT INTO', 'UPDATE', 'SET', 'DO', 'PREPARE', 'EXECUTE', 'COPY', 'TO', 'PROGRAM',
  'items', 'pg_read_file', '"Q"', 'U&"\\0070"', 'UESCAPE', "'x'", "E'\\''", "'", '"', '$$', '$a$', '(', ')', '[', ']', ',', ';', '::', ':=', '=', '--', '/*', '*/', '\n', '1', '-1.5e3', '$1', 'NULL', 'BEGIN', 'END', 'LANGUAGE', 'plpgsql', 'CASE WHEN', 'THEN', 'ELSE',
]
const soup = fc.array(fc.constantFrom(...FRAGMENTS), { minLength: 1, maxLength: 30 }).map((parts) => parts.join(' '))
const anyText = fc.oneof(fc.string({ maxLength: 200 }), fc.string({ unit: 'grapheme', maxLength: 100 }), soup)

const analyzer = new SqlAnalyzer(256)
beforeAll(() => loadSqlParser())

describe('the analyzer on arbitrary input', () => {
  it('never throws, and describes every statement it accepts', () => {
    fc.assert(
      fc.property(anyText, (text) => {
        const a = analyzer.analyze(text)
        if (!a.ok) {
          expect(a.error.length).toBeGreaterThan(0)
          return
        }
        for (const s of a.statements) {
          expect(typeof s.facts.statement).toBe('string')
          expect(Array.isArray(s.facts.functions) && Array.isArray(s.facts.reads) && Array.isArray(s.facts.writes)).toBe(true)
          expect(text.includes(s.text)).toBe(true)
        }
      }),
      { numRuns: 1500 },
    )
  })

  it('gives the same answer from the cache as from a fresh parse', () => {
    const fresh = () => new SqlAnalyzer(16)
    fc.assert(
      fc.property(soup, (text) => {
        const cold = fresh().analyze(text)
        const warm = analyzer.analyze(text)
        expect(JSON.stringify(warm)).toBe(JSON.stringify(cold))
      }),
      { numRuns: 300 },
    )
  })

  it('everything the parser rejects is refused before policy, with the parser message as the reason', () => {
    fc.assert(
      fc.property(anyText, (text) => {
        const a = analyzer.analyze(text)
        const explained = explainSql(analyzer, text)
        if (!a.ok) {
          expect(explained).toHaveLength(1)
          expect(explained[0]?.refusal).toEqual({ rule: 'gatehouse/parse', reason: `statement could not be parsed: ${a.error}` })
        }
      }),
      { numRuns: 1500 },
    )
  })
})

describe('a real gateway on arbitrary input', () => {
  let cluster: PgCluster
  let gw: TestGateway
  beforeAll(async () => {
    cluster = await startPgCluster()
    gw = await startGateway({ upstream: pgUpstream(cluster) })
  })
  afterAll(async () => {
    await gw?.stop()
    await cluster?.stop()
  })

  it('refuses unparseable text with 42601 and the session keeps working', async () => {
    const client = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'], database: 'app' })
    await client.connect()
    try {
      const samples = fc.sample(soup, { numRuns: 60, seed: 20261126 }).filter((t) => !analyzer.analyze(t).ok && !t.includes('\0'))
      expect(samples.length).toBeGreaterThan(10)
      for (const text of samples) {
        const err = await client.query(text).then(
          () => undefined,
          (e: { code?: string; message?: string }) => e,
        )
        expect(err?.code, text).toBe('42601')
        expect(err?.message).toMatch(/could not be parsed/)
        expect((await client.query('SELECT 1 AS one')).rows[0].one).toBe(1)
      }
    } finally {
      await client.end()
    }
    const refused = (await gw.audit()).filter((e) => e.type === 'request' && e.rule === 'gatehouse/parse')
    expect(refused.length).toBeGreaterThan(10)
  })
})
