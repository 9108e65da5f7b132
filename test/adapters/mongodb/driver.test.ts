/**
 * The mongodb adapter with the real `mongodb` driver (7.x), unmodified, against a gateway in front
 * of the STUB mongod: login with a gateway token (SCRAM-SHA-256, speculative), CRUD, denials as
 * MongoDB errors that leave the connection usable, cross-collection reach judged by every
 * collection, masking in find and through getMore, cursors of other sessions refused, held
 * commands, and the audit of each command.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MongoClient, MongoServerError } from 'mongodb'
import { generateToken, hashToken } from '@gatehouse/core'
import { startMongoGateway, type MongoGateway } from '../../fixtures/mongo-gateway.js'

let gw: MongoGateway
const alice = generateToken()

beforeAll(async () => {
  gw = await startMongoGateway(
    `
      - { id: no-secrets, effect: deny, actions: [mongo.command], match: { mongo.collections: [secrets] }, reason: the secrets collection is off limits }
      - { id: hold-deletes, effect: review, actions: [mongo.command], match: { mongo.command: [delete], mongo.collection: [audit_me] }, reason: deleting needs a person, review: { timeoutSeconds: 60 } }
      - { id: hold-vip, effect: review, actions: [mongo.command], match: { mongo.collections: [users], mongo.filterFields: [vip] }, reason: vip lookups need a person, review: { timeoutSeconds: 60 } }
      - { id: users-masked, effect: allow, actions: [mongo.command], match: { mongo.collections: [users] }, mask: [ssn, card.number, contacts.*.phone] }
      - { id: everything-else, effect: allow, actions: [mongo.command] }
`,
    {
      include: ['mongo-js', 'mongo-admin'],
      extra: `admin:
  listen: "127.0.0.1:0"
  tokens:
    - { id: alice, role: approver, hash: "${hashToken(alice, 'alice')}" }
`,
    },
  )
  gw.stub.seed('app', 'users', [
    { _id: 1, name: 'ann', ssn: '111-11-1111', card: { number: '4111', brand: 'visa' }, contacts: [{ kind: 'home', phone: '555-1' }] },
    { _id: 2, name: 'bob', ssn: '222-22-2222', card: { number: '4222', brand: 'amex' }, contacts: [] },
  ])
  gw.stub.seed('app', 'orders', [
    { _id: 10, user: 1, total: 5 },
    { _id: 11, user: 2, total: 7 },
  ])
  gw.stub.seed('app', 'secrets', [{ _id: 1, key: 'hunter2' }])
  gw.stub.seed(
    'app',
    'many',
    Array.from({ length: 25 }, (_, i) => ({ _id: i, ssn: `ssn-${i}`, n: i })),
  )
}, 60_000)

afterAll(async () => {
  await gw?.close()
})

describe('login', () => {
  it('a gateway token logs in; the stub sees only the gateway credential', async () => {
    const c = await gw.client()
    const before = gw.stub.received.length
    expect(await c.db('app').collection('orders').countDocuments()).toBe(2)
    const seen = gw.stub.received.slice(before)
    expect(seen.length).toBeGreaterThan(0)
    expect(new Set(seen.map((r) => r.user))).toEqual(new Set([gw.stub.user]))
    expect(gw.stub.auths.every((a) => a.user === gw.stub.user)).toBe(true)
    // the token never reaches the upstream, nor the audit
    expect(JSON.stringify(gw.stub.received)).not.toContain(gw.tokens.agent)
    expect(JSON.stringify(gw.audit())).not.toContain(gw.tokens.agent)
  })

  it('a wrong token is refused as AuthenticationFailed and audited', async () => {
    const c = new MongoClient(gw.uri('agent-1').replace(encodeURIComponent(gw.tokens.agent), 'not-the-token'), { serverSelectionTimeoutMS: 3000 })
    await expect(c.connect()).rejects.toThrow(/Authentication failed/)
    await c.close()
    expect(await gw.auditFind((e) => e.type === 'auth.failure' && e.user === 'agent-1')).toBeDefined()
  })

  it('another mechanism is refused with a message naming SCRAM-SHA-256', async () => {
    const c = new MongoClient(gw.uri('agent-1', 'authMechanism=SCRAM-SHA-1'), { serverSelectionTimeoutMS: 3000 })
    await expect(c.connect()).rejects.toThrow(/SCRAM-SHA-256/)
    await c.close()
  })

  it('a client without credentials runs nothing', async () => {
    const c = new MongoClient(`mongodb://127.0.0.1:${gw.port}/?directConnection=true`, { serverSelectionTimeoutMS: 3000 })
    await expect(c.db('app').collection('orders').findOne({})).rejects.toThrow(/requires authentication/)
    await c.close()
  })
})

describe('commands', () => {
  it('insert, find, update, delete go through and are audited with their counts', async () => {
    const c = await gw.client()
    const items = c.db('app').collection('items')
    expect((await items.insertMany([{ _id: 1, v: 1 }, { _id: 2, v: 2 }, { _id: 3, v: 3 }])).insertedCount).toBe(3)
    expect(await items.find({ v: { $gte: 2 } }).toArray()).toEqual([{ _id: 2, v: 2 }, { _id: 3, v: 3 }])
    expect((await items.updateOne({ _id: 1 }, { $set: { v: 10 } })).modifiedCount).toBe(1)
    expect((await items.deleteMany({ v: { $lt: 5 } })).deletedCount).toBe(2)
    expect(gw.stub.documents('app', 'items')).toEqual([{ _id: 1, v: 10 }])
    const insert = (await gw.auditFind((e) => e.type === 'request' && (e.attrs as { mongo?: { command?: string; collection?: string } }).mongo?.command === 'insert' && (e.attrs as { mongo: { collection: string } }).mongo.collection === 'items')) as AuditRecord
    expect(insert.attrs.mongo).toMatchObject({ database: 'app', write: true, writes: ['app.items'], js: false })
    const outcome = await gw.auditFind((e) => e.type === 'outcome' && e.request === insert.request)
    expect(outcome).toMatchObject({ rows: 3 })
    const del = (await gw.auditFind((e) => e.type === 'request' && (e.attrs as { mongo?: { command?: string } }).mongo?.command === 'delete')) as AuditRecord
    expect(del.attrs.mongo.filterFields).toEqual(['v'])
    expect(await gw.auditFind((e) => e.type === 'outcome' && e.request === del.request && e.rows === 2)).toBeDefined()
  })

  it('a denied $where reads as Unauthorized (13) naming the rule, never reaches the upstream, and the connection stays usable', async () => {
    const c = await gw.client()
    const orders = c.db('app').collection('orders')
    const before = gw.stub.received.length
    const err = (await orders.find({ $where: 'this.total > 1' }).toArray().catch((e: unknown) => e)) as MongoServerError
    expect(err).toBeInstanceOf(MongoServerError)
    expect(err.code).toBe(13)
    expect(err.codeName).toBe('Unauthorized')
    expect(err.message).toMatch(/m\/mongo-js\/js/)
    // nested where the server would also run it
    const nested = (await orders.find({ $or: [{ total: 1 }, { $and: [{ $where: 'true' }] }] }).toArray().catch((e: unknown) => e)) as MongoServerError
    expect(nested.code).toBe(13)
    const fn = (await orders.aggregate([{ $match: { $expr: { $function: { body: 'function() { return true }', args: [], lang: 'js' } } } }]).toArray().catch((e: unknown) => e)) as MongoServerError
    expect(fn.code).toBe(13)
    expect(gw.stub.received.slice(before).map((r) => r.command)).toEqual([])
    expect(await orders.countDocuments()).toBe(2)
    const denied = await gw.auditFind((e) => e.type === 'request' && e.verdict === 'deny' && String(e.text).includes('$where'))
    expect(denied).toMatchObject({ rule: 'm/mongo-js/js' })
  })

  it('an admin command is denied by mongo-admin', async () => {
    const c = await gw.client()
    const err = (await c.db('admin').command({ createUser: 'evil', pwd: 'x', roles: ['root'] }).catch((e: unknown) => e)) as MongoServerError
    expect(err.code).toBe(13)
    expect(err.message).toMatch(/mongo-admin\/admin/)
    const unknown = (await c.db('admin').command({ someFutureCommand: 1 }).catch((e: unknown) => e)) as MongoServerError
    expect(unknown.message).toMatch(/mongo-admin\/unknown/)
  })

  it('a $lookup is judged by both collections: reaching secrets from orders is denied', async () => {
    const c = await gw.client()
    const orders = c.db('app').collection('orders')
    const before = gw.stub.received.length
    const err = (await orders.aggregate([{ $lookup: { from: 'secrets', localField: 'user', foreignField: '_id', as: 's' } }]).toArray().catch((e: unknown) => e)) as MongoServerError
    expect(err.code).toBe(13)
    expect(err.message).toMatch(/secrets collection is off limits/)
    // inside a $facet too
    const facet = (await orders.aggregate([{ $facet: { a: [{ $lookup: { from: 'secrets', localField: 'user', foreignField: '_id', as: 's' } }] } }]).toArray().catch((e: unknown) => e)) as MongoServerError
    expect(facet.code).toBe(13)
    expect(gw.stub.received.length).toBe(before)
    // to another collection it is allowed, and recorded with both
    const joined = await orders.aggregate([{ $lookup: { from: 'many', localField: 'user', foreignField: '_id', as: 'm' } }]).toArray()
    expect(joined[0]?.m[0]).toMatchObject({ _id: 1, n: 1 })
    const rec = (await gw.auditFind((e) => e.type === 'request' && e.verdict === 'allow' && String(e.text).includes('"from":"many"'))) as AuditRecord
    expect(rec.attrs.mongo).toMatchObject({ reads: ['app.orders', 'app.many'], crossCollection: true, collections: ['orders', 'many'] })
  })

  it('$out writes are judged as writes to the target', async () => {
    const c = await gw.client('agent-2')
    const err = (await c.db('app').collection('orders').aggregate([{ $match: {} }, { $out: 'copied' }]).toArray().catch((e: unknown) => e)) as MongoServerError
    expect(err.code).toBe(13)
    expect(gw.stub.documents('app', 'copied')).toEqual([])
    const rec = (await gw.auditFind((e) => e.type === 'request' && e.verdict === 'deny' && String(e.text).includes('$out'))) as AuditRecord
    expect(rec.attrs.mongo).toMatchObject({ write: true, writes: ['app.copied'], stages: ['$match', '$out'] })
    // the reader may still read
    expect(await c.db('app').collection('orders').countDocuments()).toBe(2)
  })
})

describe('masking', () => {
  it('masks the named fields in find, nested and in arrays, and records which', async () => {
    const c = await gw.client()
    const users = await c.db('app').collection('users').find({}).sort({ _id: 1 }).toArray()
    expect(users[0]).toEqual({ _id: 1, name: 'ann', ssn: '[masked]', card: { number: '[masked]', brand: 'visa' }, contacts: [{ kind: 'home', phone: '[masked]' }] })
    expect(users[1]).toMatchObject({ ssn: '[masked]', card: { number: '[masked]', brand: 'amex' }, contacts: [] })
    const req = (await gw.auditFind((e) => e.type === 'request' && (e.attrs as { mongo?: { command?: string; collection?: string } }).mongo?.command === 'find' && (e.attrs as { mongo: { collection: string } }).mongo.collection === 'users')) as AuditRecord
    const outcome = await gw.auditFind((e) => e.type === 'outcome' && e.request === req.request)
    expect(outcome).toMatchObject({ rows: 2 })
    expect([...((outcome as { masked: string[] }).masked ?? [])].sort()).toEqual(['card.number', 'contacts.*.phone', 'ssn'])
    expect(JSON.stringify(gw.audit())).not.toContain('111-11-1111')
  })

  it('commands that would carry a masked value out under another name are refused before they run', async () => {
    const c = await gw.client()
    const users = c.db('app').collection('users')
    const orders = c.db('app').collection('orders')
    const before = gw.stub.received.length
    const attempts: [string, () => Promise<unknown>][] = [
      ['a $lookup nests the masked documents', () => orders.aggregate([{ $lookup: { from: 'users', localField: 'user', foreignField: '_id', as: 'u' } }]).toArray()],
      ['a $project renames the field', () => users.aggregate([{ $project: { x: '$ssn' } }]).toArray()],
      ['a find projection expression renames it', () => users.find({}, { projection: { x: '$ssn' } }).toArray()],
      ['distinct returns its values', () => users.distinct('ssn')],
      ['a filter on it answers questions about its value', () => users.find({ ssn: { $gte: '2' } }).toArray()],
      ['a filter on a parent of a masked field', () => users.find({ card: { number: '4111', brand: 'visa' } }).toArray()],
      ['sorting by it orders by its value', () => users.find({}).sort({ ssn: 1 }).toArray()],
    ]
    for (const [what, attempt] of attempts) {
      const err = (await attempt().catch((e: unknown) => e)) as MongoServerError
      expect(err, what).toBeInstanceOf(MongoServerError)
      expect(err.code, what).toBe(13)
      expect(err.message, what).toMatch(/masks ssn/)
    }
    expect(gw.stub.received.length).toBe(before)
    // what keeps the shape still runs, masked
    expect(await users.aggregate([{ $match: { name: 'bob' } }, { $limit: 1 }]).toArray()).toMatchObject([{ name: 'bob', ssn: '[masked]' }])
    // (the stub ignores projections: the point is that the gateway lets a plain one through)
    expect((await users.find({}, { projection: { ssn: 1 } }).toArray()).map((d) => d.ssn)).toEqual(['[masked]', '[masked]'])
  })

  it('holds across getMore batches: every document of a cursor is masked, and the outcome counts them all', async () => {
    const c = await gw.client()
    const docs = await c.db('app').collection('users').find({}, { batchSize: 1 }).toArray()
    expect(docs.map((d) => d.ssn)).toEqual(['[masked]', '[masked]'])
    const req = (await gw.auditFind((e) => e.type === 'request' && String(e.text).includes('"batchSize":1') && String(e.text).includes('users'))) as AuditRecord
    const outcome = await gw.auditFind((e) => e.type === 'outcome' && e.request === req.request)
    expect(outcome).toMatchObject({ rows: 2, status: 'ok' })
    expect(gw.audit().filter((e) => e.type === 'request' && String(e.text).includes('getMore'))).toEqual([])
  })
})

describe('cursors', () => {
  it("another session's cursor cannot be continued or killed", async () => {
    const a = await gw.client()
    const b = await gw.client('agent-3')
    const cursor = a.db('app').collection('many').find({}, { batchSize: 2 })
    await cursor.next()
    const id = cursor.id
    expect(id?.isZero()).toBe(false)
    const before = gw.stub.received.length
    const err = (await b.db('app').command({ getMore: id, collection: 'many' }).catch((e: unknown) => e)) as MongoServerError
    expect(err.code).toBe(13)
    expect(err.message).toMatch(/was not opened by this session/)
    const kill = (await b.db('app').command({ killCursors: 'many', cursors: [id] }).catch((e: unknown) => e)) as MongoServerError
    expect(kill.code).toBe(13)
    expect(gw.stub.received.length).toBe(before)
    expect(await gw.auditFind((e) => e.type === 'request' && e.rule === 'gatehouse/foreign-cursor')).toBeDefined()
    // the owner still reads it to the end, and closing it kills it upstream
    expect((await cursor.toArray()).length).toBe(24)
    const all = a.db('app').collection('many').find({}, { batchSize: 3 })
    await all.next()
    await all.close()
    expect(gw.stub.received.at(-1)?.command).toBe('killCursors')
    const opened = (await gw.auditFind((e) => e.type === 'request' && String(e.text).includes('"batchSize":3'))) as AuditRecord
    expect(await gw.auditFind((e) => e.type === 'outcome' && e.request === opened.request && e.status === 'killed')).toBeDefined()
  })

  it('a cursor of the same session on another collection is refused', async () => {
    const a = await gw.client()
    const cursor = a.db('app').collection('many').find({}, { batchSize: 2 })
    await cursor.next()
    const err = (await a.db('app').command({ getMore: cursor.id, collection: 'orders' }).catch((e: unknown) => e)) as MongoServerError
    expect(err.message).toMatch(/belongs to app\.many, not app\.orders/)
    await cursor.close()
  })
})

async function approve(text: string): Promise<void> {
  let id: string | undefined
  for (let i = 0; i < 200 && !id; i++) {
    const r = await fetch(`http://127.0.0.1:${gw.gateway.adminPort}/reviews`, { headers: { authorization: `Bearer ${alice}` } })
    id = ((await r.json()) as { reviews: { id: string; text: string }[] }).reviews.find((x) => x.text.includes(text))?.id
    if (!id) await new Promise((r) => setTimeout(r, 25))
  }
  expect(id).toBeDefined()
  const ok = await fetch(`http://127.0.0.1:${gw.gateway.adminPort}/reviews/${id}/approve`, { method: 'POST', headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' }, body: '{}' })
  expect(ok.status).toBeLessThan(300)
}

describe('reviews', () => {
  it('a held find on a masked collection, once approved, still comes back masked', async () => {
    gw.stub.seed('app', 'users', [{ _id: 3, name: 'vip', vip: true, ssn: '333-33-3333' }])
    const c = await gw.client()
    const pending = c.db('app').collection('users').find({ vip: true }).toArray()
    await approve('"vip":true')
    expect(await pending).toEqual([{ _id: 3, name: 'vip', vip: true, ssn: '[masked]' }])
  })

  it('a held delete waits for an approval, then runs', async () => {
    gw.stub.seed('app', 'audit_me', [{ _id: 1 }, { _id: 2 }])
    const c = await gw.client()
    const pending = c.db('app').collection('audit_me').deleteOne({ _id: 1 })
    let id: string | undefined
    for (let i = 0; i < 200 && !id; i++) {
      const r = await fetch(`http://127.0.0.1:${gw.gateway.adminPort}/reviews`, { headers: { authorization: `Bearer ${alice}` } })
      id = ((await r.json()) as { reviews: { id: string; text: string }[] }).reviews.find((x) => x.text.includes('audit_me'))?.id
      if (!id) await new Promise((r) => setTimeout(r, 25))
    }
    expect(id).toBeDefined()
    expect(gw.stub.documents('app', 'audit_me')).toHaveLength(2)
    const ok = await fetch(`http://127.0.0.1:${gw.gateway.adminPort}/reviews/${id}/approve`, { method: 'POST', headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' }, body: '{}' })
    expect(ok.status).toBeLessThan(300)
    expect((await pending).deletedCount).toBe(1)
    expect(gw.stub.documents('app', 'audit_me')).toEqual([{ _id: 2 }])
  })
})

interface AuditRecord {
  request: string
  attrs: { mongo: Record<string, unknown> & { filterFields: string[] } }
}

describe('TLS', () => {
  it('one listener takes the driver over TLS and a plaintext client; with required: true, plaintext is refused', async () => {
    const optional = await startMongoGateway('      - { id: all, effect: allow, actions: [mongo.command] }', { tls: { required: false } })
    const required = await startMongoGateway('      - { id: all, effect: allow, actions: [mongo.command] }', { tls: { required: true } })
    try {
      const overTls = await optional.client()
      await overTls.db('app').collection('t').insertOne({ _id: 1 })
      expect(await overTls.db('app').collection('t').countDocuments()).toBe(1)
      const plain = new MongoClient(optional.uri().replace(/&tls=true&tlsCAFile=[^&]*/, ''), { serverSelectionTimeoutMS: 3000 })
      expect(await plain.db('app').collection('t').countDocuments()).toBe(1)
      await plain.close()
      const sessions = optional.audit().filter((e) => e.type === 'session.start')
      expect(sessions.map((e) => e.tls).sort()).toEqual([false, true])
      // the client's address is known over TLS too (the TLS stream runs over a replayed one)
      expect(sessions.every((e) => /^127\.0\.0\.1:\d+$/.test(String(e.client)))).toBe(true)

      const secure = await required.client()
      expect(await secure.db('app').collection('t').countDocuments()).toBe(0)
      const refused = new MongoClient(required.uri().replace(/&tls=true&tlsCAFile=[^&]*/, ''), { serverSelectionTimeoutMS: 1500 })
      await expect(refused.db('app').collection('t').countDocuments()).rejects.toThrow()
      await refused.close()
    } finally {
      await optional.close()
      await required.close()
    }
  })
})

describe('masks against other routes to a value', () => {
  it('filters that can read any field, index options, copying updates and indexes are refused; errors that could quote a value are withheld', async () => {
    const c = await gw.client()
    const users = c.db('app').collection('users')
    const before = gw.stub.received.length
    const attempts: [string, () => Promise<unknown>][] = [
      ['$expr', () => users.find({ $expr: { $eq: [{ $toInt: '$ssn' }, 1] } }).toArray()],
      ['$jsonSchema', () => users.find({ $jsonSchema: { properties: { ssn: { pattern: '^1' } } } }).toArray()],
      ['hint', () => users.find({}, { hint: { ssn: 1 } }).toArray()],
      ['min/max', () => users.find({}, { min: { ssn: '1' }, max: { ssn: '2' } }).toArray()],
      ['an update pipeline', () => users.updateMany({}, [{ $set: { nick: '$ssn' } }])],
      ['$rename', () => users.updateMany({}, { $rename: { ssn: 'nick' } })],
      ['an update of the masked field', () => users.updateMany({}, { $set: { ssn: 'x' } })],
      ['a replacement', () => users.replaceOne({ _id: 1 }, { name: 'ann' })],
      ['a view', () => c.db('app').command({ create: 'v', viewOn: 'users', pipeline: [{ $project: { x: '$ssn' } }] })],
      ['an index', () => users.createIndex({ ssn: 1 }, { unique: true })],
    ]
    for (const [what, attempt] of attempts) {
      const err = (await attempt().catch((e: unknown) => e)) as MongoServerError
      expect(err, what).toBeInstanceOf(MongoServerError)
      expect(err.code, what).toBe(13)
    }
    expect(gw.stub.received.length).toBe(before)
    // a plain update of another field still runs
    expect((await users.updateOne({ _id: 2 }, { $set: { name: 'bo' } })).modifiedCount).toBe(1)
    // a duplicate key error would quote the key: withheld, in the answer and in the audit
    const dup = (await users.insertOne({ _id: 1 }).catch((e: unknown) => e)) as Error
    expect(dup.message).toMatch(/withheld/)
    expect(dup.message).not.toMatch(/dup key/)
    expect(JSON.stringify(gw.audit())).not.toMatch(/dup key/)
  })
})

describe('a replica set upstream', () => {
  it('the gateway presents itself as the one member of the set; the driver discovers it and runs a transaction, each step judged', async () => {
    const rs = await startMongoGateway('      - { id: all, effect: allow, actions: [mongo.command] }', { replicaSet: 'rs0' })
    try {
      const c = await rs.client('agent-1', { replicaSet: 'rs0' })
      const hello = await c.db('admin').command({ hello: 1 })
      expect(hello).toMatchObject({ isWritablePrimary: true, setName: 'rs0', hosts: [`127.0.0.1:${rs.port}`], primary: `127.0.0.1:${rs.port}`, me: `127.0.0.1:${rs.port}` })
      const session = c.startSession()
      await session.withTransaction(async () => {
        await c.db('app').collection('tx').insertOne({ _id: 1 }, { session })
        await c.db('app').collection('tx').insertOne({ _id: 2 }, { session })
      })
      await session.endSession()
      expect(rs.stub.documents('app', 'tx')).toEqual([{ _id: 1 }, { _id: 2 }])
      // the client's own session fields reached the upstream unchanged
      const inserts = rs.stub.received.filter((r) => r.command === 'insert')
      expect(inserts[0]?.doc).toMatchObject({ startTransaction: true, autocommit: false })
      expect(JSON.stringify(inserts[0]?.doc.lsid)).toBe(JSON.stringify(inserts[1]?.doc.lsid))
      const steps = rs.audit().filter((e) => e.type === 'request').map((e) => (e.attrs as { mongo: { command: string; transaction?: string } }).mongo)
      expect(steps.filter((m) => m.transaction !== undefined).map((m) => `${m.command}:${m.transaction}`)).toEqual(['insert:start', 'insert:in', 'commitTransaction:commit'])
    } finally {
      await rs.close()
    }
  })
})
