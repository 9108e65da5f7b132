#!/usr/bin/env node
// bench:pg — pgbench select-only throughput through three paths to the same throwaway cluster:
//
//   direct     pgbench ──► PostgreSQL
//   haproxy    pgbench ──► haproxy (mode tcp, a byte pump: the floor for any L4/L7 proxy)
//   gatehouse  pgbench ──► Gatehouse postgres adapter (token auth, policy, audit-jsonl) ──► PostgreSQL
//
// For each target: a 2 s warm-up (not counted), then
//   pgbench -n -S [-M prepared] -c 8 -j 2 -T $BENCH_SECONDS
// in simple and prepared protocol mode. Prints a table, then as the very last line:
//   ratio gatehouse/haproxy simple=X.XX prepared=Y.YY      (n/a where a value is missing)
//
// Environment:
//   BENCH_SECONDS   measured duration per run (default 15)
//   BENCH_TARGETS   comma list out of direct,haproxy,gatehouse (default: all three)
//
// All clients use sslmode=disable so every path is compared in plaintext.
// Progress goes to stderr; the table and the ratio line go to stdout after cleanup.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  startPgCluster,
  freePort,
  waitForPort,
  run,
  cleanEnv,
  PG_BIN,
} from '../test/fixtures/pg-cluster-impl.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const GATEWAY_CLI = path.join(REPO, 'core', 'dist', 'cli.js');
// node-pipe: a bare Node.js socket pipe (no parsing, no policy, no audit): the ceiling for any
// gateway written in Node on this machine, shown for reference.
const ALL_TARGETS = ['direct', 'haproxy', 'node-pipe', 'gatehouse'];
const MODES = [
  { name: 'simple', args: [] },
  { name: 'prepared', args: ['-M', 'prepared'] },
];
const CLIENTS = 8;
const THREADS = 2;
const WARMUP_SECONDS = 2;
const SCALE = 10;

const log = (/** @type {unknown[]} */ ...a) => console.error('[bench:pg]', ...a);

class BenchError extends Error {
  /** @param {string} message @param {string} [detail] shown after the message */
  constructor(message, detail) {
    super(message);
    this.detail = detail;
  }
}

// ---------------------------------------------------------------------------------------------
// Configuration

function parseEnv() {
  const raw = process.env.BENCH_SECONDS ?? '15';
  const seconds = Number(raw);
  if (!Number.isInteger(seconds) || seconds < 1) {
    throw new BenchError(`BENCH_SECONDS must be a positive integer, got ${JSON.stringify(raw)}`);
  }
  const targets = (process.env.BENCH_TARGETS ?? ALL_TARGETS.join(','))
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  for (const t of targets) {
    if (!ALL_TARGETS.includes(t)) {
      throw new BenchError(`BENCH_TARGETS: unknown target ${JSON.stringify(t)} (known: ${ALL_TARGETS.join(', ')})`);
    }
  }
  if (targets.length === 0) throw new BenchError('BENCH_TARGETS is empty');
  // keep the canonical order whatever the env says
  return { seconds, targets: ALL_TARGETS.filter((t) => targets.includes(t)) };
}

// ==============================================================================================
// GATEHOUSE CONFIG — the one place to adjust when the gateway's config format changes.
// ==============================================================================================
/**
 * @param {{ listenPort: number,
 *           upstream: { host: string, port: number, database: string, user: string, password: string },
 *           tokenHash: string,
 *           auditPath: string }} p
 * @returns {string} gatehouse.yaml contents
 */
function gatehouseConfig({ listenPort, upstream, tokenHash, auditPath }) {
  const q = (/** @type {string} */ s) => JSON.stringify(s); // JSON strings are valid YAML double-quoted scalars
  return `identities:
  - id: bench
    kind: agent
    groups: [bench]
    tokens:
      - hash: ${q(tokenHash)}
plugins:
  - use: audit-jsonl
    config: { path: ${q(auditPath)}, required: true }
connections:
  - name: bench
    adapter: postgres
    listen: "127.0.0.1:${listenPort}"
    upstream: { host: ${upstream.host}, port: ${upstream.port}, database: ${upstream.database}, user: ${upstream.user}, password: ${q(upstream.password)} }
    plugins: { authenticate: [auth-token], decide: [policy], record: [audit-jsonl] }
policies:
  - id: bench
    principals: { groups: [bench] }
    connections: [bench]
    rules:
      - { id: bench-read, effect: allow, match: { sql.statement: [SELECT] } }
`;
}
// ==============================================================================================

// ---------------------------------------------------------------------------------------------
// Child processes and cleanup

/** @type {Set<import('node:child_process').ChildProcess>} */
const liveChildren = new Set();
/** @type {Array<() => Promise<void>>} */
const cleanups = [];
/** @type {string | undefined} */
let tmpDirForExit;

/** @type {Promise<void> | undefined} */
let cleaning;
/** Run the registered cleanups in reverse order; concurrent callers share one run. */
function cleanupAll() {
  cleaning ??= (async () => {
    while (cleanups.length > 0) {
      const fn = cleanups.pop();
      try {
        await fn?.();
      } catch (e) {
        log('cleanup step failed:', /** @type {Error} */ (e).message);
      }
    }
  })();
  return cleaning;
}

// Last resort if we exit without running cleanupAll (uncaught error, process.exit elsewhere):
// kill children synchronously; the cluster fixture has its own exit hook.
process.on('exit', () => {
  for (const c of liveChildren) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* ignore */
    }
  }
  if (tmpDirForExit) rmSync(tmpDirForExit, { recursive: true, force: true });
});

let interrupted = false;
for (const sig of /** @type {const} */ (['SIGINT', 'SIGTERM', 'SIGHUP'])) {
  process.on(sig, () => {
    if (interrupted) return;
    interrupted = true;
    log(`${sig}: cleaning up`);
    cleanupAll().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  });
}

/**
 * User + system CPU time of a process in milliseconds (Linux /proc), or undefined.
 * @param {number} pid
 */
function processCpuMs(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) * (1000 / 100);
  } catch {
    return undefined;
  }
}

/**
 * A bare Node.js TCP pipe to the upstream, as a reference point.
 * @param {number} upstreamPort
 * @param {string} user
 * @param {string} password
 */
async function startNodePipe(upstreamPort, user, password) {
  const port = await freePort();
  const code = `const net = require('net');
net.createServer({ noDelay: true }, (c) => {
  const u = net.connect(${upstreamPort}, '127.0.0.1'); u.setNoDelay(true);
  c.pipe(u); u.pipe(c); c.on('error', () => u.destroy()); u.on('error', () => c.destroy());
}).listen(${port}, '127.0.0.1');`;
  const svc = startService('node-pipe', process.execPath, ['-e', code]);
  try {
    await waitForPort(port, '127.0.0.1', 10000, svc.exitReason);
  } catch (e) {
    throw new BenchError(`node-pipe did not start: ${/** @type {Error} */ (e).message}`, svc.tail());
  }
  return { name: 'node-pipe', port, user, password, service: svc };
}

/**
 * A long-running child whose combined output is kept (last 64 KiB) for error reports.
 * @param {string} name
 * @param {string} cmd
 * @param {string[]} args
 * @param {{ cwd?: string, env?: NodeJS.ProcessEnv }} [opts]
 */
function startService(name, cmd, args, opts = {}) {
  const proc = spawn(cmd, args, {
    cwd: opts.cwd ?? REPO,
    env: opts.env ?? cleanEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  liveChildren.add(proc);
  let output = '';
  const keep = (/** @type {Buffer} */ b) => {
    output += b.toString('utf8');
    if (output.length > 65536) output = output.slice(-65536);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  /** @type {string | undefined} */
  let exitReason;
  /** @type {Promise<void>} */
  const exited = new Promise((resolve) => {
    proc.on('error', (e) => {
      exitReason = `failed to spawn: ${e.message}`;
      liveChildren.delete(proc);
      resolve();
    });
    proc.on('exit', (code, signal) => {
      exitReason ??= `exited early (${signal ?? `exit code ${code}`})`;
      liveChildren.delete(proc);
      resolve();
    });
  });
  const svc = {
    name,
    proc,
    /** @returns {string | undefined} why the service is not running, if it is not */
    exitReason: () => exitReason,
    tail: (lines = 40) => output.trimEnd().split('\n').slice(-lines).join('\n'),
    /** SIGTERM, wait up to `graceMs`, then SIGKILL. */
    async stop(graceMs = 10000) {
      if (exitReason !== undefined) return;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
  cleanups.push(() => svc.stop());
  return svc;
}

// ---------------------------------------------------------------------------------------------
// Targets

/** @typedef {{ name: string, port: number, user: string, password: string, service?: ReturnType<typeof startService> }} Endpoint */

function haproxyAvailable() {
  const r = spawnSync('haproxy', ['-v'], { stdio: 'ignore' });
  return !r.error;
}

/**
 * @param {string} tmp
 * @param {number} upstreamPort
 * @param {string} user      database user pgbench logs in as (haproxy passes auth through)
 * @param {string} password
 * @returns {Promise<Endpoint>}
 */
async function startHaproxy(tmp, upstreamPort, user, password) {
  const port = await freePort();
  const cfg = path.join(tmp, 'haproxy.cfg');
  // nbthread 1: the gateway is one Node event loop, so compare it with one haproxy thread (this
  // also keeps haproxy threads from fighting postgres and pgbench for CPUs on small machines).
  // No log directives anywhere: haproxy logs nothing.
  await writeFile(
    cfg,
    `global
    maxconn 4096
    nbthread 1

defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h

frontend pg_in
    bind 127.0.0.1:${port}
    maxconn 4096
    default_backend pg_out

backend pg_out
    server pg 127.0.0.1:${upstreamPort} maxconn 4096
`,
  );
  const svc = startService('haproxy', 'haproxy', ['-db', '-f', cfg]);
  try {
    await waitForPort(port, '127.0.0.1', 10000, svc.exitReason);
  } catch (e) {
    throw new BenchError(`haproxy did not start: ${/** @type {Error} */ (e).message}`, svc.tail());
  }
  return { name: 'haproxy', port, user, password, service: svc };
}

/**
 * @param {string} tmp
 * @param {{ host: string, port: number, database: string, user: string, password: string }} upstream
 * @returns {Promise<Endpoint>}
 */
async function startGatehouse(tmp, upstream) {
  const issued = await run(process.execPath, [GATEWAY_CLI, 'token', 'issue', '--identity', 'bench', '--json'], {
    cwd: REPO,
  });
  const tokenOut = `${issued.stdout}\n${issued.stderr}`.trim();
  if (issued.code !== 0) {
    throw new BenchError(`gateway token issue failed (exit ${issued.code})`, tokenOut);
  }
  /** @type {{ token: string, hash: string } | undefined} */
  let issuedToken;
  for (const line of issued.stdout.trim().split('\n').reverse()) {
    try {
      const j = JSON.parse(line);
      if (j && typeof j.token === 'string' && typeof j.hash === 'string') {
        issuedToken = j;
        break;
      }
    } catch {
      /* not the JSON line */
    }
  }
  if (!issuedToken) {
    throw new BenchError('gateway token issue printed no {"token","hash"} JSON line', tokenOut);
  }

  const port = await freePort();
  const configPath = path.join(tmp, 'gatehouse.yaml');
  await writeFile(
    configPath,
    gatehouseConfig({
      listenPort: port,
      upstream,
      tokenHash: issuedToken.hash,
      auditPath: path.join(tmp, 'audit.jsonl'),
    }),
  );
  // BENCH_GATEWAY_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof", to profile the gateway.
  const nodeArgs = (process.env.BENCH_GATEWAY_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const svc = startService('gatehouse', process.execPath, [...nodeArgs, GATEWAY_CLI, 'start', '--config', configPath]);
  try {
    await waitForPort(port, '127.0.0.1', 20000, svc.exitReason);
  } catch (e) {
    throw new BenchError(`gateway did not start: ${/** @type {Error} */ (e).message}`, svc.tail());
  }
  return { name: 'gatehouse', port, user: 'bench', password: issuedToken.token, service: svc };
}

// ---------------------------------------------------------------------------------------------
// pgbench

/**
 * @param {Endpoint} ep
 * @param {string[]} modeArgs
 * @param {number} seconds
 */
async function pgbench(ep, modeArgs, seconds) {
  const args = [
    '-n', '-S', ...modeArgs,
    '-c', String(CLIENTS), '-j', String(THREADS), '-T', String(seconds),
    '-h', '127.0.0.1', '-p', String(ep.port), '-U', ep.user, 'app',
  ];
  const r = await run(path.join(PG_BIN, 'pgbench'), args, {
    env: cleanEnv({ PGPASSWORD: ep.password, PGSSLMODE: 'disable', PGCONNECT_TIMEOUT: '10' }),
  });
  const out = `${r.stdout}\n${r.stderr}`.trim();
  const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(r.stdout);
  const lat = /latency average = ([\d.]+) ms/.exec(r.stdout);
  const failed = /number of failed transactions: (\d+)/.exec(r.stdout);
  if (r.code !== 0 || !tps || !lat || (failed && Number(failed[1]) > 0)) {
    const detail = [`$ pgbench ${args.join(' ')}`, out];
    if (ep.service) detail.push(`--- ${ep.service.name} output (tail) ---`, ep.service.tail() || '(none)');
    throw new BenchError(`pgbench against ${ep.name} failed (exit ${r.code})`, detail.join('\n'));
  }
  return { tps: Number(tps[1]), latencyMs: Number(lat[1]) };
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const { seconds, targets } = parseEnv();

  if (targets.includes('haproxy') && !haproxyAvailable()) {
    console.error('bench:pg needs haproxy: apt-get install -y haproxy');
    process.exit(1);
  }
  if (!existsSync(path.join(PG_BIN, 'pgbench'))) {
    throw new BenchError(`pgbench not found in ${PG_BIN} (apt-get install -y postgresql-15)`);
  }
  if (targets.includes('gatehouse') && !existsSync(GATEWAY_CLI)) {
    throw new BenchError(`gateway CLI ${path.relative(REPO, GATEWAY_CLI)} not found: run npm run build`);
  }

  const tmp = await mkdtemp(path.join(os.tmpdir(), 'gatehouse-bench-'));
  tmpDirForExit = tmp;
  cleanups.push(async () => {
    await rm(tmp, { recursive: true, force: true });
    tmpDirForExit = undefined;
  });

  log('starting throwaway PostgreSQL cluster');
  const cluster = await startPgCluster();
  cleanups.push(() => cluster.stop());
  const { user, password } = cluster.users.scram;

  log(`pgbench -i -s ${SCALE} as ${user} on port ${cluster.port}`);
  const init = await run(
    path.join(PG_BIN, 'pgbench'),
    ['-i', '-q', '-s', String(SCALE), '-h', cluster.host, '-p', String(cluster.port), '-U', user, cluster.database],
    { env: cleanEnv({ PGPASSWORD: password, PGSSLMODE: 'disable' }) },
  );
  if (init.code !== 0) {
    throw new BenchError(`pgbench -i failed (exit ${init.code})`, `${init.stdout}\n${init.stderr}`.trim());
  }

  /** @type {Endpoint[]} */
  const endpoints = [];
  if (targets.includes('direct')) endpoints.push({ name: 'direct', port: cluster.port, user, password });
  if (targets.includes('haproxy')) {
    log('starting haproxy');
    endpoints.push(await startHaproxy(tmp, cluster.port, user, password));
  }
  if (targets.includes('node-pipe')) {
    log('starting node-pipe');
    endpoints.push(await startNodePipe(cluster.port, user, password));
  }
  if (targets.includes('gatehouse')) {
    log('starting gatehouse');
    endpoints.push(
      await startGatehouse(tmp, { host: cluster.host, port: cluster.port, database: cluster.database, user, password }),
    );
  }

  /** @type {Array<{ target: string, mode: string, tps: number, latencyMs: number }>} */
  const results = [];
  for (const ep of endpoints) {
    log(`${ep.name}: warm-up ${WARMUP_SECONDS}s`);
    await pgbench(ep, [], WARMUP_SECONDS);
    for (const mode of MODES) {
      log(`${ep.name}: ${mode.name} ${seconds}s`);
      const pid = ep.service?.proc.pid;
      const cpu0 = pid ? processCpuMs(pid) : undefined;
      const r = await pgbench(ep, mode.args, seconds);
      const cpu1 = pid ? processCpuMs(pid) : undefined;
      // CPU the proxy process spent per transaction: steadier than tps on a shared 2-core box.
      const cpuUsPerTx = cpu0 !== undefined && cpu1 !== undefined && r.tps > 0 ? ((cpu1 - cpu0) * 1000) / (r.tps * seconds) : undefined;
      results.push({ target: ep.name, mode: mode.name, ...r, cpuUsPerTx });
    }
  }

  // Clean up first so nothing is printed after the ratio line.
  await cleanupAll();
  return { results, seconds };
}

/**
 * @param {Array<{ target: string, mode: string, tps: number, latencyMs: number }>} results
 * @param {number} seconds
 */
function report(results, seconds) {
  const rows = [['target', 'mode', 'tps', 'avg latency ms', 'proxy cpu us/tx']];
  for (const r of results) rows.push([r.target, r.mode, r.tps.toFixed(1), r.latencyMs.toFixed(3), r.cpuUsPerTx === undefined ? '-' : r.cpuUsPerTx.toFixed(1)]);
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  const line = (/** @type {string[]} */ row) =>
    row.map((cell, i) => (i < 2 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  ');
  console.log(`pgbench -n -S -c ${CLIENTS} -j ${THREADS} -T ${seconds} (scale ${SCALE}, sslmode=disable)`);
  console.log(line(rows[0]));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of rows.slice(1)) console.log(line(row));

  const tps = (/** @type {string} */ target, /** @type {string} */ mode) =>
    results.find((r) => r.target === target && r.mode === mode)?.tps;
  const ratio = (/** @type {string} */ mode) => {
    const g = tps('gatehouse', mode);
    const h = tps('haproxy', mode);
    return g !== undefined && h !== undefined && h > 0 ? (g / h).toFixed(2) : 'n/a';
  };
  console.log(`ratio gatehouse/haproxy simple=${ratio('simple')} prepared=${ratio('prepared')}`);
}

try {
  const { results, seconds } = await main();
  if (!interrupted) report(results, seconds);
} catch (e) {
  const err = /** @type {Error & { detail?: string }} */ (e);
  if (interrupted) {
    // the signal handler owns cleanup and the exit code
    await new Promise(() => {});
  } else {
    console.error(`bench:pg: ${err.message}`);
    if (err.detail) console.error(err.detail);
    else if (!(err instanceof BenchError) && err.stack) console.error(err.stack);
  }
  await cleanupAll();
  process.exit(1);
}
