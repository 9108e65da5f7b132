/**
 * Finds plugin definitions: built-ins by short name, third-party packages by npm package name
 * (resolved from the working directory first, so an operator's `npm install` is enough, then
 * from core's own location). Every failure is a typed error naming the config path.
 */
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { KindGuard } from '@sinclair/typebox'
import { GatewayError } from '../errors.js'
import { isPluginDefinition, PLUGIN_API_VERSION, type PluginDefinition } from './define.js'

/** Built-in plugins and adapters by short name. */
export const BUILTIN_PLUGINS: Readonly<Record<string, string>> = Object.freeze({
  postgres: '@gatehouse/adapter-postgres',
  ssh: '@gatehouse/adapter-ssh',
  'auth-token': '@gatehouse/plugin-auth-token',
  'auth-ssh-key': '@gatehouse/plugin-auth-ssh-key',
  policy: '@gatehouse/plugin-policy',
  'audit-jsonl': '@gatehouse/plugin-audit-jsonl',
  'audit-stdout': '@gatehouse/plugin-audit-stdout',
  'audit-postgres': '@gatehouse/plugin-audit-postgres',
  'audit-webhook': '@gatehouse/plugin-audit-webhook',
})

const NPM_NAME = /^(@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]*$/

function resolveModule(pkg: string, searchDirs: readonly string[]): string | undefined {
  for (const dir of searchDirs) {
    try {
      return createRequire(join(dir, 'noop.js')).resolve(pkg)
    } catch {
      /* try the next place */
    }
  }
  return undefined
}

export async function loadPluginDefinition(use: string, path: string, searchDirs: readonly string[] = [process.cwd()]): Promise<PluginDefinition> {
  const pkg = BUILTIN_PLUGINS[use] ?? use
  if (!NPM_NAME.test(pkg)) throw new GatewayError('GH_ERR_PLUGIN_UNKNOWN', `${path}: "${use}" is neither a built-in plugin (${Object.keys(BUILTIN_PLUGINS).join(', ')}) nor an npm package name`)
  let mod: Record<string, unknown>
  try {
    const file = resolveModule(pkg, searchDirs)
    mod = (await import(file ? pathToFileURL(file).href : pkg)) as Record<string, unknown>
  } catch (err) {
    const notFound = (err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && String((err as Error).message).includes(pkg)
    throw new GatewayError('GH_ERR_PLUGIN_UNKNOWN', notFound ? `${path}: plugin "${use}" not found (npm install ${pkg})` : `${path}: plugin "${use}" failed to load: ${(err as Error).message}`, { cause: err })
  }
  const def = mod.plugin ?? (mod.default as Record<string, unknown> | undefined)?.plugin ?? mod.default
  if (!isPluginDefinition(def)) throw new GatewayError('GH_ERR_PLUGIN_INVALID', `${path}: package "${pkg}" does not export a plugin made with definePlugin()`)
  if (def.configSchema !== undefined && !KindGuard.IsSchema(def.configSchema)) {
    throw new GatewayError('GH_ERR_PLUGIN_INVALID', `${path}: plugin "${def.name}" has a configSchema that is not a TypeBox schema`)
  }
  if (def.apiVersion !== PLUGIN_API_VERSION) throw new GatewayError('GH_ERR_PLUGIN_API', `${path}: plugin "${def.name}" targets plugin API ${def.apiVersion}; this gateway implements ${PLUGIN_API_VERSION}`)
  return def
}
