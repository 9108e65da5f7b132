/**
 * gatehouse-adapter-redis — a Gatehouse protocol adapter for Redis, built outside the Gatehouse
 * tree against @gatehouse/core's published plugin API only: the gateway loads it by package name
 * (`adapter: gatehouse-adapter-redis`), core authenticates, judges, records and holds; this package
 * translates RESP.
 */
import { definePlugin, PLUGIN_API_VERSION } from '@gatehouse/core'
import { Type } from '@sinclair/typebox'
import { RedisAdapter } from './adapter.js'
import { RULE_SETS } from './rule-sets.js'

export { RedisAdapter, REDIS_ACTIONS } from './adapter.js'
export { commandTable, enumeratedPatterns, factsOf, keysByPosition, opaqueReason, specFor, type CommandSpec, type RedisFacts } from './commands.js'
export { ByteQueue, CommandReader, ReplyScanner, parseReply, encodeCommand, prefixed, RespLimitError, RespProtocolError, type Command } from './resp.js'
export { RedisLimits, RedisOptions, UpstreamSchema } from './config.js'
export { RULE_SETS } from './rule-sets.js'

export const plugin = definePlugin({
  name: 'redis',
  stage: 'adapter',
  apiVersion: PLUGIN_API_VERSION,
  configSchema: Type.Object({}, { additionalProperties: false }),
  description: 'Redis (RESP2/RESP3): every command judged by name, keys and the server’s own command flags; AUTH and HELLO answered with gateway tokens; the upstream password brokered',
  ruleSets: RULE_SETS,
  register(_container, _config, ctx) {
    return new RedisAdapter(ctx.logger)
  },
})

export default plugin
