/** The redis connection's own settings (`upstream`) and the adapter's limits (`limits.redis`). */
import { Type, type Static } from '@sinclair/typebox'

export const UpstreamSchema = Type.Object(
  {
    host: Type.String({ minLength: 1, default: '127.0.0.1' }),
    port: Type.Integer({ minimum: 1, maximum: 65535, default: 6379 }),
    user: Type.Optional(Type.String({ minLength: 1, description: 'the ACL user the gateway logs in as (default: default)' })),
    password: Type.Optional(Type.String({ description: "the gateway's password on the server (use ${env:…} or ${file:…}); callers never see it" })),
  },
  { additionalProperties: false },
)
export type UpstreamSchema = Static<typeof UpstreamSchema>

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
