/**
 * The plugin contract. A plugin is a package (or built-in) exporting `plugin`, made with
 * {@link definePlugin}: a name, the stage it serves, the core plugin API version it was written
 * against, a TypeBox schema for its config, and `register`, which runs once at boot with the
 * validated, frozen config and returns the stage object.
 */
import type { Static, TSchema } from '@sinclair/typebox'
import type { DependencyContainer, InjectionToken } from 'tsyringe'
import type { GatewayConfig, Rule } from '../config/schema.js'
import type { Logger } from '../logger.js'
import type { Analyzer, AuditSink, Authenticator, PolicyEngine, ProtocolAdapter, Stage, Transformer } from './stages.js'

/** The plugin API major version this core implements. */
export const PLUGIN_API_VERSION = 1

export interface StageObjects {
  adapter: ProtocolAdapter
  authenticate: Authenticator
  parse: Analyzer
  decide: PolicyEngine
  record: AuditSink
  transform: Transformer
}

/** Optional lifecycle a stage object may implement. */
export interface Lifecycle {
  /** Called after the container is sealed, before listeners open (open files, connect). */
  start?(): Promise<void>
  /** Called at shutdown, after sessions ended. */
  close?(): Promise<void>
}

export interface PluginContext {
  /** The whole validated config (read-only). */
  readonly gateway: Readonly<GatewayConfig>
  /** The instance name this registration is for (unique per gateway). */
  readonly instance: string
  readonly logger: Logger
  readonly dataDir: string
}

/** A named list of rules a policy includes (`include: [name]`); every rule is normally a deny. */
export interface RuleSet {
  readonly description: string
  readonly rules: readonly Rule[]
}

export interface PluginDefinition<K extends Stage = Stage, S extends TSchema = TSchema> {
  readonly name: string
  readonly stage: K
  /** Core plugin API major version the plugin was written against. */
  readonly apiVersion: number
  readonly configSchema?: S
  readonly description?: string
  /**
   * Rule sets this package ships, by name: policies include them like the built-in ones
   * (`include: [redis-dangerous]`). Written in the config's rule language over the attributes
   * the package's requests carry. A name must not be one a built-in set or another loaded
   * plugin already uses; the gateway refuses to start if it is.
   */
  readonly ruleSets?: Readonly<Record<string, RuleSet>>
  /**
   * Runs once per instance at boot, before the container is sealed. May register services in
   * `container` (the root container); returns the stage object. Must not open listeners.
   */
  register(container: DependencyContainer, config: Static<S>, ctx: PluginContext): StageObjects[K] | Promise<StageObjects[K]>
}

export function definePlugin<K extends Stage, S extends TSchema>(def: PluginDefinition<K, S>): PluginDefinition<K, S> {
  return Object.freeze(def)
}

export function isPluginDefinition(value: unknown): value is PluginDefinition {
  if (value === null || typeof value !== 'object') return false
  const v = value as Partial<PluginDefinition>
  return typeof v.name === 'string' && typeof v.stage === 'string' && typeof v.register === 'function' && typeof v.apiVersion === 'number'
}

/** The validated, frozen config of the plugin instance being constructed (see {@link constructPlugin}). */
export const PluginConfig: InjectionToken<unknown> = Symbol.for('gatehouse.PluginConfig')
/** The {@link PluginContext} of the plugin instance being constructed. */
export const PluginContextToken: InjectionToken<PluginContext> = Symbol.for('gatehouse.PluginContext')

/**
 * Builds a plugin's stage object through the container: `Class` declares what it needs with
 * `@inject(Token)` on every constructor parameter — core services from the root container, and
 * `PluginConfig` / `PluginContextToken` for this instance. Call it from `register`.
 */
export function constructPlugin<T>(container: DependencyContainer, Class: new (...args: never[]) => T, config: unknown, ctx: PluginContext): T {
  const scope = container.createChildContainer()
  scope.registerInstance(PluginConfig, config)
  scope.registerInstance(PluginContextToken, ctx)
  return scope.resolve(Class as unknown as InjectionToken<T>)
}
