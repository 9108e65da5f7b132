/**
 * policy: the declarative rule engine over `policies` in gatehouse.yaml. Protocol-neutral: it
 * matches the attributes adapters and analyzers put on a request (`sql.statement`,
 * `sql.functions`, …); it never parses protocol text itself.
 */
import { Type } from '@sinclair/typebox'
import { constructPlugin, definePlugin, GatewayConfigToken, inject, injectable, PLUGIN_API_VERSION, type GatewayConfigRef, type PolicyEngine } from '@gatehouse/core'
import { RuleEngine } from './engine.js'

/** The rule engine over the gateway config's `policies`. */
@injectable()
export class ConfiguredRuleEngine extends RuleEngine {
  constructor(@inject(GatewayConfigToken) gateway: GatewayConfigRef) {
    super(gateway.policies)
  }
}

export { RuleEngine, compilePolicies, DEFAULT_DENY, type CompiledRule } from './engine.js'
export { RULE_SETS, type RuleSet } from './rule-sets.js'
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
