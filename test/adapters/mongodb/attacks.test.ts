/**
 * Attacks on the mongodb adapter at the wire: messages no driver sends, trying to make what the
 * gateway judges differ from what the server runs (duplicate fields, array element names, field
 * order, aliases, document sequences), to reach the upstream without a login or with another
 * session's cursor, or to hurt other sessions (bad lengths, truncated and deeply nested BSON,
 * compression, legacy opcodes, floods of malformed messages). Each is answered as a MongoDB error
 * or the connection is closed, is recorded, and leaves other sessions working.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BSON, Code, Long, type Document } from 'bson'
import fc from 'fast-check'
import { checkBson, readOpMsg } from '@gatehouse/adapter-mongodb'
import { RawMongo, startMongoGateway, type MongoGateway } from '../../fixtures/mongo-gateway.js'

let gw: MongoGateway

beforeAll(async () => {
  gw = await startMongoGateway(
    `
      - { id: no-secrets, effect: deny, actions: [mongo.command], match: { mongo.collections: [secrets] } }
      - { id: all, effect: allow, actions: [mongo.command] }
`,
    { include: ['mongo-js', 'mongo-admin', 'mongo-write'] },
  )
  gw.stub.seed('app', 'orders', [{ _id: 1 }, { _id: 2 }, { _id: 3 }])
  gw.stub.seed('app', 'secrets', [{ _id: 1, key: 'hunter2' }])
}, 60_000)

afterAll(async () => {
  await gw?.close()
})

/** Raw BSON from [name, type, value bytes] elements: what a hostile client can write. */
function bsonOf(elements: [string, number, Buffer][]): Buffer {
  const body = Buffer.concat(elements.map(([name, type, value]) => Buffer.concat([Buffer.from([type]), Buffer.from(`${name}\0`), value])))
  const len = Buffer.alloc(4)
  len.writeInt32LE(body.length + 5, 0)
  return Buffer.concat([len, body, Buffer.from([0])])
}
const str = (s: string): Buffer => {
  const b = Buffer.from(`${s}\0`)
  const len = Buffer.alloc(4)
  len.writeInt32LE(b.length, 0)
  return Buffer.concat([len, b])
}
const doc = (d: Document): Buffer => Buffer.from(BSON.serialize(d))

async function loggedIn(identity = 'agent-1'): Promise<RawMongo> {
  const raw = await gw.raw()
  const ok = await raw.login(identity, identity === 'agent-1' ? gw.tokens.agent : gw.tokens.other)
  expect(ok?.ok).toBe(1)
  return raw
}

/** Another session works: what every attack must leave true. */
async function othersStillWork(): Promise<void> {
  const c = await gw.client('agent-3')
  expect(await c.db('app').collection('orders').countDocuments()).toBe(3)
}

describe('reading what the server reads', () => {
  it('a command with its name twice is refused (the server would run the first, a decoder keeps the last)', async () => {
    const raw = await loggedIn()
    const before = gw.stub.received.length
    const reply = await raw.command(bsonOf([['find', 0x02, str('orders')], ['find', 0x02, str('secrets')], ['$db', 0x02, str('app')]]))
    expect(reply).toMatchObject({ ok: 0, code: 22, codeName: 'InvalidBSON' })
    expect(String(reply?.errmsg)).toMatch(/"find" appears twice/)
    // nested in a filter, too
    const nested = await raw.command(bsonOf([['find', 0x02, str('orders')], ['filter', 0x03, bsonOf([['_id', 0x10, Buffer.from([1, 0, 0, 0])], ['_id', 0x10, Buffer.from([2, 0, 0, 0])]])], ['$db', 0x02, str('app')]]))
    expect(nested).toMatchObject({ ok: 0, codeName: 'InvalidBSON' })
    expect(gw.stub.received.length).toBe(before)
    // the connection stays usable
    expect(await raw.command({ ping: 1, $db: 'admin' })).toMatchObject({ ok: 1 })
    expect(await gw.auditFind((e) => e.type === 'protocol' && e.event === 'mongo.malformed' && String(e.reason).includes('appears twice'))).toBeDefined()
  })

  it('array elements named out of order, and number-named fields after others, are refused', async () => {
    const raw = await loggedIn()
    const arr = bsonOf([['1', 0x02, str('a')], ['0', 0x02, str('b')]])
    expect(await raw.command(bsonOf([['insert', 0x02, str('orders')], ['documents', 0x04, bsonOf([['0', 0x03, bsonOf([['tags', 0x04, arr]])]])], ['$db', 0x02, str('app')]]))).toMatchObject({ ok: 0, codeName: 'InvalidBSON' })
    // {"b": 1, "2024": 2} would be sent on as {"2024": 2, "b": 1}
    const reordered = bsonOf([['b', 0x10, Buffer.from([1, 0, 0, 0])], ['2024', 0x10, Buffer.from([2, 0, 0, 0])]])
    const reply = await raw.command(bsonOf([['insert', 0x02, str('orders')], ['documents', 0x04, bsonOf([['0', 0x03, reordered]])], ['$db', 0x02, str('app')]]))
    expect(String(reply?.errmsg)).toMatch(/place in the document would change/)
    // a command whose first field is a number would be read as another command after decoding
    expect(await raw.command(bsonOf([['find', 0x02, str('orders')], ['7', 0x10, Buffer.from([1, 0, 0, 0])], ['$db', 0x02, str('app')]]))).toMatchObject({ ok: 0, codeName: 'InvalidBSON' })
  })

  it('document sequences are judged with the body: a $where in an update sent as a sequence is denied', async () => {
    const raw = await loggedIn()
    const before = gw.stub.received.length
    const body = RawMongo.opMsgBody(doc({ update: 'orders', $db: 'app' }), 0, [{ id: 'updates', docs: [doc({ q: { $where: 'true' }, u: { $set: { x: 1 } } })] }])
    raw.write(raw.message(2013, body))
    const reply = BSON.deserialize((await raw.next())?.body.subarray(5) as Buffer)
    expect(reply).toMatchObject({ ok: 0, code: 13 })
    expect(String(reply.errmsg)).toMatch(/mongo-js/)
    // a sequence that repeats a body field is refused, as the server refuses it
    const dup = RawMongo.opMsgBody(doc({ insert: 'orders', documents: [{ _id: 9 }], $db: 'app' }), 0, [{ id: 'documents', docs: [doc({ _id: 10 })] }])
    raw.write(raw.message(2013, dup))
    expect(BSON.deserialize((await raw.next())?.body.subarray(5) as Buffer)).toMatchObject({ ok: 0, codeName: 'FailedToParse' })
    expect(gw.stub.received.length).toBe(before)
  })

  it('aliases and other spellings are judged as the server reads them', async () => {
    const raw = await loggedIn()
    // findandmodify is findAndModify: a write, denied by mongo-write
    expect(await raw.command({ findandmodify: 'orders', query: { _id: 1 }, remove: true, $db: 'app' })).toMatchObject({ ok: 0, code: 13 })
    // a name the server does not know (it matches names exactly) is unknown to the gateway: denied by mongo-admin
    const upper = await raw.command({ FIND: 'secrets', $db: 'app' })
    expect(upper).toMatchObject({ ok: 0, code: 13 })
    expect(String(upper?.errmsg)).toMatch(/mongo-admin\/unknown|no-secrets/)
    // JavaScript as a BSON code value (not under $where) still counts
    expect(await raw.command({ find: 'orders', filter: { _id: new Code('function() { return true }') }, $db: 'app' })).toMatchObject({ ok: 0, code: 13 })
    // a $lookup from another database
    const cross = await raw.command({ aggregate: 'orders', pipeline: [{ $lookup: { from: { db: 'app', coll: 'secrets' }, pipeline: [], as: 's' } }], cursor: {}, $db: 'app' })
    expect(cross).toMatchObject({ ok: 0, code: 13 })
  })

  it('a command without $db, with unknown required flags, or with a checksum is answered with an error', async () => {
    const raw = await loggedIn()
    expect(await raw.command({ find: 'orders' })).toMatchObject({ ok: 0, codeName: 'FailedToParse' })
    expect(await raw.command(doc({ ping: 1, $db: 'admin' }), 1 << 4)).toMatchObject({ ok: 0, codeName: 'FailedToParse' })
    expect(await raw.command(doc({ ping: 1, $db: 'admin' }), 1)).toMatchObject({ ok: 0, codeName: 'FailedToParse' })
    expect(await raw.command({ ping: 1, $db: 'admin' })).toMatchObject({ ok: 1 })
  })
})

describe('login and cursors', () => {
  it('nothing reaches the upstream before login, and a second login on a connection is refused', async () => {
    const raw = await gw.raw()
    const before = gw.stub.received.length
    expect(await raw.command({ find: 'orders', $db: 'app' })).toMatchObject({ ok: 0, code: 13 })
    expect(await raw.command({ getMore: Long.fromNumber(1000), collection: 'orders', $db: 'app' })).toMatchObject({ ok: 0, code: 13 })
    expect(gw.stub.received.length).toBe(before)
    expect((await raw.login('agent-1', gw.tokens.agent))?.ok).toBe(1)
    expect(await raw.login('agent-3', gw.tokens.other)).toMatchObject({ ok: 0, codeName: 'AuthenticationFailed' })
    expect(await gw.auditFind((e) => e.type === 'protocol' && e.event === 'auth.refused')).toBeDefined()
  })

  it('a connection that keeps sending commands without logging in is recorded once, then closed', async () => {
    const raw = await gw.raw()
    await raw.command({ hello: 1, $db: 'admin' })
    let answered = 0
    while (answered < 100 && (await raw.command({ find: 'orders', $db: 'app' }))) answered++
    expect(answered).toBe(16)
    expect(raw.closed).toBe(true)
  })

  it('a proof made with the wrong token fails, and the connection closes once its attempts are spent', async () => {
    const raw = await gw.raw()
    let closedAfter = 0
    for (let i = 1; i <= 10; i++) {
      const r = await raw.login('agent-1', 'wrong-token')
      if (!r) {
        closedAfter = i
        break
      }
      expect(r).toMatchObject({ ok: 0, codeName: 'AuthenticationFailed' })
    }
    expect(closedAfter).toBeGreaterThan(1)
    await othersStillWork()
  })

  it('forged, exhausted and foreign cursor ids are refused; killCursors naming one foreign id kills none', async () => {
    const a = await loggedIn()
    const b = await loggedIn('agent-3')
    const opened = await a.command({ find: 'orders', batchSize: 1, $db: 'app' })
    const id = (opened?.cursor as { id: Long }).id
    expect(id.isZero()).toBe(false)
    const before = gw.stub.received.length
    expect(await b.command({ getMore: id, collection: 'orders', $db: 'app' })).toMatchObject({ ok: 0, code: 13 })
    expect(await a.command({ getMore: id.add(1), collection: 'orders', $db: 'app' })).toMatchObject({ ok: 0, code: 13 })
    expect(await a.command({ getMore: id, collection: 'orders', $db: 'other' })).toMatchObject({ ok: 0, code: 13 })
    expect(await a.command({ killCursors: 'orders', cursors: [id, id.add(7)], $db: 'app' })).toMatchObject({ ok: 0, code: 13 })
    expect(await a.command({ getMore: 5, collection: 'orders', $db: 'app' })).toMatchObject({ ok: 0, code: 13 })
    expect(gw.stub.received.length).toBe(before)
    // the owner reads it to its end; then it is gone for the owner too
    const rest = await a.command({ getMore: id, collection: 'orders', $db: 'app' })
    expect((rest?.cursor as { nextBatch: unknown[]; id: Long }).nextBatch).toHaveLength(2)
    expect(await a.command({ getMore: id, collection: 'orders', $db: 'app' })).toMatchObject({ ok: 0, code: 13 })
  })
})

describe('unacknowledged commands (moreToCome)', () => {
  it('an allowed one is sent on without an answer; a refused one closes the connection', async () => {
    const raw = await loggedIn()
    raw.write(raw.message(2013, RawMongo.opMsgBody(doc({ find: 'orders', $db: 'app' }), 2)))
    expect(await raw.command({ ping: 1, $db: 'admin' })).toMatchObject({ ok: 1 })
    expect(gw.stub.received.at(-1)?.command).toBe('find')
    const before = gw.stub.received.length
    raw.write(raw.message(2013, RawMongo.opMsgBody(doc({ delete: 'orders', deletes: [{ q: {}, limit: 0 }], $db: 'app' }), 2)))
    await raw.closedPromise
    expect(gw.stub.received.length).toBe(before)
    expect(gw.stub.documents('app', 'orders')).toHaveLength(3)
  })
})

describe('malformed and unsupported messages', () => {
  it('a length shorter than a header or beyond the limit closes the connection, recorded', async () => {
    for (const length of [3, 15, 0x7fffffff, -1]) {
      const raw = await gw.raw()
      const bytes = Buffer.alloc(16)
      bytes.writeInt32LE(length, 0)
      raw.write(bytes)
      await raw.closedPromise
    }
    expect(await gw.auditFind((e) => e.type === 'protocol' && String(e.reason).includes('larger than this connection takes'))).toBeDefined()
    await othersStillWork()
  })

  it('truncated BSON inside a sound message is answered InvalidBSON or FailedToParse; the connection goes on', async () => {
    const raw = await loggedIn()
    const good = doc({ find: 'orders', $db: 'app' })
    for (const cut of [5, 10, good.length - 1]) {
      const bad = Buffer.from(good.subarray(0, cut))
      expect(await raw.command(bad)).toMatchObject({ ok: 0 })
    }
    // a document that claims more bytes than it has
    const lying = Buffer.from(good)
    lying.writeInt32LE(good.length + 50, 0)
    expect(await raw.command(lying)).toMatchObject({ ok: 0 })
    expect(await raw.command({ ping: 1, $db: 'admin' })).toMatchObject({ ok: 1 })
  })

  it('a nesting bomb is refused without a crash', async () => {
    const raw = await loggedIn()
    let nested: Buffer = bsonOf([['x', 0x10, Buffer.from([1, 0, 0, 0])]])
    for (let i = 0; i < 5000; i++) nested = bsonOf([['a', 0x03, nested]])
    const reply = await raw.command(bsonOf([['find', 0x02, str('orders')], ['filter', 0x03, nested], ['$db', 0x02, str('app')]]))
    expect(reply).toMatchObject({ ok: 0, codeName: 'InvalidBSON' })
    expect(String(reply?.errmsg)).toMatch(/nested deeper than 100/)
    await othersStillWork()
  })

  it('OP_COMPRESSED, legacy opcodes and unknown opcodes close the connection, recorded; OP_QUERY beyond the handshake is refused', async () => {
    for (const [opCode, event] of [
      [2012, 'mongo.compressed'],
      [2002, 'mongo.opcode'],
      [9999, 'mongo.opcode'],
    ] as const) {
      const raw = await loggedIn()
      raw.write(raw.message(opCode, Buffer.alloc(32)))
      await raw.closedPromise
      expect(await gw.auditFind((e) => e.type === 'protocol' && e.event === event)).toBeDefined()
    }
    const raw = await gw.raw()
    const q = Buffer.concat([Buffer.alloc(4), Buffer.from('app.orders\0'), Buffer.alloc(8), doc({ _id: 1 })])
    raw.write(raw.message(2004, q))
    const reply = await raw.next()
    expect(reply?.opCode).toBe(1)
    expect(BSON.deserialize((reply?.body as Buffer).subarray(20))).toMatchObject({ ok: 0, code: 352 })
    await othersStillWork()
  })

  it('commands sent back to back in one write are answered in order, each judged', async () => {
    const raw = await loggedIn()
    const msgs = [doc({ count: 'orders', $db: 'app' }), doc({ find: 'secrets', $db: 'app' }), doc({ count: 'orders', $db: 'app' })].map((d, i) => raw.message(2013, RawMongo.opMsgBody(d), 100 + i))
    raw.write(Buffer.concat(msgs))
    const replies = [await raw.next(), await raw.next(), await raw.next()]
    expect(replies.map((r) => r?.responseTo)).toEqual([100, 101, 102])
    const docs = replies.map((r) => BSON.deserialize((r?.body as Buffer).subarray(5)))
    expect(docs.map((d) => d.ok)).toEqual([1, 0, 1])
    expect(docs[1]).toMatchObject({ code: 13 })
  })

  it('a message sent a byte at a time is read whole', async () => {
    const raw = await loggedIn()
    const msg = raw.message(2013, RawMongo.opMsgBody(doc({ count: 'orders', $db: 'app' })))
    for (const byte of msg) {
      raw.write(Buffer.from([byte]))
      await new Promise((r) => setImmediate(r))
    }
    const reply = await raw.next()
    expect(BSON.deserialize((reply?.body as Buffer).subarray(5))).toMatchObject({ ok: 1, n: 3 })
  })

  it('a burst of random bytes on many connections harms no other session', async () => {
    const rng = fc.sample(fc.uint8Array({ minLength: 16, maxLength: 400 }), { numRuns: 60, seed: 42 })
    await Promise.all(
      rng.map(async (bytes, i) => {
        const raw = i % 2 === 0 ? await gw.raw() : await loggedIn()
        const b = Buffer.from(bytes)
        b.writeInt32LE(Math.min(b.length, 400), 0)
        b.writeInt32LE(2013, 12)
        raw.write(b)
        await raw.next(300)
        raw.destroy()
      }),
    )
    await othersStillWork()
  })
})

describe('the decoder under fast-check', () => {
  const keyArb = fc.oneof(fc.constantFrom('a', 'b', '_id', '$where', '0', '1', '2024', '__proto__', '$ref', '$id', '$db'), fc.string({ maxLength: 6 }).filter((s) => !s.includes('\0')))
  type El = [string, number, Buffer]
  const leaf: fc.Arbitrary<El> = fc.oneof(
    fc.tuple(keyArb, fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 })).map(([k, n]): El => {
      const b = Buffer.alloc(4)
      b.writeInt32LE(n, 0)
      return [k, 0x10, b]
    }),
    fc.tuple(keyArb, fc.double()).map(([k, n]): El => {
      const b = Buffer.alloc(8)
      b.writeDoubleLE(n, 0)
      return [k, 0x01, b]
    }),
    fc.tuple(keyArb, fc.string({ maxLength: 8 })).map(([k, s]): El => [k, 0x02, str(s)]),
    fc.tuple(keyArb, fc.boolean()).map(([k, v]): El => [k, 0x08, Buffer.from([v ? 1 : 0])]),
    fc.tuple(keyArb, fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })).map(([k, v]): El => {
      const b = Buffer.alloc(8)
      b.writeBigInt64LE(v, 0)
      return [k, 0x12, b]
    }),
    keyArb.map((k): El => [k, 0x0a, Buffer.alloc(0)]),
  )
  const element: fc.Arbitrary<El> = fc.letrec<{ el: El }>((tie) => ({
    el: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, fc.tuple(keyArb, fc.array(tie('el'), { maxLength: 4 }), fc.boolean()).map(([k, els, asArray]): El => [k, asArray ? 0x04 : 0x03, bsonOf(asArray ? els.map(([, t, v], i) => [String(i), t, v]) : els)])),
  })).el

  it('whatever the checker accepts decodes and encodes back to the same bytes (judged is what is sent)', () => {
    fc.assert(
      fc.property(fc.array(element, { maxLength: 6 }), (els) => {
        const bytes = bsonOf(els)
        if (checkBson(bytes, 100) !== undefined) return
        let decoded: Document
        try {
          decoded = BSON.deserialize(bytes, { promoteValues: false, bsonRegExp: true })
        } catch {
          return // invalid UTF-8 in a value: answered as InvalidBSON by the session
        }
        expect(Buffer.from(BSON.serialize(decoded)).equals(bytes)).toBe(true)
      }),
      { numRuns: 3000, seed: 7 },
    )
  })

  it('no input makes the message reader throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 0, max: 0xffffffff }), (bytes, flags) => {
        const body = Buffer.concat([Buffer.alloc(4), Buffer.from(bytes)])
        body.writeUInt32LE(flags & 0x3, 0)
        const r = readOpMsg(body, 100)
        if (!('problem' in r)) expect(checkBson(r.body, 100)).toBeUndefined()
      }),
      { numRuns: 5000, seed: 11 },
    )
  })
})

describe('what a review of the adapter found', () => {
  it('a document sequence named __proto__ (which would hide the body from the analysis) is refused', async () => {
    const raw = await loggedIn()
    const before = gw.stub.received.length
    const body = RawMongo.opMsgBody(doc({ find: 'orders', filter: { $where: 'sleep(100) || true' }, $db: 'app' }), 0, [{ id: '__proto__', docs: [doc({})] }])
    raw.write(raw.message(2013, body))
    const reply = BSON.deserialize((await raw.next())?.body.subarray(5) as Buffer)
    expect(reply).toMatchObject({ ok: 0, codeName: 'FailedToParse' })
    expect(String(reply.errmsg)).toMatch(/sequence name/)
    expect(gw.stub.received.length).toBe(before)
  })

  it("the server's internal JavaScript operators, other internal names, a collection named by UUID and deep nesting are not let through", async () => {
    const raw = await loggedIn()
    const before = gw.stub.received.length
    const tries: Document[] = [
      { aggregate: 'orders', pipeline: [{ $project: { x: { $_internalJsEmit: { eval: 'function() { sleep(10) }', this: '$$ROOT' } } } }], cursor: {}, $db: 'app' },
      { aggregate: 'orders', pipeline: [{ $_internalInhibitOptimization: {} }], cursor: {}, $db: 'app' },
      { find: new BSON.UUID(), $db: 'app' },
    ]
    let deep: Document[] = [{ $unionWith: 'secrets' }]
    for (let i = 0; i < 30; i++) deep = [{ $lookup: { from: 'orders', pipeline: deep, as: `l${i}` } }]
    tries.push({ aggregate: 'orders', pipeline: deep, cursor: {}, $db: 'app' })
    for (const t of tries) {
      const r = await raw.command(t)
      expect(r, JSON.stringify(Object.keys(t))).toMatchObject({ ok: 0, code: 13 })
    }
    expect(gw.stub.received.length).toBe(before)
  })

  it('a change stream on a whole database reads every collection of it; killSessions is administration', async () => {
    const raw = await loggedIn()
    const r = await raw.command({ aggregate: 1, pipeline: [{ $changeStream: {} }], cursor: {}, $db: 'app' })
    expect(r).toMatchObject({ ok: 0 })
    const rec = await gw.auditFind((e) => e.type === 'request' && String(e.text).includes('$changeStream'))
    expect((rec?.attrs as { mongo: Record<string, unknown> }).mongo).toMatchObject({ reads: ['app.*'], crossCollection: true })
    expect(await raw.command({ killSessions: [], $db: 'admin' })).toMatchObject({ ok: 0, code: 13 })
  })

  it('a DBRef-shaped document is sent as it came, and read as the plain document it is', async () => {
    const raw = await loggedIn()
    // out of the order the library writes a DBRef back: refused
    const reordered = bsonOf([['z', 0x10, Buffer.from([1, 0, 0, 0])], ['$ref', 0x02, str('orders')], ['$id', 0x10, Buffer.from([1, 0, 0, 0])]])
    const r1 = await raw.command(bsonOf([['insert', 0x02, str('refs')], ['documents', 0x04, bsonOf([['0', 0x03, reordered]])], ['$db', 0x02, str('app')]]))
    expect(String(r1?.errmsg)).toMatch(/shaped like a DBRef/)
    // in order it goes through unchanged, and what is inside is analysed: a code value there is JavaScript
    const inOrder = bsonOf([['$ref', 0x02, str('orders')], ['$id', 0x10, Buffer.from([1, 0, 0, 0])], ['note', 0x02, str('x')]])
    expect(await raw.command(bsonOf([['insert', 0x02, str('refs')], ['documents', 0x04, bsonOf([['0', 0x03, inOrder]])], ['$db', 0x02, str('app')]]))).toMatchObject({ ok: 0, code: 13 })
    const rec = await gw.auditFind((e) => e.type === 'request' && String(e.text).includes('"refs"'))
    expect(String(rec?.text)).toContain('"$ref":"orders"')
    const withCode = bsonOf([['$ref', 0x02, str('orders')], ['$id', 0x10, Buffer.from([1, 0, 0, 0])], ['f', 0x0d, str('function() {}')]])
    const r3 = await raw.command(bsonOf([['find', 0x02, str('orders')], ['filter', 0x03, bsonOf([['r', 0x03, withCode]])], ['$db', 0x02, str('app')]]))
    expect(r3).toMatchObject({ ok: 0, code: 13 })
    expect(String(r3?.errmsg)).toMatch(/mongo-js/)
  })

  it('an lsid in use by another identity is refused; connectionStatus names the caller; passwords stay out of the audit', async () => {
    const a = await loggedIn()
    const b = await loggedIn('agent-3')
    const lsid = { id: new BSON.UUID() }
    expect(await a.command({ count: 'orders', lsid, $db: 'app' })).toMatchObject({ ok: 1 })
    const r = await b.command({ count: 'orders', lsid, $db: 'app' })
    expect(r).toMatchObject({ ok: 0, code: 13 })
    expect(String(r?.errmsg)).toMatch(/in use by another identity/)
    // the same identity on another connection may (a driver's session pool does)
    const a2 = await loggedIn()
    expect(await a2.command({ count: 'orders', lsid, $db: 'app' })).toMatchObject({ ok: 1 })
    expect(await a.command({ connectionStatus: 1, $db: 'admin' })).toMatchObject({ ok: 1, authInfo: { authenticatedUsers: [{ user: 'agent-1', db: 'admin' }] } })
    await a.command({ createUser: 'x', pwd: 'hunter2-password', roles: [], $db: 'admin' })
    expect(JSON.stringify(gw.audit())).not.toContain('hunter2-password')
  })

  it('before login, a message over 64 KiB closes the connection; monitor connections from one address are capped', async () => {
    const raw = await gw.raw()
    raw.write(raw.message(2013, RawMongo.opMsgBody(doc({ hello: 1, pad: 'x'.repeat(70_000), $db: 'admin' }))))
    await raw.closedPromise
    const monitors: RawMongo[] = []
    let refusedAt = 0
    for (let i = 1; i <= 40 && refusedAt === 0; i++) {
      const m = await gw.raw()
      monitors.push(m)
      const hello = await m.command({ hello: 1, $db: 'admin' })
      if (!hello) refusedAt = i
    }
    // 32 per address (the drivers of earlier tests hold some of them)
    expect(refusedAt).toBeGreaterThan(0)
    expect(refusedAt).toBeLessThanOrEqual(33)
    expect(await gw.auditFind((e) => e.type === 'protocol' && e.event === 'limit.mongodb.monitor-connections-per-source')).toBeDefined()
    for (const m of monitors) m.destroy()
    await Promise.all(monitors.map((m) => m.closedPromise))
    await new Promise((r) => setTimeout(r, 50))
    const again = await gw.raw()
    expect(await again.command({ hello: 1, $db: 'admin' })).toMatchObject({ ok: 1 })
    await othersStillWork()
  })
})
