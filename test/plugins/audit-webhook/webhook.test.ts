/**
 * audit-webhook: a real gateway POSTs its audit events in hash-chained NDJSON batches to an HTTP
 * receiver, retrying the same batch (same Idempotency-Key) through failures; what the receiver
 * keeps is complete, in order and verifiable.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createHash } from 'node:crypto'
import { createServer, type Server } from 'node:http'
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
    await new Promise((res) => setTimeout(res, 300))
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
})
