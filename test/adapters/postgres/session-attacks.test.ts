/**
 * Attacks on the gateway's picture of the PostgreSQL session, by a caller holding one agent token
 * whose policy allows only reading: pipelining and name races, settings that change how text
 * is read, encodings, a Parse's locks, drift the tripwire must catch, refusals that must leave
 * a trace, and sessions that never end. Each runs through a real gateway against a real server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import pg from 'pg'
import type { AuditEvent, IntegrityEvent, ProtocolEvent, RequestEvent } from '@gatehouse/core'
import { generateToken, hashToken } from '@gatehouse/core'
import { startPgCluster, type PgCluster } from '../../fixtures/pg-cluster.js'
import { pgUpstream, startGateway, type TestGateway } from '../../fixtures/gateway.js'
import { psql } from '../../fixtures/clients.js'
import { errorFields, errorOf, RawPgClient, requestPacket, startupPacket, typed, wire } from '../../fixtures/pg-raw.js'

/** Read-only, as a careful operator writes it: SELECT only, with the built-in sets included. */
const READ_ONLY = [{ id: 'ro', principals: { groups: ['agents'] }, include: ['sql-outbound', 'sql-privilege', 'sql-dynamic', 'sql-secrets', 'sql-write'], rules: [{ id: 'select', effect: 'allow', match: { 'sql.statement': ['SELECT', 'SHOW'] } }] }]

let cluster: PgCluster
let gw: TestGateway

const requests = (events: AuditEvent[]) => events.filter((e): e is RequestEvent => e.type === 'request')
const protocolEvents = (events: AuditEvent[]) => events.filter((e): e is ProtocolEvent => e.type === 'protocol')

async function login(g: TestGateway = gw): Promise<RawPgClient> {
  const c = await RawPgClient.connect(g.port)
  await c.login('agent-1', g.tokens['agent-1'] as string)
  return c
}

const count = (table: string) => cluster.psql(`SELECT count(*) FROM ${table}`)

/**
 * An operator who judges executions only, not texts: a Parse of a DELETE passes, its Execute is
 * judged. So the tests of the session model are not stopped early by the Parse judgement.
 */
function execOnlyGateway(): Promise<TestGateway> {
  return startGateway({
    upstream: pgUpstream(cluster),
    policies: [{ id: 'exec-only', rules: [{ id: 'select', effect: 'allow', match: { 'sql.statement': ['SELECT'] } }, { id: 'prep', effect: 'allow', match: { 'sql.statement': ['DELETE'] }, when: "request.phase == 'parse'" }] }],
  })
}

beforeAll(async () => {
  cluster = await startPgCluster()
  await cluster.psql(
    [
      'CREATE TABLE victim (v int); INSERT INTO victim VALUES (1), (2), (3)',
      'CREATE TABLE "café" (v int); INSERT INTO "café" VALUES (1)',
      'GRANT ALL ON victim, "café" TO app_scram',
      // Server-side code the attacker did not write but can call with a SELECT.
      "CREATE FUNCTION scs_off() RETURNS int LANGUAGE sql AS $$ SELECT 1 FROM (SELECT set_config('standard_conforming_strings', 'off', true)) s $$",
      "CREATE FUNCTION reprepare() RETURNS int LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'DEALLOCATE x'; EXECUTE 'PREPARE x AS DELETE FROM victim WHERE v = 3'; RETURN 1; END $$",
    ].join(';\n'),
  )
  gw = await startGateway({ upstream: pgUpstream(cluster), policies: READ_ONLY, connection: { limits: { postgres: { statementsPerQuery: 50 } } } })
})

afterAll(async () => {
  await gw?.stop()
  await cluster?.stop()
})

describe('finding 1: a statement name always means the text the gateway judged', () => {
  it('a re-Parse of a held name in one pipelined write cannot replace what the name runs', async () => {
    const g = await execOnlyGateway()
    try {
      const c = await login(g)
      c.write(Buffer.concat([wire.parse('x', 'DELETE FROM victim'), wire.sync]))
      expect((await c.until('Z')).map((m) => m.type).join('')).toBe('1Z')
      // One write: the re-Parse is refused as PostgreSQL would (42P05), and x still means the DELETE.
      c.write(Buffer.concat([wire.parse('x', 'SELECT 1'), wire.sync, wire.bind('', 'x'), wire.execute(''), wire.sync, wire.query('EXECUTE x')]))
      const first = await c.until('Z')
      expect(errorOf(first)).toMatchObject({ C: '42P05', M: 'prepared statement "x" already exists' })
      const second = await c.until('Z')
      expect(errorOf(second)).toMatchObject({ C: '42501', M: expect.stringContaining('default-deny') })
      // The SQL namespace cannot reach the protocol-level name: judged as unknown, not as SELECT 1.
      const third = await c.until('Z')
      expect(errorOf(third)).toMatchObject({ C: '26000', M: expect.stringContaining('not created through the gateway') })
      c.close()
      expect(await count('victim')).toBe('3')
      const events = await g.audit()
      // No request event says SELECT 1 ran: the audit describes what the server holds.
      const executed = requests(events).filter((e) => e.attrs.phase === 'execute')
      expect(executed.map((e) => [e.text, e.verdict])).toEqual([['DELETE FROM victim', 'deny']])
      // The conflict the gateway answered itself is recorded.
      expect(protocolEvents(events).find((e) => e.event === 'name.in-use')).toMatchObject({ attrs: { sqlstate: '42P05', name: 'x' } })
    } finally {
      await g.stop()
    }
  })

  it('a statement re-Parsed in a block the server skipped is never judged as the one it replaced', async () => {
    const g = await execOnlyGateway()
    try {
      const c = await login(g)
      c.write(Buffer.concat([wire.parse('', 'DELETE FROM victim'), wire.sync]))
      expect((await c.until('Z')).map((m) => m.type).join('')).toBe('1Z')
      // One write: an error makes the server skip the re-Parse of the unnamed statement; the Bind
      // and Execute of the next block reach the gateway before the error does. PostgreSQL binds
      // the DELETE: the gateway must judge the DELETE, not SELECT 42.
      c.write(Buffer.concat([wire.parse('bad', 'SELECT * FROM nosuch'), wire.parse('', 'SELECT 42'), wire.sync, wire.bind('', ''), wire.execute(''), wire.sync]))
      expect(errorOf(await c.until('Z'))?.C).toBe('42P01')
      expect(errorOf(await c.until('Z'))).toMatchObject({ C: '42501', M: expect.stringContaining('default-deny') })
      c.close()
      expect(await count('victim')).toBe('3')
      const executed = requests(await g.audit()).filter((e) => e.attrs.phase === 'execute')
      expect(executed.map((e) => [e.text, e.verdict])).toEqual([['DELETE FROM victim', 'deny']])
    } finally {
      await g.stop()
    }
  })

  it('SQL cannot name the gateway\u2019s own statements and portals', async () => {
    const c = await login()
    c.write(Buffer.concat([wire.parse('s', 'SELECT 1'), wire.sync]))
    await c.until('Z')
    for (const sql of ['EXECUTE _gh_s1', 'DEALLOCATE _GH_S1', 'FETCH ALL FROM _gh_p1', 'CLOSE _gh_p1', 'PREPARE _gh_s9 AS SELECT 1']) {
      c.write(wire.query(sql))
      expect(errorOf(await c.until('Z'))).toMatchObject({ M: expect.stringContaining('reserved for the gateway') })
    }
    // nor can a protocol message use the prefix as a client name
    c.write(Buffer.concat([wire.parse('_gh_s1', 'SELECT 2'), wire.sync]))
    expect(errorOf(await c.until('Z'))).toMatchObject({ C: '0A000', M: expect.stringContaining('_gh_') })
    c.close()
    const events = await gw.audit()
    expect(protocolEvents(events).some((e) => e.event === 'name.refused' && e.attrs?.name === '_gh_s1')).toBe(true)
  })

  it('Close of a name the client never bound answers CloseComplete, as PostgreSQL does', async () => {
    const c = await login()
    c.write(Buffer.concat([wire.close('S', 'never'), wire.close('P', 'never'), wire.sync]))
    expect((await c.until('Z')).map((m) => m.type).join('')).toBe('33Z')
    c.close()
  })
})

describe('finding 2: text that reads two ways under standard_conforming_strings', () => {
  // On: one literal, a plain SELECT. Off: a SELECT of 'x'' and a data-modifying CTE.
  const twoWay = "WITH a AS (SELECT 'x\\''), d AS (DELETE FROM victim RETURNING 1) SELECT count(*) FROM d --') SELECT * FROM a"

  it('is refused even after a call that turns the setting off unseen, in the same pipeline', async () => {
    const c = await login()
    c.write(
      Buffer.concat([
        wire.parse('', 'SELECT scs_off()'),
        wire.bind('', ''),
        wire.execute(''),
        wire.parse('', twoWay),
        wire.bind('', ''),
        wire.execute(''),
        wire.sync,
      ]),
    )
    const msgs = await c.until('Z')
    expect(errorOf(msgs)).toMatchObject({ C: '42601', M: expect.stringContaining('standard_conforming_strings is off') })
    c.close()
    expect(await count('victim')).toBe('3')
    const refused = requests(await gw.audit()).find((e) => e.rule === 'gatehouse/ambiguous-literal')
    expect(refused).toMatchObject({ verdict: 'deny', text: twoWay })
  })

  it('accepts backslashes where both readings agree: E strings, dollar quotes, identifiers, comments', async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'], database: 'app' })
    await c.connect()
    try {
      const r = await c.query("SELECT E'a\\\\b' AS e, $$c\\d$$ AS d, 1 AS \"x\\y\" -- '\\'")
      expect(r.rows[0]).toEqual({ e: 'a\\b', d: 'c\\d', 'x\\y': 1 })
      await expect(c.query("SELECT 'C:\\temp' AS p")).rejects.toMatchObject({ code: '42601', message: expect.stringContaining("E'") })
    } finally {
      await c.end()
    }
  })

  it('is refused inside a function body, which runs under whatever the setting is then', async () => {
    const g = await startGateway({ upstream: pgUpstream(cluster), policies: [{ id: 'ddl', rules: [{ id: 'create', effect: 'allow', match: { 'sql.statement': ['CREATE'] } }] }] })
    try {
      const c = new pg.Client({ host: '127.0.0.1', port: g.port, user: 'agent-1', password: g.tokens['agent-1'], database: 'app' })
      await c.connect()
      await expect(c.query("CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $b$ SELECT 'x\\' $b$")).rejects.toMatchObject({ code: '42501', message: expect.stringContaining('opaque') })
      await c.end()
    } finally {
      await g.stop()
    }
  })
})

describe('finding 3: encodings', () => {
  it('refuses a client encoding it does not decode at startup, with a FATAL and an audit record', async () => {
    for (const encoding of ['LATIN1', 'SJIS', 'WIN1252']) {
      const r = await psql({ port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] as string }, 'SELECT 1;\n', [], { PGCLIENTENCODING: encoding })
      expect(r.code).not.toBe(0)
      expect(r.stderr).toContain(`client_encoding "${encoding}" is not supported`)
    }
    const refused = protocolEvents(await gw.audit()).filter((e) => e.event === 'startup.refused' && e.attrs?.client_encoding)
    expect(refused.map((e) => e.attrs?.client_encoding)).toEqual(expect.arrayContaining(['LATIN1', 'SJIS', 'WIN1252']))
  })

  it('judges non-ASCII names as the server reads them, so a deny rule on them holds', async () => {
    const g = await startGateway({
      upstream: pgUpstream(cluster),
      policies: [{ id: 'p', rules: [{ id: 'no-cafe', effect: 'deny', match: { 'sql.tables': ['café'] } }, { id: 'select', effect: 'allow', match: { 'sql.statement': ['SELECT'] } }] }],
    })
    try {
      const r = await psql({ port: g.port, user: 'agent-1', password: g.tokens['agent-1'] as string }, 'SELECT count(*) FROM "café";\nSELECT count(*) FROM victim;\n', [], { PGCLIENTENCODING: 'UTF8' })
      expect(r.stderr).toContain('denied by rule "p/no-cafe"')
      expect(r.stdout.trim()).toBe('3')
      const denied = requests(await g.audit()).find((e) => e.rule === 'p/no-cafe')
      expect(denied?.text).toBe('SELECT count(*) FROM "café"')
    } finally {
      await g.stop()
    }
  })

  it('refuses bytes that are not UTF-8 with 22021, and a switch to another encoding', async () => {
    const c = await login()
    c.write(typed('Q', Buffer.concat([Buffer.from('SELECT count(*) FROM "caf'), Buffer.from([0xe9]), Buffer.from('"'), Buffer.from([0])])))
    expect(errorOf(await c.until('Z'))).toMatchObject({ C: '22021' })
    for (const sql of ["SET client_encoding = 'LATIN1'", "SELECT set_config('client_encoding', 'WIN1252', false)"]) {
      c.write(wire.query(sql))
      expect(errorOf(await c.until('Z'))).toMatchObject({ C: '0A000' })
    }
    c.close()
  })
})

describe('finding 4: a Parse is judged and audited when its text arrives', () => {
  it('a denied Parse never reaches the server, so it takes no lock', async () => {
    const c = await login()
    c.write(wire.query('BEGIN'))
    await c.until('Z')
    c.write(Buffer.concat([wire.parse('del', 'DELETE FROM victim'), wire.parse('upd', 'SELECT * FROM victim FOR UPDATE'), wire.sync]))
    const refused = await c.until('Z')
    expect(errorOf(refused)).toMatchObject({ C: '42501' })
    c.write(wire.query("SELECT mode FROM pg_locks WHERE relation = 'victim'::regclass AND pid = pg_backend_pid()"))
    const locks = await c.until('Z')
    expect(locks.filter((m) => m.type === 'D')).toHaveLength(0)
    c.write(wire.query('ROLLBACK'))
    await c.until('Z')
    c.close()
    const parse = requests(await gw.audit()).find((e) => e.text === 'DELETE FROM victim' && e.attrs.phase === 'parse')
    expect(parse).toMatchObject({ verdict: 'deny' })
  })
})

describe('finding 6: the tripwire', () => {
  it('ends the session and records an integrity event when the server runs what was not judged', async () => {
    const adminToken = generateToken()
    const g = await startGateway({
      upstream: pgUpstream(cluster),
      policies: [{ id: 'p', rules: [{ id: 'r', effect: 'allow', match: { 'sql.statement': ['SELECT', 'PREPARE'] } }] }],
      admin: { listen: '127.0.0.1:0', tokens: [hashToken(adminToken, 'admin')] },
    })
    try {
      const c = await login(g)
      c.write(wire.query('PREPARE x AS SELECT 1'))
      await c.until('Z')
      // Server-side code replaces x behind the gateway's back; the gateway still believes x is SELECT 1.
      c.write(wire.query('SELECT reprepare()'))
      await c.until('Z')
      c.write(wire.query('EXECUTE x'))
      const msgs: string[] = []
      let fatal: Record<string, string> | undefined
      for (;;) {
        const m = await c.next()
        if (!m) break
        msgs.push(m.type)
        if (m.type === 'E') fatal = errorFields(m.body)
      }
      expect(fatal).toMatchObject({ S: 'FATAL', M: expect.stringContaining('other than the statement the gateway judged') })
      expect(msgs).not.toContain('Z')
      const events = await g.audit()
      const integrity = events.find((e): e is IntegrityEvent => e.type === 'integrity')
      expect(integrity).toMatchObject({ expected: 'SELECT', actual: 'DELETE 1', principal: { id: 'agent-1' } })
      const metrics = await (await fetch(`http://127.0.0.1:${g.gateway.adminPort}/metrics`, { headers: { authorization: `Bearer ${adminToken}` } })).text()
      expect(metrics).toMatch(/gatehouse_integrity_violations_total\{connection="pg"\} 1/)
      // refusals made before policy are counted with the policy's (here: an unparseable text, refused on a fresh session)
      const d = await login(g)
      d.write(wire.query('SELEC 1'))
      expect(errorOf(await d.until('Z'))?.C).toBe('42601')
      d.close()
      const after = await (await fetch(`http://127.0.0.1:${g.gateway.adminPort}/metrics`, { headers: { authorization: `Bearer ${adminToken}` } })).text()
      expect(after).toMatch(/gatehouse_requests_total\{connection="pg",action="sql.query",verdict="deny"\} 1/)
    } finally {
      await g.stop()
      await cluster.psql('INSERT INTO victim VALUES (3)')
    }
  })
})

describe('finding 7: refusals and protocol events leave a trace', () => {
  it('records cancel requests, refused protocol versions and replication connections', async () => {
    const cancel = await RawPgClient.connect(gw.port)
    const body = Buffer.alloc(16)
    body.writeInt32BE(16, 0)
    body.writeInt32BE(80877102, 4)
    body.writeInt32BE(12345, 8)
    body.writeInt32BE(678, 12)
    cancel.write(body)
    const v4 = await RawPgClient.connect(gw.port)
    const p = startupPacket({ user: 'agent-1' })
    p.writeInt32BE(4 << 16, 4)
    v4.write(p)
    const repl = await RawPgClient.connect(gw.port)
    repl.write(startupPacket({ user: 'agent-1', database: 'x', replication: 'database' }))
    for (const c of [cancel, v4, repl]) while (await c.next()) {}
    const gss = await RawPgClient.connect(gw.port)
    gss.write(requestPacket(80877104))
    expect(await gss.byte()).toBe('N')
    gss.close()
    const events = protocolEvents(await gw.audit())
    expect(events.find((e) => e.event === 'cancel')).toMatchObject({ attrs: { pid: 12345 }, reason: expect.stringContaining('unknown key') })
    expect(events.find((e) => e.attrs?.protocol === '4.0')).toMatchObject({ event: 'startup.refused' })
    expect(events.find((e) => e.attrs?.replication === 'database')).toMatchObject({ event: 'startup.refused' })
  })
})

describe('finding 8: volume limits per query', () => {
  it('refuses a Query holding more statements than the limit, before any runs', async () => {
    const c = await login()
    c.write(wire.query('SELECT 1;'.repeat(51)))
    expect(errorOf(await c.until('Z'))).toMatchObject({ C: '54000', M: expect.stringContaining('limits.postgres.statementsPerQuery') })
    c.write(wire.query('SELECT 1;'.repeat(50)))
    expect((await c.until('Z')).filter((m) => m.type === 'C')).toHaveLength(50)
    c.close()
  })
})

describe('finding 9: sessions and transactions that never end', () => {
  it('ends a session that holds an unsynced pipeline or an open transaction silently past the limit', async () => {
    const g = await startGateway({
      upstream: pgUpstream(cluster),
      policies: [{ id: 'tx', rules: [{ id: 'r', effect: 'allow', match: { 'sql.statement': ['SELECT', 'BEGIN', 'ROLLBACK'] } }] }],
      connection: { limits: { postgres: { transactionIdleMs: 400 } } },
    })
    try {
      // Without Sync the server keeps the implicit transaction and its lock; idle_in_transaction_session_timeout never fires.
      const a = await login(g)
      a.write(Buffer.concat([wire.parse('', 'SELECT * FROM victim'), wire.bind('', ''), wire.execute(''), wire.flush]))
      const started = Date.now()
      let fatal: Record<string, string> | undefined
      for (;;) {
        const m = await a.next(5000)
        if (!m) break
        if (m.type === 'E') fatal = errorFields(m.body)
      }
      expect(fatal).toMatchObject({ S: 'FATAL', C: '25P03', M: expect.stringContaining('limits.postgres.transactionIdleMs') })
      expect(Date.now() - started).toBeLessThan(3000)
      // Neither Sync nor Flush: the results stay in the server's buffer and the statement looks
      // busy; the gateway flushes once, and the silence inside the implicit transaction still ends it.
      const noFlush = await login(g)
      noFlush.write(Buffer.concat([wire.parse('', 'SELECT * FROM victim'), wire.bind('', ''), wire.execute('')]))
      let fatal2: Record<string, string> | undefined
      for (;;) {
        const m = await noFlush.next(5000)
        if (!m) break
        if (m.type === 'E') fatal2 = errorFields(m.body)
      }
      expect(fatal2).toMatchObject({ S: 'FATAL', C: '25P03' })
            // An explicit transaction left open: the same.
      const b = await login(g)
      b.write(wire.query('BEGIN'))
      await b.until('Z')
      const f = await b.until('E', 5000)
      expect(errorFields((f[f.length - 1] as { body: Buffer }).body)).toMatchObject({ C: '25P03' })
      // A session idle outside a transaction is left alone.
      const idle = await login(g)
      await new Promise((r) => setTimeout(r, 700))
      idle.write(wire.query('SELECT 1'))
      expect((await idle.until('Z')).map((m) => m.type).join('')).toBe('TDCZ')
      idle.close()
      const events = protocolEvents(await g.audit())
      expect(events.filter((e) => e.event === 'limit.postgres.transaction-idle')).toHaveLength(3)
    } finally {
      await g.stop()
    }
  })

  it('ends a session older than the maximum age', async () => {
    const g = await startGateway({ upstream: pgUpstream(cluster), policies: READ_ONLY, connection: { limits: { sessions: { maxAgeMs: 500 } } } })
    try {
      const c = await login(g)
      const f = await c.until('E', 5000)
      expect(errorFields((f[f.length - 1] as { body: Buffer }).body)).toMatchObject({ S: 'FATAL', C: '57P01', M: expect.stringContaining('limits.sessions.maxAgeMs') })
    } finally {
      await g.stop()
    }
  })
})


describe('transparency of pipelined name changes', () => {
  it('a Close the server skipped in an earlier block leaves the name usable, as in PostgreSQL', async () => {
    const c = await login()
    c.write(Buffer.concat([wire.parse('kept', 'SELECT 7'), wire.sync]))
    await c.until('Z')
    // One write: an error, a Close the server skips, then a Bind of the name in the next block.
    c.write(Buffer.concat([wire.parse('bad', 'SELECT * FROM nosuch'), wire.close('S', 'kept'), wire.sync, wire.bind('', 'kept'), wire.execute(''), wire.sync]))
    expect(errorOf(await c.until('Z'))?.C).toBe('42P01')
    expect((await c.until('Z')).map((m) => m.type).join('')).toBe('2DCZ')
    c.close()
  })
})

describe('names the server dropped stay dropped', () => {
  it('a Close skipped after DEALLOCATE ALL does not bring the deallocated name back', async () => {
    const g = await startGateway({ upstream: pgUpstream(cluster), policies: [{ id: 'p', rules: [{ id: 'r', effect: 'allow', match: { 'sql.statement': ['SELECT', 'DEALLOCATE'] } }] }] })
    try {
      const c = await login(g)
      // DEALLOCATE ALL drops b (itself); an error then makes the server skip the Close of b.
      c.write(Buffer.concat([wire.parse('b', 'DEALLOCATE ALL'), wire.bind('', 'b'), wire.execute(''), wire.describe('S', 'nosuch'), wire.close('S', 'b'), wire.sync]))
      expect(errorOf(await c.until('Z'))?.C).toBe('26000')
      // b is free on the server, as in PostgreSQL: a new Parse of it succeeds and runs.
      c.write(Buffer.concat([wire.parse('b', 'SELECT 9'), wire.bind('', 'b'), wire.execute(''), wire.sync]))
      expect((await c.until('Z')).map((m) => m.type).join('')).toBe('12DCZ')
      c.close()
    } finally {
      await g.stop()
    }
  })
})

describe('a name whose Parse failed stays unbound', () => {
  it('a skipped Close of it in a later block does not bring back a statement that never existed', async () => {
    const c = await login()
    c.write(Buffer.concat([wire.parse('a', 'SELECT * FROM nosuch'), wire.parse('b', 'SELECT 1'), wire.sync, wire.bind('', 'a'), wire.execute(''), wire.close('S', 'b'), wire.sync, wire.parse('b', 'SELECT 2'), wire.bind('', 'b'), wire.execute(''), wire.sync]))
    expect(errorOf(await c.until('Z'))?.C).toBe('42P01')
    expect(errorOf(await c.until('Z'))?.C).toBe('26000')
    // b was never created (its Parse was skipped): a new Parse of it succeeds, as in PostgreSQL
    expect((await c.until('Z')).map((m) => m.type).join('')).toBe('12DCZ')
    c.close()
  })
})

describe('a simple Query inside an unsynced pipeline', () => {
  it('is skipped when an earlier message failed, as the server skips it, and the session goes on', async () => {
    const c = await login()
    c.write(Buffer.concat([wire.parse('', 'SELECT 5'), wire.sync]))
    await c.until('Z')
    // The Query would be skipped by the server (no ReadyForQuery for it); the Bind of the next
    // block must then resolve the unnamed statement without waiting for an answer that never comes.
    c.write(Buffer.concat([wire.parse('bad', 'SELECT * FROM nosuch'), wire.query('SELECT 1'), wire.sync, wire.bind('', ''), wire.execute(''), wire.sync]))
    const first = await c.until('Z')
    expect(first.map((m) => m.type).join('')).toBe('EZ')
    expect((await c.until('Z')).map((m) => m.type).join('')).toBe('2DCZ')
    // Without an error the Query runs, and ends the pipeline's block.
    c.write(Buffer.concat([wire.parse('', 'SELECT 6'), wire.bind('', ''), wire.execute(''), wire.query('SELECT 2')]))
    expect((await c.until('Z')).map((m) => m.type).join('')).toBe('12DCTDCZ')
    c.close()
  })
})
