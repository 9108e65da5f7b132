/**
 * Metrics (Prometheus text format, through prom-client): one registry per gateway, registered
 * in the root container as `Metrics`, so plugins count what matters to an operator (a spool
 * filling up, requests refused) and the admin API serves it at /metrics.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { InjectionToken } from 'tsyringe'

export class MetricsRegistry {
  readonly registry = new Registry()

  /** A counter, created once per name (later calls return the same one). */
  counter<L extends string>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
    const existing = this.registry.getSingleMetric(name)
    if (existing) return existing as Counter<L>
    return new Counter({ name, help, labelNames: [...labelNames], registers: [this.registry] })
  }

  /** A gauge, created once per name. */
  gauge<L extends string>(name: string, help: string, labelNames: readonly L[] = []): Gauge<L> {
    const existing = this.registry.getSingleMetric(name)
    if (existing) return existing as Gauge<L>
    return new Gauge({ name, help, labelNames: [...labelNames], registers: [this.registry] })
  }

  /** A histogram, created once per name. */
  histogram<L extends string>(name: string, help: string, labelNames: readonly L[], buckets: readonly number[]): Histogram<L> {
    const existing = this.registry.getSingleMetric(name)
    if (existing) return existing as Histogram<L>
    return new Histogram({ name, help, labelNames: [...labelNames], buckets: [...buckets], registers: [this.registry] })
  }

  text(): Promise<string> {
    return this.registry.metrics()
  }
}
export const Metrics: InjectionToken<MetricsRegistry> = Symbol.for('gatehouse.Metrics')
