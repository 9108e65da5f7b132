#!/usr/bin/env node
// bench:k8s — latency of one Kubernetes API call, `GET /api/v1/namespaces/default/pods/web-1` (what
// `kubectl get pod web-1` sends), direct to the STUB API server (test/fixtures/k8s-stub-upstream-impl.mjs:
// no real API server runs here) and through Gatehouse's kubernetes adapter (token auth, request
// reading, policy, a required hash-chained audit-jsonl sink), in one run, each over one keep-alive
// TLS connection, BENCH_REQUESTS (default 3000) requests after 300 of warm-up, alternating
// batches of 100 between the two targets so both see the same machine.
//
// Prints a latency table, then as the very last line:
//   overhead p50_ms=X.XX p99_ms=Y.YY
// (gateway minus direct, at each percentile). Progress goes to stderr.
import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { Agent, request } from 'node:https'
import os from 'node:os'
import path from 'node:path'
import { generateCertificates } from '@gatehouse/adapter-kubernetes'
import { startK8sStub } from '../test/fixtures/k8s-stub-upstream-impl.mjs'
import { freePort, waitForPort } from '../test/fixtures/pg-cluster-impl.mjs'
import { CLI, issueToken, latencyRow, percentile } from './common.mjs'

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 3000)
const WARMUP = 300
const BATCH = 100
const PATH = '/api/v1/namespaces/default/pods/web-1'
const log = (...a) => process.stderr.write(`bench:k8s: ${a.join(' ')}\n`)

/** One GET over `agent`; resolves with milliseconds. */
function get(base, agent, ca, authorization) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint()
    const req = request(`${base}${PATH}`, { agent, ca, headers: { authorization, accept: 'application/json' } }, (res) => {
      let size = 0
      res.on('data', (d) => (size += d.length))
      res.on('end', () => {
        if (res.statusCode !== 200 || size === 0) reject(new Error(`${base}: HTTP ${res.statusCode}`))
        else resolve(Number(process.hrtime.bigint() - started) / 1e6)
      })
    })
    req.on('error', reject)
    req.end()
  })
}

const tmp = await mkdtemp(path.join(os.tmpdir(), 'gatehouse-bench-k8s-'))
const stub = await startK8sStub()
let gateway
try {
  const certs = await generateCertificates(['127.0.0.1'])
  await writeFile(path.join(tmp, 'tls.crt'), certs.cert)
  await writeFile(path.join(tmp, 'tls.key'), certs.key)
  await writeFile(path.join(tmp, 'upstream-ca.crt'), stub.ca)
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
  - name: cluster
    adapter: kubernetes
    listen: "127.0.0.1:${port}"
    tls: { cert: "\${file:${path.join(tmp, 'tls.crt')}}", key: "\${file:${path.join(tmp, 'tls.key')}}" }
    upstream: { server: ${q(stub.url)}, token: ${q(stub.token)}, ca: "\${file:${path.join(tmp, 'upstream-ca.crt')}}" }
policies:
  - id: bench
    principals: { groups: [bench] }
    rules:
      - { id: reads, effect: allow, actions: [k8s.get, k8s.list], match: { k8s.namespace: [default] } }
`,
  )
  const nodeArgs = (process.env.BENCH_GATEWAY_NODE_ARGS ?? '').split(' ').filter(Boolean)
  gateway = spawn(process.execPath, [...nodeArgs, CLI, 'start', '--config', configPath], { stdio: ['ignore', 'ignore', 'inherit'] })
  await waitForPort(port, '127.0.0.1', 15000)

  const targets = {
    direct: { base: stub.url, ca: stub.ca, authorization: `Bearer ${stub.token}`, agent: new Agent({ keepAlive: true, maxSockets: 1 }), times: [] },
    gatehouse: { base: `https://127.0.0.1:${port}`, ca: certs.caCert, authorization: `Bearer bench:${token.token}`, agent: new Agent({ keepAlive: true, maxSockets: 1 }), times: [] },
  }
  for (const t of Object.values(targets)) for (let i = 0; i < WARMUP; i++) await get(t.base, t.agent, t.ca, t.authorization)
  log(`warm-up done; ${REQUESTS} requests per target`)
  for (let done = 0; done < REQUESTS; done += BATCH) {
    for (const t of Object.values(targets)) for (let i = 0; i < Math.min(BATCH, REQUESTS - done); i++) t.times.push(await get(t.base, t.agent, t.ca, t.authorization))
  }
  const sorted = Object.fromEntries(Object.entries(targets).map(([name, t]) => [name, [...t.times].sort((a, b) => a - b)]))
  process.stdout.write(`GET ${PATH}, one keep-alive TLS connection per target, ${REQUESTS} requests each, ${new Date().toISOString().slice(0, 10)}, ${os.cpus().length} × ${os.cpus()[0]?.model.trim()}, node ${process.version}\n`)
  for (const [name, times] of Object.entries(sorted)) process.stdout.write(`${latencyRow(name, times, 10)}\n`)
  const overhead = (p) => percentile(sorted.gatehouse, p) - percentile(sorted.direct, p)
  process.stdout.write(`overhead p50_ms=${overhead(50).toFixed(2)} p99_ms=${overhead(99).toFixed(2)}\n`)
} finally {
  gateway?.kill('SIGTERM')
  await new Promise((r) => (gateway && gateway.exitCode === null ? gateway.once('close', r) : r()))
  await stub.close()
  await rm(tmp, { recursive: true, force: true })
}
