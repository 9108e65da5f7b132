/**
 * audit-webhook: audit events POSTed in batches to an HTTP endpoint (a SIEM, a log collector).
 *
 * Guarantees:
 * - Batches go out one at a time, in order; the body is the batch's sealed lines
 *   (`application/x-ndjson`), the same hash-chained lines audit-jsonl writes, so the receiver can
 *   run `gatehouse audit verify` on what it stored.
 * - A batch that fails (network error, timeout, or a status other than 2xx) is retried with
 *   exponential backoff, up to `maxAttempts`, with the same body and the same
 *   `Idempotency-Key` (the first event's id), so a receiver can drop a batch it already took.
 * - A write resolves when its batch was accepted (2xx). In `required` mode a batch that fails
 *   every attempt rejects its writes (the requests are refused); in `best-effort` mode (the
 *   default) it is dropped and logged, and the chain shows the gap to whoever verifies.
 */
import { Type, type Static } from '@sinclair/typebox'
import { constructPlugin, definePlugin, GENESIS_HASH, inject, injectable, PluginConfig, PluginContextToken, PLUGIN_API_VERSION, sealEvent, serializeAuditEvent, type AuditEvent, type AuditSink, type Logger, type PluginContext, type SinkMode } from '@gatehouse/core'

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
  private sending = false
  private timer: NodeJS.Timeout | undefined
  private prev = GENESIS_HASH
  private readonly logger: Logger

  constructor(
    @inject(PluginConfig) private readonly config: WebhookConfig,
    @inject(PluginContextToken) ctx: PluginContext,
  ) {
    this.mode = config.required ? 'required' : 'best-effort'
    this.logger = ctx.logger
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
        let prev = this.prev
        let body = ''
        for (const p of batch) {
          const sealed = sealEvent(p.json, prev)
          prev = sealed.hash
          body += `${sealed.line}\n`
        }
        const error = await this.deliver(body, (batch[0] as Pending).id)
        if (!error) {
          this.prev = prev
          for (const p of batch) p.resolve()
          continue
        }
        this.logger.error({ url: redactUrl(this.config.url), events: batch.length, err: error }, 'audit webhook batch failed after every attempt')
        // The chain moves on past a dropped batch, so a verifier sees exactly where events are missing.
        this.prev = prev
        for (const p of batch) (this.mode === 'required' ? p.reject(new Error(`audit webhook unavailable: ${error}`)) : p.resolve())
      }
    } finally {
      this.sending = false
    }
  }

  /** POSTs one batch with retries; resolves undefined on success, or the last error. */
  private async deliver(body: string, idempotencyKey: string): Promise<string | undefined> {
    let last = 'not sent'
    for (let attempt = 0; attempt < this.config.maxAttempts; attempt++) {
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
  }

  async close(): Promise<void> {
    await this.flush()
  }
}

/** The URL without credentials or query, for logs. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url)
    return `${u.protocol}//${u.host}${u.pathname}`
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
