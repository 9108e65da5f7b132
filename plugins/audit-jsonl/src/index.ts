/**
 * audit-jsonl: append-only JSON Lines file, one event per line.
 *
 * Guarantees: events are written in the order `write` was called, and for a `required` sink the
 * gateway forwards a request only after its intent record is in the file. Without fsync, an
 * intent record is written (write(2): handed to the kernel) inside `write`, which returns
 * nothing or throws: a promise and a turn of the event loop per statement would cost more than
 * the write itself. Outcome and session-end records, which nothing waits on, wait up to 5 ms to
 * share the next write (their promise settles with it). With `fsync: always`, writes are batched
 * (group commit): intent records taken in one turn of the event loop, from every session, go
 * out in one write(2) and one fsync, and `write` resolves after the fsync. When the file cannot
 * be written, pending writes reject and new intent writes fail (the gateway then refuses
 * requests on connections where this sink is required) until a write succeeds again.
 *
 * Every line is sealed into a hash chain (core/src/audit/chain.ts): it carries the hash of the
 * line before it and its own, so `gatehouse audit verify` finds an edited, removed or reordered
 * line. A restarted gateway continues the chain from the file's last line.
 */
import { Type, type Static } from '@sinclair/typebox'
import { createPrivateKey, type KeyObject } from 'node:crypto'
import { closeSync, createReadStream, existsSync, fstatSync, fsync, fsyncSync, ftruncateSync, mkdirSync, openSync, readdirSync, readSync, renameSync, writeSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { basename, dirname, join, resolve } from 'node:path'
import { constructPlugin, definePlugin, inject, injectable, PluginConfig, PluginContextToken, PLUGIN_API_VERSION, serializeAuditEvent, sealEvent, sealInto, sealedBytesAtMost, lineHash, checkpointJson, signingKeyId, GatewayError, GENESIS_HASH, lockExclusive, type HeldLock, type PluginContext, type AuditEvent, type AuditQuery, type AuditSink, matchesAuditQuery, type Lifecycle, type Logger, type SinkMode } from '@gatehouse/core'

const ConfigSchema = Type.Object(
  {
    path: Type.Optional(Type.String({ minLength: 1, description: 'file to append to; default <dataDir>/audit.jsonl' })),
    required: Type.Boolean({ default: true, description: 'refuse requests whose intent record cannot be written' }),
    fsync: Type.Union([Type.Literal('never'), Type.Literal('always')], { default: 'never', description: 'always: fsync each batch before acknowledging it' }),
    maxBatchBytes: Type.Integer({ minimum: 1024, default: 1 << 20 }),
    checkpoint: Type.Optional(
      Type.Object(
        {
          key: Type.String({ minLength: 1, description: 'Ed25519 private key, PEM (from `gatehouse audit keygen`; use ${file:…})' }),
          everyEvents: Type.Integer({ minimum: 1, default: 1000 }),
          everySeconds: Type.Integer({ minimum: 1, default: 60 }),
        },
        { additionalProperties: false, description: 'signed checkpoints in the chain; verify them with `gatehouse audit verify --public-key`' },
      ),
    ),
    rotate: Type.Optional(
      Type.Object(
        {
          maxBytes: Type.Optional(Type.Integer({ minimum: 4096, description: 'start a new file once the current one would grow past this size' })),
          maxAgeSeconds: Type.Optional(Type.Integer({ minimum: 1, description: 'start a new file once the current one is this old' })),
        },
        { additionalProperties: false, description: 'rotated files are renamed <path>.<UTC time>; the hash chain continues into the new file' },
      ),
    ),
  },
  { additionalProperties: false },
)
type JsonlConfig = Static<typeof ConfigSchema>

/** How long an outcome record may wait for company before it is written on its own. */
const LAZY_FLUSH_MS = 5
/** The encoding buffer the sink keeps between batches at most (bytes); a larger batch gets its own. */
const SCRATCH_KEPT = 256 * 1024

/** The lines of one batch share one promise: settled when the batch is in the file (or failed). */
interface Batch {
  readonly done: Promise<void>
  resolve(): void
  reject(err: Error): void
}

function newBatch(): Batch {
  let resolve!: () => void
  let reject!: (err: Error) => void
  const done = new Promise<void>((res, rej) => {
    resolve = res
    reject = rej
  })
  // A batch nobody waits for (only best-effort events) fails without an unhandled rejection: the
  // failure is logged by the sink.
  done.catch(() => undefined)
  return { done, resolve, reject }
}

@injectable()
export class JsonlSink implements AuditSink, Lifecycle {
  readonly mode: SinkMode
  private fd: number | undefined
  private lines: string[] = []
  private bytes = 0
  private batch: Batch | undefined
  private scheduled = false
  private closed = false
  private failing = false
  private lazyTimer: NodeJS.Timeout | undefined
  /** The hash of the last line written: the next line's `prev`. */
  private prev = GENESIS_HASH
  /** Bytes in the current file and when it was started, for rotation. */
  private size = 0
  private openedAt = Date.now()
  private readonly signing: { key: KeyObject; keyId: string; everyEvents: number; everyMs: number } | undefined
  private sinceCheckpoint = 0
  /** The next checkpoint's sequence number; continues from the file's last checkpoint. */
  private checkpointSeq = 0
  private lastCheckpointAt = Date.now()
  private readonly rotateBytes: number | undefined
  private readonly rotateAgeMs: number | undefined

  readonly path: string
  private lock: HeldLock | undefined
  private readonly fsyncEach: boolean
  private readonly maxBatchBytes: number
  private readonly logger: Logger

  constructor(@inject(PluginConfig) config: JsonlConfig, @inject(PluginContextToken) ctx: PluginContext) {
    this.path = resolve(ctx.dataDir, config.path ?? 'audit.jsonl')
    this.mode = config.required ? 'required' : 'best-effort'
    this.fsyncEach = config.fsync === 'always'
    this.maxBatchBytes = config.maxBatchBytes
    if (config.checkpoint) {
      let key: KeyObject
      try {
        key = createPrivateKey(config.checkpoint.key)
      } catch {
        throw new GatewayError('GH_ERR_PLUGIN_CONFIG', 'audit-jsonl checkpoint.key: not a PEM private key')
      }
      if (key.asymmetricKeyType !== 'ed25519') throw new GatewayError('GH_ERR_PLUGIN_CONFIG', `audit-jsonl checkpoint.key: an Ed25519 key is needed, not ${key.asymmetricKeyType ?? 'unknown'}`)
      this.signing = { key, keyId: signingKeyId(key), everyEvents: config.checkpoint.everyEvents, everyMs: config.checkpoint.everySeconds * 1000 }
    }
    this.rotateBytes = config.rotate?.maxBytes
    this.rotateAgeMs = config.rotate?.maxAgeSeconds === undefined ? undefined : config.rotate.maxAgeSeconds * 1000
    this.logger = ctx.logger
  }

  async start(): Promise<void> {
    mkdirSync(dirname(this.path), { recursive: true })
    // One writer per file: two sinks (of two gateways, or two instances of one) appending would fork the chain.
    // the key beside the file is a dotfile: a glob of the rotated files (audit.jsonl*) does not pick it up
    this.lock = await lockExclusive(this.path, 'audit file', join(dirname(this.path), `.${basename(this.path)}.lock-key`))
    this.openFile()
    const tail = fileTail(this.fd as number)
    this.prev = tail.lastHash ?? GENESIS_HASH
    this.checkpointSeq = tail.lastCheckpointSeq === undefined ? 0 : tail.lastCheckpointSeq + 1
  }

  private openFile(): void {
    this.fd = openSync(this.path, 'a+', 0o600)
    const stat = fstatSync(this.fd)
    this.size = stat.size
    this.openedAt = stat.size === 0 ? Date.now() : stat.birthtimeMs || stat.mtimeMs
  }

  /** Moves the current file aside (`<path>.<UTC time>`) and starts a new one; the chain goes on. */
  private rotateIfDue(incoming: number): void {
    if (this.size === 0 || this.fd === undefined) return
    const bySize = this.rotateBytes !== undefined && this.size + incoming > this.rotateBytes
    const byAge = this.rotateAgeMs !== undefined && Date.now() - this.openedAt >= this.rotateAgeMs
    if (!bySize && !byAge) return
    const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('.', '')
    let target = `${this.path}.${stamp}`
    for (let i = 1; existsSync(target); i++) target = `${this.path}.${stamp}-${i}`
    // Rename first, then switch files: a rename that fails leaves the sink writing the old file.
    renameSync(this.path, target)
    if (this.fsyncEach) fsyncSync(this.fd)
    closeSync(this.fd)
    this.fd = undefined
    this.logger.info({ path: this.path, rotated: target, bytes: this.size }, 'audit file rotated')
    this.openFile()
  }

  /**
   * An event nobody waits for: it waits (up to LAZY_FLUSH_MS) to share the next write, and a
   * failure to write it goes to `failed`; no promise is made for it.
   */
  writeLater(event: AuditEvent, failed: (err: Error, event: AuditEvent) => void): void {
    this.enqueue(event)
    this.waiting.push(event, failed)
    if (this.bytes >= this.maxBatchBytes) this.drain()
    else this.lazyTimer ??= setTimeout(this.drainLazy, LAZY_FLUSH_MS)
  }
  /** The pending lines' writeLater callers, as pairs (event, failed): told if their write fails. */
  private waiting: Array<AuditEvent | ((err: Error, event: AuditEvent) => void)> = []

  /** Serialises the event into the pending lines; sealed into the chain when written (drain), so a batch that fails leaves no gap. */
  private enqueue(event: AuditEvent): void {
    if (this.closed) throw new Error('audit-jsonl sink is closed')
    const line = serializeAuditEvent(event)
    this.lines.push(line)
    this.bytes += line.length
  }

  write(event: AuditEvent): Promise<void> | void {
    this.enqueue(event)
    const lazy = event.type === 'outcome' || event.type === 'session.end'
    if (!lazy && !this.fsyncEach) {
      // Without fsync, a write(2) is the whole cost of durability here: the intent record (and
      // the lazy lines before it) goes to the kernel now, and the caller goes on in this turn.
      const err = this.drain()
      if (err) throw err
      return undefined
    }
    const batch = (this.batch ??= newBatch())
    if (this.bytes >= this.maxBatchBytes) this.drain()
    else if (lazy) {
      // Records nobody waits on ride along with the next intent record, or go out within a few ms.
      this.lazyTimer ??= setTimeout(this.drainLazy, LAZY_FLUSH_MS)
    } else if (!this.scheduled) {
      this.scheduled = true
      this.urgent = true
      setImmediate(this.drainNow)
    }
    return batch.done
  }

  private readonly drainNow = () => void this.drain()

  /**
   * Intent records written while the callers of the last batch go on (a client's pipeline: the
   * Parse was admitted, its Execute is judged next) are written as soon as that cascade of
   * promise callbacks is over, in the same event-loop turn, instead of waiting for the next one:
   * a microtask queued at settling time schedules a tick, and Node runs ticks only once the
   * microtask queue is empty.
   */
  private cascadeArmed = false
  /** A line someone waits for (not only lazy ones) is pending. */
  private urgent = false
  private readonly afterCascade = () => {
    this.cascadeArmed = false
    if (this.urgent) this.drain()
  }
  private readonly armCascade = () => process.nextTick(this.afterCascade)

  private settle(batch: Batch): void {
    batch.resolve()
    if (this.cascadeArmed) return
    this.cascadeArmed = true
    queueMicrotask(this.armCascade)
  }
  private readonly drainLazy = () => {
    this.lazyTimer = undefined
    if (!this.scheduled) this.drain()
  }

  private recovered(): void {
    if (this.failing) {
      this.failing = false
      this.logger.warn({ path: this.path }, 'audit file writable again')
    }
  }

  /** Writes the pending lines in one write(2); returns the error when the file could not take them. */
  private drain(): Error | undefined {
    this.scheduled = false
    this.urgent = false
    // A lazy timer stays armed: it writes whatever waits when it fires (often nothing), which
    // costs less than clearing and arming a timer per statement.
    if (this.lines.length === 0) return undefined
    const checkpointed = this.signing && (this.sinceCheckpoint + this.lines.length >= this.signing.everyEvents || Date.now() - this.lastCheckpointAt >= this.signing.everyMs)
    // The batch is encoded once, into a buffer the sink keeps (the write below is synchronous).
    let need = 0
    for (const json of this.lines) need += sealedBytesAtMost(json)
    let buf = this.room(0, need)
    let prev = this.prev
    let end = 0
    for (const json of this.lines) ({ end, hash: prev } = sealInto(buf, end, json, prev))
    if (checkpointed && this.signing) {
      const json = checkpointJson(prev, this.sinceCheckpoint + this.lines.length, this.signing.key, this.signing.keyId, this.checkpointSeq)
      buf = this.room(end, sealedBytesAtMost(json))
      ;({ end, hash: prev } = sealInto(buf, end, json, prev))
    }
    const count = this.lines.length
    const batch = this.batch
    const waiting = this.waiting.length === 0 ? undefined : this.waiting
    if (waiting) this.waiting = []
    this.lines = []
    this.bytes = 0
    this.batch = undefined
    const bytes = end
    let sizeBefore: number | undefined
    try {
      if (this.fd === undefined) throw new Error('audit-jsonl sink not started')
      this.rotateIfDue(bytes)
      // this sink is the file's only writer (the lock): its own count is the size
      sizeBefore = this.size
      writeAll(this.fd as number, buf.subarray(0, end))
    } catch (err) {
      // A partial write (the disk filled up mid-batch) must not leave a torn line in the chain.
      if (sizeBefore !== undefined && this.fd !== undefined) {
        try {
          ftruncateSync(this.fd, sizeBefore)
        } catch {
          // the next start finds the torn line and refuses to continue from it
        }
      }
      this.fail(batch, err as Error, waiting)
      return err as Error
    }
    this.prev = prev
    this.size += bytes
    if (this.scratch.length > SCRATCH_KEPT) this.scratch = Buffer.allocUnsafe(0)
    if (checkpointed) {
      this.checkpointSeq++
      this.sinceCheckpoint = 0
      this.lastCheckpointAt = Date.now()
    } else this.sinceCheckpoint += count
    this.recovered()
    if (!this.fsyncEach) {
      if (batch) this.settle(batch)
      return undefined
    }
    fsync(this.fd as number, (err) => {
      if (err) this.fail(batch, err, waiting)
      else if (batch) this.settle(batch)
    })
    return undefined
  }

  /**
   * The sink's encoding buffer with `more` bytes free after the first `used` (kept: a batch is
   * written before the next one is encoded). One grown past SCRATCH_KEPT for a large batch is
   * dropped after that batch.
   */
  private room(used: number, more: number): Buffer {
    const need = used + more
    if (this.scratch.length >= need) return this.scratch
    const grown = Buffer.allocUnsafe(Math.max(need, Math.min(2 * this.scratch.length, SCRATCH_KEPT)))
    this.scratch.copy(grown, 0, 0, used)
    this.scratch = grown
    return grown
  }
  private scratch: Buffer = Buffer.allocUnsafe(0)

  private fail(batch: Batch | undefined, err: Error, waiting: readonly unknown[] | undefined): void {
    if (!this.failing) this.logger.error({ path: this.path, code: (err as NodeJS.ErrnoException).code, err: err.message }, 'audit file write failed')
    this.failing = true
    batch?.reject(err)
    if (!waiting) return
    for (let i = 0; i < waiting.length; i += 2) {
      try {
        ;(waiting[i + 1] as (err: Error, event: AuditEvent) => void)(err, waiting[i] as AuditEvent)
      } catch (thrown) {
        // one caller's handler must not keep the others from hearing of the failure
        this.logger.error({ err: String(thrown) }, 'an audit failure handler threw')
      }
    }
  }

  /**
   * Events of this file and the files rotated from it, newest first, that `filter` keeps. The
   * files are read forward, oldest first, keeping only the last `limit` matches: memory stays
   * bounded by the answer, whatever the files' size.
   */
  async query(filter: AuditQuery): Promise<AuditEvent[]> {
    this.drain()
    const dir = dirname(this.path)
    const base = basename(this.path)
    // rotated files are <path>.<UTC time>[-n]: their names sort in time order; the current file is the newest
    const rotated = readdirSync(dir).filter((n) => n.startsWith(`${base}.`) && /^\.\d{8}T\d{9}Z(-\d+)?$/.test(n.slice(base.length))).sort()
    const kept: AuditEvent[] = []
    for (const name of [...rotated, base]) {
      const lines = createInterface({ input: createReadStream(join(dir, name), { encoding: 'utf8' }), crlfDelay: Infinity })
      for await (const line of lines) {
        if (line === '') continue
        let e: Record<string, unknown>
        try {
          e = JSON.parse(line) as Record<string, unknown>
        } catch {
          continue
        }
        if (!matchesAuditQuery(e, filter)) continue
        kept.push(e as unknown as AuditEvent)
        if (kept.length > filter.limit) kept.shift()
      }
    }
    return kept.reverse()
  }

  async flush(): Promise<void> {
    this.drain()
    if (this.fd !== undefined) await new Promise<void>((r) => fsync(this.fd as number, () => r()))
  }

  async close(): Promise<void> {
    // Pending lines first, then the checkpoint that signs them: a clean shutdown leaves the whole log signed.
    this.drain()
    if (this.lazyTimer) clearTimeout(this.lazyTimer)
    this.lazyTimer = undefined
    if (this.signing && this.sinceCheckpoint > 0 && this.fd !== undefined && !this.failing) {
      const sealed = sealEvent(checkpointJson(this.prev, this.sinceCheckpoint, this.signing.key, this.signing.keyId, this.checkpointSeq), this.prev)
      try {
        writeAll(this.fd, `${sealed.line}\n`)
        this.prev = sealed.hash
        this.checkpointSeq++
        this.sinceCheckpoint = 0
      } catch (err) {
        this.logger.error({ path: this.path, err: (err as Error).message }, 'could not write the closing checkpoint')
      }
    }
    await this.flush()
    this.closed = true
    if (this.fd !== undefined) closeSync(this.fd)
    this.fd = undefined
    await this.lock?.release()
  }
}

/** The hash of the last sealed line of an existing file, and its last checkpoint's number, to continue both. */
function fileTail(fd: number): { lastHash?: string; lastCheckpointSeq?: number } {
  const size = fstatSync(fd).size
  if (size === 0) return {}
  const length = Math.min(size, 1024 * 1024)
  const buf = Buffer.alloc(length)
  readSync(fd, buf, 0, length, size - length)
  const lines = buf.toString('utf8').split('\n').filter((l) => l !== '')
  const last = lines[lines.length - 1]
  let lastCheckpointSeq: number | undefined
  for (let i = lines.length - 1; i >= 0 && lastCheckpointSeq === undefined; i--) {
    const l = lines[i] as string
    if (!l.includes('"type":"audit.checkpoint"')) continue
    try {
      const c = JSON.parse(l) as { type?: string; seq?: number }
      if (c.type === 'audit.checkpoint' && typeof c.seq === 'number') lastCheckpointSeq = c.seq
    } catch {
      // a torn line: not a checkpoint
    }
  }
  return { ...(last === undefined ? {} : { lastHash: lineHash(last) }), ...(lastCheckpointSeq === undefined ? {} : { lastCheckpointSeq }) }
}

function writeAll(fd: number, data: string | Buffer): void {
  const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data
  let off = 0
  while (off < buf.length) off += writeSync(fd, buf, off)
}

export const plugin = definePlugin({
  name: 'audit-jsonl',
  stage: 'record',
  apiVersion: PLUGIN_API_VERSION,
  configSchema: ConfigSchema,
  description: 'append-only JSON Lines audit file',
  register(container, config, ctx) {
    return constructPlugin(container, JsonlSink, config, ctx)
  },
})

export default plugin
