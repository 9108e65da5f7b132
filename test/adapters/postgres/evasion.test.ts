/**
 * The evasion corpus: ways an attacker holding one read-only agent token tries to get a write,
 * a file read, a network or program reach, a privilege change or hidden SQL past the policy —
 * comments, casing, quoting, dollar quotes, Unicode escapes, several statements, nested
 * subqueries and CTEs, schema qualification, DO blocks, PREPARE/EXECUTE. Each is sent with real
 * psql through a real gateway whose upstream credential is a SUPERUSER, so the gateway's
 * judgement is the only thing standing between the statement and its effect; afterwards the
 * database is checked for the effects that must not have happened.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { existsSync, rmSync } from 'node:fs'
import type { AuditEvent, RequestEvent } from '@gatehouse/core'
import { startPgCluster, type PgCluster } from '../../fixtures/pg-cluster.js'
import { pgUpstream, startGateway, type TestGateway } from '../../fixtures/gateway.js'
import { psql } from '../../fixtures/clients.js'

let cluster: PgCluster
let gw: TestGateway
let target: { port: number; user: string; password: string }

const READ_ONLY = [
  {
    id: 'ro',
    principals: { groups: ['agents'] },
    include: ['sql-outbound', 'sql-privilege', 'sql-dynamic', 'sql-secrets', 'sql-write', 'sql-ddl'],
    rules: [
      {
        id: 'reads',
        effect: 'allow',
        actions: ['sql.query'],
        // DO, PREPARE and EXECUTE are allowed as statements: what they contain is what is judged
        match: { 'sql.statement': ['SELECT', 'SHOW', 'EXPLAIN', 'SET', 'RESET', 'BEGIN', 'COMMIT', 'ROLLBACK', 'PREPARE', 'EXECUTE', 'DO'] },
      },
    ],
  },
]

const MARKER_PROGRAM = '/tmp/gatehouse-evasion-program'
const MARKER_FILE = '/tmp/gatehouse-evasion-file'

beforeAll(async () => {
  rmSync(MARKER_PROGRAM, { force: true })
  rmSync(MARKER_FILE, { force: true })
  cluster = await startPgCluster()
  await cluster.psql(
    [
      'ALTER ROLE app_scram SUPERUSER;',
      "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'three');",
      'CREATE SEQUENCE items_seq; SELECT setval(\'items_seq\', 10);',
      'ALTER TABLE items OWNER TO app_scram; ALTER SEQUENCE items_seq OWNER TO app_scram;',
    ].join('\n'),
  )
  gw = await startGateway({ upstream: pgUpstream(cluster), policies: READ_ONLY })
  target = { port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] as string }
})

afterAll(async () => {
  await gw?.stop()
  await cluster?.stop()
})

/** The rule id in the gateway's refusal message, or 'allow' when psql succeeded. */
async function verdictOf(sql: string, mode: 'stdin' | 'command' = 'stdin'): Promise<{ verdict: string; stdout: string; stderr: string }> {
  const r = mode === 'command' ? await psql(target, '', ['-v', 'VERBOSITY=verbose', '-c', sql]) : await psql(target, `${sql}\n`, ['-v', 'ON_ERROR_STOP=1', '-v', 'VERBOSITY=verbose'])
  if (r.code === 0 && r.stderr === '') return { verdict: 'allow', stdout: r.stdout, stderr: r.stderr }
  const m = /denied by rule "([^"]+)"|refused by rule "([^"]+)"/.exec(r.stderr) ?? /rule ([a-z0-9/._-]+)/.exec(r.stderr)
  return { verdict: m ? (m[1] ?? m[2] ?? '') : `error: ${r.stderr.trim()}`, stdout: r.stdout, stderr: r.stderr }
}

/** [what the attacker tries, the SQL, the expected verdict] */
const CORPUS: [string, string, string][] = [
  // --- hiding a write
  ['a write in mixed case', 'DeLeTe FrOm items', 'ro/sql-write/writes'],
  ['a write behind a comment that looks like a read', '/* SELECT */ DELETE FROM items', 'ro/sql-write/writes'],
  ['a write inside a data-modifying CTE under a SELECT', 'WITH d AS (DELETE FROM items RETURNING *) SELECT count(*) FROM d', 'ro/sql-write/writes'],
  ['a write inside a CTE nested in another CTE', 'WITH a AS (WITH d AS (UPDATE items SET name = \'x\' RETURNING id) SELECT id FROM d) SELECT count(*) FROM a', 'ro/sql-write/writes'],
  ['a new table through SELECT INTO', 'SELECT * INTO stolen FROM items', 'ro/sql-write/writes'],
  ['a new table through CREATE TABLE AS', 'CREATE TABLE stolen AS SELECT * FROM items', 'ro/sql-write/writes'],
  ['a write executed by EXPLAIN ANALYZE', 'EXPLAIN ANALYZE DELETE FROM items', 'ro/sql-write/writes'],
  ['a sequence advanced by nextval in a subquery', "SELECT (SELECT nextval('items_seq'))", 'ro/sql-write/write-functions'],
  ['a schema-qualified setval', "SELECT pg_catalog.setval('items_seq', 1)", 'ro/sql-write/write-functions'],
  ['a write inside a DO block', 'DO $$ BEGIN DELETE FROM items; END $$', 'ro/sql-write/writes'],
  ['a write inside a DO block with nested dollar quotes', 'DO $a$ BEGIN PERFORM $b$ DROP TABLE items $b$; UPDATE items SET name = \'y\'; END $a$', 'ro/sql-write/writes'],
  ['a write inside a PL/pgSQL assignment', 'DO $$ DECLARE n int; BEGIN n := (WITH d AS (DELETE FROM items RETURNING 1) SELECT count(*) FROM d); END $$', 'ro/sql-write/writes'],
  ['a write prepared for later', 'PREPARE wipe AS DELETE FROM items', 'ro/sql-write/writes'],
  ['a DROP', 'DROP TABLE items', 'ro/sql-write/writes'],
  ['a TRUNCATE', 'TRUNCATE items', 'ro/sql-write/writes'],
  ['schema DDL', 'ALTER TABLE items ADD COLUMN leak text', 'ro/sql-write/writes'],
  ['a new index', 'CREATE INDEX ON items (name)', 'ro/sql-write/writes'],
  ['a view over another table', 'CREATE VIEW v AS SELECT * FROM items', 'ro/sql-write/writes'],
  // --- reaching the server's files, programs and the network
  ['a file read', "SELECT pg_read_file('/etc/hostname')", 'ro/sql-outbound/server-files'],
  ['a file read, schema-qualified', "SELECT pg_catalog.pg_read_file('/etc/hostname')", 'ro/sql-outbound/server-files'],
  ['a file read, quoted', `SELECT "pg_read_file"('/etc/hostname')`, 'ro/sql-outbound/server-files'],
  ['a file read, upper case', "SELECT PG_READ_FILE('/etc/hostname')", 'ro/sql-outbound/server-files'],
  ['a file read, Unicode-escaped name', `SELECT U&"\\0070g_read_file"('/etc/hostname')`, 'ro/sql-outbound/server-files'],
  ['a file read, Unicode-escaped with a custom escape', `SELECT U&"!0070g_read_file" UESCAPE '!' ('/etc/hostname')`, 'ro/sql-outbound/server-files'],
  ['a file read in ORDER BY', "SELECT name FROM items ORDER BY pg_read_file('/etc/hostname')", 'ro/sql-outbound/server-files'],
  ['a file read in a CASE', "SELECT CASE WHEN id = 1 THEN pg_read_file('/etc/hostname') END FROM items", 'ro/sql-outbound/server-files'],
  ['a file read in a cast', "SELECT CAST(pg_read_file('/etc/hostname') AS text)", 'ro/sql-outbound/server-files'],
  ['a file read in a WHERE subquery', "SELECT * FROM items WHERE id IN (SELECT length(pg_read_file('/etc/hostname')))", 'ro/sql-outbound/server-files'],
  ['a directory listing in FROM', "SELECT * FROM pg_ls_dir('.') AS f", 'ro/sql-outbound/server-files'],
  ['a binary file read in a lateral join', "SELECT * FROM items, LATERAL (SELECT pg_read_binary_file('/etc/hostname')) f", 'ro/sql-outbound/server-files'],
  ['a file read inside a DO block', "DO $$ BEGIN PERFORM pg_read_file('/etc/hostname'); END $$", 'ro/sql-outbound/server-files'],
  ['a file read in a PL/pgSQL subscript', "DO $$ DECLARE a int[]; BEGIN a[length(pg_read_file('/etc/hostname'))] := 1; END $$", 'ro/sql-outbound/server-files'],
  ['a server file via COPY', `COPY (SELECT 1) TO '${MARKER_FILE}'`, 'ro/sql-outbound/copy-server-file'],
  ['a program via COPY', `COPY items TO PROGRAM 'touch ${MARKER_PROGRAM}'`, 'ro/sql-outbound/copy-program'],
  ['a program via COPY inside a DO block', `DO $$ BEGIN COPY items TO PROGRAM 'touch ${MARKER_PROGRAM}'; END $$`, 'ro/sql-outbound/copy-program'],
  ['a large-object import of a server file', "SELECT lo_import('/etc/hostname')", 'ro/sql-outbound/large-object-files'],
  ['the server configuration files', 'SELECT * FROM pg_catalog.pg_hba_file_rules', 'ro/sql-outbound/config-files'],
  ['dblink to another host', "SELECT * FROM dblink('host=10.0.0.5', 'SELECT 1') AS t(x int)", 'ro/sql-outbound/dblink'],
  // --- function calls without a call node: attribute notation
  ['a file read in attribute notation', "SELECT ('/etc/hostname'::text).pg_read_file", 'ro/sql-outbound/server-files'],
  ['a file read through a scalar function alias', "SELECT f.pg_read_file FROM unnest(ARRAY['/etc/hostname']) AS f", 'ro/sql-outbound/server-files'],
  ['a sequence advanced in attribute notation', "SELECT ('items_seq'::regclass).nextval", 'ro/sql-write/write-functions'],
  // --- other writes and side effects
  ['row locks that block writers', 'SELECT id FROM items FOR UPDATE', 'ro/sql-write/row-locks'],
  ['a notification to other sessions', "SELECT pg_notify('jobs', 'run')", 'ro/sql-write/write-functions'],
  ['finishing another session’s prepared transaction', "COMMIT PREPARED 'someone-else'", 'ro/sql-write/two-phase'],
  // --- secrets in the catalogs
  ['password hashes', 'SELECT rolname, rolpassword FROM pg_authid', 'ro/sql-secrets/catalog-secrets'],
  ['other sessions’ SQL', 'SELECT query FROM pg_catalog.pg_stat_activity', 'ro/sql-secrets/catalog-secrets'],
  ['sampled column values', "SELECT most_common_vals FROM pg_stats WHERE tablename = 'items'", 'ro/sql-secrets/catalog-secrets'],
  // --- privilege
  ['SET ROLE', 'SET ROLE postgres', 'ro/sql-privilege/role-change'],
  ['SET SESSION AUTHORIZATION', 'SET SESSION AUTHORIZATION postgres', 'ro/sql-privilege/role-change'],
  ['a role change through set_config', "SELECT set_config('role', 'postgres', false)", 'ro/sql-privilege/role-change'],
  ['a role change through set_config with a computed name', "SELECT set_config(lower('ROLE'), 'postgres', false)", 'gatehouse/session-settings'],
  ['a role change through a catalog-qualified set_config', "SELECT app.pg_catalog.set_config('role', 'postgres', false)", 'ro/sql-privilege/role-change'],
  ['read-write mode for the session', 'SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE', 'ro/sql-privilege/read-write-mode'],
  ['a read-write transaction', 'BEGIN READ WRITE', 'ro/sql-privilege/read-write-mode'],
  ['read-write mode through set_config', "SELECT set_config('default_transaction_read_only', 'off', false)", 'ro/sql-privilege/read-write-mode'],
  ['turning triggers off', 'SET session_replication_role = replica', 'ro/sql-privilege/protected-settings'],
  ['a quote-hiding client encoding under another spelling', "SET client_encoding = 's-jis'", 'gatehouse/session-settings'],
  ['ALTER SYSTEM', "ALTER SYSTEM SET log_statement = 'none'", 'ro/sql-privilege/alter-system'],
  ['an extension', 'CREATE EXTENSION IF NOT EXISTS dblink', 'ro/sql-privilege/extensions'],
  ['a shared library', "LOAD 'auto_explain'", 'ro/sql-privilege/load'],
  ['killing other sessions', 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()', 'ro/sql-privilege/server-control'],
  // --- SQL the gateway would not see
  ['SQL in a string through query_to_xml', "SELECT query_to_xml('DELETE FROM items RETURNING *', true, false, '')", 'ro/sql-dynamic/text-to-sql'],
  ['dynamic SQL in a DO block', "DO $$ BEGIN EXECUTE 'DELETE FROM items'; END $$", 'ro/sql-dynamic/dynamic-plpgsql'],
  ['dynamic SQL assembled from pieces', "DO $$ BEGIN EXECUTE 'DEL' || 'ETE FROM items'; END $$", 'ro/sql-dynamic/dynamic-plpgsql'],
  ['code in a language the gateway cannot read', 'DO LANGUAGE plperl $$ print 1 $$', 'gatehouse/opaque-code'],
  ['an EXECUTE of a name never prepared', 'EXECUTE wipe', 'gatehouse/unknown-statement'],
  ['unparseable text', 'SEL/**/ECT 1', 'gatehouse/parse'],
  ['a text whose nested comments would stall the parser', `SELECT 1 ${'/* '.repeat(300)}${'*/ '.repeat(300)}`, 'gatehouse/parse'],
  // --- reads that must keep working
  ['a plain read', 'SELECT count(*) FROM items', 'allow'],
  ['a keyword inside a comment', '/* DROP TABLE items; pg_read_file */ SELECT count(*) FROM items', 'allow'],
  ['keywords inside string literals', "SELECT 'DELETE FROM items' AS a, $$pg_read_file('/etc/passwd')$$ AS b", 'allow'],
  ['a CTE named like a table', 'WITH items AS (SELECT 42 AS id) SELECT id FROM items', 'allow'],
  ['functions that only compute', 'SELECT lower(name), length(name) FROM items ORDER BY upper(name)', 'allow'],
  ['EXPLAIN without ANALYZE of a read', 'EXPLAIN SELECT * FROM items', 'allow'],
  ['a DO block that only reads', 'DO $$ DECLARE n int; BEGIN SELECT count(*) INTO n FROM items; END $$', 'allow'],
  ['a read-only transaction', 'BEGIN READ ONLY', 'allow'],
]

describe('the evasion corpus, through psql and a real gateway', () => {
  for (const [what, sql, expected] of CORPUS) {
    it(`${expected === 'allow' ? 'allows' : 'refuses'} ${what}`, async () => {
      const v = await verdictOf(sql)
      expect(v.verdict, v.stderr).toBe(expected)
      if (expected !== 'allow') expect(v.stderr).toMatch(/42501|0A000|42601|26000/)
    })
  }

  it('refuses a whole multi-statement string when one statement is denied, and runs none of it', async () => {
    const v = await verdictOf("SELECT count(*) FROM items; DELETE FROM items WHERE id = 1; SELECT 'after'", 'command')
    expect(v.verdict).toBe('ro/sql-write/writes')
    expect(v.stdout).toBe('')
  })

  it('judges SQL EXECUTE by the statement prepared in the same session', async () => {
    const r = await psql(target, 'PREPARE q AS SELECT count(*) FROM items;\nEXECUTE q;\n', ['-v', 'ON_ERROR_STOP=1'])
    expect(r.stderr).toBe('')
    expect(r.stdout.trim().split('\n').pop()).toBe('3')
  })

  it('left no effect behind: rows, sequence, files, schema and roles are as they were', async () => {
    expect(await cluster.psql("SELECT string_agg(id || ':' || name, ',' ORDER BY id) FROM items")).toBe('1:one,2:two,3:three')
    expect(await cluster.psql('SELECT last_value FROM items_seq')).toBe('10')
    expect(await cluster.psql("SELECT count(*) FROM pg_class WHERE relname IN ('stolen', 'v') OR relname LIKE 'items_name%'")).toBe('0')
    expect(await cluster.psql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'items'")).toBe('2')
    expect(await cluster.psql("SELECT count(*) FROM pg_extension WHERE extname = 'dblink'")).toBe('0')
    expect(await cluster.psql('SELECT count(*) FROM pg_largeobject_metadata')).toBe('0')
    expect(existsSync(MARKER_PROGRAM)).toBe(false)
    expect(existsSync(MARKER_FILE)).toBe(false)
  })

  it('recorded every refusal with the rule that made it', async () => {
    const events: AuditEvent[] = await gw.audit()
    const refused = events.filter((e): e is RequestEvent => e.type === 'request' && e.verdict !== 'allow')
    const rules = new Set(refused.map((e) => e.rule))
    for (const [, , expected] of CORPUS) if (expected !== 'allow') expect(rules, expected).toContain(expected)
  })
})
