/**
 * audit-postgres: audit events in a PostgreSQL table, inserted in batches.
 *
 * Guarantees:
 * - Events are inserted in the order `write` was called. A write resolves once its batch is
 *   committed, so for a `required` sink the gateway forwards a request only after its intent
 *   record is in the table; when the database cannot take it, the request is refused.
 * - Inserts are idempotent by event id (`ON CONFLICT (id) DO NOTHING`).
 * - Every row is sealed into a hash chain like audit-jsonl's: `line` is the stored text, `prev`
 *   and `hash` link it, so `gatehouse audit verify --postgres URL` finds edited, removed or
 *   reordered rows. Each gateway instance keeps its own chain (`chain` column), continued
 *   across restarts.
 *
 * Not yet: an on-disk spool that keeps events while the database is down (planned; until then a
 * `required` sink refuses requests while it is down, and a `best-effort` one drops events and
 * logs each failed batch).
 */
import { Type, type Static } from '@sinclair/typebox'
import pg from 'pg'
import { constructPlugin, definePlugin, GENESIS_HASH, inject, injectable, PluginConfig, PluginContextToken, PLUGIN_API_VERSION, sealEvent, serializeAuditEvent, type AuditEvent, type AuditSink, type Lifecycle, type Logger, type PluginContext, type SinkMode } from '@gatehouse/core'

const ConfigSchema = Type.Object(
  {
    url: Type.String({ minLength: 1, description: 'postgres://user:password@host:port/database (use ${env:…})' }),
    table: Type.String({ pattern: '^[a-z_][a-z0-9_]{0,62}$', default: 'gatehouse_audit' }),
    chain: Type.String({ minLength: 1, maxLength: 128, default: 'default', description: 'this gateway instance\u2019s chain in the table; give each instance its own' }),
    required: Type.Boolean({ default: true }),
    maxBatch: Type.Integer({ minimum: 1, maximum: 5000, default: 500 }),
    connectTimeoutMs: Type.Integer({ minimum: 100, default: 5000 }),
  },
  { additionalProperties: false },
)
type PostgresAuditConfig = Static<typeof ConfigSchema>

interface Pending {
  readonly event: AuditEvent
  readonly json: string
  readonly resolve: () => void
  readonly reject: (err: Error) => void
}

/** The table and its indexes: by time, session, principal and verdict, as the admin API will query. */
export function schemaSql(table: string): string {
  return `CREATE TABLE IF NOT EXISTS ${table} (
  seq bigserial PRIMARY KEY,
  chain text NOT NULL,
  id text NOT NULL UNIQUE,
  time timestamptz NOT NULL,
  type text NOT NULL,
  session text,
  connection text,
  principal text,
  action text,
  verdict text,
  rule text,
  event jsonb NOT NULL,
  line text NOT NULL,
  prev text NOT NULL,
  hash text NOT NULL
);
CREATE INDEX IF NOT EXISTS ${table}_time ON ${table} (time);
CREATE INDEX IF NOT EXISTS ${table}_session ON ${table} (session, seq);
CREATE INDEX IF NOT EXISTS ${table}_principal ON ${table} (principal, time);
CREATE INDEX IF NOT EXISTS ${table}_verdict ON ${table} (verdict, time) WHERE type = 'request';
CREATE INDEX IF NOT EXISTS ${table}_chain ON ${table} (chain, seq);`
}

@injectable()
export class PostgresSink implements AuditSink, Lifecycle {
  readonly mode: SinkMode
  private pool: pg.Pool | undefined
  private queue: Pending[] = []
  private flushing = false
  private prev = GENESIS_HASH
  private failing = false
  private readonly logger: Logger

  constructor(
    @inject(PluginConfig) private readonly config: PostgresAuditConfig,
    @inject(PluginContextToken) ctx: PluginContext,
  ) {
    this.mode = config.required ? 'required' : 'best-effort'
    this.logger = ctx.logger
  }

  async start(): Promise<void> {
    this.pool = new pg.Pool({ connectionString: this.config.url, max: 2, connectionTimeoutMillis: this.config.connectTimeoutMs })
    // An idle client that loses its server must not take the gateway down.
    this.pool.on('error', (err) => this.logger.warn({ err: err.message }, 'audit database connection lost'))
    await this.pool.query(schemaSql(this.config.table))
    const last = await this.pool.query<{ hash: string }>(`SELECT hash FROM ${this.config.table} WHERE chain = $1 ORDER BY seq DESC LIMIT 1`, [this.config.chain])
    this.prev = last.rows[0]?.hash ?? GENESIS_HASH
  }

  write(event: AuditEvent): Promise<void> {
    const json = serializeAuditEvent(event)
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ event, json, resolve, reject })
      if (!this.flushing) void this.flushLoop()
    })
  }

  /** Inserts queued events in batches, one at a time, in order, until the queue is empty. */
  private async flushLoop(): Promise<void> {
    this.flushing = true
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.config.maxBatch)
        try {
          await this.insert(batch)
          if (this.failing) {
            this.failing = false
            this.logger.warn('audit database writable again')
          }
          for (const p of batch) p.resolve()
        } catch (err) {
          if (!this.failing) this.logger.error({ err: (err as Error).message }, 'audit database write failed')
          this.failing = true
          for (const p of batch) p.reject(err as Error)
        }
      }
    } finally {
      this.flushing = false
    }
  }

  private async insert(batch: readonly Pending[]): Promise<void> {
    if (!this.pool) throw new Error('audit-postgres sink not started')
    let prev = this.prev
    const values: unknown[] = []
    const rows: string[] = []
    for (const p of batch) {
      const before = prev
      const sealed = sealEvent(p.json, before)
      prev = sealed.hash
      const e = p.event as unknown as Record<string, unknown>
      const principal = (e.principal as { id?: string } | undefined)?.id ?? null
      const base = values.length
      values.push(this.config.chain, e.id, e.time, e.type, e.session ?? null, e.connection ?? null, principal, e.action ?? null, e.verdict ?? null, e.rule ?? null, sealed.line, sealed.line, before, sealed.hash)
      rows.push(`(${Array.from({ length: 14 }, (_, i) => `$${base + i + 1}`).join(',')})`)
    }
    const sql = `INSERT INTO ${this.config.table} (chain, id, time, type, session, connection, principal, action, verdict, rule, event, line, prev, hash) VALUES ${rows.join(',')} ON CONFLICT (id) DO NOTHING`
    await this.pool.query(sql, values)
    this.prev = prev
  }

  async flush(): Promise<void> {
    while (this.flushing || this.queue.length > 0) await new Promise((r) => setTimeout(r, 5))
  }

  async close(): Promise<void> {
    await this.flush()
    await this.pool?.end()
    this.pool = undefined
  }
}

/** The stored lines of one chain, in order: what `gatehouse audit verify --postgres` checks. */
export async function readChain(url: string, table: string, chain: string): Promise<string> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    const r = await client.query<{ line: string }>(`SELECT line FROM ${table} WHERE chain = $1 ORDER BY seq`, [chain])
    return r.rows.map((row) => `${row.line}\n`).join('')
  } finally {
    await client.end()
  }
}

export const plugin = definePlugin({
  name: 'audit-postgres',
  stage: 'record',
  apiVersion: PLUGIN_API_VERSION,
  configSchema: ConfigSchema,
  description: 'audit events in a PostgreSQL table, batched and hash-chained',
  register(container, config, ctx) {
    return constructPlugin(container, PostgresSink, config, ctx)
  },
})

export default plugin
