/**
 * approval-webhook: tells people a request waits for their review.
 *
 * A record-stage plugin (put it in a connection's `record` chain beside the audit sink): it sees
 * every audit event and acts on the intent record of a held request (`request`, verdict
 * `review`, with the review's id). For each, it POSTs a JSON payload — or, with `format: slack`,
 * a Slack-compatible `{text, blocks}` message for an incoming webhook — naming the review, the
 * requester, the connection, the rule and its reason, the request's text, and how to decide: the
 * admin API's approve and deny URLs (`adminUrl`) and the CLI commands. Parameters are left out
 * unless `includeParams` (they may hold personal data a chat channel should not get).
 *
 * It is always best-effort: `write` returns at once, so a slow or failing receiver never holds a
 * request (its review's own timeout is what bounds the wait). A failed POST (a network error, a
 * non-2xx answer, no answer within `timeoutMs`) is retried with exponential backoff up to
 * `retries` times; each failure is logged and counted in
 * `gatehouse_approval_webhook_failures_total{sink}`, sent ones in `…_sent_total{sink}`.
 */
import { Type, type Static } from '@sinclair/typebox'
import { constructPlugin, definePlugin, inject, injectable, Metrics, PluginConfig, PluginContextToken, PLUGIN_API_VERSION, type AuditEvent, type AuditSink, type Lifecycle, type Logger, type MetricsRegistry, type PluginContext, type RequestEvent } from '@gatehouse/core'

const ConfigSchema = Type.Object(
  {
    url: Type.String({ pattern: '^https?://', description: 'where to POST (an incoming webhook, a chat-ops service)' }),
    format: Type.Union([Type.Literal('json'), Type.Literal('slack')], { default: 'json', description: 'json: the payload as documented; slack: {text, blocks} for a Slack-compatible incoming webhook' }),
    headers: Type.Record(Type.String(), Type.String(), { default: {}, description: 'extra request headers (use ${env:…} for a secret)' }),
    adminUrl: Type.Optional(Type.String({ pattern: '^https?://', description: "the admin API's address as approvers reach it, for the approve and deny links" })),
    includeParams: Type.Boolean({ default: false, description: "put the request's bound parameters in the message" }),
    retries: Type.Integer({ minimum: 0, maximum: 10, default: 4 }),
    backoffMs: Type.Integer({ minimum: 10, default: 500, description: 'the first retry waits this long; each next one twice as long' }),
    timeoutMs: Type.Integer({ minimum: 100, default: 5000 }),
  },
  { additionalProperties: false },
)
type WebhookConfig = Static<typeof ConfigSchema>

/** What the receiver gets (format json). */
export interface ReviewNotice {
  readonly type: 'review.requested'
  readonly review: string
  readonly request: string
  readonly connection: string
  readonly protocol: string
  readonly principal: { readonly id: string; readonly kind: string; readonly groups: readonly string[] }
  readonly action: string
  readonly target: string
  readonly text?: string
  /** The text was longer than a message carries: `approve` then says to read it whole first. */
  readonly truncated?: boolean
  readonly params?: readonly unknown[]
  readonly rule?: string
  readonly reason?: string
  readonly time: string
  readonly approve: { readonly cli: string; readonly url?: string }
  readonly deny: { readonly cli: string; readonly url?: string }
}

/** The longest request text a message carries. */
const MAX_TEXT = 2000

@injectable()
export class ApprovalWebhook implements AuditSink, Lifecycle {
  /** Never required: a notification must not decide whether a request may go on. */
  readonly mode = 'best-effort' as const
  private readonly logger: Logger
  private readonly inflight = new Set<Promise<void>>()
  private readonly timers = new Set<NodeJS.Timeout>()
  private closed = false
  /** Aborts the POSTs in flight at close: a receiver that never answers must not hold the shutdown. */
  private readonly stopping = new AbortController()
  private readonly sent
  private readonly failures

  constructor(@inject(PluginConfig) private readonly config: WebhookConfig, @inject(PluginContextToken) ctx: PluginContext, @inject(Metrics) metrics: MetricsRegistry) {
    this.logger = ctx.logger
    this.sent = metrics.counter('gatehouse_approval_webhook_sent_total', 'review notifications delivered, by sink', ['sink']).labels({ sink: ctx.instance })
    this.failures = metrics.counter('gatehouse_approval_webhook_failures_total', 'review notification attempts that failed, by sink', ['sink']).labels({ sink: ctx.instance })
  }

  write(event: AuditEvent): void {
    if (this.closed || event.type !== 'request' || event.verdict !== 'review' || event.review === undefined) return
    this.deliver(this.body(notice(event, this.config)), event.review, 0)
  }

  private body(n: ReviewNotice): string {
    return JSON.stringify(this.config.format === 'slack' ? slack(n) : n)
  }

  private deliver(body: string, review: string, attempt: number): void {
    const p = this.post(body).then(
      () => {
        this.sent.inc()
      },
      (err: unknown) => {
        this.failures.inc()
        const last = attempt >= this.config.retries
        this.logger.warn({ review, attempt: attempt + 1, err: String((err as Error)?.message ?? err), giveUp: last }, 'review notification failed')
        if (last || this.closed) return
        const timer = setTimeout(() => {
          this.timers.delete(timer)
          this.deliver(body, review, attempt + 1)
        }, this.config.backoffMs * 2 ** attempt)
        timer.unref()
        this.timers.add(timer)
      },
    )
    this.inflight.add(p)
    void p.finally(() => this.inflight.delete(p))
  }

  private async post(body: string): Promise<void> {
    const res = await fetch(this.config.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'gatehouse-approval-webhook', ...this.config.headers },
      body,
      signal: AbortSignal.any([AbortSignal.timeout(this.config.timeoutMs), this.stopping.signal]),
    })
    // the body is not ours to keep; read it so the connection can be reused
    await res.arrayBuffer().catch(() => undefined)
    if (!res.ok) throw new Error(`HTTP ${res.status}`)
  }

  async flush(): Promise<void> {
    await Promise.allSettled([...this.inflight])
  }

  async close(): Promise<void> {
    this.closed = true
    this.stopping.abort()
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
    await this.flush()
  }
}

function notice(e: RequestEvent, config: WebhookConfig): ReviewNotice {
  const id = e.review as string
  const base = config.adminUrl?.replace(/\/+$/, '')
  const truncated = e.text !== undefined && e.text.length > MAX_TEXT
  return {
    type: 'review.requested',
    review: id,
    request: e.request,
    connection: e.connection,
    protocol: e.protocol,
    principal: { id: e.principal.id, kind: e.principal.kind, groups: e.principal.groups },
    action: e.action,
    target: e.target,
    ...(e.text === undefined ? {} : { text: e.text.length > MAX_TEXT ? `${e.text.slice(0, MAX_TEXT)}…` : e.text }),
    ...(e.text !== undefined && e.text.length > MAX_TEXT ? { truncated: true } : {}),
    ...(config.includeParams && e.params !== undefined ? { params: e.params } : {}),
    ...(e.rule === undefined ? {} : { rule: e.rule }),
    ...(e.reason === undefined ? {} : { reason: e.reason }),
    time: e.time,
    // a cut text is not what the approver decides on: the way to approve is to read it whole first
    approve: truncated
      ? { cli: `gatehouse review show ${id}${base ? ` --admin ${base}` : ''}  # the text is longer than this message; read it whole before approving` }
      : { cli: `gatehouse review approve ${id}${base ? ` --admin ${base}` : ''}`, ...(base ? { url: `${base}/reviews/${id}/approve` } : {}) },
    deny: { cli: `gatehouse review deny ${id}${base ? ` --admin ${base}` : ''} --reason "…"`, ...(base ? { url: `${base}/reviews/${id}/deny` } : {}) },
  }
}

/** A Slack-compatible message: a line of text for notifications, and blocks for the channel. */
/** Slack's mrkdwn control characters, escaped; backticks and newlines kept from ending the code span. */
const mrkdwn = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
function slack(n: ReviewNotice): Record<string, unknown> {
  const what = n.text === undefined ? n.action : `\`${mrkdwn(n.text.replace(/`/g, "'").replace(/[\r\n]+/g, ' '))}\``
  const why = `${mrkdwn(n.rule ?? 'rule')}: ${mrkdwn(n.reason ?? 'needs approval')}`
  const text = `Review ${n.review}: ${mrkdwn(n.principal.id)} waits on ${mrkdwn(n.connection)} for ${what} (${why})`
  return {
    text,
    blocks: [
      { type: 'section', text: { type: 'mrkdwn', text: `*${mrkdwn(n.principal.id)}* waits on *${mrkdwn(n.connection)}* (${n.protocol})\n${what}\n_${why}_` } },
      { type: 'context', elements: [{ type: 'mrkdwn', text: `review \`${n.review}\` · ${n.truncated ? 'read it whole' : 'approve'}: \`${mrkdwn(n.approve.cli)}\` · deny: \`${mrkdwn(n.deny.cli)}\`` }] },
    ],
  }
}

export const plugin = definePlugin({
  name: 'approval-webhook',
  stage: 'record',
  apiVersion: PLUGIN_API_VERSION,
  configSchema: ConfigSchema,
  description: 'notifies reviewers (JSON or Slack-compatible webhook) when a request is held for review',
  register(container, config, ctx) {
    return constructPlugin(container, ApprovalWebhook, config, ctx)
  },
})

export default plugin
