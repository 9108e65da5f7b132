/**
 * The conformance kit (@gatehouse/testkit) run against the built-in MongoDB adapter through the
 * official `mongodb` driver (7.x). No mongod can run on these machines: the upstream is the STUB
 * mongod of test/fixtures/mongo-stub-upstream-impl.mjs, which records every command it received.
 * Markers are documents: the policy denies inserts into `ck_denied` and holds those into
 * `ck_held`; the probe looks for the marker in what the stub received.
 */
import { MongoClient } from 'mongodb'
import { describeConformance, type ClientResult } from '@gatehouse/testkit'
import { startMongoStub } from '../fixtures/mongo-stub-upstream.js'

describeConformance({
  name: 'mongodb (mongodb driver 7, STUB mongod)',
  adapter: 'mongodb',
  rules: {
    denied: { actions: ['mongo.command'], match: { 'mongo.collection': ['ck_denied'] } },
    held: { actions: ['mongo.command'], match: { 'mongo.collection': ['ck_held'] } },
  },
  explainDenied: { command: '{"insert": "ck_denied", "documents": [{"m": "sample"}], "$db": "app"}' },
  async startUpstream() {
    const stub = await startMongoStub()
    return {
      connection: { upstream: { uri: stub.uri, serverSelectionTimeoutMS: 3000 } },
      seen: async (marker) => stub.received.filter((c) => JSON.stringify(c.doc).includes(marker)).length,
      close: () => stub.close(),
    }
  },
  client: {
    async connect({ host, port, identity, token }) {
      // one pooled connection (one gateway session); monitors poll often so a closed server is noticed
      const c = new MongoClient(`mongodb://${encodeURIComponent(identity)}:${encodeURIComponent(token)}@${host}:${port}/app?authSource=admin&directConnection=true`, {
        maxPoolSize: 1,
        serverSelectionTimeoutMS: 5000,
        heartbeatFrequencyMS: 500,
        retryWrites: false,
        retryReads: false,
      })
      const closed = new Promise<void>((resolve) => {
        c.on('serverHeartbeatFailed', () => resolve())
        c.on('connectionClosed', () => resolve())
      })
      try {
        await c.connect()
        await c.db('admin').command({ ping: 1 })
      } catch (err) {
        await c.close(true).catch(() => undefined)
        throw err
      }
      return {
        closed,
        send: async (kind, marker): Promise<ClientResult> => {
          try {
            await c.db('app').collection(`ck_${kind}`).insertOne({ m: marker })
            return { ok: true }
          } catch (err) {
            return { ok: false, error: (err as Error).message }
          }
        },
        close: () => c.close(true).catch(() => undefined),
      }
    },
  },
})
