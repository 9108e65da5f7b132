#!/usr/bin/env node
// bench:ssh — bulk transfer over SSH exec, direct to a throwaway OpenSSH sshd and through
// Gatehouse's ssh adapter (key auth, policy, required audit-jsonl), in one run:
//
//   download   ssh HOST 'head -c $BENCH_MB M /dev/zero'      (client reads BENCH_MB MiB)
//   upload     ssh HOST 'cat > /dev/null'  < BENCH_MB MiB    (client writes BENCH_MB MiB)
//
// Each measurement is the best of BENCH_RUNS runs (default 2). Prints a table, then as the very
// last line:
//   ratio gatehouse/direct download=X.XX upload=Y.YY
//
// Environment: BENCH_MB (default 200), BENCH_RUNS (default 2), BENCH_GATEWAY_NODE_ARGS (e.g.
// "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the gateway). Needs openssh-server and the
// openssh client (apt). Progress goes to stderr.
import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { startSshd, sshArgs, generateKeyPair } from '../test/fixtures/sshd-impl.mjs'
import { freePort, waitForPort } from '../test/fixtures/pg-cluster-impl.mjs'

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const CLI = path.join(REPO, 'core', 'dist', 'cli.js')
const MB = Number(process.env.BENCH_MB ?? 200)
const RUNS = Number(process.env.BENCH_RUNS ?? 2)
const log = (...a) => process.stderr.write(`bench:ssh: ${a.join(' ')}\n`)

/** Runs ssh with `command`; feeds `upload` bytes of zeros on stdin; resolves with seconds and bytes read. */
function transfer(args, command, upload) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint()
    const child = spawn('ssh', [...args, command], { stdio: ['pipe', 'pipe', 'pipe'] })
    let read = 0
    let stderr = ''
    child.stdout.on('data', (d) => (read += d.length))
    child.stderr.on('data', (d) => (stderr += d.toString()))
    child.on('close', (code) => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9
      if (code !== 0) reject(new Error(`ssh exited ${code}: ${stderr.trim()}`))
      else resolve({ seconds, read })
    })
    if (!upload) {
      child.stdin.end()
      return
    }
    const chunk = Buffer.alloc(256 * 1024)
    let left = upload
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, chunk.length)
        left -= n
        if (!child.stdin.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void child.stdin.once('drain', pump)
      }
      child.stdin.end()
    }
    pump()
  })
}

async function best(label, args, command, upload) {
  let bestSeconds = Infinity
  for (let i = 0; i < RUNS; i++) {
    const r = await transfer(args, command, upload)
    if (!upload && r.read !== MB * 1024 * 1024) throw new Error(`${label}: read ${r.read} bytes, expected ${MB * 1024 * 1024}`)
    log(`${label} run ${i + 1}: ${(r.seconds).toFixed(2)} s`)
    bestSeconds = Math.min(bestSeconds, r.seconds)
  }
  return (MB / bestSeconds)
}

const tmp = await mkdtemp(path.join(os.tmpdir(), 'gatehouse-bench-ssh-'))
const sshd = await startSshd()
let gateway
try {
  const agent = await generateKeyPair(tmp, 'agent')
  const hostKeyPath = path.join(tmp, 'gateway_host_ed25519')
  await new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [CLI, 'ssh', 'keygen', '--output', hostKeyPath], { stdio: 'ignore' })
    c.on('close', (code) => (code === 0 ? resolve() : reject(new Error('ssh keygen failed'))))
  })
  const port = await freePort()
  const q = JSON.stringify
  const config = `dataDir: ${q(path.join(tmp, 'data'))}
log: { level: warn }
identities:
  - id: bench
    groups: [bench]
    sshKeys: [${q(agent.publicKey)}]
plugins:
  - use: audit-jsonl
    config: { path: ${q(path.join(tmp, 'audit.jsonl'))}, required: true }
connections:
  - name: target
    adapter: ssh
    listen: "127.0.0.1:${port}"
    upstream: { host: 127.0.0.1, port: ${sshd.port}, user: root, privateKey: "\${file:${sshd.clientKeyPath}}", hostKey: ${q(sshd.hostKeyFingerprint)} }
    options: { hostKeys: ["\${file:${hostKeyPath}}"] }
policies:
  - id: bench
    principals: { groups: [bench] }
    rules:
      - { id: exec, effect: allow, actions: [ssh.exec] }
`
  const configPath = path.join(tmp, 'gatehouse.yaml')
  await writeFile(configPath, config)
  const nodeArgs = (process.env.BENCH_GATEWAY_NODE_ARGS ?? '').split(' ').filter(Boolean)
  gateway = spawn(process.execPath, [...nodeArgs, CLI, 'start', '--config', configPath], { stdio: ['ignore', 'ignore', 'inherit'] })
  await waitForPort(port, '127.0.0.1', 15000)

  const direct = sshArgs({ port: sshd.port, user: 'root', identityFile: sshd.clientKeyPath })
  const through = sshArgs({ port, user: 'bench', identityFile: agent.privateKeyPath })
  const down = `head -c ${MB}M /dev/zero`
  const up = 'cat > /dev/null'
  const rows = [
    ['direct', 'download', await best('direct download', direct, down, 0)],
    ['gatehouse', 'download', await best('gatehouse download', through, down, 0)],
    ['direct', 'upload', await best('direct upload', direct, up, MB * 1024 * 1024)],
    ['gatehouse', 'upload', await best('gatehouse upload', through, up, MB * 1024 * 1024)],
  ]
  const rate = (t, d) => rows.find((r) => r[0] === t && r[1] === d)[2]
  process.stdout.write(`ssh exec, ${MB} MiB each way, best of ${RUNS}\n`)
  process.stdout.write('target     direction  MiB/s\n---------  ---------  ------\n')
  for (const [t, d, v] of rows) process.stdout.write(`${t.padEnd(9)}  ${d.padEnd(9)}  ${v.toFixed(1).padStart(6)}\n`)
  process.stdout.write(`ratio gatehouse/direct download=${(rate('gatehouse', 'download') / rate('direct', 'download')).toFixed(2)} upload=${(rate('gatehouse', 'upload') / rate('direct', 'upload')).toFixed(2)}\n`)
} finally {
  gateway?.kill('SIGTERM')
  await new Promise((r) => (gateway ? gateway.once('close', r) : r()))
  await sshd.stop()
  await rm(tmp, { recursive: true, force: true })
}
