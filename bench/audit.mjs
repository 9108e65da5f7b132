#!/usr/bin/env node
// bench:audit — events per second into the audit sinks, measured in-process with realistic
// request/outcome events (a SELECT with its SQL facts):
//
//   jsonl          the audit-jsonl sink: group commit, hash chain, write(2) per batch
//   jsonl-baseline the same lines (serialized, not sealed) appended with one write(2) per
//                  batch of the same size: what the chain and the sink's bookkeeping cost
//   postgres       the audit-postgres sink into a throwaway PostgreSQL 15 cluster: batched,
//                  hash-chained inserts with the table's indexes (BENCH_PG_EVENTS, default 50000)
//
// Every write is awaited the way the gateway awaits a required sink (all in flight at once,
// resolved per batch). The last line is:
//   events_per_s jsonl=N postgres=M
//
// Environment: BENCH_EVENTS (default 200000), BENCH_PG_EVENTS (default 50000).
import 'reflect-metadata'
import { mkdtempSync, openSync, rmSync, writeSync, closeSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { serializeAuditEvent, createLogger, MetricsRegistry } from '@gatehouse/core'
import { JsonlSink } from '@gatehouse/plugin-audit-jsonl'
import { PostgresSink } from '@gatehouse/plugin-audit-postgres'
import { startPgCluster } from '../test/fixtures/pg-cluster-impl.mjs'

const N = Number(process.env.BENCH_EVENTS ?? 200_000)
const PG_N = Number(process.env.BENCH_PG_EVENTS ?? 50_000)
const dir = mkdtempSync(path.join(os.tmpdir(), 'gatehouse-bench-audit-'))
const principal = Object.freeze({ id: 'agent-1', kind: 'agent', groups: Object.freeze(['agents']), credential: 'token:t1' })
const facts = Object.freeze({ statement: 'SELECT', tag: 'SELECT', kinds: Object.freeze(['SELECT']), reads: Object.freeze(['orders', 'customers']), writes: Object.freeze([]), functions: Object.freeze(['now']) })

function event(i) {
  return i % 2 === 0
    ? { id: `s1.${i}:request`, time: new Date().toISOString(), session: 's1', connection: 'pg', protocol: 'postgres', type: 'request', request: `s1.${i}`, principal, action: 'sql.query', target: 'pg', text: 'SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.id = $1', params: [String(i)], attrs: { sql: facts }, verdict: 'allow', rule: 'p/read', reason: 'allowed' }
    : { id: `s1.${i - 1}:outcome`, time: new Date().toISOString(), session: 's1', connection: 'pg', protocol: 'postgres', type: 'outcome', request: `s1.${i - 1}`, verdict: 'allow', rule: 'p/read', rows: 1, status: 'SELECT 1', durationMs: 0.4 }
}

async function jsonl() {
  const sink = new JsonlSink({ path: path.join(dir, 'audit.jsonl'), required: true, fsync: 'never', maxBatchBytes: 1 << 20 }, { dataDir: dir, logger: createLogger('silent'), gateway: {}, instance: 'audit-jsonl' })
  await sink.start()
  const started = process.hrtime.bigint()
  const pending = []
  for (let i = 0; i < N; i++) {
    pending.push(sink.write(event(i)))
    // let the event loop turn now and then, as sessions would
    if (i % 1000 === 999) await new Promise((r) => setImmediate(r))
  }
  await Promise.all(pending)
  await sink.flush()
  const s = Number(process.hrtime.bigint() - started) / 1e9
  await sink.close()
  return N / s
}

async function baseline() {
  const fd = openSync(path.join(dir, 'baseline.jsonl'), 'a')
  const started = process.hrtime.bigint()
  let batch = ''
  for (let i = 0; i < N; i++) {
    batch += `${serializeAuditEvent(event(i))}\n`
    if (i % 1000 === 999) {
      writeSync(fd, batch)
      batch = ''
      await new Promise((r) => setImmediate(r))
    }
  }
  if (batch) writeSync(fd, batch)
  const s = Number(process.hrtime.bigint() - started) / 1e9
  closeSync(fd)
  return N / s
}

async function postgres() {
  const cluster = await startPgCluster()
  try {
    const url = `postgres://postgres@/${cluster.database}?host=${encodeURIComponent(cluster.socketDir)}&port=${cluster.port}`
    const sink = new PostgresSink({ url, table: 'gatehouse_audit', chain: 'bench', required: true, maxBatch: 500, connectTimeoutMs: 5000, spoolMaxBytes: 64 * 1024 * 1024, retryMs: 1000 }, { dataDir: dir, logger: createLogger('silent'), gateway: {}, instance: 'audit-postgres' }, new MetricsRegistry())
    await sink.start()
    const started = process.hrtime.bigint()
    const pending = []
    for (let i = 0; i < PG_N; i++) {
      pending.push(sink.write(event(i)))
      if (i % 1000 === 999) await new Promise((r) => setImmediate(r))
    }
    await Promise.all(pending)
    const s = Number(process.hrtime.bigint() - started) / 1e9
    await sink.close()
    return PG_N / s
  } finally {
    await cluster.stop()
  }
}

try {
  await jsonl() // warm-up
  const base = await baseline()
  const chained = await jsonl()
  process.stdout.write(`${N} events each\n`)
  process.stdout.write(`jsonl-baseline  ${Math.round(base).toString().padStart(9)} events/s\n`)
  process.stdout.write(`jsonl           ${Math.round(chained).toString().padStart(9)} events/s (${(chained / base).toFixed(2)} of baseline)\n`)
  const pgRate = await postgres()
  process.stdout.write(`postgres        ${Math.round(pgRate).toString().padStart(9)} events/s (${PG_N} events)\n`)
  process.stdout.write(`events_per_s jsonl=${Math.round(chained)} postgres=${Math.round(pgRate)}\n`)
} finally {
  rmSync(dir, { recursive: true, force: true })
}
