/**
 * Boot and shutdown. Order matters and is fixed here:
 * 1. root container with config and logger;
 * 2. every plugin instance loaded, its config validated and frozen, `register` called;
 * 3. connections checked against their adapter and chains resolved;
 * 4. the container sealed — registering later is an error;
 * 5. stage objects started (sinks open files), then listeners opened.
 * Shutdown reverses it: stop accepting, let sessions finish up to the deadline, end the rest,
 * flush and close sinks.
 */
import 'reflect-metadata'
import { container as globalContainer, type DependencyContainer } from 'tsyringe'
import { createHash, randomUUID } from 'node:crypto'
import { setMaxListeners } from 'node:events'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { lockExclusive, type HeldLock } from './lock.js'
import { join, resolve } from 'node:path'
import { AsciicastRecorder, TerminalRecorder } from './recording/asciicast.js'
import { Metrics, MetricsRegistry } from './metrics.js'
import { stateStoreFor } from './state/index.js'
import { IssuedTokens, IssuedTokensToken } from './auth/issued.js'
import { Reviews, ReviewsToken } from './review/reviews.js'
import { StateStoreToken, type StateStore } from './state/store.js'
import { startAdmin, type AdminRole } from './admin.js'
import type { FastifyInstance } from 'fastify'
import { AuditRecorder } from './audit/recorder.js'
import { GatewayConfig as GatewayConfigToken, type GatewayConfigRef } from './config/token.js'
import { Rule as RuleSchema, type ConnectionConfig, type GatewayConfig, type Rule, type StageChains } from './config/schema.js'
import { ConfigError, issuesOf, validate, type ValidationIssue } from './config/validate.js'
import { GatewayError, isGatewayError } from './errors.js'
import { createLogger, logDestination, Logger } from './logger.js'
import type { Lifecycle, PluginDefinition, RuleSet, StageObjects } from './plugin/define.js'
import { loadPluginDefinition } from './plugin/loader.js'
import type { AuditQuery, AuditSink, Authenticator, ExplainInput, Listener, PolicyEngine, ProtocolAdapter, Stage } from './plugin/stages.js'
import type { AuditEvent } from './audit/events.js'
import type { Decision, Principal, SessionInfo } from './types.js'

/** One request of `gatehouse policy explain` with its decision. */
export interface ExplainedDecision {
  readonly action: string
  readonly text: string
  readonly attrs: Record<string, unknown>
  readonly decision: Decision
}
import { ConnectionPipeline } from './pipeline/pipeline.js'
import { isCoreLimitGroup, LIMIT_DEFAULTS, resolveLimits, type SessionLimits } from './pipeline/limits.js'
import { sealContainer } from './container.js'

/** Default chains for a connection that does not list its own: fail closed, audited. */
export const DEFAULT_CHAINS: Required<StageChains> = {
  authenticate: ['auth-token', 'auth-ssh-key'],
  parse: [],
  decide: ['policy'],
  record: ['audit-jsonl'],
  transform: [],
}

interface Instance {
  readonly name: string
  readonly definition: PluginDefinition
  readonly object: StageObjects[Stage] & Lifecycle
}

export interface BootOptions {
  logger?: Logger
  /** Directories to resolve third-party plugin packages from (default: cwd). */
  pluginSearchDirs?: string[]
  /** The metrics registry to count in (a reload keeps the running gateway's). */
  metrics?: MetricsRegistry
  /** The state store (a reload keeps the running gateway's). */
  stateStore?: StateStore
  /** The tokens issued at run time (a reload keeps the running gateway's). */
  issuedTokens?: IssuedTokens
  /** Held requests (a reload keeps the running gateway's). */
  reviews?: Reviews
}

/** How often a gateway on a shared state store reads back the reviews it holds (another replica may decide them). */
const REVIEW_POLL_MS = 1000

/**
 * This gateway's id, kept in its data directory: the reviews it holds carry it, so a restart
 * finds the ones it left pending. Replicas have a data directory each, so an id each.
 */
function gatewayId(dataDir: string): string {
  const file = join(dataDir, 'gateway-id')
  try {
    const id = readFileSync(file, 'utf8').trim()
    if (/^[0-9a-f-]{36}$/.test(id)) return id
  } catch {
    // first start
  }
  const id = randomUUID()
  mkdirSync(dataDir, { recursive: true })
  writeFileSync(file, `${id}\n`, { mode: 0o600 })
  return id
}

/**
 * Whether the state store can hold records already (a shared one; an embedded one that exists):
 * only then are they read at start, so a gateway that never used the store never opens it.
 */
function storeMayHoldRecords(config: Pick<GatewayConfig, 'state' | 'dataDir'>): boolean {
  return config.state.store === 'postgres' || existsSync(resolve(config.dataDir, config.state.dir ?? 'state'))
}

/** How often a gateway on a shared state store reads the tokens other replicas issued or revoked. */
const ISSUED_TOKENS_POLL_MS = 5000

function unlimited(controller: AbortController): AbortController {
  setMaxListeners(0, controller.signal)
  return controller
}

export class Gateway {
  private listeners: { connection: ConnectionConfig; listener: Listener }[] = []
  private pipelines: ConnectionPipeline[] = []
  /** Aborted at shutdown; every connection's listener (a few listeners each) hangs on it, so it has no listener limit: ten connections are not a leak. */
  private readonly abort = unlimited(new AbortController())
  private stopping: Promise<void> | undefined

  private constructor(
    private current: GatewayConfig,
    readonly container: DependencyContainer,
    readonly logger: Logger,
    private readonly instances: Map<string, Instance>,
    private readonly plans: { connection: ConnectionConfig; adapter: ProtocolAdapter; pipeline: ConnectionPipeline }[],
    private readonly bootOptions: BootOptions,
  ) {}

  /** The config in force (a reload replaces it). */
  get config(): GatewayConfig {
    return this.current
  }

  private reloading: Promise<unknown> = Promise.resolve()

  /**
   * Applies `next` to the running gateway without dropping sessions: identities, tokens,
   * policies, limits, and the authenticate, parse, decide and transform plugins. It is built and
   * checked exactly as `gatehouse validate` would; if anything is wrong, or it changes what needs
   * a restart (listeners, upstreams, adapters, audit sinks, the data directory, the admin API),
   * it throws a ConfigError naming the paths and the config in force stays as it was. Open
   * sessions go on under the new policies and limits; those whose credential the new config no
   * longer accepts (a token removed, now expired, no longer scoped to the connection; a key
   * removed) are ended. Reloads run one at a time.
   */
  reload(next: GatewayConfig): Promise<{ ended: number }> {
    const run = this.reloading.then(() => this.applyReload(next))
    this.reloading = run.catch(() => undefined)
    return run
  }

  private async applyReload(next: GatewayConfig): Promise<{ ended: number }> {
    if (this.stopping) throw new GatewayError('GH_ERR_SHUTTING_DOWN', 'the gateway is shutting down; nothing was reloaded')
    if (this.listeners.length === 0) throw new GatewayError('GH_ERR_CONFIG_INVALID', 'the gateway has not started yet; nothing was reloaded')
    const fresh = await Gateway.build(next, { ...this.bootOptions, logger: this.logger, metrics: this.container.resolve(Metrics), stateStore: this.container.resolve(StateStoreToken), issuedTokens: this.container.resolve(IssuedTokensToken), reviews: this.container.resolve(ReviewsToken) })
    const restart = restartOnlyChanges(this.current, next, (name) => (this.instances.get(name) ?? fresh.instances.get(name))?.definition.stage)
    if (restart.length > 0) throw new ConfigError(restart)
    const reloadable = (inst: Instance) => RELOADABLE_STAGES.has(inst.definition.stage)
    const started: Instance[] = []
    try {
      for (const inst of fresh.instances.values()) {
        if (!reloadable(inst)) continue
        await inst.object.start?.()
        started.push(inst)
      }
    } catch (err) {
      for (const inst of started) await inst.object.close?.()
      throw err
    }
    let ended = 0
    for (const plan of this.plans) {
      const replacement = fresh.plans.find((p) => p.connection.name === plan.connection.name)
      if (replacement) ended += plan.pipeline.reconfigure(replacement.pipeline.settings).ended
    }
    const retired = [...this.instances.values()].filter(reloadable)
    for (const inst of retired) this.instances.delete(inst.name)
    for (const inst of started) this.instances.set(inst.name, inst)
    this.current = next
    this.container.resolve(IssuedTokensToken).know(next)
    for (const inst of retired) {
      try {
        await inst.object.close?.()
      } catch (err) {
        this.logger.error({ plugin: inst.name, err: String(err) }, 'plugin close failed')
      }
    }
    const digest = (v: unknown) => `sha256:${createHash('sha256').update(JSON.stringify(v)).digest('hex')}`
    const facts = { policies: digest(next.policies), identities: digest(next.identities), limits: digest({ top: next.limits, connections: next.connections.map((c) => c.limits) }), sessionsEnded: ended }
    await Promise.all(this.plans.map((p) => p.pipeline.recordReload(p.adapter.protocol, facts)))
    this.logger.info({ identities: next.identities.length, policies: next.policies.length, sessionsEnded: ended }, 'configuration reloaded')
    return { ended }
  }

  /** Loads and registers everything; opens nothing. `gatehouse validate` stops here. */
  static async build(config: GatewayConfig, opts: BootOptions = {}): Promise<Gateway> {
    // With audit events on stdout, the log moves to stderr so the two never interleave.
    const auditOnStdout = config.plugins.some((p) => p.use === 'audit-stdout') || config.connections.some((c) => c.plugins?.record?.includes('audit-stdout'))
    const logger = opts.logger ?? createLogger(config.log.level, auditOnStdout ? logDestination(2) : undefined, config.log.format)
    const root = globalContainer.createChildContainer()
    root.registerInstance(Logger, logger)
    root.registerInstance<GatewayConfigRef>(GatewayConfigToken, Object.freeze(config))
    root.registerInstance(TerminalRecorder, new AsciicastRecorder(join(config.dataDir, 'recordings')))
    const metrics = opts.metrics ?? new MetricsRegistry()
    root.registerInstance(Metrics, metrics)
    // Opened on first use (issued tokens, reviews): a gateway that needs neither never opens it.
    const store = opts.stateStore ?? stateStoreFor(config)
    root.registerInstance(StateStoreToken, store)
    // Tokens issued at run time; read from the store at start only when it can hold any.
    let issued = opts.issuedTokens
    if (!issued) {
      issued = new IssuedTokens(store, logger, {
        load: storeMayHoldRecords(config),
        ...(config.state.store === 'postgres' ? { pollMs: ISSUED_TOKENS_POLL_MS } : {}),
      })
      issued.know(config)
    }
    root.registerInstance(IssuedTokensToken, issued)
    // Held requests; reviews are records in the store, decided by any replica.
    root.registerInstance(
      ReviewsToken,
      opts.reviews ?? new Reviews(store, logger, gatewayId(config.dataDir), config.state.store === 'postgres' ? { pollMs: REVIEW_POLL_MS } : {}),
    )

    const instances = new Map<string, Instance>()
    const searchDirs = opts.pluginSearchDirs ?? [process.cwd()]
    // Every problem is collected, so `gatehouse validate` lists them all at once; whatever depends
    // on a part that failed (a chain naming a plugin that did not load) is skipped, not re-reported.
    const problems: unknown[] = []
    const attempt = async <T>(fn: () => T | Promise<T>): Promise<T | undefined> => {
      try {
        return await fn()
      } catch (err) {
        problems.push(err)
        return undefined
      }
    }
    const failed = new Set<string>()
    const register = async (use: string, name: string, rawConfig: unknown, path: string): Promise<void> => {
      if (instances.has(name)) throw new GatewayError('GH_ERR_PLUGIN_DUPLICATE', `${path}: plugin instance name "${name}" is already used; set a distinct "name"`)
      const loaded = await attempt(async () => {
        const definition = await loadPluginDefinition(use, path, searchDirs)
        const pluginConfig = definition.configSchema ? deepFreeze(validate(definition.configSchema, rawConfig ?? {}, { base: `${path}.config`, code: 'GH_ERR_PLUGIN_CONFIG' })) : {}
        const object = (await definition.register(root, pluginConfig, {
          gateway: config,
          instance: name,
          logger: logger.child({ plugin: name }),
          dataDir: config.dataDir,
        })) as Instance['object']
        return { name, definition, object }
      })
      if (loaded) instances.set(name, loaded)
      else failed.add(name)
    }
    /** The stage object of instance `name`, loading it by name if no instance has it yet; undefined if that failed. */
    const use = async <K extends Stage>(name: string, stage: K, path: string): Promise<StageObjects[K] | undefined> => {
      if (!instances.has(name) && !failed.has(name)) await attempt(() => register(name, name, {}, path))
      if (failed.has(name)) return undefined
      return attempt(() => stageObject(instances, name, stage, path))
    }

    for (const [i, p] of config.plugins.entries()) await attempt(() => register(p.use, p.name ?? p.use, p.config, `plugins[${i}]`))

    const plans: { connection: ConnectionConfig; adapter: ProtocolAdapter; pipeline: ConnectionPipeline }[] = []
    for (const [i, connection] of config.connections.entries()) {
      const path = `connections[${i}]`
      const adapter = await use(connection.adapter, 'adapter', `${path}.adapter`)
      const checked = adapter && (await attempt(() => (adapter.checkConnection?.(connection, path), true)))
      const chains = { ...DEFAULT_CHAINS, ...(connection.plugins ?? {}) }
      let complete = true
      const resolveChain = async <K extends Exclude<Stage, 'adapter'>>(stage: K): Promise<StageObjects[K][]> => {
        const out: StageObjects[K][] = []
        for (const [j, name] of chains[stage].entries()) {
          const object = await use(name, stage, `${path}.plugins.${stage}[${j}]`)
          if (object === undefined) complete = false
          else out.push(object)
        }
        return out
      }
      const authenticators = await resolveChain('authenticate')
      const analyzers = await resolveChain('parse')
      const policies = await resolveChain('decide')
      const sinks = await resolveChain('record')
      const transformers = await resolveChain('transform')
      if (!adapter || !checked || !complete) continue
      const limits = await attempt(() => resolveLimits(config.limits, connection.limits, { protocol: adapter.protocol, schema: adapter.limits, path }))
      if (!limits) continue
      if (sinks.length === 0) logger.warn({ connection: connection.name }, 'connection has no audit sink: requests will not be recorded')
      const recorder = new AuditRecorder(
        chains.record.map((name, j) => ({ name, sink: sinks[j] as StageObjects['record'] })),
        logger,
        metrics.counter('gatehouse_audit_sink_errors_total', 'audit events a sink could not take, by sink', ['sink']),
      )
      const pipeline = new ConnectionPipeline(connection.name, { authenticators, analyzers, policies, transformers }, recorder, root, logger.child({ connection: connection.name }), limits, identityLimits(config))
      plans.push({ connection, adapter, pipeline })
    }
    // The admin API's bearer authenticators: authenticate-stage instances, checked like a chain.
    if (config.admin) {
      if (config.admin.tokens.length === 0 && config.admin.authenticate.length === 0) {
        problems.push(new ConfigError([{ path: 'admin', message: 'no way to call the admin API: give admin.tokens or admin.authenticate' }]))
      }
      for (const [j, name] of config.admin.authenticate.entries()) await use(name, 'authenticate', `admin.authenticate[${j}]`)
    }
    // Rule sets plugins ship, handed to every decide-stage engine that takes them.
    const ruleSets = await attempt(() => pluginRuleSets(instances))
    if (ruleSets) {
      for (const inst of instances.values()) {
        const engine = inst.object as Partial<PolicyEngine>
        if (inst.definition.stage === 'decide' && typeof engine.useRuleSets === 'function') await attempt(() => engine.useRuleSets?.(ruleSets))
      }
    }
    // Checked against every connection's adapter: with one missing, they would report false problems.
    if (plans.length === config.connections.length) {
      await attempt(() => checkPolicyActions(config, plans))
      await attempt(() => checkLimitGroups(config, plans))
    }
    for (const w of configWarnings(config)) logger.warn({ path: w.path }, w.message)
    if (problems.length === 1) throw problems[0]
    if (problems.length > 1) throw new ConfigError(problems.flatMap((p) => issuesOf(p)))
    sealContainer(root)
    return new Gateway(config, root, logger, instances, plans, opts)
  }

  /**
   * `gatehouse policy explain`: what would happen to `input` from identity `principalId` on
   * `connectionName`. Analysed by the connection's adapter and judged by its decide chain;
   * nothing is recorded and nothing is sent to any upstream.
   */
  async explain(connectionName: string, principalId: string, input: ExplainInput, claims: Record<string, unknown> = {}): Promise<ExplainedDecision[]> {
    const plan = this.plans.find((p) => p.connection.name === connectionName)
    if (!plan) throw new GatewayError('GH_ERR_CONFIG_INVALID', `unknown connection "${connectionName}"; the config has ${this.plans.map((p) => p.connection.name).join(', ')}`)
    const identity = this.config.identities.find((i) => i.id === principalId)
    if (!identity) throw new GatewayError('GH_ERR_CONFIG_INVALID', `unknown identity "${principalId}"`)
    if (!plan.adapter.explain) throw new GatewayError('GH_ERR_CONFIG_INVALID', `the ${plan.connection.adapter} adapter cannot explain requests`)
    const principal: Principal = Object.freeze({ id: identity.id, kind: identity.kind, groups: identity.groups, claims: Object.freeze({ ...(identity.claims ?? {}), ...claims }), credential: 'explain' })
    const session: SessionInfo = { id: 'explain', connection: connectionName, protocol: plan.adapter.protocol, clientAddress: 'explain', startedAt: Date.now(), principal, tls: false, signal: new AbortController().signal }
    const out: ExplainedDecision[] = []
    for (const r of await plan.adapter.explain(input)) {
      const request = plan.pipeline.request(session, { action: r.action, text: r.text, attrs: r.attrs })
      const decision: Decision = r.refusal ? { verdict: 'deny', rule: r.refusal.rule, reason: r.refusal.reason } : await plan.pipeline.explain(request, principal)
      out.push({ action: r.action, text: r.text, attrs: request.attrs, decision })
    }
    return out
  }

  /** Starts stage objects, then opens every connection's listener. */
  async start(): Promise<void> {
    mkdirSync(this.config.dataDir, { recursive: true })
    // Before any plugin starts: a second gateway on this directory would fork its audit chain.
    this.dataLock = await lockExclusive(this.config.dataDir, 'data directory', join(this.config.dataDir, 'lock.key'))
    try {
      const issued = this.container.resolve(IssuedTokensToken)
      await issued.start()
      // a token revoked (here, or by a replica) ends the sessions that logged in with it
      issued.onChange(() => {
        const ended = this.pipelines.reduce((n, p) => n + p.recheckCredentials(), 0)
        if (ended > 0) this.logger.info({ sessionsEnded: ended }, 'issued tokens changed: sessions of revoked tokens ended')
      })
      for (const inst of this.instances.values()) await inst.object.start?.()
      // Requests this gateway held when it last stopped without ending them: denied, and audited.
      if (storeMayHoldRecords(this.config)) {
        const leftovers = await this.container
          .resolve(ReviewsToken)
          .abandonLeftovers()
          .catch((err: unknown) => {
            this.logger.error({ err: String(err) }, 'could not end the reviews left pending by the last run: the state store did not answer')
            return []
          })
        for (const review of leftovers) {
          const plan = this.plans.find((p) => p.connection.name === review.connection)
          await plan?.pipeline.recordReviewEnd(review)
        }
        if (leftovers.length > 0) this.logger.warn({ reviews: leftovers.length }, 'requests held when the gateway last stopped were denied')
      }
      for (const plan of this.plans) {
        const listener = await plan.adapter.listen(plan.connection, plan.pipeline, this.abort.signal)
        this.listeners.push({ connection: plan.connection, listener })
        this.pipelines.push(plan.pipeline)
        this.logger.info({ connection: plan.connection.name, adapter: plan.connection.adapter, address: `${listener.address.host}:${listener.address.port}` }, 'listening')
      }
      if (this.config.admin) {
        const metrics = this.container.resolve(Metrics)
        const active = metrics.gauge('gatehouse_sessions_active', 'sessions open now, by connection', ['connection'])
        const held = metrics.gauge('gatehouse_reviews_held', 'requests this gateway holds for review now')
        const reviews = this.container.resolve(ReviewsToken)
        const admin = await startAdmin(this.config.admin, {
          dataDir: this.config.dataDir,
          logger: this.logger.child({ component: 'admin' }),
          metrics,
          issued: this.container.resolve(IssuedTokensToken),
          reviews,
          bearer: this.adminBearer(),
          sessions: {
            list: () => this.pipelines.flatMap((p) => p.liveSessions()),
            terminate: (id, by, reason) => this.pipelines.some((p) => p.terminateSession(id, by, reason)),
          },
          ready: () => this.listeners.length === this.plans.length && !this.stopping,
          audit: this.auditReader(),
          beforeScrape: () => {
            for (const plan of this.plans) active.set({ connection: plan.connection.name }, plan.pipeline.liveSessions().length)
            held.set(reviews.held)
          },
        })
        this.admin = admin.app
        this.adminPort = admin.port
        this.logger.info({ address: `${this.config.admin.listen.replace(/:\d+$/, '')}:${admin.port}` }, 'admin API listening')
      }
    } catch (err) {
      await this.shutdown(0)
      throw err
    }
  }

  /**
   * A bearer token that is not an admin token, proved by `admin.authenticate` (an auth-jwt, say):
   * the caller's id and the highest role one of its groups holds under `admin.roles`; no role is
   * a 403 (`role: undefined`); a token none of them proves, undefined (401).
   */
  private adminBearer(): ((token: string, client: string) => Promise<{ id: string; role: AdminRole | undefined } | undefined>) | undefined {
    const admin = this.config.admin
    if (!admin || admin.authenticate.length === 0) return undefined
    const authenticators = admin.authenticate.map((name) => this.instances.get(name)?.object as Authenticator)
    const roles = admin.roles
    return async (token, client) => {
      const session: SessionInfo = { id: `admin:${randomUUID()}`, connection: 'admin', protocol: 'http', clientAddress: client, startedAt: Date.now(), tls: false, signal: new AbortController().signal }
      for (const a of authenticators) {
        let principal: Principal | undefined
        try {
          principal = await a.authenticate({ kind: 'bearer', token }, { session, connection: 'admin', now: Date.now() })
        } catch (err) {
          this.logger.warn({ client, err: isGatewayError(err) ? err.message : String(err) }, 'admin API bearer token refused')
          return undefined
        }
        if (!principal) continue
        const has = (groups: readonly string[]) => groups.some((g) => principal.groups.includes(g))
        const role: AdminRole | undefined = has(roles.admin) ? 'admin' : has(roles.approver) ? 'approver' : has(roles.auditor) ? 'auditor' : undefined
        return { id: principal.id, role }
      }
      return undefined
    }
  }

  /** The first record-stage sink that can read its events back (audit-jsonl), for the admin API's audit query. */
  private auditReader(): ((filter: AuditQuery) => Promise<AuditEvent[]>) | undefined {
    for (const inst of this.instances.values()) {
      const sink = inst.object as AuditSink
      if (inst.definition.stage === 'record' && typeof sink.query === 'function') return (filter) => (sink.query as NonNullable<AuditSink['query']>).call(sink, filter)
    }
    return undefined
  }


  private admin: FastifyInstance | undefined
  private dataLock: HeldLock | undefined
  /** The admin API's bound port, when it is configured. */
  adminPort: number | undefined

  /** The bound address of a connection's listener (useful with port 0). */
  address(connection: string): { host: string; port: number } {
    const l = this.listeners.find((x) => x.connection.name === connection)
    if (!l) throw new Error(`no listener for connection ${connection}`)
    return l.listener.address
  }

  /** Sessions open on every listener now. */
  get openSessions(): number {
    return this.listeners.reduce((n, l) => n + l.listener.sessions, 0)
  }

  /** Waits until every audit sink has made durable what it was given (its `flush`). */
  async flushAudit(): Promise<void> {
    for (const inst of this.instances.values()) if (inst.definition.stage === 'record') await (inst.object as AuditSink).flush()
  }

  /** Stop accepting, wait up to `graceMs` for sessions, end the rest, flush and close plugins. */
  shutdown(graceMs = this.config.shutdown.graceMs): Promise<void> {
    this.stopping ??= (async () => {
      this.logger.info({ graceMs }, 'shutting down: no new sessions')
      await Promise.all(this.listeners.map((l) => l.listener.stopAccepting()))
      await this.admin?.close()
      const deadline = Date.now() + graceMs
      while (Date.now() < deadline && this.listeners.some((l) => l.listener.sessions > 0)) {
        await new Promise((r) => setTimeout(r, 50))
      }
      const left = this.listeners.reduce((n, l) => n + l.listener.sessions, 0)
      if (left > 0) this.logger.warn({ sessions: left }, 'grace period over: ending remaining sessions')
      await Promise.all(this.listeners.map((l) => l.listener.closeAll('gateway shutting down')))
      await Promise.all(this.pipelines.map((p) => p.endAll('gateway shutting down')))
      // Held requests end denied (in the store too), and their refusals are recorded while the sinks are open.
      try {
        await this.container.resolve(ReviewsToken).stop()
      } catch (err) {
        this.logger.error({ err: String(err) }, 'could not end the held requests')
      }
      await new Promise((r) => setImmediate(r))
      this.abort.abort()
      for (const inst of [...this.instances.values()].reverse()) {
        try {
          await inst.object.close?.()
        } catch (err) {
          this.logger.error({ plugin: inst.name, err: String(err) }, 'plugin close failed')
        }
      }
      try {
        this.container.resolve(IssuedTokensToken).stop()
        await this.container.resolve(StateStoreToken).close()
      } catch (err) {
        this.logger.error({ err: String(err) }, 'state store close failed')
      }
      await this.dataLock?.release()
      this.logger.info('stopped')
      this.logger.flush()
    })()
    return this.stopping
  }
}

/**
 * What is valid but almost certainly not what the operator meant: a config that admits no one, or
 * that denies everything, and plugin instances configured under `plugins` that no connection's
 * chain uses (its settings then apply nowhere, and a chain naming the plugin gets a default one).
 */
export function configWarnings(config: GatewayConfig): ValidationIssue[] {
  const out: ValidationIssue[] = []
  const chains = config.connections.map((c) => ({ ...DEFAULT_CHAINS, ...(c.plugins ?? {}) }))
  const builtinAuth = new Set(['auth-token', 'auth-ssh-key'])
  if (config.connections.length > 0 && config.identities.length === 0 && chains.every((c) => c.authenticate.every((name) => builtinAuth.has(name)))) {
    out.push({ path: 'identities', message: 'no identity is configured: no one can log in (add identities with tokens: `gatehouse token issue`)' })
  }
  if (config.policies.length === 0 && chains.some((c) => c.decide.includes('policy'))) {
    out.push({ path: 'policies', message: 'no policy is configured: the policy plugin denies every request' })
  }
  config.plugins.forEach((p, i) => {
    const name = p.name ?? p.use
    if (chains.some((c) => Object.values(c).some((names) => names.includes(name)))) return
    const stagesUsingKind = chains.some((c) => Object.values(c).some((names) => names.includes(p.use)))
    out.push({
      path: `plugins[${i}]`,
      message: `instance "${name}" is not in any connection's chain, so its config applies nowhere${stagesUsingKind ? `; the chains name "${p.use}", which gets an instance of its own with the default config: use "${name}" there` : ''}`,
    })
  })
  return out
}

function stageObject<K extends Stage>(instances: Map<string, Instance>, name: string, stage: K, path: string): StageObjects[K] {
  const inst = instances.get(name)
  if (!inst) throw new GatewayError('GH_ERR_PLUGIN_UNKNOWN', `${path}: no plugin instance "${name}"`)
  if (inst.definition.stage !== stage) throw new GatewayError('GH_ERR_PLUGIN_STAGE', `${path}: plugin "${name}" implements stage "${inst.definition.stage}", not "${stage}"`)
  return inst.object as StageObjects[K]
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value as object)) deepFreeze(v)
  }
  return value
}


/**
 * The rule sets of every loaded plugin, by name, each rule checked against the config's rule
 * schema (a plugin's set is config the operator did not write, so it is read as strictly); two
 * plugins shipping one name is a config error.
 */
function pluginRuleSets(instances: ReadonlyMap<string, Instance>): Readonly<Record<string, RuleSet>> {
  const sets: Record<string, RuleSet> = {}
  const owner = new Map<string, string>()
  const issues: ValidationIssue[] = []
  const seen = new Set<PluginDefinition>()
  for (const inst of instances.values()) {
    if (seen.has(inst.definition)) continue
    seen.add(inst.definition)
    for (const [name, set] of Object.entries(inst.definition.ruleSets ?? {})) {
      const other = owner.get(name)
      if (other !== undefined) {
        issues.push({ path: 'plugins', message: `rule set "${name}" is shipped by both plugin "${other}" and plugin "${inst.definition.name}"` })
        continue
      }
      owner.set(name, inst.definition.name)
      const rules: Rule[] = []
      for (const [j, rule] of (Array.isArray(set?.rules) ? set.rules : []).entries()) {
        try {
          rules.push(validate(RuleSchema, rule, { base: `plugin "${inst.definition.name}" rule set ${name}.rules[${j}]` }))
        } catch (err) {
          issues.push(...issuesOf(err))
        }
      }
      if (!Array.isArray(set?.rules) || rules.length === 0) issues.push({ path: `plugin "${inst.definition.name}" rule set ${name}`, message: 'a rule set needs a list of rules' })
      sets[name] = deepFreeze({ description: String(set?.description ?? ''), rules })
    }
  }
  if (issues.length > 0) throw new ConfigError(issues)
  return Object.freeze(sets)
}

/**
 * Every action a policy names must be one the adapters of its connections can produce: a rule
 * on `ssh.exec` over a PostgreSQL connection (or a typo, `sql.querry`) would never match, and an
 * operator reading the config would believe it protects something.
 */
function checkPolicyActions(config: GatewayConfig, plans: readonly { connection: ConnectionConfig; adapter: ProtocolAdapter }[]): void {
  const issues: ValidationIssue[] = []
  config.policies.forEach((policy, i) => {
    const relevant = plans.filter((p) => !policy.connections || policy.connections.includes(p.connection.name))
    // An adapter that does not declare its actions cannot be checked against.
    if (relevant.some((p) => !p.adapter.actions)) return
    const known = new Set(relevant.flatMap((p) => p.adapter.actions ?? []))
    policy.rules.forEach((rule, j) =>
      rule.actions?.forEach((action, k) => {
        const ok = action.endsWith('.*') ? [...known].some((a) => a.startsWith(action.slice(0, -1))) : known.has(action)
        if (!ok) issues.push({ path: `policies[${i}].rules[${j}].actions[${k}]`, message: `unknown action "${action}"; this policy's connections produce: ${[...known].sort().join(', ') || 'none'}` })
      }),
    )
  })
  if (issues.length > 0) throw new ConfigError(issues)
}

/** Identity id → the session limits it sets for itself. */
function identityLimits(config: GatewayConfig): Map<string, Partial<SessionLimits>> {
  return new Map(config.identities.filter((i) => i.limits?.sessions).map((i) => [i.id, { ...i.limits?.sessions }]))
}

/**
 * Every key under `limits` is one of core's groups or the protocol of an adapter that declares
 * limits: a typo (`limits.sesions`) or limits for an adapter this config does not use would
 * otherwise be ignored while the operator believes them in force.
 */
function checkLimitGroups(config: GatewayConfig, plans: readonly { connection: ConnectionConfig; adapter: ProtocolAdapter }[]): void {
  const declared = new Set(plans.filter((p) => p.adapter.limits).map((p) => p.adapter.protocol))
  const known = [...Object.keys(LIMIT_DEFAULTS), ...declared].sort().join(', ')
  const issues: ValidationIssue[] = []
  const check = (limits: object | undefined, path: string, protocol?: string) => {
    for (const key of Object.keys(limits ?? {})) {
      if (isCoreLimitGroup(key)) continue
      if (protocol === undefined ? declared.has(key) : key === protocol && declared.has(key)) continue
      issues.push({ path: `${path}.${key}`, message: `unknown limit group; ${protocol === undefined ? 'this config has' : 'this connection has'}: ${protocol === undefined ? known : [...Object.keys(LIMIT_DEFAULTS), ...(declared.has(protocol) ? [protocol] : [])].join(', ')}` })
    }
  }
  check(config.limits, 'limits')
  plans.forEach((p, i) => check(p.connection.limits, `connections[${i}].limits`, p.adapter.protocol))
  if (issues.length > 0) throw new ConfigError(issues)
}

/** Stages whose plugin instances a reload replaces; adapters and audit sinks need a restart. */
const RELOADABLE_STAGES: ReadonlySet<Stage> = new Set<Stage>(['authenticate', 'parse', 'decide', 'transform'])

/**
 * What differs between two configs that a reload cannot apply: listeners and their TLS,
 * upstreams and adapter options, adapters and audit sinks (and their plugin configs), the data
 * directory, the admin API, logging and shutdown.
 */
function restartOnlyChanges(old: GatewayConfig, next: GatewayConfig, stageOf: (instance: string) => Stage | undefined): ValidationIssue[] {
  const issues: ValidationIssue[] = []
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b)
  const needsRestart = (path: string) => issues.push({ path, message: 'changing this needs a restart; nothing was reloaded' })
  for (const key of ['dataDir', 'log', 'shutdown', 'admin', 'state'] as const) if (!same(old[key], next[key])) needsRestart(key)
  const names = (c: GatewayConfig) => c.connections.map((x) => x.name)
  if (!same(names(old), names(next))) needsRestart('connections')
  else {
    next.connections.forEach((c, i) => {
      const was = old.connections[i] as ConnectionConfig
      for (const key of ['adapter', 'listen', 'tls', 'upstream', 'options'] as const) if (!same(was[key], c[key])) needsRestart(`connections[${i}].${key}`)
      if (!same(was.plugins?.record, c.plugins?.record)) needsRestart(`connections[${i}].plugins.record`)
    })
  }
  const fixed = (c: GatewayConfig) => c.plugins.map((p, i) => ({ p, i })).filter(({ p }) => !RELOADABLE_STAGES.has(stageOf(p.name ?? p.use) ?? 'record'))
  for (const { p, i } of fixed(old)) {
    const now = next.plugins.find((q) => (q.name ?? q.use) === (p.name ?? p.use))
    if (!same(p, now)) needsRestart(`plugins[${i}]`)
  }
  for (const { p, i } of fixed(next)) if (!old.plugins.some((q) => (q.name ?? q.use) === (p.name ?? p.use))) needsRestart(`plugins[${i}]`)
  return issues
}
