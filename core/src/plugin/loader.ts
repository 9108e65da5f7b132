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
  kubernetes: '@gatehouse/adapter-kubernetes',
  mongodb: '@gatehouse/adapter-mongodb',
  'auth-token': '@gatehouse/plugin-auth-token',
  'auth-jwt': '@gatehouse/plugin-auth-jwt',
  'auth-ssh-key': '@gatehouse/plugin-auth-ssh-key',
  policy: '@gatehouse/plugin-policy',
  'audit-jsonl': '@gatehouse/plugin-audit-jsonl',
  'audit-stdout': '@gatehouse/plugin-audit-stdout',
  'audit-postgres': '@gatehouse/plugin-audit-postgres',
  'audit-webhook': '@gatehouse/plugin-audit-webhook',
  'approval-webhook': '@gatehouse/plugin-approval-webhook',
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

/** Edit distance (insertions, deletions, substitutions) of two short names. */
function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const next = [i]
    for (let j = 1; j <= b.length; j++) next[j] = Math.min((row[j] as number) + 1, (next[j - 1] as number) + 1, (row[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1))
    row = next
  }
  return row[b.length] as number
}

/** The built-in a mistyped name was probably meant to be: a few edits away, or the built-in's package or a part of it. */
export function builtinLike(use: string): string | undefined {
  const name = use.toLowerCase().replace(/_/g, '-')
  let best: { name: string; d: number } | undefined
  for (const [short, pkg] of Object.entries(BUILTIN_PLUGINS)) {
    if (name === pkg || name === pkg.replace(/^@gatehouse\/(plugin|adapter)-/, 'gatehouse-')) return short
    const d = distance(name, short)
    if (d <= Math.max(1, Math.floor(short.length / 4)) && (!best || d < best.d)) best = { name: short, d }
  }
  return best?.name
}

export async function loadPluginDefinition(use: string, path: string, searchDirs: readonly string[] = [process.cwd()]): Promise<PluginDefinition> {
  const pkg = BUILTIN_PLUGINS[use] ?? use
  const meant = BUILTIN_PLUGINS[use] === undefined ? builtinLike(use) : undefined
  if (!NPM_NAME.test(pkg)) throw new GatewayError('GH_ERR_PLUGIN_UNKNOWN', `${path}: "${use}" is neither a built-in plugin (${meant ? `did you mean ${meant}? built-ins: ` : ''}${Object.keys(BUILTIN_PLUGINS).join(', ')}) nor an npm package name`)
  let mod: Record<string, unknown>
  const file = resolveModule(pkg, searchDirs)
  try {
    mod = (await import(file ? pathToFileURL(file).href : pkg)) as Record<string, unknown>
  } catch (err) {
    // Absent only when the package itself cannot be found; a package that is there but fails to
    // import (a dependency of its own missing, a syntax error, a throw) is reported as it failed.
    const absent = file === undefined && (err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && String((err as Error).message).startsWith(`Cannot find package '${pkg}'`)
    const hint = meant ? `did you mean ${meant}?` : `is it installed? npm install ${pkg}`
    throw new GatewayError('GH_ERR_PLUGIN_UNKNOWN', absent ? `${path}: plugin "${use}" not found (${hint})` : `${path}: plugin "${use}" (${file ?? pkg}) failed to load: ${(err as Error).message}`, { cause: err })
  }
  const def = mod.plugin ?? (mod.default as Record<string, unknown> | undefined)?.plugin ?? mod.default
  if (!isPluginDefinition(def)) throw new GatewayError('GH_ERR_PLUGIN_INVALID', `${path}: package "${pkg}" does not export a plugin made with definePlugin()`)
  if (def.configSchema !== undefined && !KindGuard.IsSchema(def.configSchema)) {
    throw new GatewayError('GH_ERR_PLUGIN_INVALID', `${path}: plugin "${def.name}" has a configSchema that is not a TypeBox schema`)
  }
  if (def.apiVersion !== PLUGIN_API_VERSION) throw new GatewayError('GH_ERR_PLUGIN_API', `${path}: plugin "${def.name}" targets plugin API ${def.apiVersion}; this gateway implements ${PLUGIN_API_VERSION}`)
  return def
}
