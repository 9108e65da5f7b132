/**
 * A bounded on-disk spool for audit events a sink's store cannot take right now (a database or
 * a webhook that is down). Lines are appended and fsync'd before `append` returns, so an event
 * in the spool survives a crash; the sink replays them in order when its store answers again,
 * then drops what it replayed with `consume`, keeping anything appended meanwhile.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs'
import { dirname } from 'node:path'
import type { MetricsRegistry } from '../metrics.js'

/** Where a spool reports its size and what it could not keep (`gatehouse_audit_spool_*{sink}`). */
export interface SpoolMetrics {
  readonly metrics: MetricsRegistry
  /** The `sink` label, e.g. `audit-postgres:gw-1`. */
  readonly sink: string
}

export class DiskSpool {
  private bytes: number
  private readonly report: ((bytes: number) => void) | undefined
  private readonly refused: ((events: number) => void) | undefined

  constructor(
    readonly path: string,
    /** Most bytes the spool may hold; 0 disables it. */
    readonly maxBytes: number,
    metrics?: SpoolMetrics,
  ) {
    if (metrics) {
      const labels = { sink: metrics.sink }
      const gauge = metrics.metrics.gauge('gatehouse_audit_spool_bytes', 'bytes waiting in an audit sink\u2019s spool for its store to return', ['sink'])
      const counter = metrics.metrics.counter('gatehouse_audit_spool_full_events_total', 'events an audit sink could not keep because its spool was full (refused when required, dropped otherwise)', ['sink'])
      this.report = (bytes) => gauge.set(labels, bytes)
      this.refused = (events) => counter.inc(labels, events)
    }
    mkdirSync(dirname(path), { recursive: true })
    this.bytes = existsSync(path) ? statSync(path).size : 0
    // A crash mid-append leaves a torn last line: cut it, so the next append starts a whole line.
    if (this.bytes > 0) {
      const text = readFileSync(path)
      const end = text.lastIndexOf(0x0a) + 1
      if (end < text.length) {
        truncateSync(path, end)
        this.bytes = end
      }
    }
    this.report?.(this.bytes)
  }

  /** Bytes waiting; > 0 means new events must queue behind them to keep order. */
  get size(): number {
    return this.bytes
  }

  /** Appends lines durably; returns false (and writes nothing) when they do not fit. Throws on an I/O error. */
  append(lines: readonly string[]): boolean {
    let text = ''
    for (const l of lines) text += `${l}\n`
    const n = Buffer.byteLength(text)
    if (this.maxBytes === 0 || this.bytes + n > this.maxBytes) {
      this.refused?.(lines.length)
      return false
    }
    const fd = openSync(this.path, 'a', 0o600)
    try {
      writeSync(fd, text)
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    this.bytes += n
    this.report?.(this.bytes)
    return true
  }

  /** Everything spooled, and the byte count to pass to `consume` once it is stored. */
  read(): { lines: string[]; bytes: number } {
    if (!existsSync(this.path)) return { lines: [], bytes: 0 }
    const text = readFileSync(this.path, 'utf8')
    return { lines: text.split('\n').filter(Boolean), bytes: Buffer.byteLength(text) }
  }

  /** Drops the first `bytes` (what a replay stored), keeping lines appended since it read. */
  consume(bytes: number): void {
    if (!existsSync(this.path)) {
      this.bytes = 0
      this.report?.(0)
      return
    }
    const now = statSync(this.path).size
    if (now <= bytes) truncateSync(this.path, 0)
    else {
      // The rest goes to a new file, fsync'd, then takes the old one's place: a crash leaves one or the other whole.
      const tmp = `${this.path}.tmp`
      writeFileSync(tmp, readFileSync(this.path).subarray(bytes), { mode: 0o600 })
      const fd = openSync(tmp, 'r')
      try {
        fsyncSync(fd)
      } finally {
        closeSync(fd)
      }
      renameSync(tmp, this.path)
    }
    this.bytes = Math.max(0, now - bytes)
    this.report?.(this.bytes)
  }
}
