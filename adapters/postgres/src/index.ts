/** @gatehouse/adapter-postgres — PostgreSQL wire protocol v3, both sides. */
import { constructPlugin, definePlugin, PLUGIN_API_VERSION } from '@gatehouse/core'
import { Type } from '@sinclair/typebox'
import { PostgresAdapter } from './adapter.js'

export { explainSql } from './session.js'
export { PostgresAdapter } from './adapter.js'
export { SqlAnalyzer, loadSqlParser, MAX_INLINE_TEXT, type SqlAnalysis } from './sql/analyze.js'
export { BackgroundParser } from './sql/background.js'
export { describeStatement, type SqlFacts, type CopyFacts, type CodeFacts, type PreparedFacts } from './sql/facts.js'
export { normalizeSql } from './sql/normalize.js'
export { classifyFunction, classifiedNames, type FunctionClass } from './sql/functions.js'
export { ambiguousLiteral } from './sql/literals.js'
export { SessionModel, RESERVED_PREFIX } from './session-model.js'
export { UpstreamConfig, PostgresOptions } from './config.js'

export const plugin = definePlugin({
  name: 'postgres',
  stage: 'adapter',
  apiVersion: PLUGIN_API_VERSION,
  configSchema: Type.Object({}, { additionalProperties: false }),
  description: 'PostgreSQL wire protocol: SCRAM/TLS on the client side, injected credentials upstream, one request per statement',
  register(container, config, ctx) {
    return constructPlugin(container, PostgresAdapter, config, ctx)
  },
})

export default plugin
