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
 * - While the database cannot take a batch, events go to a local spool file instead
 *   (`<dataDir>/spool/audit-postgres-<chain>.jsonl`, appended and fsync'd before the write
 *   resolves), and every later event goes there too, so order is kept. A retry loop replays the
 *   spool in order once the database answers again, then truncates it. Each replay first asks
 *   the table for the chain's last stored event and skips what is already there (a multi-row
 *   INSERT is atomic: a batch is in or not), so nothing is stored twice and the chain has no
 *   gap.
 * - The spool is bounded (`spoolMaxBytes`). When it is full, a `required` sink rejects new
 *   events (their requests are refused) and keeps what it holds; a `best-effort` one drops them.
 */
import { Type, type Static } from '@sinclair/typebox'
import pg from 'pg'
import { join } from 'node:path'
import { constructPlugin, definePlugin, DiskSpool, GENESIS_HASH, Metrics, type MetricsRegistry, inject, injectable, PluginConfig, PluginContextToken, PLUGIN_API_VERSION, sealEvent, serializeAuditEvent, type AuditEvent, type AuditSink, type Lifecycle, type Logger, type PluginContext, type SinkMode } from '@gatehouse/core'

const ConfigSchema = Type.Object(
  {
    url: Type.String({ minLength: 1, description: 'postgres://user:password@host:port/database (use ${env:…})' }),
    table: Type.String({ pattern: '^[a-z_][a-z0-9_]{0,62}$', default: 'gatehouse_audit' }),
    chain: Type.String({ minLength: 1, maxLength: 128, default: 'default', description: 'this gateway instance\u2019s chain in the table; give each instance its own' }),
    required: Type.Boolean({ default: true }),
    maxBatch: Type.Integer({ minimum: 1, maximum: 5000, default: 500 }),
    connectTimeoutMs: Type.Integer({ minimum: 100, default: 5000 }),
    spoolMaxBytes: Type.Integer({ minimum: 0, default: 64 * 1024 * 1024, description: 'local spool for events while the database is down; 0 disables it' }),
    retryMs: Type.Integer({ minimum: 50, default: 1000, description: 'how often a spooled sink tries the database again' }),
  },
  { additionalProperties: false },
)
type PostgresAuditConfig = Static<typeof ConfigSchema>

/** What a spool line holds: enough to insert the row later. */
interface Spooled {
  readonly json: string
  readonly id: string
  readonly time: string
  readonly type: string
  readonly session: string | null
  readonly connection: string | null
  readonly principal: string | null
  readonly action: string | null
  readonly verdict: string | null
  readonly rule: string | null
}

interface Pending {
  readonly row: Spooled
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
  private readonly spoolFile: DiskSpool
  /** An insert failed in a way that may have committed: the chain head must be read again. */
  private headUnknown = false
  /** The database was down at start: spool even though the file may be empty, until a replay succeeds. */
  private downAtStart = false
  private retryTimer: NodeJS.Timeout | undefined
  private replaying = false
  /** Events dropped (best-effort) or refused (required) because the spool was full. */
  dropped = 0


  constructor(
    @inject(PluginConfig) private readonly config: PostgresAuditConfig,
    @inject(PluginContextToken) ctx: PluginContext,
    @inject(Metrics) metrics: MetricsRegistry,
  ) {
    this.mode = config.required ? 'required' : 'best-effort'
    this.logger = ctx.logger
    this.spoolFile = new DiskSpool(join(ctx.dataDir, 'spool', `audit-postgres-${config.chain.replace(/[^A-Za-z0-9._-]/g, '_')}.jsonl`), config.spoolMaxBytes, { metrics, sink: `audit-postgres:${config.chain}` })
  }

  async start(): Promise<void> {
    this.pool = new pg.Pool({ connectionString: this.config.url, max: 2, connectionTimeoutMillis: this.config.connectTimeoutMs })
    // An idle client that loses its server must not take the gateway down.
    this.pool.on('error', (err) => this.logger.warn({ err: err.message }, 'audit database connection lost'))
    try {
      await this.pool.query(schemaSql(this.config.table))
      await this.syncChainHead()
    } catch (err) {
      // Starting while the database is down is fine when events can wait in the spool.
      if (this.config.spoolMaxBytes === 0) throw err
      this.logger.warn({ err: (err as Error).message }, 'audit database unavailable at start; events go to the spool')
      this.downAtStart = true
    }
    if (this.spooling()) this.scheduleRetry()
  }

  /** The chain's last stored event: where the next row links. */
  private async syncChainHead(): Promise<string | undefined> {
    const last = await (this.pool as pg.Pool).query<{ id: string; hash: string }>(`SELECT id, hash FROM ${this.config.table} WHERE chain = $1 ORDER BY seq DESC LIMIT 1`, [this.config.chain])
    this.prev = last.rows[0]?.hash ?? GENESIS_HASH
    return last.rows[0]?.id
  }

  write(event: AuditEvent): Promise<void> {
    const row = toRow(event)
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ row, resolve, reject })
      if (!this.flushing) void this.flushLoop()
    })
  }

  /** Inserts queued events in batches, one at a time, in order, until the queue is empty. */
  private async flushLoop(): Promise<void> {
    this.flushing = true
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.config.maxBatch)
        if (this.spooling()) {
          this.spool(batch)
          continue
        }
        try {
          await this.insert(batch.map((p) => p.row))
          for (const p of batch) p.resolve()
        } catch (err) {
          if (!this.failing) this.logger.error({ err: (err as Error).message }, 'audit database write failed; events go to the spool')
          this.failing = true
          // The batch may have committed with its reply lost: ask the table before the next insert.
          this.headUnknown = true
          if (this.config.spoolMaxBytes === 0) for (const p of batch) p.reject(err as Error)
          else this.spool(batch)
        }
      }
    } finally {
      this.flushing = false
    }
  }

  private spooling(): boolean {
    return this.downAtStart || this.spoolFile.size > 0
  }

  /**
   * Appends events to the spool, fsync'd, and settles their writes: kept (resolve), or refused
   * when the spool is full (required: reject, so the request is refused; best-effort: dropped).
   */
  private spool(batch: readonly Pending[]): void {
    let kept: boolean
    try {
      kept = this.spoolFile.append(batch.map((p) => JSON.stringify(p.row)))
    } catch (err) {
      for (const p of batch) p.reject(err as Error)
      return
    }
    if (!kept) {
      this.dropped += batch.length
      this.logger.error({ spool: this.spoolFile.path, bytes: this.spoolFile.size, dropped: this.dropped }, 'audit spool full: new events are refused')
      const err = new Error('the audit database is unavailable and the audit spool is full')
      for (const p of batch) (this.mode === 'required' ? p.reject(err) : p.resolve())
      return
    }
    for (const p of batch) p.resolve()
    this.scheduleRetry()
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.replaying) return
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined
      void this.replay()
    }, this.config.retryMs)
    this.retryTimer.unref()
  }

  /**
   * Replays the spool in order. Events already in the table (a batch whose commit was not
   * acknowledged) are skipped by finding the chain's last stored id in the spool. The spool is
   * truncated once everything up to its end is stored; events spooled meanwhile are replayed on
   * the next round.
   */
  private async replay(): Promise<void> {
    if (this.replaying || !this.pool) return
    this.replaying = true
    try {
      // The table may not exist yet if the gateway started while the database was down.
      await this.pool.query(schemaSql(this.config.table))
      const lastId = await this.syncChainHead()
      const spooled = this.spoolFile.read()
      let rows = spooled.lines.flatMap((l): Spooled[] => {
        try {
          return [JSON.parse(l) as Spooled]
        } catch {
          // A line torn by a crash mid-append: nothing of it can be trusted.
          this.logger.error({ spool: this.spoolFile.path }, 'skipping a torn line in the audit spool')
          return []
        }
      })
      const stored = lastId === undefined ? -1 : rows.findIndex((r) => r.id === lastId)
      if (stored >= 0) rows = rows.slice(stored + 1)
      for (let i = 0; i < rows.length; i += this.config.maxBatch) await this.insert(rows.slice(i, i + this.config.maxBatch))
      // Everything read is stored; drop it, keeping what was spooled while we replayed.
      this.spoolFile.consume(spooled.bytes)
      this.downAtStart = false
      if (this.spoolFile.size === 0) {
        this.failing = false
        this.logger.warn({ replayed: rows.length }, 'audit database writable again; spool replayed')
      }
    } catch (err) {
      this.logger.debug({ err: (err as Error).message }, 'audit database still unavailable')
    } finally {
      this.replaying = false
      if (this.spooling()) this.scheduleRetry()
    }
  }

  private async insert(batch: readonly Spooled[]): Promise<void> {
    if (!this.pool) throw new Error('audit-postgres sink not started')
    if (this.headUnknown) {
      await this.syncChainHead()
      this.headUnknown = false
    }
    let prev = this.prev
    const values: unknown[] = []
    const rows: string[] = []
    for (const e of batch) {
      const before = prev
      const sealed = sealEvent(e.json, before)
      prev = sealed.hash
      const base = values.length
      // jsonb cannot hold NUL; the `line` column keeps the exact text the hash covers.
      values.push(this.config.chain, e.id, e.time, e.type, e.session, e.connection, e.principal, e.action, e.verdict, e.rule, sealed.line.replace(/\\u0000/g, '\\ufffd'), sealed.line, before, sealed.hash)
      rows.push(`(${Array.from({ length: 14 }, (_, i) => `$${base + i + 1}`).join(',')})`)
    }
    const sql = `INSERT INTO ${this.config.table} (chain, id, time, type, session, connection, principal, action, verdict, rule, event, line, prev, hash) VALUES ${rows.join(',')} ON CONFLICT (id) DO NOTHING`
    await this.pool.query(sql, values)
    this.prev = prev
  }

  async flush(): Promise<void> {
    while (this.flushing || this.queue.length > 0) await new Promise((r) => setTimeout(r, 5))
  }

  /** At shutdown: queued events are inserted or spooled (the spool survives for the next start). */
  async close(): Promise<void> {
    await this.flush()
    if (this.retryTimer) clearTimeout(this.retryTimer)
    if (this.spooling()) await this.replay()
    await this.pool?.end()
    this.pool = undefined
  }
}

function toRow(event: AuditEvent): Spooled {
  const e = event as unknown as Record<string, unknown>
  const str = (v: unknown) => (typeof v === 'string' ? v : null)
  return {
    json: serializeAuditEvent(event),
    id: String(e.id),
    time: String(e.time),
    type: String(e.type),
    session: str(e.session),
    connection: str(e.connection),
    principal: str((e.principal as { id?: unknown } | undefined)?.id),
    action: str(e.action),
    verdict: str(e.verdict),
    rule: str(e.rule),
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
