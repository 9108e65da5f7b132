/**
 * The facts the analyzer reports for one statement (adapters/postgres/src/sql/facts.ts), read
 * from PostgreSQL's parse tree: what policies and `policy explain` see.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { loadSqlParser, SqlAnalyzer, type SqlFacts } from '@gatehouse/adapter-postgres'

const analyzer = new SqlAnalyzer()
beforeAll(() => loadSqlParser())

function facts(text: string): SqlFacts {
  const a = analyzer.analyze(text)
  if (!a.ok) throw new Error(a.error)
  return a.statements[0]?.facts as SqlFacts
}

describe('tables read and written', () => {
  it('separates reads from writes in DML, and counts UPDATE … FROM and MERGE sources as reads', () => {
    expect(facts('UPDATE orders o SET total = p.total FROM prices p WHERE o.id = p.id')).toMatchObject({ reads: ['prices'], writes: ['orders'], write: true })
    expect(facts('MERGE INTO stock s USING incoming i ON s.id = i.id WHEN MATCHED THEN UPDATE SET n = i.n')).toMatchObject({ reads: ['incoming'], writes: ['stock'] })
    expect(facts('INSERT INTO audit.copy SELECT * FROM public.orders')).toMatchObject({ reads: ['public.orders'], writes: ['audit.copy'] })
    expect(facts('SELECT * FROM a JOIN b USING (id) WHERE id IN (SELECT id FROM c)')).toMatchObject({ reads: ['a', 'b', 'c'], writes: [], write: false })
  })

  it('a CTE name is not a table where the CTE is visible, and is one where it is not', () => {
    expect(facts('WITH x AS (SELECT * FROM real_t) SELECT * FROM x').reads).toEqual(['real_t'])
    // a non-recursive CTE cannot see itself: the inner x is the table x
    expect(facts('WITH x AS (SELECT * FROM x) SELECT * FROM x').reads).toEqual(['x'])
    // a schema-qualified name is never a CTE
    expect(facts('WITH x AS (SELECT 1) SELECT * FROM public.x').reads).toEqual(['public.x'])
    expect(facts('WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r').reads).toEqual([])
  })

  it('writes hidden under other statements', () => {
    expect(facts('WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d')).toMatchObject({ statement: 'SELECT', kinds: ['SELECT', 'DELETE'], writes: ['t'] })
    expect(facts('SELECT * INTO new_t FROM t')).toMatchObject({ tag: 'SELECT INTO', reads: ['t'], writes: ['new_t'] })
    expect(facts('CREATE TABLE c AS SELECT * FROM s')).toMatchObject({ tag: 'CREATE TABLE AS', reads: ['s'], writes: ['c'], ddl: true })
    expect(facts('CREATE MATERIALIZED VIEW m AS SELECT * FROM s')).toMatchObject({ tag: 'CREATE MATERIALIZED VIEW', writes: ['m'] })
    expect(facts('COPY t FROM STDIN')).toMatchObject({ writes: ['t'], copy: { direction: 'from', target: 'client' } })
    expect(facts('TRUNCATE a, s.b')).toMatchObject({ writes: ['a', 's.b'] })
    expect(facts('DROP TABLE a, s.b')).toMatchObject({ tag: 'DROP TABLE', writes: ['a', 's.b'], ddl: true })
  })
})

describe('functions', () => {
  it('are found anywhere in the tree and named as the server resolves them', () => {
    const f = facts(`SELECT upper(a), CASE WHEN b THEN "Quoted"(1) END FROM t, generate_series(1, 3) g WHERE pg_catalog.length(c) > 1 ORDER BY U&"\\0061bs"(d)`)
    expect(f.functions).toEqual(['upper', 'Quoted', 'generate_series', 'pg_catalog.length', 'abs'])
    expect(f.functionNames).toEqual(['upper', 'quoted', 'generate_series', 'length', 'abs'])
  })

  it('include the procedure of a CALL', () => {
    expect(facts('CALL maintenance.purge(1)')).toMatchObject({ statement: 'CALL', functions: ['maintenance.purge'], functionNames: ['purge'] })
    expect(facts('DO $$ BEGIN CALL purge(); END $$').functionNames).toEqual(['purge'])
  })

  it('include names in attribute notation, which the server may resolve as calls', () => {
    expect(facts("SELECT ('/etc/passwd'::text).pg_read_file, t.col FROM t").attributeNames).toEqual(['pg_read_file', 'col'])
  })

  it('include column defaults and trigger functions of DDL', () => {
    expect(facts("CREATE TABLE z (a text DEFAULT pg_read_file('/x'))").functionNames).toContain('pg_read_file')
    expect(facts('CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION audit.fire()').functions).toContain('audit.fire')
  })
})

describe('COPY, code, settings and prepared statements', () => {
  it('COPY reports its direction and target', () => {
    expect(facts("COPY t TO PROGRAM 'gzip > /tmp/x'").copy).toEqual({ direction: 'to', target: 'program', source: 'gzip > /tmp/x' })
    expect(facts("COPY t FROM '/data/in.csv'").copy).toEqual({ direction: 'from', target: 'file', source: '/data/in.csv' })
    expect(facts('COPY (SELECT 1) TO STDOUT').copy).toEqual({ direction: 'to', target: 'client' })
  })

  it('a DO block in PL/pgSQL is analysed; another language or dynamic SQL is opaque', () => {
    expect(facts('DO $$ BEGIN INSERT INTO t VALUES (1); END $$')).toMatchObject({ statement: 'DO', writes: ['t'], code: [{ language: 'plpgsql', analysed: true }], opaque: false })
    expect(facts("DO $$ BEGIN EXECUTE 'SELECT 1'; END $$")).toMatchObject({ opaque: true, dynamic: true })
    expect(facts('DO LANGUAGE plpython3u $$ pass $$')).toMatchObject({ opaque: true, code: [{ language: 'plpython3u', analysed: false }] })
    expect(facts('DO $$ BEGIN this is not plpgsql; END $$')).toMatchObject({ opaque: true })
    // comment openers that appear only once the E'' body is unescaped are counted before the PL/pgSQL parse
    expect(facts(`DO E'${'\\x2f\\x2a'.repeat(300)}'`)).toMatchObject({ opaque: true, code: [{ language: 'plpgsql', analysed: false, why: expect.stringContaining('comments') }] })
  })

  it('a function body is analysed by its language, and SECURITY DEFINER is reported', () => {
    expect(facts("CREATE FUNCTION f() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS 'SELECT count(*) FROM secrets'")).toMatchObject({ tag: 'CREATE FUNCTION', reads: ['secrets'], securityDefiner: true, opaque: false })
    expect(facts('CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN DELETE FROM t; END $$')).toMatchObject({ writes: ['t'], opaque: false })
    expect(facts('CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT count(*) FROM secrets; END').reads).toEqual(['secrets'])
  })

  it('settings changed by SET, RESET and set_config', () => {
    expect(facts('SET LOCAL ROLE admin').settings).toEqual(['role'])
    expect(facts("SELECT set_config('search_path', 'evil', false)").settings).toEqual(['search_path'])
    expect(facts('RESET ALL').settings).toEqual(['*'])
  })

  it('PREPARE names what it holds; EXECUTE names what it runs', () => {
    expect(facts('PREPARE p(int) AS DELETE FROM t WHERE id = $1')).toMatchObject({ statement: 'PREPARE', prepare: { name: 'p', statement: 'DELETE', tag: 'DELETE' }, writes: ['t'] })
    expect(facts('EXECUTE p(1)')).toMatchObject({ statement: 'EXECUTE', executes: ['p'] })
    expect(facts('EXPLAIN ANALYZE EXECUTE p(1)').executes).toEqual(['p'])
  })

  it('tags name what the statement is', () => {
    expect(facts('CREATE EXTENSION dblink').tag).toBe('CREATE EXTENSION')
    expect(facts("CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'h')").tag).toBe('CREATE SERVER')
    expect(facts("ALTER SYSTEM SET work_mem = '1MB'").tag).toBe('ALTER SYSTEM')
    expect(facts('CREATE USER MAPPING FOR CURRENT_USER SERVER s').tag).toBe('CREATE USER MAPPING')
    expect(facts("LOAD 'x'").statement).toBe('LOAD')
  })
})
