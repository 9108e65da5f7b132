/**
 * audit-webhook: audit events POSTed in batches to an HTTP endpoint (a SIEM, a log collector).
 *
 * Guarantees:
 * - Batches go out one at a time, in order; the body is the batch's sealed lines
 *   (`application/x-ndjson`), the same hash-chained lines audit-jsonl writes, so the receiver can
 *   run `gatehouse audit verify` on what it stored. The chain continues across restarts from the
 *   last head the endpoint took (kept next to the spool).
 * - A write resolves when its batch was accepted (2xx), or once it is in the local spool
 *   (`<dataDir>/spool/audit-webhook-<name>.jsonl`, fsync'd). A write waits for at most one
 *   attempt of the endpoint: a batch whose first attempt fails (network error, timeout, a status
 *   other than 2xx) goes to the spool at once, and while the spool holds anything (or is being
 *   sent) new events go straight behind it, without waiting for the network. A statement behind
 *   a required sink is never held for the length of an outage: that is what the spool is for.
 * - A retry loop sends the spool in order, each batch retried with exponential backoff up to
 *   `maxAttempts` with the same body and the same `Idempotency-Key` (the SHA-256 of the body), so
 *   a receiver can drop a batch it already took. A line is sealed the same way every time it is
 *   sent, so a receiver that took a batch whose acknowledgement was lost sees the same lines again.
 * - Without a spool (`spoolMaxBytes: 0`) a batch is retried in place, up to `maxAttempts`.
 * - When the spool is full, a `required` sink rejects new events (their requests are refused)
 *   and a `best-effort` one drops them; the chain shows the gap to whoever verifies.
 */
import { Type, type Static } from '@sinclair/typebox'
import { createHash } from 'node:crypto'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { constructPlugin, definePlugin, DiskSpool, GENESIS_HASH, Metrics, type MetricsRegistry, inject, injectable, PluginConfig, PluginContextToken, PLUGIN_API_VERSION, sealEvent, serializeAuditEvent, type AuditEvent, type AuditSink, type Logger, type PluginContext, type SinkMode } from '@gatehouse/core'

const ConfigSchema = Type.Object(
  {
    url: Type.String({ pattern: '^https?://', description: 'where batches are POSTed' }),
    headers: Type.Record(Type.String(), Type.String(), { default: {}, description: 'extra headers, e.g. Authorization: ${env:…}' }),
    required: Type.Boolean({ default: false }),
    maxBatch: Type.Integer({ minimum: 1, maximum: 10000, default: 500 }),
    flushMs: Type.Integer({ minimum: 0, default: 50, description: 'how long an event may wait for company' }),
    maxAttempts: Type.Integer({ minimum: 1, maximum: 20, default: 5 }),
    backoffMs: Type.Integer({ minimum: 1, default: 200, description: 'first retry delay; doubles each attempt' }),
    timeoutMs: Type.Integer({ minimum: 100, default: 5000 }),
    spoolMaxBytes: Type.Integer({ minimum: 0, default: 64 * 1024 * 1024, description: 'local spool for batches the endpoint did not take; 0 disables it' }),
    retryMs: Type.Integer({ minimum: 50, default: 1000, description: 'how often a spooled sink tries the endpoint again' }),
  },
  { additionalProperties: false },
)
type WebhookConfig = Static<typeof ConfigSchema>

interface Pending {
  readonly json: string
  readonly id: string
  readonly resolve: () => void
  readonly reject: (err: Error) => void
}

@injectable()
export class WebhookSink implements AuditSink {
  readonly mode: SinkMode
  private queue: Pending[] = []
  /** A batch is on its way to the endpoint from the write path. */
  private sending = false
  /** The spool is being sent; new events go behind it. */
  private replaying: Promise<void> | undefined
  private timer: NodeJS.Timeout | undefined
  private prev = GENESIS_HASH
  private readonly logger: Logger
  private readonly spool: DiskSpool
  private retryTimer: NodeJS.Timeout | undefined
  private readonly headFile: string


  constructor(
    @inject(PluginConfig) private readonly config: WebhookConfig,
    @inject(PluginContextToken) ctx: PluginContext,
    @inject(Metrics) metrics: MetricsRegistry,
  ) {
    this.mode = config.required ? 'required' : 'best-effort'
    this.logger = ctx.logger
    const name = ctx.instance.replace(/[^A-Za-z0-9._-]/g, '_')
    this.spool = new DiskSpool(join(ctx.dataDir, 'spool', `audit-webhook-${name}.jsonl`), config.spoolMaxBytes, { metrics, sink: `audit-webhook:${ctx.instance}` })
    // The chain continues across restarts from the last head the endpoint took.
    this.headFile = join(ctx.dataDir, 'spool', `audit-webhook-${name}.head`)
    const head = existsSync(this.headFile) ? readFileSync(this.headFile, 'utf8').trim() : ''
    if (/^[0-9a-f]{64}$/.test(head)) this.prev = head
    if (this.spool.size > 0) this.scheduleRetry()
  }

  write(event: AuditEvent): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ json: serializeAuditEvent(event), id: event.id, resolve, reject })
      if (this.queue.length >= this.config.maxBatch) this.kick()
      else this.timer ??= setTimeout(() => this.kick(), this.config.flushMs)
    })
  }

  private kick(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    if (!this.sending) void this.sendLoop()
  }

  private async sendLoop(): Promise<void> {
    this.sending = true
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.config.maxBatch)
        // Behind a non-empty spool, or one being sent, new events wait their turn there.
        if (this.spool.size === 0 && this.replaying === undefined) {
          const sent = await this.send(batch.map((p) => p.json), this.spool.maxBytes > 0 ? 1 : this.config.maxAttempts)
          if (sent === undefined) {
            for (const p of batch) p.resolve()
            continue
          }
          this.logger.error({ url: redactUrl(this.config.url), events: batch.length, err: sent }, 'audit webhook batch failed; spooling')
        }
        this.toSpool(batch)
      }
    } finally {
      this.sending = false
    }
  }

  /** Seals and POSTs one batch; the chain advances only when the endpoint took it. Returns the error, if any. */
  private async send(jsons: readonly string[], attempts: number): Promise<string | undefined> {
    let prev = this.prev
    let body = ''
    for (const json of jsons) {
      const sealed = sealEvent(json, prev)
      prev = sealed.hash
      body += `${sealed.line}\n`
    }
    // The key names this exact body: a receiver deduplicating by it never drops a different batch.
    const key = createHash('sha256').update(body).digest('hex')
    const error = await this.deliver(body, key, attempts)
    if (error === undefined) {
      this.prev = prev
      writeFileSync(this.headFile, `${prev}\n`, { mode: 0o600 })
    }
    return error
  }

  private toSpool(batch: readonly Pending[]): void {
    let kept = false
    try {
      kept = this.spool.append(batch.map((p) => p.json))
    } catch (err) {
      for (const p of batch) p.reject(err as Error)
      return
    }
    if (kept) {
      for (const p of batch) p.resolve()
      this.scheduleRetry()
      return
    }
    this.logger.error({ spool: this.spool.path, bytes: this.spool.size }, 'audit webhook spool full: new events are refused')
    const err = new Error('the audit webhook is unavailable and its spool is full')
    for (const p of batch) (this.mode === 'required' ? p.reject(err) : p.resolve())
  }

  private scheduleRetry(): void {
    if (this.retryTimer) return
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined
      this.replay().catch((err: unknown) => this.logger.error({ err: String(err) }, 'audit webhook replay failed'))
    }, this.config.retryMs)
    this.retryTimer.unref()
  }

  /** Sends the spool in order (the round in progress, if one is). */
  private replay(): Promise<void> {
    // A batch in flight from the write path goes first; it spools behind if it fails.
    if (this.sending) {
      this.scheduleRetry()
      return Promise.resolve()
    }
    this.replaying ??= this.replayRounds().finally(() => {
      this.replaying = undefined
      if (this.spool.size > 0) this.scheduleRetry()
      // Events that arrived as the last round ended were spooled or queued: send what is queued.
      if (this.queue.length > 0) this.kick()
    })
    return this.replaying
  }

  /** Rounds of the spool until it is empty or the endpoint fails; events spooled meanwhile go in the next round. */
  private async replayRounds(): Promise<void> {
    while (this.spool.size > 0) {
      const spooled = this.spool.read()
      for (let i = 0; i < spooled.lines.length; i += this.config.maxBatch) {
        const chunk = spooled.lines.slice(i, i + this.config.maxBatch).filter((l) => {
          try {
            JSON.parse(l)
            return true
          } catch {
            // A line torn by a crash cannot be sent (the spool cuts torn tails when it opens).
            this.logger.error({ spool: this.spool.path }, 'skipping a torn line in the audit webhook spool')
            return false
          }
        })
        const error = chunk.length === 0 ? undefined : await this.send(chunk, this.config.maxAttempts)
        if (error !== undefined) {
          // Drop what went through; the rest waits for the next round.
          this.spool.consume(spooled.lines.slice(0, i).reduce((n, l) => n + Buffer.byteLength(l) + 1, 0))
          return
        }
      }
      this.spool.consume(spooled.bytes)
      this.logger.warn({ replayed: spooled.lines.length }, 'audit webhook reachable again; spool sent')
    }
  }

  /** POSTs one batch with retries; resolves undefined on success, or the last error. */
  private async deliver(body: string, idempotencyKey: string, attempts: number): Promise<string | undefined> {
    let last = 'not sent'
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, this.config.backoffMs * 2 ** (attempt - 1)))
      try {
        const res = await fetch(this.config.url, {
          method: 'POST',
          headers: { 'content-type': 'application/x-ndjson', 'idempotency-key': idempotencyKey, ...this.config.headers },
          body,
          signal: AbortSignal.timeout(this.config.timeoutMs),
        })
        await res.arrayBuffer().catch(() => undefined)
        if (res.ok) return undefined
        last = `HTTP ${res.status}`
      } catch (err) {
        last = (err as Error).message
      }
    }
    return last
  }

  async flush(): Promise<void> {
    this.kick()
    while (this.sending || this.queue.length > 0) await new Promise((r) => setTimeout(r, 5))
    if (this.spool.size > 0) await this.replay()
    while (this.sending || this.replaying !== undefined || this.queue.length > 0) await new Promise((r) => setTimeout(r, 5))
  }

  async close(): Promise<void> {
    await this.flush()
    if (this.retryTimer) clearTimeout(this.retryTimer)
  }
}

/** The URL's origin only, for logs: some webhook URLs carry their secret in the path. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url)
    return `${u.protocol}//${u.host}`
  } catch {
    return 'invalid url'
  }
}

export const plugin = definePlugin({
  name: 'audit-webhook',
  stage: 'record',
  apiVersion: PLUGIN_API_VERSION,
  configSchema: ConfigSchema,
  description: 'audit events POSTed in hash-chained NDJSON batches, with retries',
  register(container, config, ctx) {
    return constructPlugin(container, WebhookSink, config, ctx)
  },
})

export default plugin
