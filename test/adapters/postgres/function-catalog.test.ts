/**
 * "Read-only" must hold without the rule sets: functions with side effects and functions that run
 * SQL given as text make `sql.write` (and, for the latter, `opaque`/`dynamic`) true. The table
 * that says which is checked against the live server's catalog, so no volatile function of a
 * new server version can slip through unclassified.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import pg from 'pg'
import { classifiedNames, loadSqlParser, SqlAnalyzer } from '@gatehouse/adapter-postgres'
import { startPgCluster, type PgCluster } from '../../fixtures/pg-cluster.js'
import { pgUpstream, startGateway, type TestGateway } from '../../fixtures/gateway.js'

let cluster: PgCluster
let gw: TestGateway

beforeAll(async () => {
  cluster = await startPgCluster()
  // The contrib extensions that reach out of the database are part of the table too.
  await cluster.psql('CREATE EXTENSION dblink; CREATE EXTENSION adminpack; CREATE EXTENSION lo; CREATE EXTENSION postgres_fdw; CREATE EXTENSION file_fdw; CREATE EXTENSION tablefunc; CREATE SEQUENCE s; GRANT ALL ON SEQUENCE s TO app_scram')
  // What a careful operator writes for read-only, with no built-in rule set included.
  gw = await startGateway({ upstream: pgUpstream(cluster), policies: [{ id: 'ro', rules: [{ id: 'read', effect: 'allow', match: { 'sql.statement': ['SELECT'], 'sql.write': false } }] }] })
  await loadSqlParser()
})

afterAll(async () => {
  await gw?.stop()
  await cluster?.stop()
})

describe('the function table', () => {
  it('classifies every volatile function of the server catalog and of the reaching-out extensions', async () => {
    const volatile = (
      await cluster.psql(
        `SELECT DISTINCT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE p.provolatile = 'v' AND p.prorettype <> 'trigger'::regtype AND p.prorettype <> 'event_trigger'::regtype
            AND (n.nspname = 'pg_catalog' OR p.oid IN (SELECT objid FROM pg_depend WHERE deptype = 'e' AND classid = 'pg_proc'::regclass))
            AND p.proname !~ '_(in|out|recv|send)$' ORDER BY 1`,
      )
    ).split('\n')
    expect(volatile.length).toBeGreaterThan(200)
    const known = classifiedNames()
    expect(volatile.filter((name) => !known.has(name))).toEqual([])
  })

  it('treats every catalog function that takes a query text as running SQL', async () => {
    // Catalog functions with a parameter named for a query, and extension functions whose first parameter is text run as SQL (tablefunc, dblink).
    const takesQuery = (
      await cluster.psql(
        `SELECT DISTINCT proname FROM pg_proc WHERE (proargnames && ARRAY['query', 'sql', 'cursor'] AND proname !~ '^pg_stat_get')
            OR proname IN (SELECT p.proname FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e' JOIN pg_extension e ON e.oid = d.refobjid WHERE e.extname IN ('tablefunc', 'dblink') AND p.proname !~ '(normal_rand|validator|error_message|get_connections|is_busy|get_notify|disconnect|cancel_query|get_pkey)')
          ORDER BY 1`,
      )
    )
      .split('\n')
      .filter(Boolean)
    expect(takesQuery).toEqual(expect.arrayContaining(['query_to_xml', 'ts_stat', 'crosstab', 'connectby', 'dblink_exec']))
    const analyzer = new SqlAnalyzer()
    for (const name of takesQuery) {
      const a = analyzer.analyze(`SELECT ${name}('x')`)
      const facts = a.ok ? a.statements[0]?.facts : undefined
      expect({ name, opaque: facts?.opaque, write: facts?.write }).toEqual({ name, opaque: true, write: true })
    }
  })
})

describe('a read-only policy written without the rule sets', () => {
  const refused = [
    "SELECT nextval('s')",
    "SELECT (SELECT setval('s', 5))",
    "SELECT ('s'::regclass).nextval",
    "SELECT lo_from_bytea(0, 'x')",
    "SELECT pg_notify('jobs', 'run')",
    'SELECT pg_advisory_lock(42)',
    'SELECT pg_reload_conf()',
    'SELECT pg_stat_reset()',
    'SELECT pg_cancel_backend(1)',
    "SELECT query_to_xml('DELETE FROM t RETURNING *', true, true, '')",
    "SELECT * FROM ts_stat('SELECT to_tsvector(body) FROM secrets')",
    "SELECT ts_rewrite('a'::tsquery, 'SELECT t, s FROM aliases')",
    "SELECT table_to_xml('pg_authid', true, true, '')",
    "SELECT dblink_exec('host=10.0.0.9', 'DROP TABLE x')",
    "SELECT * FROM crosstab('SELECT owner, key, value FROM secrets') AS t(a text, b text)",
    "SELECT pg_catalog.set_config('work_mem', '1GB', false)",
  ]
  for (const sql of refused) {
    it(`refuses ${sql}`, async () => {
      const c = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'], database: 'app' })
      await c.connect()
      try {
        await expect(c.query(sql)).rejects.toMatchObject({ code: '42501' })
      } finally {
        await c.end()
      }
    })
  }

  it('allows reads, including volatile ones that only read', async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'], database: 'app' })
    await c.connect()
    try {
      const r = await c.query("SELECT random() < 2 AS r, clock_timestamp() IS NOT NULL AS t, pg_relation_size('s') >= 0 AS size, currval IS NULL AS c FROM (SELECT NULL::bigint AS currval) x")
      expect(r.rows[0]).toEqual({ r: true, t: true, size: true, c: true })
    } finally {
      await c.end()
    }
    expect(await cluster.psql("SELECT last_value FROM s")).toBe('1')
  })
})
