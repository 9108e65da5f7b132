/**
 * The rule engine behind the `policy` plugin (docs/architecture.md, "The built-in plugins"; the
 * rules themselves: docs/policy.md).
 *
 * - A policy applies to a request when its `principals` (ids, kinds, groups, claims) and
 *   `connections` match (omitted = any).
 * - A rule applies when its `actions` (omitted = any), every `match` matcher and its `when` CEL
 *   condition match. Rules of included rule sets apply like the policy's own.
 * - Combination is deny-overrides over every applicable rule of every applicable policy: any deny
 *   wins, then any review, then allow. No applicable rule means deny. A `when` that fails to
 *   evaluate (or is not boolean) means deny, naming the rule.
 * - A request carrying code the gateway could not analyse (`opaque`) is allowed only by an allow
 *   rule with `allowOpaque: true`; the others do not count for it.
 *
 * Rules are compiled once; the per-principal rule list is cached, and matching allocates nothing
 * but the lower-cased strings of the case-insensitive (`sql.*`) attributes it compares. The CEL context is built only when a rule
 * with a `when` is reached.
 */
import { ConfigError, GatewayError, splitPathMessage, type ValidationIssue, type Decision, type GatewayRequest, type Policy, type Principal, type Rule, type RuleSet } from '@gatehouse/core'
import { celContext, celError, compileCel, type CelProgram } from './cel.js'
import { RULE_SETS } from './rule-sets.js'

type Matcher = (attrs: Record<string, unknown>) => boolean

export interface CompiledRule {
  readonly id: string
  readonly effect: Rule['effect']
  readonly actions?: ReadonlySet<string>
  /** `ssh.*` in actions: the prefixes (`ssh.`) any of which admits an action. */
  readonly actionPrefixes?: readonly string[]
  readonly matchers: readonly Matcher[]
  readonly when?: CelProgram
  readonly allowOpaque: boolean
  readonly decision: Decision
  /** The fields an allow rule masks in returned documents. */
  readonly mask?: readonly string[]
}

interface CompiledPolicy {
  readonly policy: Policy
  readonly rules: readonly CompiledRule[]
}

export const DEFAULT_DENY: Decision = Object.freeze({ verdict: 'deny', rule: 'default-deny', reason: 'no rule allows this request' })

function lookup(attrs: Record<string, unknown>, path: readonly string[]): unknown {
  let v: unknown = attrs
  for (const key of path) {
    if (v === null || typeof v !== 'object') return undefined
    v = (v as Record<string, unknown>)[key]
  }
  return v
}

function present(v: unknown): boolean {
  if (v === undefined || v === null || v === false || v === '') return false
  if (Array.isArray(v)) return v.length > 0
  return true
}

/**
 * Attributes compared without regard to case: SQL keywords and unquoted identifiers are
 * case-insensitive in the protocol itself. Everything else (commands, paths, names, hosts) is
 * compared exactly: `make BUILD` is not `make build`.
 */
const CASE_INSENSITIVE = /^sql\./

function compileMatcher(key: string, expected: readonly string[] | readonly (readonly string[])[] | boolean): Matcher {
  const path = key.split('.')
  if (typeof expected === 'boolean') return (attrs) => present(lookup(attrs, path)) === expected
  if (expected.some((e) => Array.isArray(e))) return sequenceMatcher(path, expected as readonly (readonly string[])[])
  const fold = CASE_INSENSITIVE.test(key)
  const wanted = new Set((expected as readonly string[]).map((e) => (fold ? e.toLowerCase() : e)))
  const one = (v: unknown) => (typeof v === 'string' ? wanted.has(fold ? v.toLowerCase() : v) : typeof v === 'number' || typeof v === 'boolean' ? wanted.has(String(v)) : false)
  return (attrs) => {
    const v = lookup(attrs, path)
    if (Array.isArray(v)) {
      for (const item of v) if (one(item)) return true
      return false
    }
    return one(v)
  }
}

/** A list of word lists: the attribute must be a list of strings equal to one of them, word for word, case-sensitively. */
function sequenceMatcher(path: readonly string[], expected: readonly (readonly string[])[]): Matcher {
  const wanted = new Set(expected.map((words) => JSON.stringify(Array.isArray(words) ? words : [words])))
  return (attrs) => {
    const v = lookup(attrs, path)
    return Array.isArray(v) && v.every((w) => typeof w === 'string') && wanted.has(JSON.stringify(v))
  }
}

function compileRule(rule: Rule, id: string, path: string): CompiledRule {
  const reason = rule.reason ?? (rule.effect === 'allow' ? 'allowed' : rule.effect === 'deny' ? `matched deny rule ${id}` : `matched review rule ${id}`)
  if (rule.mask && rule.effect !== 'allow') throw new GatewayError('GH_ERR_CONFIG_INVALID', `${path}.mask: only a rule with effect allow masks fields (this one is ${rule.effect})`)
  if (rule.review && rule.effect !== 'review') throw new GatewayError('GH_ERR_CONFIG_INVALID', `${path}.review: only a rule with effect review takes review options (this one is ${rule.effect})`)
  const review = rule.review ? { ...(rule.review.approvals === undefined ? {} : { approvals: rule.review.approvals }), ...(rule.review.timeoutSeconds === undefined ? {} : { timeoutMs: rule.review.timeoutSeconds * 1000 }) } : {}
  const mask = rule.mask && rule.effect === 'allow' ? Object.freeze([...new Set(rule.mask)]) : undefined
  const decision: Decision = Object.freeze(rule.effect === 'allow' ? { verdict: 'allow' as const, rule: id, reason, ...(mask ? { obligations: Object.freeze([Object.freeze({ kind: 'mask', fields: mask })]) } : {}) } : rule.effect === 'review' ? { verdict: 'review' as const, rule: id, reason, ...review } : { verdict: rule.effect, rule: id, reason })
  let when: CelProgram | undefined
  if (rule.when !== undefined) {
    try {
      when = compileCel(rule.when)
    } catch (err) {
      throw new GatewayError('GH_ERR_CONFIG_INVALID', `${path}.when: ${(err as Error).message}`)
    }
  }
  const exact = rule.actions?.filter((a) => !a.endsWith('.*'))
  const prefixes = rule.actions?.filter((a) => a.endsWith('.*')).map((a) => a.slice(0, -1))
  return {
    id,
    effect: rule.effect,
    ...(exact ? { actions: new Set(exact) } : {}),
    ...(prefixes && prefixes.length > 0 ? { actionPrefixes: prefixes } : {}),
    matchers: Object.entries(rule.match ?? {}).map(([k, v]) => compileMatcher(k, v)),
    ...(when ? { when } : {}),
    allowOpaque: rule.allowOpaque === true,
    decision,
    ...(mask ? { mask } : {}),
  }
}

/**
 * Compiles every policy; throws GH_ERR_CONFIG_INVALID naming the path of a bad rule or rule set
 * (a ConfigError listing each, when there are several).
 */
export function compilePolicies(policies: readonly Policy[], pluginSets: Readonly<Record<string, RuleSet>> = {}): CompiledPolicy[] {
  const issues: ValidationIssue[] = []
  const attempt = (path: string, compile: () => void) => {
    try {
      compile()
    } catch (err) {
      const message = (err as Error).message
      issues.push(splitPathMessage(message) ?? { path, message })
    }
  }
  for (const name of Object.keys(pluginSets)) {
    if (Object.hasOwn(RULE_SETS, name)) issues.push({ path: 'plugins', message: `a plugin ships rule set "${name}", the name of a built-in set` })
  }
  const known = { ...pluginSets, ...RULE_SETS }
  const compiled = policies.map((policy, i) => {
    const rules: CompiledRule[] = []
    for (const [k, inc] of (policy.include ?? []).entries()) {
      const name = typeof inc === 'string' ? inc : inc.set
      const set = Object.hasOwn(known, name) ? known[name] : undefined
      if (!set) {
        const shipped = Object.keys(pluginSets)
        issues.push({ path: `policies[${i}].include[${k}]`, message: `unknown rule set "${name}"; built-in sets are ${Object.keys(RULE_SETS).join(', ')}${shipped.length > 0 ? `; the loaded plugins ship ${shipped.join(', ')}` : ''}` })
        continue
      }
      const effect = typeof inc === 'string' ? undefined : inc.effect
      set.rules.forEach((r, j) => attempt(`policies[${i}].include[${k}]`, () => rules.push(compileRule(effect ? { ...r, effect } : r, `${policy.id}/${name}/${r.id ?? String(j)}`, `rule set ${name}`))))
    }
    policy.rules.forEach((rule, j) => attempt(`policies[${i}].rules[${j}]`, () => rules.push(compileRule(rule, `${policy.id}/${rule.id ?? String(j)}`, `policies[${i}].rules[${j}]`))))
    return { policy, rules }
  })
  const [only] = issues
  if (issues.length === 1 && only) throw new GatewayError('GH_ERR_CONFIG_INVALID', `${only.path}: ${only.message}`)
  if (issues.length > 1) throw new ConfigError(issues)
  return compiled
}

function claimMatches(claim: unknown, accepted: readonly string[]): boolean {
  if (Array.isArray(claim)) return claim.some((c) => accepted.includes(String(c)))
  return claim !== undefined && claim !== null && accepted.includes(String(claim))
}

function policyApplies(p: Policy, principal: Principal, connection: string): boolean {
  if (p.connections && !p.connections.includes(connection)) return false
  const who = p.principals
  if (!who) return true
  if (who.ids && !who.ids.includes(principal.id)) return false
  if (who.kinds && !who.kinds.includes(principal.kind)) return false
  if (who.groups && !who.groups.some((g) => principal.groups.includes(g))) return false
  if (who.claims) for (const [name, accepted] of Object.entries(who.claims)) if (!claimMatches(principal.claims[name], accepted)) return false
  return true
}

/** Why a request's attributes carry code the gateway could not analyse, if they do. */
function opaqueReason(attrs: Record<string, unknown>): string | undefined {
  for (const key in attrs) {
    const v = attrs[key] as { opaque?: unknown; code?: readonly { analysed?: boolean; language?: string; why?: string }[] } | undefined
    if (v && typeof v === 'object' && v.opaque === true) {
      const c = v.code?.find((x) => x.analysed === false)
      return c ? `${c.language ?? 'code'}: ${c.why ?? 'not analysed'}` : 'code the gateway cannot analyse'
    }
  }
  return undefined
}

export class RuleEngine {
  private readonly compiled: CompiledPolicy[]
  private readonly applicable = new Map<string, readonly CompiledRule[]>()
  private readonly usesClaims: boolean

  /** `ruleSets`: the sets plugins ship, which policies may include beside the built-in ones. */
  constructor(policies: readonly Policy[], ruleSets: Readonly<Record<string, RuleSet>> = {}) {
    this.compiled = compilePolicies(policies, ruleSets)
    this.usesClaims = policies.some((p) => p.principals?.claims !== undefined)
  }

  /** Per principal object (one per authenticated session): connection → applicable rules. */
  private readonly byPrincipal = new WeakMap<Principal, Map<string, readonly CompiledRule[]>>()

  /** Rules that can apply to this principal on this connection, in config order. */
  rulesFor(principal: Principal, connection: string): readonly CompiledRule[] {
    let perConnection = this.byPrincipal.get(principal)
    if (!perConnection) {
      perConnection = new Map()
      this.byPrincipal.set(principal, perConnection)
    }
    let rules = perConnection.get(connection)
    if (!rules) {
      // Every part encoded, so no two principals share a key: group names come from identities and,
      // with workload tokens, from claims ("a,b" must not read as the groups "a" and "b").
      const key = JSON.stringify([connection, principal.id, principal.kind, principal.groups, this.usesClaims ? principal.claims : null])
      rules = this.applicable.get(key)
      if (!rules) {
        rules = this.compiled.filter((p) => policyApplies(p.policy, principal, connection)).flatMap((p) => p.rules)
        if (this.applicable.size > 10_000) this.applicable.clear()
        this.applicable.set(key, rules)
      }
      perConnection.set(connection, rules)
    }
    return rules
  }

  decide(request: GatewayRequest, principal: Principal): Decision {
    let review: Decision | undefined
    let allow: Decision | undefined
    let allowWithoutOpaque: CompiledRule | undefined
    // Masks are obligations: every allow rule that applies adds its fields, whichever one allows.
    let masks: string[] | undefined
    let context: Record<string, unknown> | undefined
    const attrs = request.attrs
    const opaque = opaqueReason(attrs)
    for (const rule of this.rulesFor(principal, request.session.connection)) {
      if (!actionMatches(rule, request.action)) continue
      let ok = true
      for (const m of rule.matchers) {
        if (!m(attrs)) {
          ok = false
          break
        }
      }
      if (!ok) continue
      if (rule.when) {
        let result: unknown
        try {
          result = rule.when((context ??= celContext(request, principal)))
        } catch (err) {
          return { verdict: 'deny', rule: rule.id, reason: `rule ${rule.id} could not be evaluated: ${celError(err)}` }
        }
        if (typeof result !== 'boolean') return { verdict: 'deny', rule: rule.id, reason: `rule ${rule.id} could not be evaluated: its condition gave ${typeof result}, not a boolean` }
        if (!result) continue
      }
      if (rule.effect === 'deny') return rule.decision
      if (rule.effect === 'review') review ??= rule.decision
      else if (opaque !== undefined && !rule.allowOpaque) allowWithoutOpaque ??= rule
      else {
        allow ??= rule.decision
        if (rule.mask) masks = masks ? [...masks, ...rule.mask] : [...rule.mask]
      }
    }
    if (review) {
      // once let through (approved, or by a grant), the masks of the allow rules that applied hold
      if (masks === undefined || review.verdict !== 'review') return review
      return { ...review, obligations: [{ kind: 'mask', fields: [...new Set(masks)] }] }
    }
    if (allow) {
      if (masks === undefined || allow.verdict !== 'allow') return allow
      const own = allow.obligations?.find((o) => o.kind === 'mask') as { fields: readonly string[] } | undefined
      const fields = [...new Set(masks)]
      if (own && own.fields.length === fields.length) return allow
      return { ...allow, obligations: [...(allow.obligations ?? []).filter((o) => o.kind !== 'mask'), { kind: 'mask', fields }] }
    }
    if (allowWithoutOpaque) return { verdict: 'deny', rule: 'gatehouse/opaque-code', reason: `the request carries code the gateway cannot analyse (${opaque}); rule ${allowWithoutOpaque.id} would allow it but does not set allowOpaque` }
    return DEFAULT_DENY
  }
}

function actionMatches(rule: CompiledRule, action: string): boolean {
  if (!rule.actions && !rule.actionPrefixes) return true
  if (rule.actions?.has(action)) return true
  if (rule.actionPrefixes) for (const p of rule.actionPrefixes) if (action.startsWith(p)) return true
  return false
}
