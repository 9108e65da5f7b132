/** @gatehouse/adapter-kubernetes — an HTTPS endpoint kubectl uses as its API server; every call judged, recorded, and sent on with the gateway's credential. */
import { constructPlugin, definePlugin, PLUGIN_API_VERSION } from '@gatehouse/core'
import { Type } from '@sinclair/typebox'
import { KubernetesAdapter } from './adapter.js'

export { KubernetesAdapter, K8S_ACTIONS } from './adapter.js'
export { parseRequest, type K8sRequest, type ParsedRequest } from './request.js'
export { decodeBody, needsYamlReader, type BodyFacts, type DecodedBody } from './body.js'
export { redactSecrets, SecretRedactor, REDACTED } from './secrets.js'
export { UpstreamConfig, KubernetesLimits } from './config.js'

export const plugin = definePlugin({
  name: 'kubernetes',
  stage: 'adapter',
  apiVersion: PLUGIN_API_VERSION,
  configSchema: Type.Object({}, { additionalProperties: false }),
  description: 'Kubernetes API: every call judged by verb, resource, namespace and body, Secret values redacted, sent on with the gateway credential',
  register(container, config, ctx) {
    return constructPlugin(container, KubernetesAdapter, config, ctx)
  },
})

export default plugin
export { generateCertificates, kubeconfigFor, type GatewayCertificates } from './certs.js'
