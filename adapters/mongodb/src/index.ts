/** @gatehouse/adapter-mongodb — a MongoDB endpoint for drivers and mongosh: every command judged by name, database, collections and operators, sent on with the gateway's credential. */
import { constructPlugin, definePlugin, PLUGIN_API_VERSION } from '@gatehouse/core'
import { Type } from '@sinclair/typebox'
import { MongoAdapter } from './adapter.js'

export { MongoAdapter, MONGO_ACTIONS } from './adapter.js'
export { analyseCommand, commandName, opensCursor, trueValue, type MongoFacts } from './command.js'
export { checkBson } from './codec/bson-check.js'
export { FrameReader, readOpMsg, readOpQuery, encodeOpMsg, OP, MSG_FLAGS, WireError } from './codec/wire.js'
export { UpstreamConfig, MongoLimits, MongoOptions } from './config.js'

export const plugin = definePlugin({
  name: 'mongodb',
  stage: 'adapter',
  apiVersion: PLUGIN_API_VERSION,
  configSchema: Type.Object({}, { additionalProperties: false }),
  description: 'MongoDB wire protocol: every command judged by name, database, collections and operators; fields masked; sent on with the gateway credential',
  register(container, config, ctx) {
    return constructPlugin(container, MongoAdapter, config, ctx)
  },
})

export default plugin
