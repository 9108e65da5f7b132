/** The postgres adapter's part of a connection: `upstream` and `options`. */
import { Type, type Static } from '@sinclair/typebox'

export const UpstreamConfig = Type.Object(
  {
    host: Type.String({ minLength: 1 }),
    port: Type.Integer({ minimum: 1, maximum: 65535, default: 5432 }),
    database: Type.String({ minLength: 1 }),
    user: Type.String({ minLength: 1 }),
    password: Type.Optional(Type.String({ description: 'use ${env:NAME} or ${file:PATH}; never a literal' })),
    auth: Type.Union([Type.Literal('auto'), Type.Literal('trust')], { default: 'auto', description: 'auto: answer whatever the server asks (SCRAM-SHA-256, md5, password)' }),
    tls: Type.Object(
      {
        mode: Type.Union([Type.Literal('disable'), Type.Literal('require'), Type.Literal('verify-full')], { default: 'disable' }),
        ca: Type.Optional(Type.String({ description: 'PEM CA bundle for verify-full (use ${file:PATH})' })),
        servername: Type.Optional(Type.String()),
      },
      { additionalProperties: false, default: {} },
    ),
    connectTimeoutMs: Type.Integer({ minimum: 100, default: 5000 }),
  },
  { additionalProperties: false },
)
export type UpstreamConfig = Static<typeof UpstreamConfig>

export const PostgresOptions = Type.Object(
  {
    clientAuth: Type.Union([Type.Literal('scram'), Type.Literal('cleartext')], {
      default: 'scram',
      description: 'scram: SCRAM-SHA-256 with the token (needs SCRAM-form token hashes); cleartext: the token as a password, only over TLS (tls.required must be true)',
    }),
    maxMessageBytes: Type.Integer({ minimum: 1024, default: 64 * 1024 * 1024, description: 'largest frontend message accepted' }),
    startupTimeoutMs: Type.Integer({ minimum: 100, default: 15000, description: 'time a client has to finish TLS, startup and authentication' }),
    maxPreparedStatements: Type.Integer({ minimum: 1, default: 10000, description: 'named prepared statements (and portals) one session may hold' }),
    maxStatementsPerQuery: Type.Integer({ minimum: 1, default: 1000, description: 'statements one simple Query message may hold; more is refused before any runs' }),
    transactionIdleTimeoutMs: Type.Integer({
      minimum: 0,
      default: 300_000,
      description: 'longest silence from the client inside an open transaction or an unsynced extended-protocol pipeline (while the server is not working for it); the session is then ended. 0: no limit',
    }),
    maxSessionAgeMs: Type.Integer({ minimum: 0, default: 86_400_000, description: 'longest a session may last; it is then ended. 0: no limit' }),
    forwardParams: Type.Array(Type.String(), {
      default: ['application_name', 'client_encoding', 'DateStyle', 'TimeZone', 'IntervalStyle', 'extra_float_digits'],
      description: 'startup parameters passed from the client to the upstream (never `options`, `user`, `database`, `replication`)',
    }),
  },
  { additionalProperties: false, default: {} },
)
export type PostgresOptions = Static<typeof PostgresOptions>
