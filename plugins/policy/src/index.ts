/**
 * policy: the declarative rule engine over `policies` in gatehouse.yaml. Protocol-neutral: it
 * matches the attributes adapters and analyzers put on a request (`sql.statement`,
 * `sql.functions`, …); it never parses protocol text itself.
 */
import { Type } from '@sinclair/typebox'
import { constructPlugin, definePlugin, GatewayConfigToken, inject, injectable, PLUGIN_API_VERSION, type Decision, type GatewayConfigRef, type GatewayRequest, type PolicyEngine, type Principal, type RuleSet } from '@gatehouse/core'
import { RuleEngine } from './engine.js'

/**
 * The rule engine over the gateway config's `policies`. Compiled when the gateway hands it the
 * rule sets plugins ship (`useRuleSets`, at boot), since policies may include those; an engine
 * asked to decide before that compiles with the built-in sets only.
 */
@injectable()
export class ConfiguredRuleEngine implements PolicyEngine {
  private engine: RuleEngine | undefined

  constructor(@inject(GatewayConfigToken) private readonly gateway: GatewayConfigRef) {}

  useRuleSets(sets: Readonly<Record<string, RuleSet>>): void {
    this.engine = new RuleEngine(this.gateway.policies, sets)
  }

  decide(request: GatewayRequest, principal: Principal): Decision {
    this.engine ??= new RuleEngine(this.gateway.policies)
    return this.engine.decide(request, principal)
  }
}

export { RuleEngine, compilePolicies, DEFAULT_DENY, type CompiledRule } from './engine.js'
export { RULE_SETS } from './rule-sets.js'
export type { RuleSet } from '@gatehouse/core'
export { compileCel, celContext } from './cel.js'

const ConfigSchema = Type.Object({}, { additionalProperties: false })

export const plugin = definePlugin({
  name: 'policy',
  stage: 'decide',
  apiVersion: PLUGIN_API_VERSION,
  configSchema: ConfigSchema,
  description: 'deny-overrides rules over principals, connections, actions and request attributes',
  register(container, config, ctx): PolicyEngine {
    return constructPlugin(container, ConfiguredRuleEngine, config, ctx)
  },
})

export default plugin
