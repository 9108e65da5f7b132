/**
 * Real drivers through the gateway, on the paths that exercise the session model: psycopg 3
 * (server-side prepared statements, pipeline mode, executemany, named cursors), psycopg2,
 * pgjdbc (named statements after prepareThreshold, fetch-size portals that suspend, batches),
 * pg-cursor (a portal read in chunks with Execute and Flush, no Sync between) and postgres.js
 * (named prepared statements, pipelined queries).
 * Each driver program prints "ok" only when every result matched; a denied statement must come
 * back as SQLSTATE 42501 and leave the session usable.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import pg from 'pg'
import Cursor from 'pg-cursor'
import postgres from 'postgres'
import { runClient } from '../../fixtures/clients.js'
import { startPgCluster, type PgCluster } from '../../fixtures/pg-cluster.js'
import { pgUpstream, startGateway, type TestGateway } from '../../fixtures/gateway.js'

let cluster: PgCluster
let gw: TestGateway
let dir: string

const POLICY = [
  {
    id: 'drivers',
    rules: [
      { id: 'no-drop', effect: 'deny', match: { 'sql.statement': ['DROP', 'TRUNCATE'] } },
      { id: 'work', effect: 'allow', match: { 'sql.statement': ['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'BEGIN', 'COMMIT', 'ROLLBACK', 'SET', 'SHOW', 'DECLARE', 'FETCH', 'CLOSE', 'CREATE', 'LISTEN', 'NOTIFY'] } },
    ],
  },
]

beforeAll(async () => {
  cluster = await startPgCluster()
  await cluster.psql('CREATE TABLE items (id int primary key, name text); INSERT INTO items SELECT g, \'n\' || g FROM generate_series(1, 50) g; GRANT ALL ON items TO app_scram; CREATE TABLE sink (v int); GRANT ALL ON sink TO app_scram')
  gw = await startGateway({ upstream: pgUpstream(cluster), policies: POLICY })
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-drivers-'))
})

afterAll(async () => {
  await gw?.stop()
  await cluster?.stop()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

const PSYCOPG3 = `
import sys, psycopg
from psycopg import errors
conninfo = sys.argv[1]
with psycopg.connect(conninfo, prepare_threshold=0, autocommit=True) as conn:
    # prepare_threshold=0: every query is a named server-side prepared statement, reused
    for i in range(5):
        assert conn.execute("SELECT %s::int + 1", (i,)).fetchone()[0] == i + 1
    # pipeline mode: many Parse/Bind/Execute/Sync blocks sent before any result is read
    with conn.pipeline():
        curs = [conn.execute("SELECT %s::int * 2", (i,)) for i in range(30)]
        conn.execute("INSERT INTO sink VALUES (%s)", (7,))
    assert [c.fetchone()[0] for c in curs] == [i * 2 for i in range(30)]
    cur = conn.cursor()
    cur.executemany("INSERT INTO sink VALUES (%s)", [(i,) for i in range(10)])
    assert conn.execute("SELECT count(*) FROM sink").fetchone()[0] == 11
    # a denied statement: 42501, and the session goes on
    try:
        conn.execute("DROP TABLE items")
        raise SystemExit("DROP was not refused")
    except errors.InsufficientPrivilege:
        pass
    assert conn.execute("SELECT name FROM items WHERE id = %s", (3,)).fetchone()[0] == "n3"
with psycopg.connect(conninfo) as conn:
    # a named (server-side) cursor inside a transaction: DECLARE, FETCH, CLOSE
    with conn.cursor(name="big") as sc:
        sc.execute("SELECT id FROM items ORDER BY id")
        first = sc.fetchmany(20)
        rest = sc.fetchall()
    assert [r[0] for r in first + rest] == list(range(1, 51))
    conn.rollback()
print("ok")
`

const PSYCOPG2 = `
import sys, psycopg2
conn = psycopg2.connect(sys.argv[1])
cur = conn.cursor()
cur.execute("SELECT %s::int + 1", (41,))
assert cur.fetchone()[0] == 42
cur.execute("SELECT count(*) FROM items WHERE name LIKE %s", ("n1%",))
assert cur.fetchone()[0] == 11
try:
    cur.execute("TRUNCATE items")
    raise SystemExit("TRUNCATE was not refused")
except psycopg2.Error as e:
    assert e.pgcode == "42501", e.pgcode
conn.rollback()
cur.execute("SELECT 1")
print("ok")
`

const JDBC = `
import java.sql.*;
public class Probe {
  public static void main(String[] a) throws Exception {
    try (Connection c = DriverManager.getConnection(a[0], a[1], a[2])) {
      // prepareThreshold=1 in the URL: named statements from the first execution
      try (PreparedStatement ps = c.prepareStatement("SELECT ?::int + 1")) {
        for (int i = 0; i < 10; i++) {
          ps.setInt(1, i);
          try (ResultSet r = ps.executeQuery()) { r.next(); if (r.getInt(1) != i + 1) throw new Exception("wrong result " + i); }
        }
      }
      c.setAutoCommit(false);
      // fetch size inside a transaction: a named portal, Execute with a row limit, PortalSuspended
      try (Statement st = c.createStatement()) {
        st.setFetchSize(7);
        int n = 0;
        try (ResultSet rs = st.executeQuery("SELECT id FROM items ORDER BY id")) { while (rs.next()) { n++; if (rs.getInt(1) != n) throw new Exception("row " + n); } }
        if (n != 50) throw new Exception("rows " + n);
      }
      try (PreparedStatement ins = c.prepareStatement("INSERT INTO sink VALUES (?)")) {
        for (int i = 0; i < 25; i++) { ins.setInt(1, 100 + i); ins.addBatch(); }
        int[] counts = ins.executeBatch();
        if (counts.length != 25) throw new Exception("batch " + counts.length);
      }
      c.commit();
      try (Statement st = c.createStatement()) {
        try { st.execute("DROP TABLE items"); throw new Exception("DROP was not refused"); }
        catch (SQLException e) { if (!"42501".equals(e.getSQLState())) throw e; }
      }
      c.rollback();
      try (Statement st = c.createStatement(); ResultSet r = st.executeQuery("SELECT count(*) FROM sink WHERE v >= 100")) {
        r.next(); if (r.getInt(1) != 25) throw new Exception("sink " + r.getInt(1));
      }
      c.commit();
    }
    System.out.println("ok");
  }
}
`

const conninfo = () => `host=127.0.0.1 port=${gw.port} user=agent-1 password=${gw.tokens['agent-1']} dbname=app sslmode=disable`

describe('real drivers through the gateway', () => {
  it('psycopg 3: server-side prepares, pipeline mode, executemany, a named cursor, a refusal', async () => {
    writeFileSync(join(dir, 'p3.py'), PSYCOPG3)
    const r = await runClient('/usr/bin/python3', [join(dir, 'p3.py'), conninfo()], { timeoutMs: 30_000 })
    expect(r.stdout.trim(), r.stderr).toBe('ok')
    expect(r.code).toBe(0)
  })

  it('psycopg2: parameters, a refusal, the session goes on', async () => {
    writeFileSync(join(dir, 'p2.py'), PSYCOPG2)
    const r = await runClient('/usr/bin/python3', [join(dir, 'p2.py'), conninfo()], { timeoutMs: 30_000 })
    expect(r.stdout.trim(), r.stderr).toBe('ok')
    expect(r.code).toBe(0)
  })

  it('pgjdbc: named statements, fetch-size portals, a batch, a refusal', async () => {
    writeFileSync(join(dir, 'Probe.java'), JDBC)
    const url = `jdbc:postgresql://127.0.0.1:${gw.port}/app?sslmode=disable&prepareThreshold=1`
    const r = await runClient('java', ['-cp', '/usr/share/java/postgresql.jar', join(dir, 'Probe.java'), url, 'agent-1', gw.tokens['agent-1'] as string], { timeoutMs: 60_000 })
    expect(r.stdout.trim(), r.stderr).toBe('ok')
    expect(r.code).toBe(0)
  })

  it('pgjdbc: LargeObjectManager writes and reads a large object (FunctionCall, judged as the functions it names)', async () => {
    writeFileSync(
      join(dir, 'Lob.java'),
      `
import java.sql.*;
import org.postgresql.PGConnection;
import org.postgresql.largeobject.*;
public class Lob {
  public static void main(String[] a) throws Exception {
    try (Connection c = DriverManager.getConnection(a[0], a[1], a[2])) {
      c.setAutoCommit(false);
      LargeObjectManager lom = c.unwrap(PGConnection.class).getLargeObjectAPI();
      long oid = lom.createLO(LargeObjectManager.READWRITE);
      LargeObject w = lom.open(oid, LargeObjectManager.WRITE);
      w.write("written by pgjdbc".getBytes("UTF-8"));
      w.close();
      c.commit();
      LargeObject r = lom.open(oid, LargeObjectManager.READ);
      System.out.println(new String(r.read(100), "UTF-8"));
      r.close();
      c.commit();
    }
  }
}
`,
    )
    const url = `jdbc:postgresql://127.0.0.1:${gw.port}/app?sslmode=disable`
    const r = await runClient('java', ['-cp', '/usr/share/java/postgresql.jar', join(dir, 'Lob.java'), url, 'agent-1', gw.tokens['agent-1'] as string], { timeoutMs: 60_000 })
    expect(r.stdout.trim(), r.stderr).toBe('written by pgjdbc')
    const calls = (await gw.audit()).filter((e) => e.type === 'request' && (e.attrs as { functionCall?: unknown }).functionCall !== undefined)
    expect(new Set(calls.map((e) => (e.attrs as { functionCall: { function: string } }).functionCall.function))).toEqual(new Set(['pg_catalog.lo_creat', 'pg_catalog.lo_open', 'pg_catalog.lowrite', 'pg_catalog.loread', 'pg_catalog.lo_close']))
  })

  it('postgres.js: LISTEN/NOTIFY, and listening again after its backend is terminated (pg_terminate_backend of the pid the server reports)', async () => {
    const sql = postgres({ host: '127.0.0.1', port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] as string, database: 'app', max: 2, onnotice: () => undefined })
    try {
      const got: string[] = []
      let ready = 0
      await sql.listen('gh_events', (payload) => got.push(payload), () => ready++)
      await sql.notify('gh_events', 'first')
      await expect.poll(() => got).toEqual(['first'])
      // terminate the listening connection's own backend: postgres.js reconnects and listens again
      const [{ pid }] = await sql`SELECT pid FROM pg_stat_activity WHERE query ILIKE 'listen%' AND usename = ${cluster.users.scram.user}`
      await cluster.psql(`SELECT pg_terminate_backend(${pid})`)
      await expect.poll(() => ready, { timeout: 10_000 }).toBeGreaterThanOrEqual(2)
      await sql.notify('gh_events', 'second')
      await expect.poll(() => got, { timeout: 10_000 }).toEqual(['first', 'second'])
    } finally {
      await sql.end({ timeout: 1 })
    }
  })

  it('pg-cursor: a portal read in chunks, outside and inside a transaction', async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'], database: 'app' })
    await c.connect()
    try {
      for (const tx of [false, true]) {
        if (tx) await c.query('BEGIN')
        const cursor = c.query(new Cursor('SELECT id FROM items WHERE id > $1 ORDER BY id', [10]))
        const seen: number[] = []
        for (;;) {
          const rows = (await cursor.read(7)) as { id: number }[]
          if (rows.length === 0) break
          seen.push(...rows.map((r) => r.id))
        }
        await cursor.close()
        expect(seen).toEqual(Array.from({ length: 40 }, (_, i) => i + 11))
        if (tx) await c.query('COMMIT')
      }
      await expect(c.query('DROP TABLE items')).rejects.toMatchObject({ code: '42501' })
      expect((await c.query('SELECT count(*)::int AS n FROM items')).rows[0].n).toBe(50)
    } finally {
      await c.end()
    }
  })

  it('postgres.js: named prepared statements and pipelined queries', async () => {
    const sql = postgres({ host: '127.0.0.1', port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] as string, database: 'app', max: 1, prepare: true, onnotice: () => undefined })
    try {
      // the same query several times: prepared once under a name, then bound again
      for (let i = 0; i < 5; i++) expect((await sql`SELECT ${i}::int + 1 AS v`)[0]?.v).toBe(i + 1)
      // many queries at once on one connection: pipelined
      const many = await Promise.all(Array.from({ length: 30 }, (_, i) => sql`SELECT name FROM items WHERE id = ${i + 1}`))
      expect(many.map((r) => r[0]?.name)).toEqual(Array.from({ length: 30 }, (_, i) => `n${i + 1}`))
      await expect(sql`DROP TABLE items`).rejects.toMatchObject({ code: '42501' })
      const rows = await sql.begin(async (tx) => {
        await tx`INSERT INTO sink VALUES (${999})`
        return tx`SELECT count(*)::int AS n FROM sink WHERE v = 999`
      })
      expect(rows[0]?.n).toBe(1)
    } finally {
      await sql.end({ timeout: 5 })
    }
  })
})
