// An example third-party decide plugin (plain JavaScript, no build step). Install it next to the
// gateway and list it by package name; see README.md beside this file.
import { definePlugin, PLUGIN_API_VERSION } from '@gatehouse/core'
import { Type } from '@sinclair/typebox'

export const plugin = definePlugin({
  name: 'gatehouse-plugin-business-hours',
  stage: 'decide',
  apiVersion: PLUGIN_API_VERSION,
  configSchema: Type.Object(
    { from: Type.Integer({ minimum: 0, maximum: 23, default: 8 }), to: Type.Integer({ minimum: 1, maximum: 24, default: 18 }) },
    { additionalProperties: false },
  ),
  register(_container, config) {
    return {
      decide(request) {
        const statement = request.attrs.sql?.statement
        const hour = new Date().getUTCHours()
        if (statement !== 'SELECT' && (hour < config.from || hour >= config.to)) {
          return { verdict: 'deny', rule: 'business-hours', reason: `writes only between ${config.from}:00 and ${config.to}:00 UTC` }
        }
        return { verdict: 'allow', rule: 'business-hours' }
      },
    }
  },
})
