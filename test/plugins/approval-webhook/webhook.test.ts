/**
 * approval-webhook: psql's statement is held; the receiver (an HTTP server on loopback that
 * refuses the first attempt) gets the notice after a retry, with the review id, the requester,
 * the text and how to approve; the statement waits for the approval all the same and then runs.
 * A receiver that never answers costs the request nothing. The Slack form carries the same.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import { createLogger, isoNow, Metrics, MetricsRegistry, ReviewsToken, type GatewayConfig, type RequestEvent } from '@gatehouse/core'
import { ApprovalWebhook, type ReviewNotice } from '@gatehouse/plugin-approval-webhook'
import { startPgCluster, type PgCluster } from '../../fixtures/pg-cluster.js'
import { pgUpstream, startGateway, type TestGateway } from '../../fixtures/gateway.js'

let cluster: PgCluster
let receiver: Server
let url: string
const received: { body: unknown; headers: IncomingMessage['headers'] }[] = []
let refuseNext = 0

beforeAll(async () => {
  cluster = await startPgCluster()
  await cluster.psql(`CREATE TABLE w (id int); INSERT INTO w VALUES (1), (2); GRANT ALL ON w TO ${cluster.users.scram.user};`)
  receiver = createServer((req, res) => {
    let body = ''
    req.on('data', (d: Buffer) => (body += d.toString()))
    req.on('end', () => {
      if (refuseNext > 0) {
        refuseNext--
        res.writeHead(500).end('not now')
        return
      }
      received.push({ body: JSON.parse(body), headers: req.headers })
      res.writeHead(200).end('ok')
    })
  })
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r))
  url = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/hook`
}, 60_000)

afterAll(async () => {
  receiver?.close()
  await cluster?.stop()
})

function gatewayWith(config: Record<string, unknown>): Promise<TestGateway> {
  return startGateway({
    upstream: pgUpstream(cluster),
    connection: { plugins: { record: ['audit-jsonl', 'approval-webhook'] } },
    extraPlugins: [{ use: 'approval-webhook', config }],
    policies: [{ id: 'p', principals: { groups: ['agents'] }, rules: [{ id: 'deletes', effect: 'review', match: { 'sql.statement': ['DELETE'] }, reason: 'deletes need a person' }] }],
  })
}

function psqlHeld(gw: TestGateway, sql: string): Promise<{ code: number | null; stderr: string; stdout: string }> {
  const child = spawn('psql', ['-X', '-h', '127.0.0.1', '-p', String(gw.port), '-U', 'agent-1', '-d', 'app', '-At'], { env: { PATH: process.env.PATH ?? '', PGPASSWORD: gw.tokens['agent-1'] as string, PGSSLMODE: 'disable' } })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  child.stdin.end(sql)
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })))
}

async function until<T>(what: () => T | undefined, ms = 10_000): Promise<T> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 20))) {
    const v = what()
    if (v !== undefined) return v
  }
  throw new Error('timed out')
}

describe('approval-webhook', () => {
  it('POSTs the held request to the receiver, retrying a refused attempt; the statement waits for the approval and runs', async () => {
    received.length = 0
    refuseNext = 1
    const gw = await gatewayWith({ url, adminUrl: 'http://gatehouse.example:8080/', headers: { authorization: 'Bearer hook-secret' }, backoffMs: 50 })
    try {
      const run = psqlHeld(gw, 'DELETE FROM w WHERE id = 1;\n')
      const got = await until(() => received[0])
      const n = got.body as ReviewNotice
      expect(n).toMatchObject({ type: 'review.requested', connection: 'pg', protocol: 'postgres', principal: { id: 'agent-1' }, action: 'sql.query', text: 'DELETE FROM w WHERE id = 1', rule: 'p/deletes', reason: 'deletes need a person' })
      expect(n.review).toMatch(/^rev_/)
      expect(n.approve).toEqual({ cli: `gatehouse review approve ${n.review} --admin http://gatehouse.example:8080`, url: `http://gatehouse.example:8080/reviews/${n.review}/approve` })
      expect(n.deny.url).toBe(`http://gatehouse.example:8080/reviews/${n.review}/deny`)
      expect(n.params).toBeUndefined()
      expect(got.headers.authorization).toBe('Bearer hook-secret')
      expect(refuseNext).toBe(0)
      // the receiver records the POST before it answers; the gateway counts it once the answer is in
      let metrics = ''
      for (let i = 0; i < 200 && !/gatehouse_approval_webhook_sent_total\{/.test(metrics); i++) {
        metrics = await gw.gateway.container.resolve(Metrics).text()
        if (!/gatehouse_approval_webhook_sent_total\{/.test(metrics)) await new Promise((r) => setTimeout(r, 20))
      }
      expect(metrics).toMatch(/gatehouse_approval_webhook_failures_total\{sink="approval-webhook"\} 1/)
      expect(metrics).toMatch(/gatehouse_approval_webhook_sent_total\{sink="approval-webhook"\} 1/)
      // the notice did not decide anything: the statement still waits
      expect(await cluster.psql('SELECT count(*) FROM w WHERE id = 1')).toBe('1')
      await gw.gateway.container.resolve(ReviewsToken).vote(n.review, { by: 'alice', approve: true, at: Date.now() })
      const r = await run
      expect(r.stdout.trim()).toBe('DELETE 1')
    } finally {
      await gw.stop()
    }
  })

  it('a receiver that never answers does not hold the request longer than its review', async () => {
    const silent = createServer(() => undefined)
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r))
    const gw = await gatewayWith({ url: `http://127.0.0.1:${(silent.address() as { port: number }).port}/`, timeoutMs: 30_000, retries: 0 })
    try {
      const run = psqlHeld(gw, 'DELETE FROM w WHERE id = 2;\n')
      const reviews = gw.gateway.container.resolve(ReviewsToken)
      const pending = await until(() => (reviews.held > 0 ? true : undefined))
      expect(pending).toBe(true)
      const [held] = await reviews.list({ status: 'pending' })
      await reviews.vote(held?.id as string, { by: 'alice', approve: true, at: Date.now() })
      expect((await run).stdout.trim()).toBe('DELETE 1')
    } finally {
      await gw.stop()
      silent.closeAllConnections()
      silent.close()
    }
  })

  it('the Slack form: a text line and blocks naming the review, the requester, the statement and the commands', async () => {
    received.length = 0
    const metrics = new MetricsRegistry()
    const hook = new ApprovalWebhook(
      { url, format: 'slack', headers: {}, includeParams: true, retries: 0, backoffMs: 10, timeoutMs: 2000 },
      { gateway: {} as GatewayConfig, instance: 'hook', logger: createLogger('silent'), dataDir: '/tmp' },
      metrics,
    )
    const event = { id: 's.1:request', time: isoNow(), session: 's', connection: 'orders', protocol: 'postgres', type: 'request', request: 's.1', principal: { id: 'ci', kind: 'agent', groups: ['ci'], credential: 'token:x' }, action: 'sql.query', target: 'orders', text: 'DELETE FROM `t`', params: ['7'], attrs: {}, verdict: 'review', rule: 'p/deletes', reason: 'needs a person', review: 'rev_1' } as RequestEvent
    hook.write(event)
    // other events, and intents that are not held, are not notified
    hook.write({ ...event, verdict: 'allow', review: undefined } as RequestEvent)
    hook.write({ ...event, type: 'outcome' } as never)
    await hook.flush()
    expect(received).toHaveLength(1)
    const body = received[0]?.body as { text: string; blocks: { text?: { text: string }; elements?: { text: string }[] }[] }
    expect(body.text).toBe("Review rev_1: ci waits on orders for `DELETE FROM 't'` (p/deletes: needs a person)")
    expect(body.blocks[0]?.text?.text).toContain('*ci* waits on *orders* (postgres)')
    expect(body.blocks[1]?.elements?.[0]?.text).toContain('gatehouse review approve rev_1')
    // a text longer than a message: the approve command becomes "read it whole"; mrkdwn is escaped, a newline cannot end the code span
    received.length = 0
    hook.write({ ...event, text: `DELETE FROM t WHERE id = 5 /*${' '.repeat(2100)}*/ OR true`, review: 'rev_2' } as RequestEvent)
    hook.write({ ...event, text: 'SELECT 1\n<!channel> *click* <http://evil|here> & more', review: 'rev_3' } as RequestEvent)
    await hook.flush()
    const [long, odd] = received.map((r) => r.body as { text: string; blocks: { elements?: { text: string }[] }[] })
    expect(long?.blocks[1]?.elements?.[0]?.text).toContain('read it whole: `gatehouse review show rev_2')
    expect(long?.blocks[1]?.elements?.[0]?.text).not.toContain('review approve')
    expect(odd?.text).toBe('Review rev_3: ci waits on orders for `SELECT 1 &lt;!channel&gt; *click* &lt;http://evil|here&gt; &amp; more` (p/deletes: needs a person)')
    await hook.close()
  })

  it('json form: a truncated text carries no approve URL, only the command to read it whole', async () => {
    received.length = 0
    const hook = new ApprovalWebhook(
      { url, format: 'json', headers: {}, adminUrl: 'http://gh.example:8080', includeParams: false, retries: 0, backoffMs: 10, timeoutMs: 2000 },
      { gateway: {} as GatewayConfig, instance: 'hook', logger: createLogger('silent'), dataDir: '/tmp' },
      new MetricsRegistry(),
    )
    const event = { id: 's.1:request', time: isoNow(), session: 's', connection: 'orders', protocol: 'postgres', type: 'request', request: 's.1', principal: { id: 'ci', kind: 'agent', groups: [], credential: 'token:x' }, action: 'sql.query', target: 'orders', text: 'x'.repeat(2500), attrs: {}, verdict: 'review', rule: 'p/r', reason: 'r', review: 'rev_9' } as RequestEvent
    hook.write(event)
    await hook.flush()
    const n = received[0]?.body as ReviewNotice
    expect(n.truncated).toBe(true)
    expect(n.text).toHaveLength(2001)
    expect(n.approve).toEqual({ cli: 'gatehouse review show rev_9 --admin http://gh.example:8080  # the text is longer than this message; read it whole before approving' })
    expect(n.deny.url).toBe('http://gh.example:8080/reviews/rev_9/deny')
    await hook.close()
  })
})
