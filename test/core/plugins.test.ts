/**
 * Plugin loading through Gateway.build: built-ins by short name, third parties by npm package
 * name (from pluginSearchDirs), with typed errors naming the config path; the root container
 * is sealed once build returns.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { BUILTIN_PLUGINS, createLogger, Gateway, GatewayConfig, GatewayError, generateToken, hashToken, isSealed, validate, type AuditEvent } from '@gatehouse/core'
import { startPgCluster, type PgCluster } from '../fixtures/pg-cluster.js'
import { pgUpstream } from '../fixtures/gateway.js'
import { psql } from '../fixtures/clients.js'

const REPO = resolve(import.meta.dirname, '../..')
const silent = () => createLogger('silent')
const DUMMY_UPSTREAM = { host: '127.0.0.1', port: 1, database: 'app', user: 'app' }

let root: string
let dirCount = 0

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'gatehouse-plugins-test-'))
})

afterAll(() => {
  rmSync(root, { recursive: true, force: true })
})

/** A fresh directory with node_modules/<name>/{package.json,index.js} for each package given. */
/** `link` lists scopes/packages of the repo's node_modules to symlink in (e.g. @gatehouse, @sinclair). */
function pluginDir(packages: Record<string, string>, opts: { link?: string[] } = {}): string {
  const dir = join(root, `search-${++dirCount}`)
  mkdirSync(join(dir, 'node_modules'), { recursive: true })
  for (const name of opts.link ?? []) symlinkSync(join(REPO, 'node_modules', name), join(dir, 'node_modules', name), 'dir')
  for (const [name, source] of Object.entries(packages)) {
    const pkg = join(dir, 'node_modules', name)
    mkdirSync(pkg, { recursive: true })
    writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name, version: '1.0.0', type: 'module', main: 'index.js' }))
    writeFileSync(join(pkg, 'index.js'), source)
  }
  return dir
}

/** A config with one postgres connection; `connection` and top-level fields override. */
function config(extra: Record<string, unknown> = {}, connection: Record<string, unknown> = {}): GatewayConfig {
  return validate(GatewayConfig, {
    dataDir: join(root, 'data'),
    log: { level: 'silent' },
    connections: [{ name: 'db', adapter: 'postgres', listen: '127.0.0.1:0', upstream: DUMMY_UPSTREAM, ...connection }],
    ...extra,
  })
}

async function buildError(cfg: GatewayConfig, searchDirs?: string[]): Promise<GatewayError> {
  let gateway: Gateway | undefined
  try {
    gateway = await Gateway.build(cfg, { logger: silent(), ...(searchDirs ? { pluginSearchDirs: searchDirs } : {}) })
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError)
    return err as GatewayError
  }
  await gateway.shutdown(0)
  throw new Error('expected Gateway.build to fail')
}

describe('built-in plugins', () => {
  it('the default chains load auth-token, policy and audit-jsonl by short name and build succeeds', async () => {
    const gateway = await Gateway.build(config(), { logger: silent() })
    try {
      expect(isSealed(gateway.container)).toBe(true)
      expect(gateway.config.connections[0]?.name).toBe('db')
    } finally {
      await gateway.shutdown(0)
    }
  })

  it('an unknown short name is GH_ERR_PLUGIN_UNKNOWN naming the config path', async () => {
    const err = await buildError(config({ plugins: [{ use: 'audit-jsonl' }, { use: 'no-such-plugin-gatehouse-test' }] }))
    expect(err.code).toBe('GH_ERR_PLUGIN_UNKNOWN')
    expect(err.message).toMatch(/^plugins\[1\]: /)
    expect(err.message).toContain('no-such-plugin-gatehouse-test')
  })

  it('an unknown plugin in a connection chain names the chain path', async () => {
    const err = await buildError(config({}, { plugins: { decide: ['policy', 'no-such-guardrail-gatehouse-test'] } }))
    expect(err.code).toBe('GH_ERR_PLUGIN_UNKNOWN')
    expect(err.message).toMatch(/^connections\[0\]\.plugins\.decide\[1\]: /)
  })

  it('a name that is not an npm package name is GH_ERR_PLUGIN_UNKNOWN listing the built-ins', async () => {
    const err = await buildError(config({ plugins: [{ use: 'Not A Package!' }] }))
    expect(err.code).toBe('GH_ERR_PLUGIN_UNKNOWN')
    expect(err.message).toMatch(/^plugins\[0\]: .*audit-jsonl/)
  })

  it('an unknown adapter is GH_ERR_PLUGIN_UNKNOWN at connections[0].adapter', async () => {
    const err = await buildError(config({}, { adapter: 'no-such-adapter-gatehouse-test' }))
    expect(err.code).toBe('GH_ERR_PLUGIN_UNKNOWN')
    expect(err.message).toMatch(/^connections\[0\]\.adapter: /)
  })

  it('two instances with the same name are GH_ERR_PLUGIN_DUPLICATE', async () => {
    const err = await buildError(config({ plugins: [{ use: 'audit-jsonl' }, { use: 'audit-jsonl', config: { path: 'b.jsonl' } }] }))
    expect(err.code).toBe('GH_ERR_PLUGIN_DUPLICATE')
    expect(err.message).toMatch(/^plugins\[1\]: .*"audit-jsonl"/)
  })

  it('explicit instance names that collide are GH_ERR_PLUGIN_DUPLICATE, distinct names are fine', async () => {
    const err = await buildError(config({ plugins: [{ use: 'policy', name: 'x' }, { use: 'audit-jsonl', name: 'x' }] }))
    expect(err.code).toBe('GH_ERR_PLUGIN_DUPLICATE')
    const ok = await Gateway.build(
      config({ plugins: [{ use: 'audit-jsonl', name: 'audit-a', config: { path: 'a.jsonl' } }, { use: 'audit-jsonl', name: 'audit-b', config: { path: 'b.jsonl' } }] }, { plugins: { record: ['audit-a', 'audit-b'] } }),
      { logger: silent() },
    )
    await ok.shutdown(0)
  })

  it('a plugin config value of the wrong kind is GH_ERR_PLUGIN_CONFIG naming plugins[0].config…', async () => {
    const err = await buildError(config({ plugins: [{ use: 'audit-jsonl', config: { fsync: 'sometimes' } }] }))
    expect(err.code).toBe('GH_ERR_PLUGIN_CONFIG')
    expect(err.message).toMatch(/^plugins\[0\]\.config\.fsync: /)
  })

  it('an unknown key in a plugin config is GH_ERR_PLUGIN_CONFIG "unknown field" at its path', async () => {
    const err = await buildError(config({ plugins: [{ use: 'policy' }, { use: 'audit-jsonl', config: { rotation: true } }] }))
    expect(err.code).toBe('GH_ERR_PLUGIN_CONFIG')
    expect(err.message).toBe('plugins[1].config.rotation: unknown field')
  })

  it('a plugin used in the wrong stage is GH_ERR_PLUGIN_STAGE naming the chain and both stages', async () => {
    const err = await buildError(config({}, { plugins: { decide: ['audit-jsonl'] } }))
    expect(err.code).toBe('GH_ERR_PLUGIN_STAGE')
    expect(err.message).toMatch(/^connections\[0\]\.plugins\.decide\[0\]: .*"record".*"decide"/)
  })

  it('a stage plugin used as adapter is GH_ERR_PLUGIN_STAGE', async () => {
    const err = await buildError(config({}, { adapter: 'policy' }))
    expect(err.code).toBe('GH_ERR_PLUGIN_STAGE')
    expect(err.message).toMatch(/^connections\[0\]\.adapter: /)
  })

  it("the adapter checks its part of the connection and names the path", async () => {
    const err = await buildError(config({}, { upstream: { host: '127.0.0.1', database: 'app' } }))
    expect(err.code).toBe('GH_ERR_CONFIG_INVALID')
    expect(err.message).toContain('connections[0].upstream.user')
  })
})

describe('third-party plugins by npm package name', () => {
  it('a package without a `plugin` export is GH_ERR_PLUGIN_INVALID', async () => {
    const dir = pluginDir({ 'gatehouse-plugin-empty': 'export const something = 1\n' })
    const err = await buildError(config({ plugins: [{ use: 'gatehouse-plugin-empty' }] }), [dir])
    expect(err.code).toBe('GH_ERR_PLUGIN_INVALID')
    expect(err.message).toMatch(/^plugins\[0\]: .*gatehouse-plugin-empty/)
  })

  it('an export that lacks register() is GH_ERR_PLUGIN_INVALID', async () => {
    const dir = pluginDir({ 'gatehouse-plugin-halfdone': "export const plugin = { name: 'x', stage: 'decide', apiVersion: 1 }\n" })
    expect((await buildError(config({ plugins: [{ use: 'gatehouse-plugin-halfdone' }] }), [dir])).code).toBe('GH_ERR_PLUGIN_INVALID')
  })

  it('a plugin written for apiVersion 2 is GH_ERR_PLUGIN_API', async () => {
    const dir = pluginDir({
      'gatehouse-plugin-future': "export const plugin = { name: 'future', stage: 'decide', apiVersion: 2, register() { return { decide: () => ({ verdict: 'allow' }) } } }\n",
    })
    const err = await buildError(config({ plugins: [{ use: 'gatehouse-plugin-future' }] }), [dir])
    expect(err.code).toBe('GH_ERR_PLUGIN_API')
    expect(err.message).toMatch(/^plugins\[0\]: .*API 2.*implements 1/)
  })

  it('an installed package whose own dependency is missing is reported with that import error, not as "not found, npm install" the plugin', async () => {
    const dir = pluginDir({ 'gatehouse-plugin-needs-dep': "import 'gatehouse-test-absent-dependency'\nexport const plugin = {}\n" })
    const err = await buildError(config({ plugins: [{ use: 'gatehouse-plugin-needs-dep' }] }), [dir])
    expect(err.code).toBe('GH_ERR_PLUGIN_UNKNOWN')
    expect(err.message).toBe(
      `plugins[0]: plugin "gatehouse-plugin-needs-dep" (${join(dir, 'node_modules', 'gatehouse-plugin-needs-dep', 'index.js')}) failed to load: Cannot find package 'gatehouse-test-absent-dependency' imported from ${join(dir, 'node_modules', 'gatehouse-plugin-needs-dep', 'index.js')}`,
    )
    expect(err.message).not.toContain('npm install')
  })

  it('a package that is not installed says so and how to install it; a name close to a built-in suggests the built-in', async () => {
    const absent = await buildError(config({ plugins: [{ use: 'gatehouse-plugin-not-installed' }] }), [pluginDir({})])
    expect(absent.message).toBe('plugins[0]: plugin "gatehouse-plugin-not-installed" not found (is it installed? npm install gatehouse-plugin-not-installed)')
    for (const [typo, meant] of [['audit-jsnol', 'audit-jsonl'], ['audit_jsonl', 'audit-jsonl'], ['auth-tokens', 'auth-token'], ['polcy', 'policy'], ['gatehouse-audit-webhook', 'audit-webhook'], ['postgress', 'postgres']] as const) {
      const err = await buildError(config({ plugins: [{ use: typo }] }), [pluginDir({})])
      expect(err.code).toBe('GH_ERR_PLUGIN_UNKNOWN')
      expect(err.message).toBe(`plugins[0]: plugin "${typo}" not found (did you mean ${meant}?)`)
    }
    const spaced = await buildError(config({ plugins: [{ use: 'Audit JSONL' }] }))
    expect(spaced.message).toBe(`plugins[0]: "Audit JSONL" is neither a built-in plugin (did you mean audit-jsonl? built-ins: ${Object.keys(BUILTIN_PLUGINS).join(', ')}) nor an npm package name`)
    // far from every built-in: no guess
    expect((await buildError(config({ plugins: [{ use: 'audit' }] }), [pluginDir({})])).message).toBe('plugins[0]: plugin "audit" not found (is it installed? npm install audit)')
  })

  it('a package that throws while loading is GH_ERR_PLUGIN_UNKNOWN with the path and the cause', async () => {
    const dir = pluginDir({ 'gatehouse-plugin-broken': "throw new Error('boom at import')\n" })
    const err = await buildError(config({ plugins: [{ use: 'gatehouse-plugin-broken' }] }), [dir])
    expect(err.code).toBe('GH_ERR_PLUGIN_UNKNOWN')
    expect(err.message).toMatch(/^plugins\[0\]: .*boom at import/)
  })

  it('a package is found in a later search dir when earlier ones lack it', async () => {
    const empty = pluginDir({})
    const dir = pluginDir({
      'gatehouse-plugin-found': "export const plugin = { name: 'found', stage: 'decide', apiVersion: 1, register() { return { decide: () => ({ verdict: 'deny', reason: 'x' }) } } }\n",
    })
    const gateway = await Gateway.build(config({ plugins: [{ use: 'gatehouse-plugin-found' }] }, { plugins: { decide: ['gatehouse-plugin-found'] } }), {
      logger: silent(),
      pluginSearchDirs: [empty, dir],
    })
    await gateway.shutdown(0)
  })

  it("a plugin's config is validated against its configSchema and passed to register() frozen", async () => {
    const dir = pluginDir({
      'gatehouse-plugin-configured': `
        import { Type } from '@sinclair/typebox'
        export const plugin = {
          name: 'configured', stage: 'decide', apiVersion: 1,
          configSchema: Type.Object({ level: Type.Integer({ minimum: 1, default: 3 }) }, { additionalProperties: false }),
          register(container, config, ctx) {
            globalThis.__ghConfigured = { config, frozen: Object.isFrozen(config), instance: ctx.instance, dataDir: ctx.dataDir }
            return { decide: () => ({ verdict: 'deny', reason: 'x' }) }
          },
        }
      `,
    }, { link: ['@sinclair'] })
    const bad = await buildError(config({ plugins: [{ use: 'gatehouse-plugin-configured', config: { level: 0 } }] }), [dir])
    expect(bad.code).toBe('GH_ERR_PLUGIN_CONFIG')
    expect(bad.message).toMatch(/^plugins\[0\]\.config\.level: /)
    const gateway = await Gateway.build(config({ plugins: [{ use: 'gatehouse-plugin-configured', name: 'mine', config: {} }] }), { logger: silent(), pluginSearchDirs: [dir] })
    await gateway.shutdown(0)
    expect((globalThis as Record<string, unknown>).__ghConfigured).toEqual({ config: { level: 3 }, frozen: true, instance: 'mine', dataDir: join(root, 'data') })
  })

  // Bug (core/src/gateway.ts:73 with core/src/plugin/loader.ts): a third-party plugin whose
  // configSchema is plain JSON Schema (no TypeBox Kind symbols) is accepted by
  // isPluginDefinition, and Gateway.build then dies inside TypeBox's Value.Errors with a bare
  // `Error: Unknown type` — no GatewayError code, no config path. The loader should refuse such a
  // plugin (GH_ERR_PLUGIN_INVALID naming plugins[0]) or compile plain JSON Schema itself.
  it('a plugin whose configSchema is not a TypeBox schema is refused with a typed error naming the path', async () => {
    const dir = pluginDir({
      'gatehouse-plugin-plain-schema': `
        export const plugin = {
          name: 'plain-schema', stage: 'decide', apiVersion: 1,
          configSchema: { type: 'object', properties: { level: { type: 'integer' } }, additionalProperties: false },
          register() { return { decide: () => ({ verdict: 'deny', reason: 'x' }) } },
        }
      `,
    })
    const err = await buildError(config({ plugins: [{ use: 'gatehouse-plugin-plain-schema', config: { level: 1 } }] }), [dir])
    expect(err.code).toMatch(/^GH_ERR_PLUGIN_(INVALID|CONFIG)$/)
    expect(err.message).toMatch(/^plugins\[0\]/)
  })

  it('a plugin may register services in register(), which resolve from the gateway container afterwards', async () => {
    const dir = pluginDir({
      'gatehouse-plugin-service': `
        export const plugin = {
          name: 'service', stage: 'decide', apiVersion: 1,
          register(container) {
            const cfg = container.resolve(Symbol.for('gatehouse.GatewayConfig'))
            container.register(Symbol.for('gatehouse-test.Greeting'), { useValue: 'hello ' + cfg.connections[0].name })
            return { decide: () => ({ verdict: 'deny', reason: 'x' }) }
          },
        }
      `,
    })
    const gateway = await Gateway.build(config({ plugins: [{ use: 'gatehouse-plugin-service' }] }), { logger: silent(), pluginSearchDirs: [dir] })
    try {
      expect(gateway.container.resolve(Symbol.for('gatehouse-test.Greeting'))).toBe('hello db')
    } finally {
      await gateway.shutdown(0)
    }
  })
})

describe('rule sets plugins ship', () => {
  /** A parse-stage plugin (it analyses nothing) shipping `sets`. */
  const shipping = (name: string, sets: Record<string, unknown>) =>
    `export const plugin = { name: '${name}', stage: 'parse', apiVersion: 1, ruleSets: ${JSON.stringify(sets)}, register() { return { analyze() {} } } }\n`
  const NO_DROP = { 'test-no-drop': { description: 'no DROP', rules: [{ id: 'drop', effect: 'deny', actions: ['sql.query'], match: { 'sql.statement': ['DROP'] }, reason: 'no dropping' }] } }
  const policies = (include: unknown[]) => [{ id: 'p', include, rules: [{ id: 'rest', effect: 'allow', actions: ['sql.query'] }] }]
  const identities = [{ id: 'agent', tokens: [{ hash: hashToken(generateToken(), 'agent') }] }]

  it('a policy includes a set a loaded plugin ships, and it judges like a built-in set', async () => {
    const dir = pluginDir({ 'gatehouse-plugin-sets': shipping('sets', NO_DROP) })
    const gateway = await Gateway.build(config({ identities, plugins: [{ use: 'gatehouse-plugin-sets' }], policies: policies(['test-no-drop', 'sql-outbound']) }, { plugins: { parse: ['gatehouse-plugin-sets'] } }), { logger: silent(), pluginSearchDirs: [dir] })
    const [drop] = await gateway.explain('db', 'agent', { sql: 'DROP TABLE orders' })
    expect(drop?.decision).toMatchObject({ verdict: 'deny', rule: 'p/test-no-drop/drop', reason: 'no dropping' })
    const [select] = await gateway.explain('db', 'agent', { sql: 'SELECT 1' })
    expect(select?.decision).toMatchObject({ verdict: 'allow', rule: 'p/rest' })
    // `effect: review` turns the shipped set's denials into holds, as with built-in sets
    const held = await Gateway.build(config({ identities, plugins: [{ use: 'gatehouse-plugin-sets' }], policies: policies([{ set: 'test-no-drop', effect: 'review' }]) }), { logger: silent(), pluginSearchDirs: [dir] })
    expect((await held.explain('db', 'agent', { sql: 'DROP TABLE orders' }))[0]?.decision).toMatchObject({ verdict: 'review', rule: 'p/test-no-drop/drop' })
  })

  it('without the plugin that ships it, the set is unknown; the message lists the sets loaded plugins ship', async () => {
    const absent = await buildError(config({ identities, policies: policies(['test-no-drop']) }))
    expect(absent.code).toBe('GH_ERR_CONFIG_INVALID')
    expect(absent.message).toMatch(/^policies\[0\]\.include\[0\]: unknown rule set "test-no-drop"; built-in sets are sql-outbound/)
    const dir = pluginDir({ 'gatehouse-plugin-sets': shipping('sets', NO_DROP) })
    const other = await buildError(config({ identities, plugins: [{ use: 'gatehouse-plugin-sets' }], policies: policies(['test-no-dorp']) }), [dir])
    expect(other.message).toMatch(/unknown rule set "test-no-dorp"; built-in sets are .*; the loaded plugins ship test-no-drop$/)
  })

  it('a set named like a built-in one, or shipped by two plugins, stops the boot naming both', async () => {
    const dir = pluginDir({
      'gatehouse-plugin-shadow': shipping('shadow', { 'sql-write': NO_DROP['test-no-drop'] }),
      'gatehouse-plugin-sets-a': shipping('sets-a', NO_DROP),
      'gatehouse-plugin-sets-b': shipping('sets-b', NO_DROP),
    })
    const shadow = await buildError(config({ identities, plugins: [{ use: 'gatehouse-plugin-shadow' }], policies: policies(['sql-write']) }), [dir])
    expect(shadow.message).toBe('plugins: a plugin ships rule set "sql-write", the name of a built-in set')
    const twice = await buildError(config({ identities, plugins: [{ use: 'gatehouse-plugin-sets-a' }, { use: 'gatehouse-plugin-sets-b' }], policies: policies(['test-no-drop']) }), [dir])
    expect(twice.message).toBe('plugins: rule set "test-no-drop" is shipped by both plugin "sets-a" and plugin "sets-b"')
  })

  it('a shipped set is read as strictly as the config: a rule of the wrong shape, or no rules, stops the boot naming the plugin and the set', async () => {
    const dir = pluginDir({
      'gatehouse-plugin-odd-set': shipping('odd', { 'test-odd': { description: 'odd', rules: [{ id: 'x', effect: 'alow', match: { 'sql.statement': ['DROP'] } }] } }),
      'gatehouse-plugin-empty-set': shipping('empty', { 'test-empty': { description: 'empty', rules: [] } }),
    })
    const odd = await buildError(config({ identities, plugins: [{ use: 'gatehouse-plugin-odd-set' }], policies: policies(['sql-write']) }), [dir])
    expect(odd.code).toBe('GH_ERR_CONFIG_INVALID')
    expect(odd.message).toMatch(/^plugin "odd" rule set test-odd\.rules\[0\]\.effect: /)
    const empty = await buildError(config({ identities, plugins: [{ use: 'gatehouse-plugin-empty-set' }], policies: policies(['sql-write']) }), [dir])
    expect(empty.message).toBe('plugin "empty" rule set test-empty: a rule set needs a list of rules')
  })

  it('a shipped rule that does not compile is reported at the include that uses it', async () => {
    const dir = pluginDir({ 'gatehouse-plugin-bad-set': shipping('bad', { 'test-bad': { description: 'bad', rules: [{ id: 'x', effect: 'deny', when: 'request.(' }] } }) })
    const err = await buildError(config({ identities, plugins: [{ use: 'gatehouse-plugin-bad-set' }], policies: policies(['test-bad']) }), [dir])
    expect(err.code).toBe('GH_ERR_CONFIG_INVALID')
    expect(err.message).toMatch(/rule set test-bad\.when: /)
  })
})

describe('the root container is sealed after build', () => {
  it('registering into gateway.container throws GH_ERR_CONTAINER_SEALED; a child container stays writable', async () => {
    const gateway = await Gateway.build(config(), { logger: silent() })
    try {
      const token = Symbol('late')
      const attempts: [string, () => unknown][] = [
        ['register', () => gateway.container.register(token, { useValue: 1 })],
        ['registerInstance', () => gateway.container.registerInstance(token, 1)],
        ['registerSingleton', () => gateway.container.registerSingleton(token, class {})],
        ['registerType', () => gateway.container.registerType(token, Symbol('other'))],
      ]
      for (const [method, attempt] of attempts) {
        let err: unknown
        try {
          attempt()
        } catch (e) {
          err = e
        }
        expect(err, method).toBeInstanceOf(GatewayError)
        expect((err as GatewayError).code, method).toBe('GH_ERR_CONTAINER_SEALED')
      }
      expect(gateway.container.isRegistered(token)).toBe(false)

      const child = gateway.container.createChildContainer()
      expect(() => child.register(token, { useValue: 42 })).not.toThrow()
      expect(child.resolve(token)).toBe(42)
      expect(isSealed(child)).toBe(false)
      // the child still sees the root's services
      expect(child.resolve<GatewayConfig>(Symbol.for('gatehouse.GatewayConfig')).connections[0]?.name).toBe('db')
    } finally {
      await gateway.shutdown(0)
    }
  })

  // Gap (core/src/container.ts, sealContainer): only register/registerInstance/registerSingleton/
  // registerType are blocked. reset() and clearInstances() still work on the sealed root, so a
  // plugin holding the container can remove the Logger, the config and every plugin service under
  // running sessions (and, sealed, nothing can be registered back). They should throw
  // GH_ERR_CONTAINER_SEALED too.
  it('a sealed container also refuses reset() and clearInstances(), keeping its services', async () => {
    const gateway = await Gateway.build(config(), { logger: silent() })
    try {
      const configToken = Symbol.for('gatehouse.GatewayConfig')
      expect(() => gateway.container.clearInstances()).toThrow(expect.objectContaining({ code: 'GH_ERR_CONTAINER_SEALED' }))
      expect(() => gateway.container.reset()).toThrow(expect.objectContaining({ code: 'GH_ERR_CONTAINER_SEALED' }))
      expect(gateway.container.isRegistered(configToken)).toBe(true)
    } finally {
      await gateway.shutdown(0)
    }
  })

  it('the config in the container is frozen', async () => {
    const gateway = await Gateway.build(config(), { logger: silent() })
    try {
      expect(Object.isFrozen(gateway.container.resolve(Symbol.for('gatehouse.GatewayConfig')))).toBe(true)
    } finally {
      await gateway.shutdown(0)
    }
  })
})

describe('third-party plugins end to end (psql through a gateway on a throwaway cluster)', () => {
  let pg: PgCluster
  let dir: string

  const ALLOW_ALL = `
    // a plain object literal: no import of @gatehouse/core needed
    export const plugin = {
      name: 'allow-all',
      stage: 'decide',
      apiVersion: 1,
      register() {
        return { decide: (request) => ({ verdict: 'allow', rule: 'allow-all/any', reason: 'test plugin allows ' + request.action }) }
      },
    }
  `
  const MEMORY_SINK = `
    import { definePlugin, PLUGIN_API_VERSION } from '@gatehouse/core'
    import { Type } from '@sinclair/typebox'
    globalThis.__ghMemorySinks ??= {}
    export const plugin = definePlugin({
      name: 'memory-sink',
      stage: 'record',
      apiVersion: PLUGIN_API_VERSION,
      configSchema: Type.Object({ key: Type.String() }, { additionalProperties: false }),
      register(_container, config) {
        const events = (globalThis.__ghMemorySinks[config.key] = [])
        let started = false
        let closed = false
        return {
          mode: 'required',
          async start() { started = true },
          async write(event) { if (!started || closed) throw new Error('sink not open'); events.push(JSON.parse(JSON.stringify(event))) },
          async flush() {},
          async close() { closed = true; events.push({ type: 'closed' }) },
        }
      },
    })
  `

  beforeAll(async () => {
    pg = await startPgCluster()
    dir = pluginDir({ 'gatehouse-plugin-allow-all': ALLOW_ALL, 'gatehouse-plugin-memory-sink': MEMORY_SINK }, { link: ['@gatehouse', '@sinclair'] })
  })

  afterAll(async () => {
    await pg?.stop()
  })

  function e2eConfig(sinkKey: string, decide: string[]): { cfg: GatewayConfig; token: string } {
    const token = generateToken()
    const cfg = validate(GatewayConfig, {
      dataDir: join(root, `data-${sinkKey}`),
      log: { level: 'silent' },
      identities: [{ id: 'agent-1', groups: ['agents'], tokens: [{ id: 'agent-1-token', hash: hashToken(token, 'agent-1') }] }],
      plugins: [{ use: 'gatehouse-plugin-memory-sink', name: 'memory', config: { key: sinkKey } }],
      connections: [{ name: 'pg', adapter: 'postgres', listen: '127.0.0.1:0', upstream: pgUpstream(pg), plugins: { authenticate: ['auth-token'], decide, record: ['memory'] } }],
      // no policies: the built-in policy plugin would deny everything
    })
    return { cfg, token }
  }

  const sinkEvents = (key: string) => ((globalThis as Record<string, unknown>).__ghMemorySinks as Record<string, (AuditEvent | { type: 'closed' })[]>)[key] ?? []

  async function waitFor(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
      await new Promise((r) => setTimeout(r, 20))
    }
  }

  it('a custom decide plugin loaded by package name allows a query, and a custom record sink receives session.start, request, outcome and session.end', async () => {
    const { cfg, token } = e2eConfig('allowed', ['gatehouse-plugin-allow-all'])
    const gateway = await Gateway.build(cfg, { logger: silent(), pluginSearchDirs: [dir] })
    await gateway.start()
    try {
      const r = await psql({ port: gateway.address('pg').port, user: 'agent-1', password: token }, 'select 40 + 2;')
      expect(r.stderr).toBe('')
      expect(r.stdout.trim()).toBe('42')
      await waitFor('session.end', () => sinkEvents('allowed').some((e) => e.type === 'session.end'))
      const events = sinkEvents('allowed') as AuditEvent[]
      const types = events.map((e) => e.type)
      expect(types).toEqual(['session.start', 'request', 'outcome', 'session.end'])
      const [start, request, outcome] = events
      expect(start).toMatchObject({ type: 'session.start', connection: 'pg', principal: { id: 'agent-1', credential: 'token:agent-1-token' } })
      expect(request).toMatchObject({ type: 'request', action: 'sql.query', text: 'select 40 + 2', verdict: 'allow', rule: 'allow-all/any' })
      expect(outcome).toMatchObject({ type: 'outcome', request: (request as { request: string }).request, verdict: 'allow', rule: 'allow-all/any', rows: 1 })
      expect(events.every((e) => e.session === start?.session)).toBe(true)
    } finally {
      await gateway.shutdown(500)
    }
    // the sink's lifecycle: closed at shutdown
    expect(sinkEvents('allowed').at(-1)).toEqual({ type: 'closed' })
  })

  it('without the custom decide plugin the same query is denied (no policies) and the denial reaches the custom sink', async () => {
    const { cfg, token } = e2eConfig('denied', ['policy'])
    const gateway = await Gateway.build(cfg, { logger: silent(), pluginSearchDirs: [dir] })
    await gateway.start()
    try {
      const r = await psql({ port: gateway.address('pg').port, user: 'agent-1', password: token }, 'select 40 + 2;')
      expect(r.stdout.trim()).toBe('')
      expect(r.stderr).toMatch(/denied/)
      await waitFor('session.end', () => sinkEvents('denied').some((e) => e.type === 'session.end'))
      const request = sinkEvents('denied').find((e) => e.type === 'request')
      expect(request).toMatchObject({ verdict: 'deny', rule: 'default-deny' })
    } finally {
      await gateway.shutdown(500)
    }
  })
})
