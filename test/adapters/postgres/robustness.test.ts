/**
 * Bad input closes only the connection that sent it, with an error in PostgreSQL's own terms;
 * other sessions keep working and nothing else is harmed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import pg from 'pg'
import fc from 'fast-check'
import { startPgCluster, type PgCluster } from '../../fixtures/pg-cluster.js'
import { pgUpstream, startGateway, type TestGateway } from '../../fixtures/gateway.js'
import { psql } from '../../fixtures/clients.js'
import { cstr, errorFields, GSSENC_REQUEST, RawPgClient, requestPacket, SSL_REQUEST, startupPacket, typed } from '../../fixtures/pg-raw.js'

let cluster: PgCluster
let gw: TestGateway
let bystander: pg.Client

beforeAll(async () => {
  cluster = await startPgCluster()
  gw = await startGateway({ upstream: pgUpstream(cluster), connection: { limits: { unauthenticated: { loginTimeoutMs: 1000 } } } })
  bystander = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'], database: 'app' })
  await bystander.connect()
})

afterAll(async () => {
  await bystander?.end().catch(() => undefined)
  await gw?.stop()
  await cluster?.stop()
})

async function bystanderStillWorks(): Promise<void> {
  const r = await bystander.query('SELECT $1::int * 2 AS v', [21])
  expect(r.rows[0].v).toBe(42)
}

/** Reads until the gateway closes the connection; returns the FATAL/ERROR fields it sent. */
async function errorThenClose(c: RawPgClient): Promise<Record<string, string>> {
  let fields: Record<string, string> | undefined
  for (;;) {
    const m = await c.next(5000)
    if (!m) break
    if (m.type === 'E') fields = errorFields(m.body)
  }
  expect(c.closed).toBe(true)
  expect(fields).toBeDefined()
  return fields as Record<string, string>
}

describe('malformed frontend input', () => {
  it('closes a connection that sends garbage or a Terminate before the startup packet without a word, as PostgreSQL does, and records it', async () => {
    for (const garbage of [Buffer.from('GET / HTTP/1.1\r\nHost: gatehouse\r\n\r\n'), Buffer.from([0x58, 0, 0, 0, 4])]) {
      const c = await RawPgClient.connect(gw.port)
      c.write(garbage)
      expect(await c.next(5000)).toBeUndefined()
      expect(c.closed).toBe(true)
    }
    const events = (await gw.audit()).filter((e) => e.type === 'protocol' && (e as { event?: string }).event === 'protocol.violation' && (e as { reason?: string }).reason?.startsWith('invalid startup packet length'))
    expect(events.length).toBeGreaterThanOrEqual(2)
    await bystanderStillWorks()
  })

  it('closes a connection whose startup packet never completes', async () => {
    const c = await RawPgClient.connect(gw.port)
    const packet = startupPacket({ user: 'agent-1', database: 'app' })
    c.write(packet.subarray(0, 10))
    const started = Date.now()
    const f = await errorThenClose(c)
    expect(f.M).toContain('startup timed out')
    expect(Date.now() - started).toBeLessThan(4000)
    await bystanderStillWorks()
  })

  it('closes a connection that drops in the middle of the startup packet', async () => {
    const c = await RawPgClient.connect(gw.port)
    c.write(startupPacket({ user: 'agent-1' }).subarray(0, 7))
    c.socket.end()
    await new Promise((r) => setTimeout(r, 100))
    await bystanderStillWorks()
  })

  it('refuses a 1 GiB length prefix at once, without buffering it', async () => {
    const c = await RawPgClient.connect(gw.port)
    await c.login('agent-1', gw.tokens['agent-1'] as string)
    const header = Buffer.alloc(5)
    header.write('Q', 0, 'latin1')
    header.writeInt32BE(0x40000000, 1)
    c.write(Buffer.concat([header, Buffer.from('SELECT 1')]))
    // Keep sending the body, 1 MiB at a time, as fast as the gateway takes it: a gateway that
    // buffered the message would take all 64 MiB (and wait for the rest of the GiB).
    const chunk = Buffer.alloc(1 << 20, 0x61)
    let taken = 0
    const pump = (async () => {
      while (!c.closed && !c.socket.destroyed && taken < 64 * chunk.length) {
        const more = c.socket.write(chunk)
        if (!more) await new Promise<void>((resolve) => { c.socket.once('drain', resolve); c.socket.once('close', resolve) })
        if (c.closed || c.socket.destroyed) break
        taken += chunk.length
      }
    })()
    const f = await errorThenClose(c)
    await pump
    expect(f).toMatchObject({ S: 'FATAL', C: '08P01' })
    expect(f.M).toContain('exceeds the gateway\'s limit')
    // refused on the length prefix: what got through before the close is the socket buffers', not a message
    expect(taken).toBeLessThan(16 * chunk.length)
    await bystanderStillWorks()
  })

  it('refuses a message length below the minimum', async () => {
    const c = await RawPgClient.connect(gw.port)
    await c.login('agent-1', gw.tokens['agent-1'] as string)
    c.write(Buffer.from([0x51, 0, 0, 0, 2]))
    const f = await errorThenClose(c)
    expect(f.C).toBe('08P01')
    expect(f.M).toContain('invalid message length 2')
    await bystanderStillWorks()
  })

  it('closes a connection whose startup packet claims to be shorter than its header, without a word', async () => {
    const c = await RawPgClient.connect(gw.port)
    c.write(Buffer.from([0, 0, 0, 4, 0, 3, 0, 0]))
    expect(await c.next(5000)).toBeUndefined()
    expect(c.closed).toBe(true)
  })

  it('answers SSLRequest with N when no certificate is configured', async () => {
    const c = await RawPgClient.connect(gw.port)
    c.write(requestPacket(SSL_REQUEST))
    expect(await c.byte()).toBe('N')
    c.close()
    await bystanderStillWorks()
  })

  it('declines GSS encryption and then serves the client normally', async () => {
    const c = await RawPgClient.connect(gw.port)
    c.write(requestPacket(GSSENC_REQUEST))
    expect(await c.byte()).toBe('N')
    await c.login('agent-1', gw.tokens['agent-1'] as string)
    c.write(typed('Q', cstr('SELECT 1')))
    expect((await c.until('Z')).map((m) => m.type).join('')).toBe('TDCZ')
    c.close()
  })

  it('survives random bytes after login, one connection at a time', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 300 }), async (bytes) => {
        const c = await RawPgClient.connect(gw.port)
        await c.login('agent-1', gw.tokens['agent-1'] as string)
        c.write(Buffer.from(bytes))
        // whatever the gateway makes of it, it answers or closes; it does not hang or crash
        await Promise.race([c.next(300).catch(() => undefined), new Promise((r) => setTimeout(r, 300))])
        c.close()
      }),
      { numRuns: 40 },
    )
    await bystanderStillWorks()
  })
})

describe('large messages, sent or received in small pieces', () => {
  it('a 20 MB error the server answers with, and a 32 MiB query trickling in, are read whole without stalling another session', async () => {
    const client = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'], database: 'app' })
    await client.connect()
    let done = false
    let worst = 0
    // the server quotes the input in the error: one ErrorResponse of ~20 MB, arriving in many pieces
    const big = client
      .query(`SELECT repeat('x', 20000000)::int`)
      .then(
        () => 'no error',
        (err: Error) => err.message,
      )
      .finally(() => (done = true))
    while (!done) {
      const t = performance.now()
      await bystanderStillWorks()
      worst = Math.max(worst, performance.now() - t)
      await new Promise((r) => setTimeout(r, 5))
    }
    const message = await big
    expect(message.startsWith('invalid input syntax for type integer: "xxx')).toBe(true)
    expect(message.length).toBeGreaterThan(20_000_000)
    expect((await client.query('SELECT 7 AS v')).rows[0].v).toBe(7)
    // a 32 MiB query (a string literal), sent by a raw client in 16 KiB pieces
    const raw = await RawPgClient.connect(gw.port)
    await raw.login('agent-1', gw.tokens['agent-1'] as string)
    const sql = `SELECT length('${'y'.repeat(32 * 1024 * 1024)}')`
    const query = typed('Q', cstr(sql))
    let sent = 0
    done = false
    const sending = (async () => {
      for (; sent < query.length; sent += 16 * 1024) {
        raw.write(query.subarray(sent, sent + 16 * 1024))
        await new Promise((r) => setImmediate(r))
      }
    })().finally(() => (done = true))
    while (!done) {
      const t = performance.now()
      await bystanderStillWorks()
      worst = Math.max(worst, performance.now() - t)
      await new Promise((r) => setTimeout(r, 5))
    }
    await sending
    let row: string | undefined
    let refusal: string | undefined
    // read whole and judged: longer than the gateway analyses, so refused (fail closed), the session goes on
    for (let m = await raw.next(30_000); m && m.type !== 'Z'; m = await raw.next(30_000)) if (m.type === 'E') refusal = errorFields(m.body).M
    expect(refusal).toMatch(/the statement text is longer than 1048576 characters/)
    raw.write(typed('Q', cstr('SELECT 6 * 7')))
    for (let m = await raw.next(10_000); m && m.type !== 'Z'; m = await raw.next(10_000)) if (m.type === 'D') row = m.body.subarray(6).toString()
    expect(row).toBe('42')
    expect(worst, `another session waited ${worst.toFixed(0)} ms`).toBeLessThan(1000)
    raw.close()
    await client.end()
  }, 120_000)
})

describe('extended protocol state', () => {
  const parse = (name: string, sql: string, types: number[] = []) => {
    const t = Buffer.alloc(2 + 4 * types.length)
    t.writeInt16BE(types.length, 0)
    types.forEach((oid, i) => t.writeInt32BE(oid, 2 + 4 * i))
    return typed('P', Buffer.concat([cstr(name), cstr(sql), t]))
  }
  const bind = (portal: string, stmt: string, params: { format: 0 | 1; value: Buffer }[] = []) => {
    const head = Buffer.alloc(2 + 2 * params.length)
    head.writeInt16BE(params.length, 0)
    params.forEach((p, i) => head.writeInt16BE(p.format, 2 + 2 * i))
    const count = Buffer.alloc(2)
    count.writeInt16BE(params.length, 0)
    const values = params.map((p) => {
      const len = Buffer.alloc(4)
      len.writeInt32BE(p.value.length, 0)
      return Buffer.concat([len, p.value])
    })
    return typed('B', Buffer.concat([cstr(portal), cstr(stmt), head, count, ...values, Buffer.from([0, 0])]))
  }
  const execute = (portal: string) => typed('E', Buffer.concat([cstr(portal), Buffer.alloc(4)]))
  const sync = typed('S', Buffer.alloc(0))

  it('records binary parameters as base64', async () => {
    const c = await RawPgClient.connect(gw.port)
    await c.login('agent-1', gw.tokens['agent-1'] as string)
    c.write(Buffer.concat([parse('', 'SELECT length($1::bytea) AS n', [17]), bind('', '', [{ format: 1, value: Buffer.from([1, 2, 3]) }]), execute(''), sync]))
    const msgs = await c.until('Z')
    expect(msgs.map((m) => m.type).join('')).toBe('12DCZ')
    c.close()
    const reqs = (await gw.audit()).filter((e) => e.type === 'request' && e.text === 'SELECT length($1::bytea) AS n')
    // judged twice: when its text arrived (Parse), and when it ran, with its parameters (Execute)
    expect(reqs).toMatchObject([{ attrs: { phase: 'parse' }, verdict: 'allow' }, { attrs: { phase: 'execute' }, params: ['base64:AQID'], verdict: 'allow' }])
  })

  it('refuses statement and portal names the server would truncate or convert, so it cannot be made to judge another statement', async () => {
    await cluster.psql('CREATE TABLE IF NOT EXISTS victim_names (v int); INSERT INTO victim_names VALUES (1)', 'app_scram')
    const c = await RawPgClient.connect(gw.port)
    await c.login('agent-1', gw.tokens['agent-1'] as string)
    const a63 = 'a'.repeat(63)
    const close = (kind: 'S' | 'P', name: string) => typed('C', Buffer.concat([Buffer.from(kind), cstr(name)]))
    // the server's a63 and a63+X are one statement; the gateway refuses the longer name everywhere
    c.write(Buffer.concat([parse(a63, 'SELECT 1'), sync]))
    expect((await c.until('Z')).map((m) => m.type).join('')).toBe('1Z')
    for (const msg of [close('S', `${a63}X`), parse(`${a63}X`, 'DELETE FROM victim_names'), bind(`${a63}X`, a63), bind('', `${a63}X`), execute(`${a63}X`), parse('naïve', 'SELECT 1')]) {
      c.write(Buffer.concat([msg, sync]))
      const msgs = await c.until('Z')
      const err = msgs.find((m) => m.type === 'E')
      expect(err && errorFields(err.body)).toMatchObject({ C: '0A000', M: expect.stringContaining('at most 63 bytes') })
    }
    // the 63-byte statement is still the SELECT, and still runs
    c.write(Buffer.concat([bind('', a63), execute(''), sync]))
    expect((await c.until('Z')).map((m) => m.type).join('')).toBe('2DCZ')
    c.close()
    expect(await cluster.psql('SELECT count(*) FROM victim_names')).toBe('1')
  })

  it('runs pipelined named statements and portals in order', async () => {
    const c = await RawPgClient.connect(gw.port)
    await c.login('agent-1', gw.tokens['agent-1'] as string)
    c.write(Buffer.concat([parse('s1', "SELECT 'first' AS v"), parse('s2', "SELECT 'second' AS v"), bind('p2', 's2'), bind('p1', 's1'), execute('p1'), execute('p2'), sync]))
    const msgs = await c.until('Z')
    expect(msgs.map((m) => m.type).join('')).toBe('1122DCDCZ')
    const rows = msgs.filter((m) => m.type === 'D').map((m) => m.body.toString('utf8', 6))
    expect(rows).toEqual(['first', 'second'])
    c.close()
  })

  it('does not track statements the upstream skipped after an error (no drift to a forbidden statement)', async () => {
    await cluster.psql('CREATE TABLE IF NOT EXISTS victim (v int); INSERT INTO victim VALUES (1), (2), (3)', 'app_scram')
    const c = await RawPgClient.connect(gw.port)
    await c.login('agent-1', gw.tokens['agent-1'] as string)
    const flush = typed('H', Buffer.alloc(0))
    c.write(Buffer.concat([parse('bad0', 'SELECT * FROM nosuch'), flush]))
    await c.until('E')
    // the upstream skips this Parse (it waits for Sync); the gateway must not record "s" either
    c.write(Buffer.concat([parse('s', 'SELECT 1'), sync]))
    await c.until('Z')
    // a Parse is judged when its text arrives: the TRUNCATE never reaches the upstream
    c.write(Buffer.concat([parse('s', 'TRUNCATE victim'), parse('bad1', 'SELECT * FROM nosuch'), sync]))
    const refused = await c.until('Z')
    expect(errorFields((refused.find((m) => m.type === 'E') as { body: Buffer }).body)).toMatchObject({ C: '42501', M: expect.stringContaining('test/no-drop') })
    c.write(Buffer.concat([parse('bad2', 'SELECT * FROM nosuch'), sync]))
    await c.until('Z')
    c.write(Buffer.concat([bind('p', 's'), execute('p'), sync]))
    const msgs = await c.until('Z')
    expect(errorFields((msgs.find((m) => m.type === 'E') as { body: Buffer }).body)).toMatchObject({ C: '26000', M: expect.stringContaining('"s" does not exist') })
    c.close()
    expect(await cluster.psql('SELECT count(*) FROM victim')).toBe('3')
  })

  it('judges a pipelined query with the settings an earlier statement leaves, not the ones before it', async () => {
    await cluster.psql('CREATE TABLE IF NOT EXISTS victim2 (v int); INSERT INTO victim2 VALUES (1), (2)', 'app_scram')
    const c = await RawPgClient.connect(gw.port)
    await c.login('agent-1', gw.tokens['agent-1'] as string)
    c.write(typed('Q', cstr('SET standard_conforming_strings = 1')))
    expect((await c.until('Z')).map((m) => m.type).join('')).toBe('CZ')
    // same text up to the literal: must not reuse the cached (safe) verdict of "= 1"
    c.write(Buffer.concat([typed('Q', cstr('SET standard_conforming_strings = 0')), typed('Q', cstr("SELECT 'x\\' -- '; TRUNCATE victim2; --"))]))
    const first = await c.until('Z')
    expect(errorFields((first.find((m) => m.type === 'E') as { body: Buffer }).body).C).toBe('0A000')
    await c.until('Z')
    c.close()
    expect(await cluster.psql('SELECT count(*) FROM victim2')).toBe('2')
  })

  it('caps the prepared statements one session may hold, with an error the session survives', async () => {
    const capped = await startGateway({ upstream: pgUpstream(cluster), connection: { limits: { postgres: { preparedStatements: 3 } } } })
    try {
      const c = await RawPgClient.connect(capped.port)
      await c.login('agent-1', capped.tokens['agent-1'] as string)
      c.write(Buffer.concat([parse('a', 'SELECT 1'), parse('b', 'SELECT 2'), parse('c', 'SELECT 3'), sync]))
      expect((await c.until('Z')).map((m) => m.type).join('')).toBe('111Z')
      c.write(Buffer.concat([parse('d', 'SELECT 4'), sync]))
      const over = await c.until('Z')
      expect(errorFields((over.find((m) => m.type === 'E') as { body: Buffer }).body)).toMatchObject({ C: '54000', M: expect.stringContaining('too many prepared statements') })
      // re-parsing a held name is fine once it is closed; the session stays usable
      c.write(Buffer.concat([typed('C', Buffer.concat([Buffer.from('S'), cstr('a')])), parse('d', 'SELECT 4'), bind('', 'd'), execute(''), sync]))
      expect((await c.until('Z')).map((m) => m.type).join('')).toBe('312DCZ')
      c.close()
    } finally {
      await capped.stop()
    }
  })

  it('judges an Execute by the statement the upstream really holds after a failed re-Parse', async () => {
    const c = await RawPgClient.connect(gw.port)
    await c.login('agent-1', gw.tokens['agent-1'] as string)
    c.write(Buffer.concat([parse('s', 'SELECT 1'), sync]))
    await c.until('Z')
    // Re-parsing an existing name fails upstream (42P05); the gateway must keep judging "s" as SELECT 1.
    c.write(Buffer.concat([parse('s', 'DROP TABLE items'), sync]))
    const failed = await c.until('Z')
    expect(errorFields((failed.find((m) => m.type === 'E') as { body: Buffer }).body).C).toBe('42P05')
    c.write(Buffer.concat([bind('', 's'), execute(''), sync]))
    const ran = await c.until('Z')
    expect(ran.map((m) => m.type).join('')).toBe('2DCZ')
    // a denied Parse never creates the statement: the name is free, as after any failed Parse
    c.write(Buffer.concat([parse('d', 'TRUNCATE items'), sync]))
    const denied = await c.until('Z')
    expect(errorFields((denied.find((m) => m.type === 'E') as { body: Buffer }).body)).toMatchObject({ C: '42501', M: expect.stringContaining('test/no-drop') })
    c.write(Buffer.concat([parse('d', 'SELECT 1'), sync]))
    expect((await c.until('Z')).map((m) => m.type).join('')).toBe('1Z')
    c.write(Buffer.concat([bind('', 'd'), execute(''), sync]))
    expect((await c.until('Z')).map((m) => m.type).join('')).toBe('2DCZ')
    c.close()
  })
})

describe('protocol features the gateway does not let through', () => {
  it('judges a FunctionCall as the function its OID names; an unknown OID gets 42883, a malformed one ends only that session', async () => {
    const c = await RawPgClient.connect(gw.port)
    await c.login('agent-1', gw.tokens['agent-1'] as string)
    const call = (oid: number, args: Buffer[] = []) => {
      const head = Buffer.alloc(4 + 2 + 2)
      head.writeUInt32BE(oid, 0)
      head.writeInt16BE(0, 4) // all arguments as text
      head.writeInt16BE(args.length, 6)
      const parts = args.map((a) => {
        const len = Buffer.alloc(4)
        len.writeInt32BE(a.length, 0)
        return Buffer.concat([len, a])
      })
      return typed('F', Buffer.concat([head, ...parts, Buffer.from([0, 0])]))
    }
    const abs = Number(await cluster.psql("SELECT 'pg_catalog.int4abs(int4)'::regprocedure::oid"))
    c.write(call(abs, [Buffer.from('-42')]))
    const answered = await c.until('Z')
    expect(answered.map((m) => m.type).join('')).toBe('VZ')
    const v = answered[0] as { body: Buffer }
    expect(v.body.toString('utf8', 4, 4 + v.body.readInt32BE(0))).toBe('42')
    const recorded = (await gw.audit()).find((e) => e.type === 'request' && e.text === 'SELECT "pg_catalog"."int4abs"($1)')
    expect(recorded).toMatchObject({ verdict: 'allow', params: ['-42'], attrs: { functionCall: { oid: abs, function: 'pg_catalog.int4abs' } } })
    c.write(call(4_000_000_000))
    const unknown = await c.until('Z')
    expect(errorFields((unknown.find((m) => m.type === 'E') as { body: Buffer }).body)).toMatchObject({ C: '42883', M: expect.stringContaining('function with OID 4000000000 does not exist') })
    c.write(typed('Q', cstr('SELECT 1')))
    expect((await c.until('Z')).map((m) => m.type).join('')).toBe('TDCZ')
    // arguments that run past the message
    c.write(typed('F', Buffer.from([0, 0, 6, 62, 0, 0, 0, 1, 0, 0, 0, 9])))
    const broken = await c.until('E')
    expect(errorFields((broken[broken.length - 1] as { body: Buffer }).body)).toMatchObject({ S: 'FATAL', C: '08P01' })
    c.close()
    await bystanderStillWorks()
  })

  it('judges a protocol Execute or a SQL EXECUTE of a SQL-PREPAREd name by the statement it runs', async () => {
    await cluster.psql('CREATE TABLE IF NOT EXISTS victim3 (v int); INSERT INTO victim3 VALUES (1), (2)', 'app_scram')
    // a policy that allows PREPARE itself, so the statement really exists upstream
    const lax = await startGateway({
      upstream: pgUpstream(cluster),
      policies: [{ id: 'lax', rules: [{ id: 'read', effect: 'allow', match: { 'sql.statement': ['SELECT', 'PREPARE'] } }] }],
    })
    try {
      const c = await RawPgClient.connect(lax.port)
      await c.login('agent-1', lax.tokens['agent-1'] as string)
      c.write(typed('Q', cstr('PREPARE sneaky AS DELETE FROM victim3')))
      expect((await c.until('Z')).map((m) => m.type).join('')).toBe('CZ')
      // protocol-level names are the client's own through the gateway: a Bind cannot reach a SQL-level one
      c.write(Buffer.concat([typed('B', Buffer.concat([cstr(''), cstr('sneaky'), Buffer.from([0, 0, 0, 0, 0, 0])])), typed('E', Buffer.concat([cstr(''), Buffer.alloc(4)])), typed('S', Buffer.alloc(0))]))
      const msgs = await c.until('Z')
      const err = msgs.find((m) => m.type === 'E')
      expect(err && errorFields(err.body)).toMatchObject({ C: '26000', M: expect.stringContaining('"sneaky" does not exist') })
      // the same through SQL EXECUTE, and a name the gateway never saw succeed
      c.write(typed('Q', cstr('EXECUTE sneaky')))
      expect(errorFields(((await c.until('Z')).find((m) => m.type === 'E') as { body: Buffer }).body)).toMatchObject({ C: '42501', M: expect.stringContaining('default-deny') })
      c.write(typed('Q', cstr('EXECUTE never_prepared')))
      expect(errorFields(((await c.until('Z')).find((m) => m.type === 'E') as { body: Buffer }).body)).toMatchObject({ C: '26000', M: expect.stringContaining('not created through the gateway') })
      // a PREPARE that fails upstream (the name exists) does not change what the name means
      c.write(typed('Q', cstr('PREPARE sneaky AS SELECT 1')))
      expect(errorFields(((await c.until('Z')).find((m) => m.type === 'E') as { body: Buffer }).body)).toMatchObject({ C: '42P05' })
      c.write(typed('Q', cstr('EXECUTE sneaky')))
      expect(errorFields(((await c.until('Z')).find((m) => m.type === 'E') as { body: Buffer }).body)).toMatchObject({ C: '42501' })
      // an allowed prepared SELECT runs through EXECUTE
      c.write(typed('Q', cstr('PREPARE fine AS SELECT count(*) FROM victim3')))
      await c.until('Z')
      c.write(typed('Q', cstr('EXECUTE fine')))
      expect((await c.until('Z')).map((m) => m.type).join('')).toBe('TDCZ')
      c.close()
    } finally {
      await lax.stop()
    }
    expect(await cluster.psql('SELECT count(*) FROM victim3')).toBe('2')
  })

  it('refuses statements that would make its parse differ from the server\'s', async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'], database: 'app' })
    await c.connect()
    await expect(c.query('SET standard_conforming_strings = off')).rejects.toMatchObject({ code: '0A000', message: expect.stringContaining('standard_conforming_strings off') })
    await expect(c.query("SELECT set_config('standard_conforming_strings', 'off', false)")).rejects.toMatchObject({ code: '0A000' })
    await expect(c.query("SET client_encoding = 'SJIS'")).rejects.toMatchObject({ code: '0A000' })
    expect((await c.query('SHOW standard_conforming_strings')).rows[0].standard_conforming_strings).toBe('on')
    await c.end()
  })

  it('refuses statements while the client encoding can hide quotes', async () => {
    const r = await psql({ port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] }, 'SELECT 1;\n', [], { PGCLIENTENCODING: 'SJIS' })
    expect(r.stdout).toBe('')
    expect(r.stderr).toContain('client_encoding "SJIS" is not supported')
  })

  it('refuses replication connections', async () => {
    const c = await RawPgClient.connect(gw.port)
    c.write(startupPacket({ user: 'agent-1', database: 'x', replication: 'database' }))
    const f = await errorThenClose(c)
    expect(f).toMatchObject({ C: '0A000', M: expect.stringContaining('replication') })
  })

  it('keeps many concurrent sessions apart', async () => {
    const clients = await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        const c = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'], database: 'app' })
        await c.connect()
        return { c, i }
      }),
    )
    const results = await Promise.all(clients.map(({ c, i }) => c.query('SELECT $1::int AS i, pg_backend_pid() AS pid', [i])))
    expect(results.map((r) => r.rows[0].i)).toEqual(clients.map(({ i }) => i))
    expect(new Set(results.map((r) => r.rows[0].pid)).size).toBe(10)
    await Promise.all(clients.map(({ c }) => c.end()))
  })
})
