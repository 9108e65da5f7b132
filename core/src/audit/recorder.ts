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

export class AuditRecorder {
  private readonly required: readonly AuditSink[]
  private readonly bestEffort: readonly AuditSink[]

  constructor(
    sinks: readonly { name: string; sink: AuditSink }[],
    private readonly logger: Logger,
  ) {
    this.required = sinks.filter((s) => s.sink.mode === 'required').map((s) => s.sink)
    this.bestEffort = sinks.filter((s) => s.sink.mode !== 'required').map((s) => s.sink)
  }

  get hasSinks(): boolean {
    return this.required.length + this.bestEffort.length > 0
  }

  record(event: AuditEvent): Promise<void> {
    for (const sink of this.bestEffort) {
      sink.write(event).catch((err: unknown) => this.logger.warn({ err: String(err), event: event.id }, 'best-effort audit sink failed'))
    }
    if (this.required.length === 0) return Promise.resolve()
    if (this.required.length === 1) return (this.required[0] as AuditSink).write(event).catch(refuse)
    return Promise.all(this.required.map((s) => s.write(event))).then(() => undefined, refuse)
  }
}

function refuse(err: unknown): never {
  throw new GatewayError('GH_ERR_AUDIT_UNAVAILABLE', 'audit is unavailable; request refused', { cause: err })
}
