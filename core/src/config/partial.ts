/**
 * What `gatehouse validate` can still check in a file that failed the schema, so one run lists
 * every error: each plugin instance's config against its plugin's schema, the plugins the chains
 * and adapters name, the token hashes, and the policies' rule sets and CEL conditions (when the
 * policies section itself is well-formed). Only sections well-formed enough to read are checked;
 * nothing is started or registered.
 */
import { Type } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { NOT_A_TOKEN_HASH, parseTokenHash } from '../auth/tokens.js'
import { BUILTIN_PLUGINS, loadPluginDefinition } from '../plugin/loader.js'
import type { RuleSet } from '../plugin/define.js'
import { Policy } from './schema.js'
import { collectIssues, issuesOf, type ValidationIssue } from './validate.js'

const record = (v: unknown): Record<string, unknown> | undefined => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined)
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : [])

export async function checkParts(partial: unknown, searchDirs: readonly string[] = [process.cwd()]): Promise<ValidationIssue[]> {
  const root = record(partial) ?? {}
  const issues: ValidationIssue[] = []
  const loadDefinition = async (use: string, path: string) => {
    try {
      return await loadPluginDefinition(use, path, searchDirs)
    } catch (err) {
      issues.push(...issuesOf(err, path))
      return undefined
    }
  }
  const instances = new Set<string>()
  const ruleSets: Record<string, RuleSet> = {}
  const load = async (use: string, path: string) => {
    const def = await loadDefinition(use, path)
    Object.assign(ruleSets, def?.ruleSets)
    return def
  }
  for (const [i, raw] of list(root.plugins).entries()) {
    const p = record(raw)
    if (typeof p?.use !== 'string') continue
    instances.add(typeof p.name === 'string' ? p.name : p.use)
    const def = await load(p.use, `plugins[${i}]`)
    if (def?.configSchema) {
      const config = Value.Default(def.configSchema, Value.Clone(p.config ?? {}))
      issues.push(...collectIssues(def.configSchema, config, `plugins[${i}].config`).map((x) => ({ ...x, code: 'GH_ERR_PLUGIN_CONFIG' as const })))
    }
  }
  for (const [i, raw] of list(root.connections).entries()) {
    const c = record(raw)
    if (typeof c?.adapter === 'string' && !instances.has(c.adapter)) await load(c.adapter, `connections[${i}].adapter`)
    for (const [stage, names] of Object.entries(record(c?.plugins) ?? {})) {
      for (const [j, name] of list(names).entries()) if (typeof name === 'string' && !instances.has(name)) await load(name, `connections[${i}].plugins.${stage}[${j}]`)
    }
  }
  for (const [i, raw] of list(root.identities).entries()) {
    for (const [j, t] of list(record(raw)?.tokens).entries()) {
      const hash = record(t)?.hash
      if (typeof hash === 'string' && hash.length >= 8 && !parseTokenHash(hash)) {
        issues.push({ path: `identities[${i}].tokens[${j}].hash`, message: NOT_A_TOKEN_HASH, code: 'GH_ERR_PLUGIN_CONFIG' })
      }
    }
  }
  const policies = Type.Array(Policy)
  if (Array.isArray(root.policies) && collectIssues(policies, root.policies).length === 0) {
    try {
      const { compilePolicies } = (await import(BUILTIN_PLUGINS.policy as string)) as { compilePolicies: (p: unknown, sets: Record<string, RuleSet>) => unknown }
      compilePolicies(root.policies, ruleSets)
    } catch (err) {
      issues.push(...issuesOf(err, 'policies'))
    }
  }
  return issues
}
