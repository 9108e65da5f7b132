/** @gatehouse/adapter-ssh — SSH on both sides: callers authenticate to the gateway, the gateway brokers the credential to the target. */
import { constructPlugin, definePlugin, PLUGIN_API_VERSION } from '@gatehouse/core'
import { Type } from '@sinclair/typebox'
import { SshAdapter } from './adapter.js'

export { SshAdapter } from './adapter.js'
export { SshOptions, UpstreamConfig } from './config.js'
export { fingerprint, connectUpstream } from './upstream.js'
export { analyzeCommand, loadShellParser, type CommandFacts, type CommandAnalysis } from './shell/programs.js'
export { generateHostKey } from './keys.js'

export const plugin = definePlugin({
  name: 'ssh',
  stage: 'adapter',
  apiVersion: PLUGIN_API_VERSION,
  configSchema: Type.Object({}, { additionalProperties: false }),
  description: 'SSH: exec, shell, sftp and forwarding judged per channel, with brokered target credentials and terminal recordings',
  register(container, config, ctx) {
    return constructPlugin(container, SshAdapter, config, ctx)
  },
})

export default plugin
