/**
 * Loads `gatehouse.yaml`: parse YAML, resolve `${env:NAME}` / `${file:PATH}` secret references,
 * apply defaults, validate against the TypeBox schema, check cross-references. Resolved secrets
 * live only in the returned object; nothing here logs values.
 */
import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { Value } from '@sinclair/typebox/value'
import { parseDocument } from 'yaml'
import { GatewayConfig } from './schema.js'
import { ConfigError, validate, type ValidationIssue } from './validate.js'
import { parseHostPort } from '../net.js'

const REF = /\$\{(env|file):([^}]+)\}/g

/** What an unresolvable reference becomes with `unresolved: 'placeholder'` (non-empty, so required fields still validate). */
const UNRESOLVED = 'unresolved-reference'

export interface LoadOptions {
  /** Environment to resolve `${env:…}` from (defaults to process.env). */
  env?: NodeJS.ProcessEnv
  /** Directory relative `${file:…}` paths and `dataDir` resolve against. */
  baseDir?: string
  /**
   * `placeholder`: a reference that cannot be resolved becomes `unresolved-reference` instead of an
   * error. Only for commands that never connect anywhere (`policy explain`), so an operator can
   * ask about policy without holding the upstream secrets.
   */
  unresolved?: 'error' | 'placeholder'
}

/** Resolves references in every string of `value`; collects unresolvable ones as issues. */
export function resolveRefs(value: unknown, opts: Required<LoadOptions>, path: string, issues: ValidationIssue[]): unknown {
  if (typeof value === 'string') {
    if (!value.includes('${')) return value
    return value.replace(REF, (_m, kind: string, arg: string) => {
      const name = arg.trim()
      if (kind === 'env') {
        const v = opts.env[name]
        if (v === undefined) {
          if (opts.unresolved !== 'placeholder') issues.push({ path, message: `environment variable ${name} is not set` })
          return UNRESOLVED
        }
        return v
      }
      try {
        return readFileSync(resolve(opts.baseDir, name), 'utf8').replace(/\r?\n$/, '')
      } catch (err) {
        if (opts.unresolved !== 'placeholder') issues.push({ path, message: `cannot read file ${name}: ${(err as NodeJS.ErrnoException).code ?? 'error'}` })
        return UNRESOLVED
      }
    })
  }
  if (Array.isArray(value)) return value.map((v, i) => resolveRefs(v, opts, `${path}[${i}]`, issues))
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) out[k] = resolveRefs(v, opts, path === '' ? k : `${path}.${k}`, issues)
    return out
  }
  return value
}

export function parseConfig(text: string, opts: LoadOptions = {}): GatewayConfig {
  const full: Required<LoadOptions> = { env: opts.env ?? process.env, baseDir: opts.baseDir ?? process.cwd(), unresolved: opts.unresolved ?? 'error' }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true })
  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map((e) => ({ path: `line ${e.linePos?.[0]?.line ?? '?'}`, message: e.message.split('\n')[0] ?? 'YAML error' })))
  }
  const raw = doc.toJS({ maxAliasCount: 100 }) as unknown
  const refIssues: ValidationIssue[] = []
  const resolved = resolveRefs(raw ?? {}, full, '', refIssues)
  // Unresolved references and schema errors are reported together (the placeholder a missing
  // reference leaves is a valid string, so it adds no schema error of its own).
  let config: GatewayConfig
  try {
    config = validate(GatewayConfig, resolved)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    const partial = Value.Default(GatewayConfig, Value.Clone(resolved))
    throw new ConfigError([...refIssues.map((i) => ({ ...i, code: 'GH_ERR_CONFIG_REF' as const })), ...err.issues], err.code, partial)
  }
  if (refIssues.length > 0) throw new ConfigError(refIssues, 'GH_ERR_CONFIG_REF')
  config.dataDir = resolve(full.baseDir, config.dataDir)
  checkReferences(config)
  return config
}

export function loadConfigFile(file: string, opts: Omit<LoadOptions, 'baseDir'> = {}): GatewayConfig {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new ConfigError([{ path: file, message: `cannot read config: ${(err as NodeJS.ErrnoException).code ?? String(err)}` }])
  }
  return parseConfig(text, { ...opts, baseDir: dirname(resolve(file)) })
}

/** Checks what the schema cannot: unique names, references between sections. */
function checkReferences(config: GatewayConfig): void {
  const issues: ValidationIssue[] = []
  const unique = (items: readonly { name?: string; id?: string }[], key: 'name' | 'id', section: string) => {
    const seen = new Map<string, number>()
    items.forEach((item, i) => {
      const v = item[key]
      if (v === undefined) return
      if (seen.has(v)) issues.push({ path: `${section}[${i}].${key}`, message: `duplicate ${key} "${v}" (also ${section}[${seen.get(v)}])` })
      else seen.set(v, i)
    })
  }
  unique(config.connections, 'name', 'connections')
  unique(config.identities, 'id', 'identities')
  unique(config.policies, 'id', 'policies')
  const listens = new Map<string, number>()
  config.connections.forEach((c, i) => {
    try {
      parseHostPort(c.listen)
    } catch (err) {
      issues.push({ path: `connections[${i}].listen`, message: (err as Error).message })
    }
    if (listens.has(c.listen) && !c.listen.endsWith(':0')) issues.push({ path: `connections[${i}].listen`, message: `address ${c.listen} already used by connections[${listens.get(c.listen)}]` })
    listens.set(c.listen, i)
  })
  const names = new Set(config.connections.map((c) => c.name))
  config.identities.forEach((idn, i) => {
    const ids = new Map<string, number>()
    idn.tokens.forEach((t, j) => {
      if (t.id === undefined) return
      if (ids.has(t.id)) issues.push({ path: `identities[${i}].tokens[${j}].id`, message: `duplicate token id "${t.id}" (also tokens[${ids.get(t.id)}])` })
      else ids.set(t.id, j)
    })
  })
  config.identities.forEach((idn, i) =>
    idn.tokens.forEach((t, j) =>
      t.connections?.forEach((c, k) => {
        if (!names.has(c)) issues.push({ path: `identities[${i}].tokens[${j}].connections[${k}]`, message: `unknown connection "${c}"` })
      }),
    ),
  )
  config.policies.forEach((p, i) => {
    if (p.rules.length === 0 && !p.include) issues.push({ path: `policies[${i}].rules`, message: 'a policy needs rules or include' })
  })
  config.policies.forEach((p, i) =>
    p.connections?.forEach((c, k) => {
      if (!names.has(c)) issues.push({ path: `policies[${i}].connections[${k}]`, message: `unknown connection "${c}"` })
    }),
  )
  if (issues.length > 0) throw new ConfigError(issues)
}
