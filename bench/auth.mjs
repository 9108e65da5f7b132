#!/usr/bin/env node
// bench:auth — a flood of wrong tokens cannot hold up sessions already logged in.
//
// A real gateway (child process) with two connections: PostgreSQL in front of a throwaway
// cluster, and SSH (its target is never reached: every flood login fails first).
//   victim  one PostgreSQL session (node `pg`), `SELECT $1::int` back to back for BENCH_SECONDS,
//           latency measured per statement at the client
//   flood   SSH password logins from another source address (127.0.0.2), BENCH_FLOOD_RATE wrong
//           tokens a second (default 150; six per connection, as many as a connection may try),
//           each of which costs the gateway a PBKDF2 of 4,096 rounds to refuse
//
// The victim runs first alone (the baseline in the same run), then during the flood. The last
// line is:
//   p99_ms quiet=X flood=Y guesses=N limit=10 PASS|FAIL      (PASS when Y - X <= 10)
import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import ssh2 from 'ssh2'
import { cleanEnv, freePort, startPgCluster, waitForPort } from '../test/fixtures/pg-cluster-impl.mjs'
import { CLI, REPO, cli, issueToken, latencyRow, percentile } from './common.mjs'

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8)
const RATE = Number(process.env.BENCH_FLOOD_RATE ?? 150)
const PER_CONNECTION = 6
const LIMIT_MS = 10
const log = (...a) => console.error('[bench:auth]', ...a)




/** The victim's loop: latencies in ms, until `until`. */
async function victim(port, token, until) {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'victim', password: token, database: 'app' })
  await c.connect()
  const lat = []
  for (let i = 0; Date.now() < until; i++) {
    const t0 = performance.now()
    await c.query('SELECT $1::int AS v', [i])
    lat.push(performance.now() - t0)
  }
  await c.end()
  return lat.sort((a, b) => a - b)
}

/** One flood connection: up to PER_CONNECTION wrong tokens for a real identity; resolves with how many were tried. */
function floodConnection(port) {
  return new Promise((resolve) => {
    const c = new ssh2.Client()
    let tried = 0
    const done = () => {
      c.end()
      resolve(tried)
    }
    c.on('error', done)
    c.on('close', done)
    c.on('ready', done)
    c.connect({
      host: '127.0.0.1',
      port,
      localAddress: '127.0.0.2',
      username: 'victim',
      readyTimeout: 10_000,
      authHandler: (_methods, _partial, next) => {
        if (tried >= PER_CONNECTION) return next(false)
        tried++
        next({ type: 'password', username: 'victim', password: `gh_wrong_${Math.random().toString(36).slice(2)}` })
      },
    })
  })
}

/** Opens flood connections at RATE / PER_CONNECTION a second until `until`; resolves with the guesses made. */
async function flood(port, until) {
  const pending = []
  const every = (1000 * PER_CONNECTION) / RATE
  for (let next = performance.now(); Date.now() < until; next += every) {
    pending.push(floodConnection(port))
    const wait = next + every - performance.now()
    if (wait > 0) await new Promise((r) => setTimeout(r, wait))
  }
  return (await Promise.all(pending)).reduce((a, b) => a + b, 0)
}

async function main() {
  const cluster = await startPgCluster()
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'gatehouse-bench-auth-'))
  let gateway
  try {
    const v = await issueToken('victim')
    await cli(['ssh', 'keygen', '--output', path.join(tmp, 'host_ed25519')])
    const [pgPort, sshPort] = [await freePort(), await freePort()]
    const q = JSON.stringify
    const u = cluster.users.scram
    await writeFile(
      path.join(tmp, 'gatehouse.yaml'),
      `dataDir: ${q(tmp)}
identities:
  - { id: victim, kind: agent, groups: [bench], tokens: [{ hash: ${q(v.hash)} }] }
plugins:
  - use: audit-jsonl
    config: { path: ${q(path.join(tmp, 'audit.jsonl'))}, required: true }
connections:
  - name: bench
    adapter: postgres
    listen: "127.0.0.1:${pgPort}"
    upstream: { host: ${cluster.host}, port: ${cluster.port}, database: ${cluster.database}, user: ${u.user}, password: ${q(u.password)} }
  - name: flooded
    adapter: ssh
    listen: "127.0.0.1:${sshPort}"
    # never reached: every flood login fails before the gateway would connect
    upstream: { host: 127.0.0.1, port: 9, user: nobody, password: unused, hostKey: "SHA256:${'A'.repeat(43)}" }
    options: { hostKeys: ["\${file:${path.join(tmp, 'host_ed25519')}}"] }
    # no lockout: this bench measures what each wrong token costs to check
    limits: { unauthenticated: { total: 1000, perSource: 1000 }, logins: { perSource: 1000000000, perIdentity: 1000000000 } }
policies:
  - id: bench
    principals: { groups: [bench] }
    rules:
      - { id: read, effect: allow, match: { sql.statement: [SELECT] } }
`,
    )
    gateway = spawn(process.execPath, [CLI, 'start', '--config', path.join(tmp, 'gatehouse.yaml')], { cwd: REPO, env: cleanEnv(), stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    gateway.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)))
    await waitForPort(pgPort, '127.0.0.1', 20000).catch((err) => {
      throw new Error(`${err.message}\n${stderr}`)
    })
    await waitForPort(sshPort, '127.0.0.1', 20000)
    await victim(pgPort, v.token, Date.now() + 1000)

    log(`victim alone for ${SECONDS} s`)
    const quiet = await victim(pgPort, v.token, Date.now() + SECONDS * 1000)
    log(`victim during a flood of ${RATE} wrong tokens a second from 127.0.0.2 for ${SECONDS} s`)
    const until = Date.now() + SECONDS * 1000
    const [flooded, guesses] = await Promise.all([victim(pgPort, v.token, until), flood(sshPort, until)])

    const row = (label, lat) => latencyRow(label, lat, 16)
    process.stdout.write(`${row('victim quiet', quiet)}\n${row('victim flooded', flooded)}\n`)
    process.stdout.write(`wrong tokens tried: ${guesses} in ${SECONDS} s (${(guesses / SECONDS).toFixed(0)}/s)\n`)
    const [x, y] = [percentile(quiet, 99), percentile(flooded, 99)]
    process.stdout.write(`p99_ms quiet=${x.toFixed(2)} flood=${y.toFixed(2)} guesses=${guesses} limit=${LIMIT_MS} ${y - x <= LIMIT_MS ? 'PASS' : 'FAIL'}\n`)
    if (y - x > LIMIT_MS) process.exitCode = 1
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
