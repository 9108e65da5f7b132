/**
 * The rule engine behind the `policy` plugin (DESIGN §6).
 *
 * - A policy applies to a request when its `principals` and `connections` match (omitted = any).
 * - A rule applies when its `actions` (omitted = any) and every `when` matcher match.
 * - Combination is deny-overrides over every applicable rule of every applicable policy: any deny
 *   wins, then any review, then allow. No applicable rule means deny.
 *
 * Rules are compiled once; the per-principal rule list is cached, and matching allocates nothing
 * but the lower-cased attribute strings it compares.
 */
import type { Decision, GatewayRequest, Policy, Principal, Rule } from '@gatehouse/core'

type Matcher = (attrs: Record<string, unknown>) => boolean

interface CompiledRule {
  readonly id: string
  readonly effect: Rule['effect']
  readonly actions?: ReadonlySet<string>
  readonly matchers: readonly Matcher[]
  readonly decision: Decision
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

function compileMatcher(key: string, expected: readonly string[] | boolean): Matcher {
  const path = key.split('.')
  if (typeof expected === 'boolean') return (attrs) => present(lookup(attrs, path)) === expected
  const wanted = new Set(expected.map((e) => e.toLowerCase()))
  const one = (v: unknown) => (typeof v === 'string' ? wanted.has(v.toLowerCase()) : typeof v === 'number' || typeof v === 'boolean' ? wanted.has(String(v)) : false)
  return (attrs) => {
    const v = lookup(attrs, path)
    if (Array.isArray(v)) {
      for (const item of v) if (one(item)) return true
      return false
    }
    return one(v)
  }
}

export function compilePolicies(policies: readonly Policy[]): CompiledPolicy[] {
  return policies.map((policy) => ({
    policy,
    rules: policy.rules.map((rule, i): CompiledRule => {
      const id = `${policy.id}/${rule.id ?? String(i)}`
      const reason = rule.reason ?? (rule.effect === 'allow' ? 'allowed' : rule.effect === 'deny' ? `matched deny rule ${id}` : `matched review rule ${id}`)
      const decision: Decision = Object.freeze(rule.effect === 'allow' ? { verdict: 'allow' as const, rule: id, reason } : { verdict: rule.effect, rule: id, reason })
      return {
        id,
        effect: rule.effect,
        ...(rule.actions ? { actions: new Set(rule.actions) } : {}),
        matchers: Object.entries(rule.when ?? {}).map(([k, v]) => compileMatcher(k, v)),
        decision,
      }
    }),
  }))
}

function policyApplies(p: Policy, principal: Principal, connection: string): boolean {
  if (p.connections && !p.connections.includes(connection)) return false
  const who = p.principals
  if (!who) return true
  if (who.ids && !who.ids.includes(principal.id)) return false
  if (who.kinds && !who.kinds.includes(principal.kind)) return false
  if (who.groups && !who.groups.some((g) => principal.groups.includes(g))) return false
  return true
}

export class RuleEngine {
  private readonly compiled: CompiledPolicy[]
  private readonly applicable = new Map<string, readonly CompiledRule[]>()

  constructor(policies: readonly Policy[]) {
    this.compiled = compilePolicies(policies)
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
      const key = `${connection}\0${principal.id}\0${principal.kind}\0${principal.groups.join(',')}`
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
    const attrs = request.attrs
    for (const rule of this.rulesFor(principal, request.session.connection)) {
      if (rule.actions && !rule.actions.has(request.action)) continue
      let ok = true
      for (const m of rule.matchers) {
        if (!m(attrs)) {
          ok = false
          break
        }
      }
      if (!ok) continue
      if (rule.effect === 'deny') return rule.decision
      if (rule.effect === 'review') review ??= rule.decision
      else allow ??= rule.decision
    }
    return review ?? allow ?? DEFAULT_DENY
  }
}
