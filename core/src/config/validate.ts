/** Schema validation with errors that name the path the operator has to fix. */
import { FormatRegistry, type TSchema, type Static } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { GatewayError, isGatewayError, type ErrorCode } from '../errors.js'

if (!FormatRegistry.Has('date-time')) {
  FormatRegistry.Set('date-time', (v) => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(v) && !Number.isNaN(Date.parse(v)))
}

/** `/connections/2/upstream/port` → `connections[2].upstream.port` (prefixed with `base`). */
export function formatPath(pointer: string, base = ''): string {
  let out = base
  for (const raw of pointer.split('/').slice(1)) {
    const part = raw.replace(/~1/g, '/').replace(/~0/g, '~')
    if (/^\d+$/.test(part)) out += `[${part}]`
    else out += out === '' ? part : `.${part}`
  }
  return out === '' ? '(root)' : out
}

export interface ValidationIssue {
  readonly path: string
  readonly message: string
  /** The error code of this issue when it differs from its ConfigError's (a plugin error among schema errors). */
  readonly code?: ErrorCode
}

/** Applies defaults, then checks `value` against `schema`; returns the typed value or throws with every issue. */
export function validate<S extends TSchema>(schema: S, value: unknown, opts: { base?: string; code?: ErrorCode } = {}): Static<S> {
  const withDefaults = Value.Default(schema, Value.Clone(value))
  const issues = collectIssues(schema, withDefaults, opts.base)
  if (issues.length > 0) {
    throw new ConfigError(issues, opts.code ?? 'GH_ERR_CONFIG_INVALID')
  }
  return withDefaults as Static<S>
}

export function collectIssues(schema: TSchema, value: unknown, base = ''): ValidationIssue[] {
  const seen = new Set<string>()
  const issues: ValidationIssue[] = []
  for (const err of Value.Errors(schema, value)) {
    const path = formatPath(err.path, base)
    // Unions report one error per branch; the first one per path is the useful one.
    if (seen.has(path)) continue
    seen.add(path)
    let message = err.message.replace(/^Expected /, 'expected ')
    if (err.message.startsWith('Unexpected property')) message = 'unknown field'
    if (err.message === 'Expected required property') message = 'required field missing'
    // A pattern is for the validator; the operator gets what the field expects, in words.
    const described = (err.schema as { pattern?: unknown; description?: unknown })
    if (err.message.startsWith('Expected string to match') && !err.message.endsWith(' format') && typeof described.pattern === 'string' && typeof described.description === 'string') message = `expected ${described.description}, got ${JSON.stringify(err.value)}`
    const anyOf = (err.schema as { anyOf?: { const?: unknown }[] }).anyOf
    if (anyOf && anyOf.every((s) => s.const !== undefined)) message = `expected one of ${anyOf.map((s) => JSON.stringify(s.const)).join(', ')}`
    issues.push({ path, message })
  }
  return issues
}

export class ConfigError extends GatewayError {
  constructor(
    readonly issues: readonly ValidationIssue[],
    code: ErrorCode = 'GH_ERR_CONFIG_INVALID',
    /** The file's content (references resolved, defaults applied) when it failed the schema: what `validate` checks further. */
    readonly partial?: unknown,
  ) {
    super(code, issues.map((i) => `${i.path}: ${i.message}`).join('\n'))
  }
}

/**
 * Refuses adapter options that moved elsewhere (into `limits`), naming where they went: an
 * operator upgrading keeps a config that says what it means instead of a bare "unknown field".
 */
export function checkMovedOptions(options: unknown, path: string, moved: Readonly<Record<string, string>>): void {
  if (options === null || typeof options !== 'object') return
  const issues = Object.keys(options)
    .filter((k) => Object.hasOwn(moved, k))
    .map((k) => ({ path: `${path}.options.${k}`, message: `moved: set ${moved[k]} instead (under the connection's limits, or the top-level limits for every connection)` }))
  if (issues.length > 0) throw new ConfigError(issues)
}

/** `connections[0].plugins.decide[1]: plugin "x" not found` → the config path and the message after it. */
export function splitPathMessage(text: string): { path: string; message: string } | undefined {
  const at = /^([A-Za-z_][\w-]*(?:\[\d+\]|\.[\w-]+)*): ([\s\S]*)$/.exec(text)
  return at ? { path: at[1] as string, message: at[2] as string } : undefined
}

/** An error as lines of `gatehouse validate`: the config path (from its message, else `fallbackPath`), the message, the error code. */
export function issuesOf(err: unknown, fallbackPath = '(root)'): ValidationIssue[] {
  if (err instanceof ConfigError) return err.issues.map((i) => ({ ...i, code: i.code ?? err.code }))
  const text = err instanceof Error ? err.message : String(err)
  const code = isGatewayError(err) ? err.code : 'GH_ERR_CONFIG_INVALID'
  return [{ ...(splitPathMessage(text) ?? { path: fallbackPath, message: text }), code }]
}
