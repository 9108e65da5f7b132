/**
 * Fans audit events out to a connection's sinks. The caller awaits `record` only for intent
 * records: it resolves when every `required` sink took the event and rejects with
 * GH_ERR_AUDIT_UNAVAILABLE when one could not. Best-effort sinks are never awaited; their
 * failures are logged (without the event's content).
 */
import { GatewayError } from '../errors.js'
import type { Logger } from '../logger.js'
import type { AuditSink } from '../plugin/stages.js'
import type { AuditEvent } from './events.js'
import type { Counter } from 'prom-client'

export class AuditRecorder {
  private readonly required: readonly AuditSink[]
  private readonly bestEffort: readonly AuditSink[]
  /** Every required sink implements writeLater (recordLater then needs no promise per event). */
  private readonly later: boolean
  private readonly names = new Map<AuditSink, string>()
  private readonly reporters = new Map<AuditSink, WeakMap<(err: unknown, event: AuditEvent) => void, (err: Error, event: AuditEvent) => void>>()

  constructor(
    sinks: readonly { name: string; sink: AuditSink }[],
    private readonly logger: Logger,
    /** Counts each failed write, by sink name (`gatehouse_audit_sink_errors_total{sink}`). */
    private readonly errors?: Counter<'sink'>,
  ) {
    this.required = sinks.filter((s) => s.sink.mode === 'required').map((s) => s.sink)
    this.bestEffort = sinks.filter((s) => s.sink.mode !== 'required').map((s) => s.sink)
    for (const s of sinks) this.names.set(s.sink, s.name)
    this.later = this.required.length > 0 && this.required.every((s) => typeof s.writeLater === 'function')
  }

  get hasSinks(): boolean {
    return this.required.length + this.bestEffort.length > 0
  }

  /**
   * Writes to every sink. Returns undefined when every required sink took the event
   * synchronously; otherwise a promise that rejects when a required sink could not take it
   * (with the sink's error when there is one required sink, GH_ERR_AUDIT_UNAVAILABLE otherwise).
   * Throws GH_ERR_AUDIT_UNAVAILABLE (synchronously) when a required sink threw.
   */
  record(event: AuditEvent): Promise<void> | undefined {
    this.writeBestEffort(event)
    let pending: Promise<void>[] | undefined
    for (const sink of this.required) {
      let r: Promise<void> | void
      try {
        r = sink.write(event)
      } catch (err) {
        this.count(sink)
        refuse(err)
      }
      if (r !== undefined) (pending ??= []).push(this.errors ? r.catch((err: unknown) => {
        this.count(sink)
        throw err
      }) : r)
    }
    if (!pending) return undefined
    // One required sink (the common case): its own promise, without another link in the chain.
    if (pending.length === 1) return pending[0] as Promise<void>
    return Promise.all(pending).then(() => undefined, refuse)
  }

  /**
   * Like record, for an event nobody waits for (a request's outcome): a required sink's failure
   * goes to `failed` instead of a promise the caller must catch.
   */
  recordLater(event: AuditEvent, failed: (err: unknown, event: AuditEvent) => void): void {
    if (!this.later) {
      let pending: Promise<void> | undefined
      try {
        pending = this.record(event)
      } catch (err) {
        failed(err, event)
        return
      }
      pending?.then(undefined, (err: unknown) => failed(unavailable(err), event))
      return
    }
    // Every required sink takes events it reports on later (the common case: one audit-jsonl).
    this.writeBestEffort(event)
    for (const sink of this.required) {
      try {
        ;(sink.writeLater as NonNullable<AuditSink['writeLater']>)(event, this.reporterFor(sink, failed))
      } catch (err) {
        this.count(sink)
        failed(unavailable(err), event)
        return
      }
    }
  }

  private count(sink: AuditSink): void {
    this.errors?.inc({ sink: this.names.get(sink) ?? 'unknown' })
  }

  private bestEffortFailed(sink: AuditSink, err: unknown, event: AuditEvent): void {
    this.count(sink)
    this.logger.warn({ err: String(err), event: event.id, sink: this.names.get(sink) }, 'best-effort audit sink failed')
  }

  /**
   * What `sink` calls when it could not write an event given to writeLater: counts the failure
   * and hands `failed` the recorder's error. One function per sink and caller's function, kept.
   */
  private reporterFor(sink: AuditSink, failed: (err: unknown, event: AuditEvent) => void): (err: Error, event: AuditEvent) => void {
    let bySink = this.reporters.get(sink)
    if (!bySink) this.reporters.set(sink, (bySink = new WeakMap()))
    let r = bySink.get(failed)
    if (r === undefined) {
      r = (err, event) => {
        this.count(sink)
        failed(unavailable(err), event)
      }
      bySink.set(failed, r)
    }
    return r
  }

  /** Best-effort sinks are never waited for; their failures are logged. */
  private writeBestEffort(event: AuditEvent): void {
    for (const sink of this.bestEffort) {
      try {
        sink.write(event)?.catch((err: unknown) => this.bestEffortFailed(sink, err, event))
      } catch (err) {
        this.bestEffortFailed(sink, err, event)
      }
    }
  }

  /** Like record, but always a promise (for callers off the hot path). */
  recordAsync(event: AuditEvent): Promise<void> {
    try {
      return (this.record(event) ?? Promise.resolve()).catch(refuse)
    } catch (err) {
      return Promise.reject(err)
    }
  }
}

function unavailable(err: unknown): GatewayError {
  return new GatewayError('GH_ERR_AUDIT_UNAVAILABLE', 'audit is unavailable; request refused', { cause: err })
}

function refuse(err: unknown): never {
  throw unavailable(err)
}
