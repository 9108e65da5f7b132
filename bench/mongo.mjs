#!/usr/bin/env node
// bench:mongo — throughput of `find` by _id (the driver's findOne({ _id })), direct to the STUB
// mongod (test/fixtures/mongo-stub-upstream-impl.mjs: no mongod runs here) and through Gatehouse's
// mongodb adapter (SCRAM login with a gateway token, BSON checks, command analysis, policy, a
// required hash-chained audit-jsonl sink, the upstream through the driver's pool), in one run.
// The stub and the gateway each run in their own process; the bench process runs the `mongodb`
// driver with BENCH_CONCURRENCY (default 8) finds in flight for BENCH_SECONDS (default 5) per
// round, alternating direct and gateway rounds (BENCH_ROUNDS, default 2) after a warm-up.
//
// Prints a table (ops/s, latency percentiles), then as the very last line:
//   ratio gatehouse/direct find=X.XX
// Progress goes to stderr.
import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { MongoClient } from 'mongodb'
import { freePort, waitForPort } from '../test/fixtures/pg-cluster-impl.mjs'
import { CLI, issueToken, latencyRow, REPO } from './common.mjs'

const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 8)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2)
const DOCS = 1000
const log = (...a) => process.stderr.write(`bench:mongo: ${a.join(' ')}\n`)

/** The stub in a child process; resolves with its connection string once it listens. */
function startStub() {
  const child = spawn(process.execPath, ['--input-type=module', '-e', `
    const { startMongoStub } = await import(${JSON.stringify(path.join(REPO, 'test/fixtures/mongo-stub-upstream-impl.mjs'))})
    const stub = await startMongoStub()
    stub.seed('bench', 'items', Array.from({ length: ${DOCS} }, (_, i) => ({ _id: i, name: 'item-' + i, price: i * 3, tags: ['a', 'b'] })))
    process.stdout.write(JSON.stringify({ uri: stub.uri }) + '\\n')
  `], { stdio: ['ignore', 'pipe', 'inherit'] })
  return new Promise((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (d) => {
      out += d
      if (out.includes('\n')) resolve({ child, uri: JSON.parse(out.split('\n')[0]).uri })
    })
    child.once('exit', (code) => reject(new Error(`stub exited (${code})`)))
  })
}

/** `CONCURRENCY` finds in flight on `client` for `seconds`; returns each one's milliseconds. */
async function round(client, seconds) {
  const items = client.db('bench').collection('items')
  const times = []
  const until = performance.now() + seconds * 1000
  let next = 0
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < until) {
        const id = next++ % DOCS
        const started = performance.now()
        const doc = await items.findOne({ _id: id })
        if (!doc || doc._id !== id) throw new Error(`find ${id} returned ${JSON.stringify(doc)}`)
        times.push(performance.now() - started)
      }
    }),
  )
  return times
}

const tmp = await mkdtemp(path.join(os.tmpdir(), 'gatehouse-bench-mongo-'))
const stub = await startStub()
let gateway
const clients = []
try {
  const token = await issueToken('bench')
  const port = await freePort()
  const q = JSON.stringify
  const configPath = path.join(tmp, 'gatehouse.yaml')
  await writeFile(
    configPath,
    `dataDir: ${q(path.join(tmp, 'data'))}
log: { level: warn }
identities:
  - { id: bench, groups: [bench], tokens: [ { hash: ${q(token.hash)} } ] }
plugins:
  - use: audit-jsonl
    config: { path: ${q(path.join(tmp, 'audit.jsonl'))}, required: true }
connections:
  - name: docs
    adapter: mongodb
    listen: "127.0.0.1:${port}"
    upstream: { uri: ${q(stub.uri)} }
policies:
  - id: bench
    principals: { groups: [bench] }
    include: [mongo-js, mongo-admin]
    rules:
      - { id: reads, effect: allow, actions: [mongo.command], match: { mongo.write: false } }
`,
  )
  const nodeArgs = (process.env.BENCH_GATEWAY_NODE_ARGS ?? '').split(' ').filter(Boolean)
  gateway = spawn(process.execPath, [...nodeArgs, CLI, 'start', '--config', configPath], { stdio: ['ignore', 'ignore', 'inherit'] })
  await waitForPort(port, '127.0.0.1', 15000)

  const options = { maxPoolSize: CONCURRENCY, minPoolSize: CONCURRENCY }
  const targets = {
    direct: { client: new MongoClient(stub.uri, options), times: [], seconds: 0 },
    gatehouse: { client: new MongoClient(`mongodb://bench:${encodeURIComponent(token.token)}@127.0.0.1:${port}/?authSource=admin&directConnection=true`, options), times: [], seconds: 0 },
  }
  for (const t of Object.values(targets)) {
    clients.push(t.client)
    await t.client.connect()
    await round(t.client, 1)
  }
  log(`warm-up done; ${ROUNDS} rounds of ${SECONDS} s per target, ${CONCURRENCY} finds in flight`)
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, t] of Object.entries(targets)) {
      const times = await round(t.client, SECONDS)
      t.times.push(...times)
      t.seconds += SECONDS
      log(`round ${r + 1} ${name}: ${Math.round(times.length / SECONDS)} finds/s`)
    }
  }
  const rate = (t) => t.times.length / t.seconds
  process.stdout.write(`find by _id (findOne), ${CONCURRENCY} in flight, ${ROUNDS} × ${SECONDS} s per target, ${new Date().toISOString().slice(0, 10)}, ${os.cpus().length} × ${os.cpus()[0]?.model.trim()}, node ${process.version}\n`)
  for (const [name, t] of Object.entries(targets)) process.stdout.write(`${latencyRow(name, [...t.times].sort((a, b) => a - b), 10)}  ${Math.round(rate(t))} finds/s\n`)
  process.stdout.write(`ratio gatehouse/direct find=${(rate(targets.gatehouse) / rate(targets.direct)).toFixed(2)}\n`)
} finally {
  await Promise.all(clients.map((c) => c.close().catch(() => undefined)))
  gateway?.kill('SIGTERM')
  await new Promise((r) => (gateway && gateway.exitCode === null ? gateway.once('close', r) : r()))
  stub.child.kill('SIGTERM')
  await rm(tmp, { recursive: true, force: true })
}
