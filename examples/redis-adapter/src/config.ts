/** The redis connection's own settings (`upstream`) and the adapter's limits (`limits.redis`). */
import { Type, type Static } from '@sinclair/typebox'

export const UpstreamSchema = Type.Object(
  {
    host: Type.String({ minLength: 1, default: '127.0.0.1' }),
    port: Type.Integer({ minimum: 1, maximum: 65535, default: 6379 }),
    user: Type.Optional(Type.String({ minLength: 1, description: 'the ACL user the gateway logs in as (default: default)' })),
    password: Type.Optional(Type.String({ description: "the gateway's password on the server (use ${env:…} or ${file:…}); callers never see it" })),
    tls: Type.Object(
      {
        mode: Type.Union([Type.Literal('disable'), Type.Literal('require'), Type.Literal('verify-full')], { default: 'disable', description: 'require: encrypted, the certificate not checked; verify-full: the certificate checked against `ca` (or the system roots) and the host name' }),
        ca: Type.Optional(Type.String({ description: 'PEM CA bundle for verify-full (use ${file:…})' })),
        servername: Type.Optional(Type.String({ minLength: 1, description: 'the name the certificate must carry (default: host)' })),
        cert: Type.Optional(Type.String({ description: "PEM client certificate, for a server that checks clients' certificates (tls-auth-clients)" })),
        key: Type.Optional(Type.String({ description: 'PEM key of the client certificate (use ${file:…})' })),
      },
      { additionalProperties: false, default: {} },
    ),
  },
  { additionalProperties: false },
)
export type UpstreamSchema = Static<typeof UpstreamSchema>

export const RedisOptions = Type.Object(
  {
    plaintextTokens: Type.Boolean({
      default: false,
      description: 'let a listener beyond loopback take tokens without TLS (AUTH carries the token as it is): only where something else encrypts the link (a service mesh, a tunnel)',
    }),
  },
  { additionalProperties: false, default: {} },
)
export type RedisOptions = Static<typeof RedisOptions>

export const RedisLimits = Type.Object(
  {
    maxArgs: Type.Integer({ minimum: 1, default: 1024 * 1024, description: 'arguments in one command' }),
    maxBulkBytes: Type.Integer({ minimum: 1024, default: 64 * 1024 * 1024, description: 'largest argument' }),
    maxCommandBytes: Type.Integer({ minimum: 1024, default: 128 * 1024 * 1024, description: 'largest command, all arguments and framing together: what one connection can make the gateway hold' }),
    upstreamTimeoutMs: Type.Integer({ minimum: 100, default: 10_000, description: 'how long connecting to the server may take' }),
  },
  { additionalProperties: false },
)
export type RedisLimits = Static<typeof RedisLimits>
