#!/usr/bin/env node
// bench:policy, part 2 — one hostile session cannot hold up another's statements.
//
// A real gateway (child process) in front of a throwaway PostgreSQL cluster, two principals:
//   victim   one session (node `pg`), statements back to back for BENCH_SECONDS: nine of ten a
//            repeated parameterized SELECT (an analysis cache hit), one of ten a text never seen
//            (an analysis miss, parsed on a worker)
//   hostile  BENCH_HOSTILE_SESSIONS sessions sending, back to back, texts never seen that cost
//            the parser about 100 ms each (an 8 KB sum of 4,000 terms, refused as too deep)
//
// The victim runs first alone (the baseline in the same run), then with the hostile sessions.
// Latency is measured per statement at the victim's client. The last line is:
//   isolation_ms alone_p99=X hostile_p99=Y hostile_max=Z hostile_statements=N limit=20 PASS|FAIL
import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { cleanEnv, freePort, startPgCluster, waitForPort } from '../test/fixtures/pg-cluster-impl.mjs'
import { CLI, REPO, issueToken, latencyRow, percentile } from './common.mjs'

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8)
const HOSTILE_SESSIONS = Number(process.env.BENCH_HOSTILE_SESSIONS ?? 4)
const LIMIT_MS = 20
const log = (...a) => console.error('[bench:isolation]', ...a)



/** The victim's loop: latencies in ms, until `until`. */
async function victim(port, token, until) {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'victim', password: token, database: 'app' })
  await c.connect()
  const lat = []
  for (let i = 0; Date.now() < until; i++) {
    const t0 = performance.now()
    if (i % 10 === 9) await c.query(`SELECT 'victim ${i} ${Math.random()}' AS v`)
    else await c.query('SELECT $1::int AS v', [i])
    lat.push(performance.now() - t0)
  }
  await c.end()
  return lat.sort((a, b) => a - b)
}

/** One hostile session: costly never-seen texts back to back; returns how many it sent. */
async function hostile(port, token, until) {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'hostile', password: token, database: 'app' })
  await c.connect()
  let n = 0
  const terms = Array.from({ length: 4000 }, () => 'a').join('+')
  while (Date.now() < until) {
    await c.query(`SELECT ${terms} /* ${n}-${Math.random()} */`).catch(() => undefined)
    n++
  }
  await c.end()
  return n
}

async function main() {
  const cluster = await startPgCluster()
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'gatehouse-isolation-'))
  let gateway
  try {
    const [v, h] = [await issueToken('victim'), await issueToken('hostile')]
    const port = await freePort()
    const q = JSON.stringify
    const u = cluster.users.scram
    await writeFile(
      path.join(tmp, 'gatehouse.yaml'),
      `dataDir: ${q(tmp)}
identities:
  - { id: victim, kind: agent, groups: [bench], tokens: [{ hash: ${q(v.hash)} }] }
  - { id: hostile, kind: agent, groups: [bench], tokens: [{ hash: ${q(h.hash)} }] }
plugins:
  - use: audit-jsonl
    config: { path: ${q(path.join(tmp, 'audit.jsonl'))}, required: true }
connections:
  - name: bench
    adapter: postgres
    listen: "127.0.0.1:${port}"
    upstream: { host: ${cluster.host}, port: ${cluster.port}, database: ${cluster.database}, user: ${u.user}, password: ${q(u.password)} }
    plugins: { authenticate: [auth-token], decide: [policy], record: [audit-jsonl] }
policies:
  - id: bench
    principals: { groups: [bench] }
    rules:
      - { id: read, effect: allow, match: { sql.statement: [SELECT] } }
`,
    )
    gateway = spawn(process.execPath, [CLI, 'start', '--config', path.join(tmp, 'gatehouse.yaml')], { cwd: REPO, env: cleanEnv(), stdio: ['ignore', 'ignore', 'pipe'] })
    await waitForPort(port, '127.0.0.1', 20000)
    // Warm up: workers loaded, connections made.
    await victim(port, v.token, Date.now() + 1000)

    log(`victim alone for ${SECONDS} s`)
    const alone = await victim(port, v.token, Date.now() + SECONDS * 1000)
    log(`victim with ${HOSTILE_SESSIONS} hostile sessions for ${SECONDS} s`)
    const until = Date.now() + SECONDS * 1000
    const [withHostile, ...sent] = await Promise.all([victim(port, v.token, until), ...Array.from({ length: HOSTILE_SESSIONS }, () => hostile(port, h.token, until))])
    const total = sent.reduce((a, b) => a + b, 0)

    const row = (label, lat) => latencyRow(label, lat)
    process.stdout.write(`${row('victim alone', alone)}\n${row('victim with hostile', withHostile)}\n`)
    process.stdout.write(`hostile statements sent: ${total} (each ≈100 ms of parser time, refused)\n`)
    const p99 = percentile(withHostile, 99)
    process.stdout.write(
      `isolation_ms alone_p99=${percentile(alone, 99).toFixed(2)} hostile_p99=${p99.toFixed(2)} hostile_max=${withHostile[withHostile.length - 1].toFixed(2)} hostile_statements=${total} limit=${LIMIT_MS} ${p99 <= LIMIT_MS ? 'PASS' : 'FAIL'}\n`,
    )
    if (p99 > LIMIT_MS) process.exitCode = 1
  } finally {
    gateway?.kill('SIGTERM')
    await new Promise((r) => setTimeout(r, 300))
    await cluster.stop()
    await rm(tmp, { recursive: true, force: true })
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
