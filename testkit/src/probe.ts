/**
 * The kit's audit sink: a `required` record-stage plugin that keeps every event in memory, can be
 * made to fail (a sink that is down), and can hold the intent record of one request until the
 * kit lets it go (so the kit can look at the upstream while the record is still being written).
 *
 * The gateway loads plugins by package name, so the kit writes a one-line package into a
 * directory of its own that re-exports `plugin` from this file; the gateway and the kit then
 * find the probe the kit made for it by the instance's `id` config.
 */
import { Type } from '@sinclair/typebox'
import { definePlugin, PLUGIN_API_VERSION, type AuditEvent, type AuditSink } from '@gatehouse/core'

/** Whether a request event carries `marker` in its text or its parameters (a bound value). */
export function carries(event: AuditEvent, marker: string): boolean {
  if (event.type !== 'request') return false
  if (typeof event.text === 'string' && event.text.includes(marker)) return true
  return event.params !== undefined && JSON.stringify(event.params).includes(marker)
}

interface Gate {
  readonly marker: string
  readonly arrived: Promise<AuditEvent>
  readonly release: () => void
}

/** What the kit sees of its sink. */
export class AuditProbe implements AuditSink {
  readonly mode = 'required' as const
  readonly events: AuditEvent[] = []
  /** While true, every write throws: the sink is down. */
  failing = false
  private gate: (Gate & { resolveArrived: (e: AuditEvent) => void; released: Promise<void> }) | undefined

  write(event: AuditEvent): Promise<void> | void {
    if (this.failing) throw new Error('conformance probe: this audit sink is down')
    this.events.push(event)
    const gate = this.gate
    if (gate && event.type === 'request' && carries(event, gate.marker)) {
      this.gate = undefined
      gate.resolveArrived(event)
      return gate.released
    }
    return undefined
  }

  /**
   * Holds the next intent record whose text or parameters carry `marker`: `arrived` settles when the gateway
   * hands it to this sink, and the write completes only after `release()`.
   */
  holdIntent(marker: string): Gate {
    let resolveArrived!: (e: AuditEvent) => void
    let release!: () => void
    const arrived = new Promise<AuditEvent>((r) => (resolveArrived = r))
    const released = new Promise<void>((r) => (release = r))
    this.gate = { marker, arrived, release, resolveArrived, released }
    return { marker, arrived, release }
  }

  flush(): Promise<void> {
    return Promise.resolve()
  }

  close(): Promise<void> {
    return Promise.resolve()
  }
}

/**
 * Probes by id, on the global object: a test runner may load this file as a module of its own
 * (vitest transforms what the test imports) beside the copy the gateway imports natively.
 */
const REGISTRY = Symbol.for('gatehouse.testkit.probes')
const probes: Map<string, AuditProbe> = ((globalThis as Record<symbol, unknown>)[REGISTRY] as Map<string, AuditProbe> | undefined) ?? new Map()
;(globalThis as Record<symbol, unknown>)[REGISTRY] = probes

/** A probe for the gateway about to be built with `id` in the plugin's config. */
export function newProbe(id: string): AuditProbe {
  const probe = new AuditProbe()
  probes.set(id, probe)
  return probe
}

export function dropProbe(id: string): void {
  probes.delete(id)
}

export const plugin = definePlugin({
  name: 'conformance-probe',
  stage: 'record',
  apiVersion: PLUGIN_API_VERSION,
  configSchema: Type.Object({ id: Type.String() }, { additionalProperties: false }),
  description: 'the conformance kit’s in-memory, required audit sink',
  register(_container, config) {
    const probe = probes.get(config.id)
    if (!probe) throw new Error(`conformance probe "${config.id}" was not made by the kit`)
    return probe
  },
})
