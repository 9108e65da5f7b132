/**
 * What the mongodb adapter says a command does (command.ts), for policy: collections read and
 * written through every kind of pipeline, JavaScript wherever it hides, admin commands, flags read
 * with the server's trueValue, transactions, and the mask checks (masking.ts).
 */
import { describe, expect, it } from 'vitest'
import { BSON, Code, Double, Int32, Long, type Document } from 'bson'
import { analyseCommand, commandName, opensCursor, trueValue } from '@gatehouse/adapter-mongodb'

/** The command as the gateway decodes it off the wire. */
const wire = (d: Document): Document => BSON.deserialize(BSON.serialize(d), { promoteValues: false, bsonRegExp: true })
const facts = (d: Document, db = 'app') => analyseCommand(wire(d), db)

describe('names', () => {
  it('the first field names the command; aliases fold to one name', () => {
    expect(commandName(wire({ find: 'x', filter: {} }))).toBe('find')
    expect(commandName(wire({ findandmodify: 'x' }))).toBe('findAndModify')
    expect(commandName(wire({ mapreduce: 'x' }))).toBe('mapReduce')
    expect(commandName(wire({ isMaster: 1 }))).toBe('hello')
    expect(commandName({})).toBe('')
    expect(opensCursor('find')).toBe(true)
    expect(opensCursor('listCollections')).toBe(true)
    expect(opensCursor('insert')).toBe(false)
  })

  it('unknown commands are marked, and so is an explain of one', () => {
    expect(facts({ FIND: 'x' }).unknown).toBe(true)
    expect(facts({ find: 'x' }).unknown).toBe(false)
    expect(facts({ explain: { frobnicate: 'x' } })).toMatchObject({ unknown: true, explains: 'frobnicate' })
  })
})

describe('collections', () => {
  it('find reads its collection; insert, update, delete write theirs', () => {
    expect(facts({ find: 'users' })).toMatchObject({ collection: 'users', reads: ['app.users'], writes: [], write: false, crossCollection: false, collections: ['users'] })
    expect(facts({ insert: 'users', documents: [] })).toMatchObject({ reads: [], writes: ['app.users'], write: true })
    expect(facts({ update: 'users', updates: [{ q: { a: 1 }, u: { $set: { b: 1 } } }] })).toMatchObject({ reads: ['app.users'], writes: ['app.users'], write: true, crossCollection: false, filterFields: ['a'] })
    expect(facts({ delete: 'users', deletes: [{ q: { $or: [{ a: 1 }, { 'b.c': 2 }] }, limit: 0 }] })).toMatchObject({ writes: ['app.users'], filterFields: ['a', 'b.c'] })
  })

  it('$lookup, $graphLookup and $unionWith read their sources, in every nested pipeline', () => {
    const f = facts({
      aggregate: 'orders',
      pipeline: [
        { $lookup: { from: 'users', localField: 'u', foreignField: '_id', as: 'u' } },
        { $graphLookup: { from: 'tree', startWith: '$p', connectFromField: 'p', connectToField: '_id', as: 't' } },
        { $unionWith: { coll: 'archive', pipeline: [{ $lookup: { from: 'deep', pipeline: [], as: 'd' } }] } },
        { $unionWith: 'plain' },
        { $facet: { x: [{ $lookup: { from: { db: 'other', coll: 'remote' }, pipeline: [{ $unionWith: 'remote2' }], as: 'r' } }] } },
      ],
      cursor: {},
    })
    expect(f.reads.sort()).toEqual(['app.archive', 'app.deep', 'app.orders', 'app.plain', 'app.tree', 'app.users', 'other.remote', 'other.remote2'])
    expect(f).toMatchObject({ crossCollection: true, write: false })
    expect(f.stages).toEqual(['$lookup', '$graphLookup', '$unionWith', '$facet'])
  })

  it('$out and $merge write their targets, in this database or another', () => {
    expect(facts({ aggregate: 'a', pipeline: [{ $out: 'b' }] })).toMatchObject({ write: true, writes: ['app.b'], reads: ['app.a'], crossCollection: true })
    expect(facts({ aggregate: 'a', pipeline: [{ $out: { db: 'x', coll: 'y' } }] }).writes).toEqual(['x.y'])
    expect(facts({ aggregate: 'a', pipeline: [{ $merge: { into: { db: 'x', coll: 'z' } } }] }).writes).toEqual(['x.z'])
    expect(facts({ aggregate: 'a', pipeline: [{ $merge: 'm' }] }).writes).toEqual(['app.m'])
    expect(facts({ aggregate: 'a', pipeline: [{ $facet: { x: [{ $match: {} }] } }, { $merge: { into: 'm' } }] }).writes).toEqual(['app.m'])
    // the same collection is not "cross"
    expect(facts({ aggregate: 'a', pipeline: [{ $merge: { into: 'a' } }] })).toMatchObject({ crossCollection: false, write: true })
  })

  it('views and renames name what they reach', () => {
    expect(facts({ create: 'v', viewOn: 'secrets', pipeline: [{ $lookup: { from: 'more', pipeline: [], as: 'm' } }] })).toMatchObject({ write: true, writes: ['app.v'], reads: ['app.secrets', 'app.more'], crossCollection: true })
    expect(facts({ renameCollection: 'app.a', to: 'other.b' }, 'admin')).toMatchObject({ admin: true, write: true, writes: ['app.a', 'other.b'] })
    expect(facts({ mapReduce: 'a', map: new Code('function(){}'), reduce: new Code('function(){}'), out: { replace: 'r', db: 'x' } })).toMatchObject({ js: true, write: true, writes: ['x.r'] })
    expect(facts({ mapReduce: 'a', map: 'function(){}', reduce: 'function(){}', out: { inline: 1 } })).toMatchObject({ js: true, write: false })
  })

  it('an aggregate on the database names no collection, and its sources are all cross-collection', () => {
    const f = facts({ aggregate: 1, pipeline: [{ $documents: [{ a: 1 }] }, { $lookup: { from: 'users', pipeline: [], as: 'u' } }], cursor: {} })
    expect(f.collection).toBeUndefined()
    expect(f).toMatchObject({ reads: ['app.users'], crossCollection: true })
    expect(facts({ aggregate: 1, pipeline: [{ $currentOp: {} }] }, 'admin')).toMatchObject({ admin: true })
  })
})

describe('JavaScript', () => {
  it('is found under $where, $function and $accumulator wherever they are, and as code values', () => {
    expect(facts({ find: 'a', filter: { $where: 'true' } })).toMatchObject({ js: true, jsOperators: ['$where'] })
    expect(facts({ find: 'a', filter: { x: { $elemMatch: { $or: [{ $where: 'true' }] } } } }).js).toBe(true)
    expect(facts({ update: 'a', updates: [{ q: {}, u: [{ $set: { x: { $function: { body: 'f', args: [], lang: 'js' } } } }] }] }).jsOperators).toEqual(['$function'])
    expect(facts({ aggregate: 'a', pipeline: [{ $group: { _id: 1, x: { $accumulator: { init: 'f' } } } }] }).jsOperators).toEqual(['$accumulator'])
    expect(facts({ find: 'a', filter: { x: new Code('1') } }).jsOperators).toEqual(['code'])
    expect(facts({ insert: 'a', documents: [{ note: '$where is just a string here' }] }).js).toBe(false)
    expect(facts({ eval: 'db.dropDatabase()' }, 'admin')).toMatchObject({ js: true, admin: true })
  })
})

describe('flags and transactions', () => {
  it("reads flags with the server's trueValue: any number but zero, any string", () => {
    expect(trueValue(true)).toBe(true)
    expect(trueValue(false)).toBe(false)
    expect(trueValue(null)).toBe(false)
    expect(trueValue(undefined)).toBe(false)
    expect(trueValue(new Int32(0))).toBe(false)
    expect(trueValue(new Double(0.5))).toBe(true)
    expect(trueValue(Long.ZERO)).toBe(false)
    expect(trueValue(Long.fromNumber(-1))).toBe(true)
    expect(trueValue('no')).toBe(true)
    expect(trueValue('')).toBe(true)
    expect(facts({ insert: 'a', documents: [], bypassDocumentValidation: 'false' }).bypassDocumentValidation).toBe(true)
    expect(facts({ insert: 'a', documents: [], bypassDocumentValidation: 0 }).bypassDocumentValidation).toBe(false)
    expect(facts({ aggregate: 'a', pipeline: [], allowDiskUse: 1 }).allowDiskUse).toBe(true)
  })

  it('names the transaction step', () => {
    const lsid = { id: new BSON.UUID() }
    expect(facts({ insert: 'a', documents: [], lsid, txnNumber: Long.ONE, startTransaction: true, autocommit: false }).transaction).toBe('start')
    expect(facts({ find: 'a', lsid, txnNumber: Long.ONE, autocommit: false }).transaction).toBe('in')
    expect(facts({ commitTransaction: 1, lsid, txnNumber: Long.ONE, autocommit: false }, 'admin').transaction).toBe('commit')
    expect(facts({ abortTransaction: 1 }, 'admin').transaction).toBe('abort')
    expect(facts({ find: 'a' }).transaction).toBeUndefined()
  })

  it('marks administration', () => {
    for (const cmd of [{ createUser: 'u', pwd: 'p', roles: [] }, { grantRolesToUser: 'u', roles: ['root'] }, { setParameter: 1, x: 1 }, { shutdown: 1 }, { fsync: 1 }, { killOp: 1, op: 1 }, { replSetReconfig: {} }, { applyOps: [] }]) {
      expect(facts(cmd, 'admin').admin, JSON.stringify(cmd)).toBe(true)
    }
    for (const cmd of [{ find: 'a' }, { listCollections: 1 }, { listDatabases: 1 }, { buildInfo: 1 }, { endSessions: [] }]) expect(facts(cmd).admin, JSON.stringify(cmd)).toBe(false)
  })
})

describe('gatehouse policy explain', () => {
  it('judges a command written in extended JSON, and refuses text that is not one', async () => {
    const { MongoAdapter } = await import('@gatehouse/adapter-mongodb')
    const adapter = new MongoAdapter({ logger: { child: () => ({}) } } as never)
    const [judged] = await adapter.explain({ command: '{"aggregate": "orders", "pipeline": [{"$lookup": {"from": "users", "pipeline": [], "as": "u"}}, {"$out": "copy"}], "$db": "app"}' })
    expect(judged?.attrs.mongo).toMatchObject({ command: 'aggregate', reads: ['app.orders', 'app.users'], writes: ['app.copy'], write: true, crossCollection: true })
    const [bad] = await adapter.explain({ command: 'db.users.find()' })
    expect(bad?.refusal).toMatchObject({ rule: 'gatehouse/parse' })
    await expect(adapter.explain({ sql: 'SELECT 1' })).rejects.toThrow(/explained with --command/)
  })
})
