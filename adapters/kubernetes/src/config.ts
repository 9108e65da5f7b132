/** The kubernetes connection's own settings: where the real API server is, and with which credential. */
import { Type, type Static } from '@sinclair/typebox'

export const UpstreamConfig = Type.Object(
  {
    kubeconfig: Type.Optional(Type.String({ description: 'a kubeconfig file with the credential the gateway uses (its current context, or `context`)' })),
    context: Type.Optional(Type.String({ description: 'the kubeconfig context to use' })),
    inCluster: Type.Optional(Type.Boolean({ description: "the gateway's own service account (when it runs in a pod)" })),
    server: Type.Optional(Type.String({ pattern: '^https://', description: 'the API server URL (with token and ca)' })),
    token: Type.Optional(Type.String({ description: 'bearer token of the gateway on the API server (use ${env:…} or ${file:…})' })),
    ca: Type.Optional(Type.String({ description: "PEM certificate(s) the API server's certificate is checked against" })),
  },
  { additionalProperties: false },
)
export type UpstreamConfig = Static<typeof UpstreamConfig>

export const KubernetesOptions = Type.Object({}, { additionalProperties: false })
export type KubernetesOptions = Static<typeof KubernetesOptions>

/** Limits of the kubernetes adapter (limits.kubernetes). */
export const KubernetesLimits = Type.Object(
  {
    maxBodyBytes: Type.Integer({ minimum: 1024, default: 3 * 1024 * 1024, description: 'largest request body read and judged (the API server takes 3 MiB)' }),
    maxHeaderBytes: Type.Integer({ minimum: 4096, default: 32 * 1024, description: "largest request header block" }),
    upstreamTimeoutMs: Type.Integer({ minimum: 100, default: 30_000, description: 'how long a request (not a watch or a stream) may wait for the API server to answer, and a request body to arrive' }),
    maxInflight: Type.Integer({ minimum: 1, default: 64, description: 'requests (watches included) one client connection may have in flight at once' }),
  },
  { additionalProperties: false },
)
export type KubernetesLimits = Static<typeof KubernetesLimits>
