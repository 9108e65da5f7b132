/**
 * Random and mutated frontend message sequences after a real login: valid messages (Parse, Bind,
 * Execute, Query, COPY, FunctionCall …) over a few names and texts, some of them damaged (a
 * length field changed, bytes flipped, a message cut short, a random type byte), pipelined in one
 * write. Asserted:
 * - the gateway never fails inside (no FATAL XX000, no `session.fault` or `upstream.desync`
 *   protocol event, no integrity event) and never crashes: it answers, or ends the session with
 *   a protocol error, within the time a bounded case takes;
 * - what it judged is what the server ran: a statement the policy denies (a DELETE of the
 *   tripwire table) never runs, however the bytes around it are mangled;
 * - every few cases, a bystander session that stays open still works.
 *
 * CI runs a bounded number of cases; `npm run fuzz:pg` runs many more (GATEHOUSE_FUZZ_RUNS).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import fc from 'fast-check'
import pg from 'pg'
import type { AuditEvent } from '@gatehouse/core'
import { startPgCluster, type PgCluster } from '../../fixtures/pg-cluster.js'
import { pgUpstream, startGateway, type TestGateway } from '../../fixtures/gateway.js'
import { errorFields, RawPgClient, typed, wire } from '../../fixtures/pg-raw.js'

const RUNS = Math.max(1, Math.floor(Number(process.env.GATEHOUSE_FUZZ_RUNS ?? 120) / 2))

const TEXTS = [
  'SELECT generate_series(1,3)',
  'SELECT $1::int + 1',
  'INSERT INTO fuzz_sink VALUES (1)',
  'DELETE FROM fuzz_tripwire',
  'COPY fuzz_sink FROM STDIN',
  'COPY fuzz_sink TO STDOUT',
  'BEGIN',
  'COMMIT',
  'SELECT 1/0',
  '',
]

const POLICY = [
  {
    id: 'fuzz',
    principals: { groups: ['agents'] },
    rules: [
      { id: 'tripwire', effect: 'deny', match: { 'sql.tables': ['fuzz_tripwire'] }, reason: 'the tripwire is never touched' },
      { id: 'all', effect: 'allow' },
    ],
  },
]

const name = fc.constantFrom('', 'a', 'b')
const text = fc.constantFrom(...TEXTS)
const message: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(name, text).map(([n, t]) => wire.parse(n, t)) },
  { weight: 4, arbitrary: fc.tuple(name, name, fc.array(fc.oneof(fc.constant(null), fc.constantFrom('1', 'x', '')), { maxLength: 2 })).map(([p, s, v]) => wire.bind(p, s, v)) },
  { weight: 3, arbitrary: fc.tuple(name, fc.constantFrom(0, 1)).map(([p, n]) => wire.execute(p, n)) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('S' as const, 'P' as const), name).map(([k, n]) => wire.describe(k, n)) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('S' as const, 'P' as const), name).map(([k, n]) => wire.close(k, n)) },
  { weight: 3, arbitrary: fc.constant(wire.sync) },
  { weight: 1, arbitrary: fc.constant(wire.flush) },
  { weight: 2, arbitrary: text.map((t) => wire.query(t)) },
  { weight: 1, arbitrary: fc.constantFrom(typed('d', Buffer.from('5\n')), typed('c', Buffer.alloc(0)), typed('f', Buffer.from('stop\0'))) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 5000 }).map((oid) => typed('F', Buffer.from([...u32(oid), 0, 0, 0, 0, 0, 0]))) },
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 0x21, max: 0x7e }), fc.uint8Array({ maxLength: 24 })).map(([t, b]) => typed(String.fromCharCode(t), Buffer.from(b))) },
)

/** A damage done to one message: none mostly, sometimes its length, a byte, or its end. */
const damage = fc.oneof(
  { weight: 8, arbitrary: fc.constant((m: Buffer) => m) },
  { weight: 1, arbitrary: fc.integer({ min: -8, max: 1 << 20 }).map((len) => (m: Buffer) => Buffer.concat([m.subarray(0, 1), Buffer.from(u32(len)), m.subarray(5)])) },
  { weight: 1, arbitrary: fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })).map(([at, v]) => (m: Buffer) => { const c = Buffer.from(m); c[at % c.length] = v; return c }) },
  { weight: 1, arbitrary: fc.nat().map((cut) => (m: Buffer) => m.subarray(0, cut % m.length)) },
)

const sequence = fc.array(fc.tuple(message, damage).map(([m, d]) => d(m)), { minLength: 1, maxLength: 10 })

function u32(n: number): number[] {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n >>> 0, 0)
  return [...b]
}

let cluster: PgCluster
let gw: TestGateway
let bystander: pg.Client

beforeAll(async () => {
  cluster = await startPgCluster()
  await cluster.psql('CREATE TABLE fuzz_sink (v int); CREATE TABLE fuzz_tripwire (v int); INSERT INTO fuzz_tripwire VALUES (1), (2), (3); GRANT ALL ON fuzz_sink, fuzz_tripwire TO app_scram')
  gw = await startGateway({ upstream: pgUpstream(cluster), policies: POLICY, connection: { limits: { sessions: { perIdentity: 64 } } } })
  bystander = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'], database: 'app' })
  await bystander.connect()
}, 60_000)

afterAll(async () => {
  await bystander?.end().catch(() => undefined)
  await gw?.stop()
  await cluster?.stop()
})

/** Sends `bytes` after a login and reads until the gateway closes or goes quiet; returns the FATALs seen. */
async function run(bytes: Buffer): Promise<string[]> {
  const c = await RawPgClient.connect(gw.port)
  const fatals: string[] = []
  try {
    await c.login('agent-1', gw.tokens['agent-1'] as string)
    c.write(Buffer.concat([bytes, wire.sync]))
    for (;;) {
      const m = await c.next(400).catch(() => undefined)
      if (!m) break
      if (m.type === 'E') {
        const f = errorFields(m.body)
        if (f.S === 'FATAL') fatals.push(`${f.C} ${f.M}`)
      }
    }
  } finally {
    c.close()
  }
  return fatals
}

describe('mutated message sequences after login', () => {
  it('never fail inside the gateway, never run what policy denied, and never disturb another session', async () => {
    let cases = 0
    await fc.assert(
      fc.asyncProperty(sequence, async (msgs) => {
        const fatals = await run(Buffer.concat(msgs))
        expect(fatals.filter((f) => f.startsWith('XX000')), fatals.join('; ')).toEqual([])
        if (++cases % 10 === 0) expect((await bystander.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }])
      }),
      { numRuns: RUNS, seed: process.env.GATEHOUSE_FUZZ_SEED ? Number(process.env.GATEHOUSE_FUZZ_SEED) : undefined },
    )
    expect(await cluster.psql('SELECT count(*) FROM fuzz_tripwire')).toBe('3')
    const events = await gw.audit()
    const bad = events.filter((e: AuditEvent) => e.type === 'integrity' || (e.type === 'protocol' && ['session.fault', 'upstream.desync'].includes((e as { event?: string }).event ?? '')))
    expect(bad.map((e) => JSON.stringify(e).slice(0, 300))).toEqual([])
    expect((await bystander.query('SELECT 2 AS ok')).rows).toEqual([{ ok: 2 }])
  }, Math.max(600_000, RUNS * 2000))
})
