/**
 * audit-webhook: a real gateway POSTs its audit events in hash-chained NDJSON batches to an HTTP
 * receiver, retrying the same batch (same Idempotency-Key) through failures; what the receiver
 * keeps is complete, in order and verifiable.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createHash } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLogger, MetricsRegistry, verifyChain } from '@gatehouse/core'
import { WebhookSink } from '@gatehouse/plugin-audit-webhook'
import { startPgCluster, type PgCluster } from '../../fixtures/pg-cluster.js'
import { pgUpstream, startGateway, type TestGateway } from '../../fixtures/gateway.js'
import { psql } from '../../fixtures/clients.js'

let cluster: PgCluster
let receiver: Server
let received: { key: string; body: string }[] = []
let failNext = 0
let down = false
let gw: TestGateway

beforeAll(async () => {
  cluster = await startPgCluster()
  receiver = createServer((req, res) => {
    let body = ''
    req.on('data', (d: Buffer) => (body += d.toString()))
    req.on('end', () => {
      if (down) {
        res.statusCode = 502
        return res.end('down')
      }
      if (failNext > 0) {
        failNext--
        res.statusCode = 503
        return res.end('try later')
      }
      received.push({ key: String(req.headers['idempotency-key']), body })
      res.statusCode = 204
      res.end()
    })
  })
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', () => r()))
  const url = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/audit`
  gw = await startGateway({
    upstream: pgUpstream(cluster),
    connection: { plugins: { record: ['audit-jsonl', 'audit-webhook'] } },
    extraPlugins: [{ use: 'audit-webhook', config: { url, required: true, flushMs: 10, backoffMs: 20, maxAttempts: 3, retryMs: 100 } }],
  })
})

afterAll(async () => {
  await gw?.stop()
  receiver?.close()
  await cluster?.stop()
})

describe('audit-webhook', () => {
  it('delivers every event, in order, through failed attempts, and the received lines verify', async () => {
    failNext = 2
    const target = { port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] as string }
    const r = await psql(target, 'SELECT 1;\nSELECT 2;\nDROP TABLE nothing;\n')
    expect(r.stdout).toBe('1\n2\n')
    // the failed batch went to the spool; the retry loop sends it, and what came after, in order
    const fileIds = async () => (await gw.audit()).map((e) => e.id)
    for (let i = 0; i < 100 && received.map((b) => b.body).join('').trim().split('\n').length < (await fileIds()).length; i++) await new Promise((res) => setTimeout(res, 50))
    const text = received.map((b) => b.body).join('')
    const events = text.trim().split('\n').map((l) => JSON.parse(l) as { id: string; type: string })
    const fromFile = (await gw.audit()).map((e) => e.id)
    expect(events.map((e) => e.id)).toEqual(fromFile)
    expect(verifyChain([{ name: 'webhook', text }]).ok).toBe(true)
    // the Idempotency-Key names the exact body
    expect(received.every((b) => b.key === createHash('sha256').update(b.body).digest('hex'))).toBe(true)
  })

  it('continues its chain across a restart: what the endpoint received from both runs verifies as one chain', async () => {
    received = []
    const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-webhook-'))
    const url = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/audit`
    const config = { url, headers: {}, required: true, maxBatch: 500, flushMs: 5, maxAttempts: 2, backoffMs: 10, timeoutMs: 2000, spoolMaxBytes: 1 << 20, retryMs: 100 }
    const ctx = { dataDir, logger: createLogger('silent'), gateway: {} as never, instance: 'audit-webhook' }
    const event = (n: number) => ({ id: `s.${n}:outcome`, time: new Date().toISOString(), session: 's', connection: 'c', protocol: 'postgres', type: 'outcome', request: `s.${n}`, verdict: 'allow' }) as never
    const first = new WebhookSink(config, ctx, new MetricsRegistry())
    await Promise.all([first.write(event(1)), first.write(event(2))])
    await first.close()
    const second = new WebhookSink(config, ctx, new MetricsRegistry())
    await second.write(event(3))
    await second.close()
    const text = received.map((b) => b.body).join('')
    expect(verifyChain([{ name: 'received', text }])).toMatchObject({ ok: true, events: 3 })
  })

  it('takes an event written while a replay of the spool is running, though the endpoint stays down', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-webhook-'))
    const url = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/audit`
    const config = { url, headers: {}, required: true, maxBatch: 500, flushMs: 1, maxAttempts: 1, backoffMs: 1, timeoutMs: 2000, spoolMaxBytes: 1 << 20, retryMs: 5 }
    const ctx = { dataDir, logger: createLogger('silent'), gateway: {} as never, instance: 'audit-webhook' }
    const event = (n: number) => ({ id: `r.${n}:outcome`, time: new Date().toISOString(), session: 'r', connection: 'c', protocol: 'postgres', type: 'outcome', request: `r.${n}`, verdict: 'allow' }) as never
    down = true
    const sink = new WebhookSink(config, ctx, new MetricsRegistry())
    try {
      await sink.write(event(0))
      // replays run every few ms against the down endpoint; writes land during some of them
      for (let n = 1; n <= 40; n++) {
        const taken = await Promise.race([sink.write(event(n)).then(() => true), new Promise((r) => setTimeout(() => r(false), 3000))])
        expect(taken, `event ${n}`).toBe(true)
        await new Promise((r) => setTimeout(r, n % 7))
      }
    } finally {
      down = false
      await sink.close()
    }
  })

  it('spools while the endpoint is down, keeps statements running, and sends everything in order once it is back', async () => {
    received = []
    down = true
    const target = { port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] as string }
    const r = await psql(target, 'SELECT 10;\nSELECT 11;\nSELECT 12;\n')
    expect(r.stdout).toBe('10\n11\n12\n')
    expect(received).toEqual([])
    down = false
    for (let i = 0; i < 50 && !received.map((b) => b.body).join('').includes('SELECT 12'); i++) await new Promise((res) => setTimeout(res, 100))
    await new Promise((res) => setTimeout(res, 200))
    const fromFile = (await gw.audit()).map((e) => e.id)
    const sent = received.map((b) => b.body).join('').trim().split('\n').map((l) => (JSON.parse(l) as { id: string }).id)
    // everything the file has since the endpoint went down arrived, in the same order
    expect(sent).toEqual(fromFile.slice(fromFile.length - sent.length))
    expect(sent.length).toBeGreaterThanOrEqual(6)
  })

  it('never holds statements for an outage: with a replay of the spool running against a silent endpoint, under CPU load, psql runs at once', async () => {
    // An endpoint that accepts connections and never answers while `silent`: every attempt waits
    // for its timeout, so one replay round lasts well over 15 s (4 attempts × 3 s + backoff).
    let silent = true
    const got: string[] = []
    const held = new Set<import('node:http').ServerResponse>()
    const endpoint = createServer((req, res) => {
      let body = ''
      req.on('data', (d: Buffer) => (body += d.toString()))
      req.on('end', () => {
        if (silent) return void held.add(res)
        got.push(body)
        res.statusCode = 204
        res.end()
      })
    })
    await new Promise<void>((r) => endpoint.listen(0, '127.0.0.1', () => r()))
    const url = `http://127.0.0.1:${(endpoint.address() as { port: number }).port}/audit`
    const gw2 = await startGateway({
      upstream: pgUpstream(cluster),
      connection: { plugins: { record: ['audit-jsonl', 'audit-webhook'] } },
      extraPlugins: [{ use: 'audit-webhook', config: { url, required: true, flushMs: 5, timeoutMs: 3000, maxAttempts: 4, backoffMs: 1000, retryMs: 100 } }],
    })
    const burners: ChildProcess[] = []
    try {
      const target = { port: gw2.port, user: 'agent-1', password: gw2.tokens['agent-1'] as string }
      // the first batch waits for one attempt (3 s), then goes to the spool; the replay starts
      const first = await psql(target, 'SELECT 1;\n')
      expect(first.stdout).toBe('1\n')
      // both cores busy for the rest of the test (each burner stops by itself after 20 s)
      for (let i = 0; i < 2; i++) burners.push(spawn(process.execPath, ['-e', 'const end = Date.now() + 20000; while (Date.now() < end) {}'], { stdio: 'ignore' }))
      const statements = Array.from({ length: 20 }, (_, i) => `SELECT ${100 + i};`).join('\n')
      const started = Date.now()
      const r = await psql(target, `${statements}\n`)
      const took = Date.now() - started
      expect(r.stdout.trim().split('\n')).toEqual(Array.from({ length: 20 }, (_, i) => String(100 + i)))
      // a replay round against the silent endpoint lasts over 15 s; the session did not wait for it
      expect(took).toBeLessThan(8000)
      expect(got).toEqual([])
      // the endpoint answers again: everything arrives, in the file's order, as one verifiable chain
      silent = false
      for (const res of held) res.destroy()
      const fileIds = async () => (await gw2.audit()).map((e) => e.id)
      const gotIds = () => got.join('').trim().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { id: string }).id)
      for (let i = 0; i < 300 && gotIds().length < (await fileIds()).length; i++) await new Promise((res) => setTimeout(res, 100))
      expect(gotIds()).toEqual(await fileIds())
      expect(verifyChain([{ name: 'endpoint', text: got.join('') }]).ok).toBe(true)
    } finally {
      for (const b of burners) b.kill()
      await gw2.stop()
      for (const res of held) res.destroy()
      endpoint.close()
    }
  }, 90_000)
})
