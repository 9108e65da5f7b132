/**
 * core's ConnectionPipeline in process, as the pipeline tests drive it: one connection "db", an
 * identity "agent" with one gateway token (t1), an in-memory required audit sink, a logger whose
 * lines the test reads, and the /metrics registry. No adapter: the test plays its part.
 */
import {
  AuditRecorder,
  ConnectionPipeline,
  createLogger,
  GatewayConfig,
  generateToken,
  hashToken,
  Metrics,
  MetricsRegistry,
  validate,
  type Analyzer,
  type AuditEvent,
  type AuditSink,
  type Authenticator,
  type Decision,
  type PolicyEngine,
} from '@gatehouse/core'
import { container } from 'tsyringe'
import { TokenAuthenticator } from '@gatehouse/plugin-auth-token'
import { resolveLimits, type SessionLimits } from '../../core/dist/pipeline/limits.js'

export const allow: Decision = { verdict: 'allow', rule: 'p/allow', reason: 'allowed' }
export const deny: Decision = { verdict: 'deny', rule: 'p/deny', reason: 'no writes' }

export type Identity = { id: string; groups: string[]; tokens: { id: string; hash: string; expires?: string; connections?: string[] }[] }
export type LogLine = { level: number; msg: string; [k: string]: unknown }

export interface HarnessOptions {
  policies?: PolicyEngine[]
  analyzers?: Analyzer[]
  limits?: Record<string, unknown>
  /** Each identity's own session limits. */
  identityLimits?: Record<string, Partial<SessionLimits>>
  sink?: Partial<AuditSink>
  /** No audit sink at all. */
  noSinks?: boolean
  /** The token's expiry and connection scope. */
  expires?: string
  connections?: string[]
  /** Authenticators in place of (or before) the token authenticator, built for the identities in force. */
  authenticators?: (token: TokenAuthenticator) => Authenticator[]
  /** No Metrics in the container (a pipeline built without the admin API's registry). */
  noMetrics?: boolean
}

export function harness(opts: HarnessOptions = {}) {
  const token = generateToken()
  const identities: Identity[] = [
    { id: 'agent', groups: ['a'], tokens: [{ id: 't1', hash: hashToken(token, 'agent'), ...(opts.expires ? { expires: opts.expires } : {}), ...(opts.connections ? { connections: opts.connections } : {}) }] },
  ]
  const configWith = (ids: Identity[]) =>
    validate(GatewayConfig, { connections: [{ name: 'db', adapter: 'postgres', listen: '127.0.0.1:0', upstream: { host: 'h', database: 'd', user: 'u' } }, { name: 'other', adapter: 'postgres', listen: '127.0.0.1:0', upstream: { host: 'h', database: 'd', user: 'u' } }], identities: ids })
  const events: AuditEvent[] = []
  const logs: LogLine[] = []
  const logger = createLogger('trace', { write: (s: string) => void logs.push(JSON.parse(s) as LogLine) } as never)
  const sink: AuditSink = { mode: 'required', write: (e) => void events.push(e), flush: async () => {}, close: async () => {}, ...opts.sink }
  const recorder = new AuditRecorder(opts.noSinks ? [] : [{ name: 'mem', sink }], logger)
  const metrics = new MetricsRegistry()
  const root = container.createChildContainer()
  if (!opts.noMetrics) root.registerInstance(Metrics, metrics)
  const limits = resolveLimits(opts.limits as never, undefined)
  const chains = (ids: Identity[]) => {
    const tokens = new TokenAuthenticator(configWith(ids), { cacheSize: 0 })
    return { authenticators: opts.authenticators ? opts.authenticators(tokens) : [tokens], analyzers: opts.analyzers ?? [], policies: opts.policies ?? [{ decide: () => allow }], transformers: [] }
  }
  const identityLimits = new Map(Object.entries(opts.identityLimits ?? {}))
  const pipeline = new ConnectionPipeline('db', chains(identities), recorder, root, logger, limits, identityLimits)
  const login = async (clientAddress = '10.1.2.3:5555') => {
    const h = pipeline.openSession({ protocol: 'postgres', clientAddress, tls: false })
    await pipeline.authenticate(h.info, { kind: 'password', user: 'agent', password: token })
    return h
  }
  /** The value of a counter with exactly these labels, from the registry /metrics serves. */
  const counter = async (name: string, labels: Record<string, string>): Promise<number | undefined> => {
    const metric = metrics.registry.getSingleMetric(name)
    const values = ((await metric?.get()) as { values: { labels: Record<string, string>; value: number }[] } | undefined)?.values ?? []
    return values.find((v) => JSON.stringify(Object.entries(v.labels).sort()) === JSON.stringify(Object.entries(labels).sort()))?.value
  }
  const reload = (ids: Identity[], limitOverrides?: Record<string, unknown>) =>
    pipeline.reconfigure({ chains: chains(ids), limits: resolveLimits(limitOverrides as never, undefined), identityLimits: new Map() })
  /** Makes the authenticator in force answer only when the returned function is called (a login checked while a reload comes in). */
  const holdLogins = (): (() => void) => {
    let release: () => void = () => {}
    const slow = new Promise<void>((r) => (release = r))
    const auth = pipeline['chains'].authenticators[0] as { authenticate: (...a: unknown[]) => unknown }
    const real = auth.authenticate.bind(auth)
    auth.authenticate = async (...a: unknown[]) => {
      const p = await real(...a)
      await slow
      return p
    }
    return release
  }
  return { pipeline, events, logs, token, login, counter, reload, identities, holdLogins }
}

export const tick = () => new Promise((r) => setImmediate(r))
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
export const protocolEvents = (events: AuditEvent[]) => events.filter((e) => e.type === 'protocol') as (AuditEvent & { event: string; reason: string; attrs?: Record<string, unknown> })[]
