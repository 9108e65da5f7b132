/** The mongodb connection's own settings: where the real server is, with which credential, and the adapter's limits. */
import { Type, type Static } from '@sinclair/typebox'

export const UpstreamConfig = Type.Object(
  {
    uri: Type.String({
      pattern: '^mongodb(\\+srv)?://',
      description: "the upstream's connection string with the gateway's own credential and TLS options (use ${env:…} or ${file:…}); the driver's authentication, TLS and server discovery are used as they are",
    }),
    serverSelectionTimeoutMS: Type.Integer({ minimum: 100, default: 10_000, description: 'how long a login or a hello waits for the upstream to be reachable' }),
  },
  { additionalProperties: false },
)
export type UpstreamConfig = Static<typeof UpstreamConfig>

export const MongoOptions = Type.Object(
  {
    advertise: Type.Optional(Type.String({ pattern: '^(\\[[^\\]]+\\]|[^:]+):\\d+$', description: "the host:port clients reach the gateway at, named in hello's hosts/me when the upstream is a replica set (default: the address the client connected to)" })),
  },
  { additionalProperties: false },
)
export type MongoOptions = Static<typeof MongoOptions>

/** Limits of the mongodb adapter (limits.mongodb). */
export const MongoLimits = Type.Object(
  {
    maxMessageBytes: Type.Integer({ minimum: 1024 * 1024, maximum: 48_000_000, default: 16 * 1024 * 1024 + 16 * 1024, description: 'largest message read from a client (advertised as maxMessageSizeBytes; the server takes 48 MB)' }),
    maxDepth: Type.Integer({ minimum: 8, maximum: 180, default: 100, description: 'deepest nesting of documents in a command (the server stores at most 100 levels)' }),
    maxCursors: Type.Integer({ minimum: 1, default: 1000, description: 'cursors one session may have open at once' }),
    monitorConnections: Type.Integer({ minimum: 0, default: 256, description: "connections that only ask hello (drivers' server monitors, which never log in) held open at once on this listener" }),
    monitorConnectionsPerSource: Type.Integer({ minimum: 0, default: 32, description: 'such connections from one client address' }),
  },
  { additionalProperties: false },
)
export type MongoLimits = Static<typeof MongoLimits>
