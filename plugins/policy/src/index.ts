/**
 * policy: the declarative rule engine over `policies` in gatehouse.yaml. Protocol-neutral: it
 * matches the attributes adapters and analyzers put on a request (`sql.statement`,
 * `sql.functions`, …); it never parses protocol text itself.
 */
import { Type } from '@sinclair/typebox'
import { definePlugin, PLUGIN_API_VERSION, type PolicyEngine } from '@gatehouse/core'
import { RuleEngine } from './engine.js'

export { RuleEngine, compilePolicies, DEFAULT_DENY } from './engine.js'

const ConfigSchema = Type.Object({}, { additionalProperties: false })

export const plugin = definePlugin({
  name: 'policy',
  stage: 'decide',
  apiVersion: PLUGIN_API_VERSION,
  configSchema: ConfigSchema,
  description: 'deny-overrides rules over principals, connections, actions and request attributes',
  register(_container, _config, ctx): PolicyEngine {
    return new RuleEngine(ctx.gateway.policies)
  },
})

export default plugin
