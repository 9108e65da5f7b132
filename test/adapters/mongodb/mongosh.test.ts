/**
 * mongosh (from npm, unmodified) through the gateway, over plain TCP and over TLS: it logs in with
 * a gateway token, runs CRUD, and a denial prints as the MongoServerError a server would send.
 * The stub mongod upstream sees only the gateway's credential.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startMongoGateway, type MongoGateway } from '../../fixtures/mongo-gateway.js'

const RULES = `
      - { id: users-masked, effect: allow, actions: [mongo.command], match: { mongo.collections: [users] }, mask: [ssn] }
      - { id: everything-else, effect: allow, actions: [mongo.command] }
`

describe.each([
  ['plain TCP', undefined],
  ['TLS', { required: true }],
] as const)('mongosh over %s', (_name, tls) => {
  let gw: MongoGateway

  beforeAll(async () => {
    gw = await startMongoGateway(RULES, { include: ['mongo-js', 'mongo-admin'], ...(tls ? { tls } : {}) })
    gw.stub.seed('app', 'users', [{ _id: 1, name: 'ann', ssn: '111' }])
  }, 60_000)

  afterAll(async () => {
    await gw?.close()
  })

  it('runs CRUD and prints masked documents', async () => {
    const r = await gw.mongosh(`
      db.items.insertOne({ _id: 1, v: 1 });
      db.items.insertMany([{ _id: 2, v: 2 }, { _id: 3, v: 3 }]);
      db.items.updateOne({ _id: 2 }, { $set: { v: 20 } });
      db.items.deleteOne({ _id: 3 });
      print(JSON.stringify({ items: db.items.find({}).toArray(), count: db.items.countDocuments(), users: db.users.find({}).toArray() }));
    `)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1) as string) as Record<string, unknown>
    expect(out).toEqual({ items: [{ _id: 1, v: 1 }, { _id: 2, v: 20 }], count: 2, users: [{ _id: 1, name: 'ann', ssn: '[masked]' }] })
    expect(gw.stub.documents('app', 'items')).toEqual([{ _id: 1, v: 1 }, { _id: 2, v: 20 }])
    expect(new Set(gw.stub.received.map((c) => c.user))).toEqual(new Set([gw.stub.user]))
    const inserts = gw.audit().filter((e) => e.type === 'request' && (e.attrs as { mongo?: { command?: string } }).mongo?.command === 'insert')
    expect(inserts).toHaveLength(2)
    expect(inserts.every((e) => (e.principal as { id: string }).id === 'agent-1')).toBe(true)
  })

  it('a denied command prints the MongoServerError naming the rule; the shell goes on', async () => {
    const before = gw.stub.received.length
    const r = await gw.mongosh(`
      try { db.users.find({ $where: "sleep(100) || true" }).toArray() } catch (e) { print("DENIED " + e.code + " " + e.codeName + " " + e.message) }
      print("AFTER " + db.users.countDocuments());
    `)
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/DENIED 13 Unauthorized gatehouse: denied by rule "m\/mongo-js\/js"/)
    expect(r.stdout).toMatch(/AFTER 1/)
    expect(gw.stub.received.slice(before).some((c) => c.doc.filter !== undefined && JSON.stringify(c.doc).includes('$where'))).toBe(false)
  })

  it('a wrong token fails the login', async () => {
    const r = await gw.mongosh('print("connected")', { identity: 'nobody' })
    expect(r.code).not.toBe(0)
    expect(r.stdout + r.stderr).toMatch(/Authentication failed/)
  })
})
