#!/usr/bin/env node
// bench:pg — pgbench select-only throughput through four paths to the same throwaway cluster:
//
//   direct     pgbench ──► PostgreSQL
//   haproxy    pgbench ──► haproxy (mode tcp, one thread: a byte pump, the floor for any proxy)
//   node-pipe  pgbench ──► a bare Node.js socket pipe (the ceiling for a gateway written in Node)
//   gatehouse  pgbench ──► Gatehouse postgres adapter (token auth, analysis, policy, a required
//                          hash-chained audit-jsonl sink) ──► PostgreSQL
//
// For each target: a 2 s warm-up (not counted), then
//   pgbench -n -S -M {simple,extended,prepared} -c 8 -j 2 -T $BENCH_SECONDS
// logging a sample of transactions for the latency percentiles. Then, for the gateway, idle
// authenticated sessions (BENCH_IDLE, default 200 and 2,000) and the gateway's RSS per session.
// Prints a table (bench/pg-report.mjs), then as the very last line:
//   ratio gatehouse/haproxy simple=X.XX extended=Y.YY prepared=Z.ZZ      (n/a where missing)
//
// Environment:
//   BENCH_SECONDS   measured duration per run (default 15)
//   BENCH_TARGETS   comma list out of direct,haproxy,node-pipe,gatehouse (default: all)
//   BENCH_IDLE      comma list of idle session counts, cumulative (default 200,2000; 0 = none)
//   BENCH_GATEWAY_NODE_ARGS  extra node flags for the gateway (e.g. --cpu-prof --cpu-prof-dir=D)
//   BENCH_AUDIT     required (default) | best-effort | off: the gateway's audit-jsonl sink, to see
//                   what the audit costs. Anything but `required` is marked in the header and on the
//                   ratio line (the aim is for `required`), and the docs test refuses such a report.
//
// All clients use sslmode=disable so every path is compared in plaintext.
// Progress goes to stderr; the table and the ratio line go to stdout after cleanup.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
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
import pg from 'pg';
import { formatReport } from './pg-report.mjs';
import { percentile } from './common.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const GATEWAY_CLI = path.join(REPO, 'core', 'dist', 'cli.js');
// node-pipe: a bare Node.js socket pipe (no parsing, no policy, no audit): the ceiling for any
// gateway written in Node on this machine, shown for reference.
const ALL_TARGETS = ['direct', 'haproxy', 'node-pipe', 'gatehouse'];
const MODES = [
  { name: 'simple', args: ['-M', 'simple'] },
  { name: 'extended', args: ['-M', 'extended'] },
  { name: 'prepared', args: ['-M', 'prepared'] },
];
// pgbench logs this share of transactions (their latency) for p50/p99: enough samples, little cost.
const SAMPLING_RATE = 0.2;
const CLIENTS = 8;
const THREADS = 2;
const WARMUP_SECONDS = 2;
const SCALE = 10;

const log = (/** @type {unknown[]} */ ...a) => console.error('[bench:pg]', ...a);
const AUDIT_MODES = ['required', 'best-effort', 'off'];

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
  const idleRaw = process.env.BENCH_IDLE ?? '200,2000';
  const idle = idleRaw.split(',').map((v) => v.trim()).filter(Boolean).map(Number);
  if (idle.some((n) => !Number.isInteger(n) || n < 0) || idle.some((n, i) => i > 0 && n <= (idle[i - 1] ?? 0))) {
    throw new BenchError(`BENCH_IDLE must be increasing non-negative integers, got ${JSON.stringify(idleRaw)}`);
  }
  const audit = process.env.BENCH_AUDIT ?? 'required';
  if (!AUDIT_MODES.includes(audit)) throw new BenchError(`BENCH_AUDIT must be one of ${AUDIT_MODES.join(', ')}, got ${JSON.stringify(audit)}`);
  // keep the canonical order whatever the env says
  return { seconds, targets: ALL_TARGETS.filter((t) => targets.includes(t)), idle: idle.filter((n) => n > 0), audit };
}

// ==============================================================================================
// GATEHOUSE CONFIG — the one place to adjust when the gateway's config format changes.
// ==============================================================================================
/**
 * @param {{ listenPort: number,
 *           upstream: { host: string, port: number, database: string, user: string, password: string },
 *           tokenHash: string,
 *           auditPath: string,
 *           audit: string,
 *           sessions: number }} p
 * @returns {string} gatehouse.yaml contents
 */
function gatehouseConfig({ listenPort, upstream, tokenHash, auditPath, audit, sessions }) {
  const q = (/** @type {string} */ s) => JSON.stringify(s); // JSON strings are valid YAML double-quoted scalars
  // room for the idle sessions (one identity, one token) on top of pgbench's clients
  return `limits:
  sessions: { perIdentity: ${sessions}, perToken: ${sessions}, total: ${sessions} }
identities:
  - id: bench
    kind: agent
    groups: [bench]
    tokens:
      - hash: ${q(tokenHash)}
${audit === 'off' ? '' : `plugins:
  - use: audit-jsonl
    config: { path: ${q(auditPath)}, required: ${audit === 'required'} }
`}connections:
  - name: bench
    adapter: postgres
    listen: "127.0.0.1:${listenPort}"
    upstream: { host: ${upstream.host}, port: ${upstream.port}, database: ${upstream.database}, user: ${upstream.user}, password: ${q(upstream.password)} }
    plugins: { authenticate: [auth-token], decide: [policy], record: [${audit === 'off' ? '' : 'audit-jsonl'}] }
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
 * Resident set size of a process in MiB (Linux /proc), or undefined.
 * @param {number} pid
 */
function processRssMiB(pid) {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
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
async function startGatehouse(tmp, upstream, sessions, audit) {
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
      audit,
      sessions,
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
 * @param {string} [logPrefix] log a sample of transactions under this prefix, for percentiles
 */
async function pgbench(ep, modeArgs, seconds, logPrefix) {
  const args = [
    '-n', '-S', ...modeArgs,
    '-c', String(CLIENTS), '-j', String(THREADS), '-T', String(seconds),
    ...(logPrefix ? ['-l', `--sampling-rate=${SAMPLING_RATE}`, `--log-prefix=${logPrefix}`] : []),
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
  return { tps: Number(tps[1]), latencyMs: Number(lat[1]), ...(logPrefix ? latencyPercentiles(logPrefix) : {}) };
}

/**
 * p50 and p99 in ms from pgbench's per-transaction logs (`<prefix>.<pid>[.<thread>]`, one line per
 * sampled transaction: client, transaction number, latency in µs, …); the logs are removed.
 * @param {string} prefix
 */
function latencyPercentiles(prefix) {
  const dir = path.dirname(prefix);
  const base = `${path.basename(prefix)}.`;
  /** @type {number[]} */
  const us = [];
  for (const f of readdirSync(dir).filter((n) => n.startsWith(base))) {
    const file = path.join(dir, f);
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const v = Number(line.split(' ')[2]);
      if (line && Number.isFinite(v)) us.push(v);
    }
    rmSync(file);
  }
  if (us.length === 0) return {};
  us.sort((a, b) => a - b);
  return { p50Ms: percentile(us, 50) / 1000, p99Ms: percentile(us, 99) / 1000 };
}

/**
 * Opens idle authenticated sessions through `ep` up to each count in `counts` (cumulative) and
 * reports the proxy's RSS at each, against its RSS before the first: KiB per session.
 * @param {Endpoint} ep
 * @param {number[]} counts
 */
async function idleSessions(ep, counts) {
  const pid = ep.service?.proc.pid;
  if (!pid || counts.length === 0) return [];
  /** @type {pg.Client[]} */
  const clients = [];
  const settle = async () => {
    // let the gateway finish the logins' work and collect what they left behind
    await new Promise((r) => setTimeout(r, 2000));
  };
  await settle();
  const before = processRssMiB(pid);
  /** @type {Array<{ target: string, sessions: number, rssMiB: number, perSessionKiB: number }>} */
  const rows = [];
  try {
    for (const n of counts) {
      log(`${ep.name}: ${n} idle sessions`);
      while (clients.length < n) {
        const batch = Array.from({ length: Math.min(8, n - clients.length) }, () => new pg.Client({ host: '127.0.0.1', port: ep.port, user: ep.user, password: ep.password, database: 'app', ssl: false }));
        await Promise.all(batch.map((c) => c.connect()));
        clients.push(...batch);
      }
      // every session is up and answered a statement
      await Promise.all(clients.slice(-8).map((c) => c.query('SELECT 1')));
      await settle();
      const rss = processRssMiB(pid);
      if (before === undefined || rss === undefined) break;
      rows.push({ target: ep.name, sessions: n, rssMiB: rss, perSessionKiB: ((rss - before) * 1024) / n });
    }
  } catch (e) {
    throw new BenchError(`idle sessions through ${ep.name} failed after ${clients.length}: ${/** @type {Error} */ (e).message}`, ep.service?.tail());
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const { seconds, targets, idle, audit } = parseEnv();
  const maxIdle = idle.at(-1) ?? 0;

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
  // the idle sessions each hold a server connection too
  const cluster = await startPgCluster({ maxConnections: maxIdle + 100 });
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
      await startGatehouse(tmp, { host: cluster.host, port: cluster.port, database: cluster.database, user, password }, maxIdle + 64, audit),
    );
  }

  /** @type {import('./pg-report.mjs').Row[]} */
  const results = [];
  /** @type {import('./pg-report.mjs').IdleRow[]} */
  const idleRows = [];
  for (const ep of endpoints) {
    log(`${ep.name}: warm-up ${WARMUP_SECONDS}s`);
    await pgbench(ep, [], WARMUP_SECONDS);
    for (const mode of MODES) {
      log(`${ep.name}: ${mode.name} ${seconds}s`);
      const pid = ep.service?.proc.pid;
      const cpu0 = pid ? processCpuMs(pid) : undefined;
      const r = await pgbench(ep, mode.args, seconds, path.join(tmp, `pgbench-${ep.name}-${mode.name}`));
      const cpu1 = pid ? processCpuMs(pid) : undefined;
      // CPU the proxy process spent per transaction: steadier than tps on a shared 2-core box.
      const cpuUsPerTx = cpu0 !== undefined && cpu1 !== undefined && r.tps > 0 ? ((cpu1 - cpu0) * 1000) / (r.tps * seconds) : undefined;
      results.push({ target: ep.name, mode: mode.name, ...r, cpuUsPerTx, rssMiB: pid ? processRssMiB(pid) : undefined });
    }
    if (ep.name === 'gatehouse') idleRows.push(...(await idleSessions(ep, idle)));
  }

  // Clean up first so nothing is printed after the ratio line.
  await cleanupAll();
  return { results, idleRows, seconds, audit };
}

try {
  const { results, idleRows, seconds, audit } = await main();
  const marked = audit === 'required' ? '' : `, gatehouse audit ${audit}`;
  const header = `pgbench -n -S -c ${CLIENTS} -j ${THREADS} -T ${seconds} (scale ${SCALE}, sslmode=disable), ${new Date().toISOString().slice(0, 10)}, ${os.cpus().length} × ${os.cpus()[0]?.model.trim() ?? 'unknown CPU'}, node ${process.version}${marked}`;
  // a run without the required sink is not the gateway the aim is about: its ratio line says so
  if (!interrupted) console.log(`${formatReport({ header, rows: results, idle: idleRows })}${audit === 'required' ? '' : ` (gatehouse audit ${audit})`}`);
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
