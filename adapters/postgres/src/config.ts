/** The postgres adapter's part of a connection: `upstream` and `options`. */
import { Type, type Static } from '@sinclair/typebox'

export const UpstreamConfig = Type.Object(
  {
    host: Type.String({ minLength: 1 }),
    port: Type.Integer({ minimum: 1, maximum: 65535, default: 5432 }),
    database: Type.String({ minLength: 1 }),
    user: Type.String({ minLength: 1 }),
    password: Type.Optional(Type.String({ description: 'use ${env:NAME} or ${file:PATH}; never a literal' })),
    auth: Type.Union([Type.Literal('auto'), Type.Literal('trust'), Type.Literal('scram-sha-256')], { default: 'auto', description: 'auto: answer what the server asks (SCRAM-SHA-256, md5, or the password over TLS); scram-sha-256: only a SCRAM login in which the server proves it knows the password; trust: no authentication' }),
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
    forwardParams: Type.Array(Type.String(), {
      default: ['application_name', 'client_encoding', 'DateStyle', 'TimeZone', 'IntervalStyle', 'extra_float_digits'],
      description: 'startup settings passed from the client to the upstream without asking policy (what drivers send on their own); every other setting, as a startup parameter or `-c name=value` in `options`, is judged as the SET it amounts to',
    }),
  },
  { additionalProperties: false, default: {} },
)
export type PostgresOptions = Static<typeof PostgresOptions>

/**
 * The postgres adapter's own limits, under `limits.postgres` (docs/configuration.md, "Limits"):
 * validated, resolved and observed by core like core's own.
 */
export const PostgresLimits = Type.Object(
  {
    transactionIdleMs: Type.Integer({
      minimum: 0,
      default: 300_000,
      description: 'longest silence from the client inside an open transaction or an unsynced extended-protocol pipeline (while the server is not working for it); the session is then ended (FATAL 25P03). 0: no limit',
    }),
    statementsPerQuery: Type.Integer({ minimum: 1, default: 1000, description: 'statements one simple Query message may hold; more is refused (54000) before any runs' }),
    preparedStatements: Type.Integer({ minimum: 1, default: 10000, description: 'named prepared statements (and, separately, portals) one session may hold; more are refused (54000)' }),
    messageBytes: Type.Integer({ minimum: 1024, default: 64 * 1024 * 1024, description: 'largest frontend message accepted; a larger one ends the session (08P01)' }),
    clientStallMs: Type.Integer({ minimum: 0, default: 60_000, description: 'a client that reads none of its results for this long (the gateway holds them and the upstream backend waits) is ended; 0: no limit' }),
  },
  { additionalProperties: false, default: {} },
)
export type PostgresLimits = Static<typeof PostgresLimits>

/** Options that became limits, for a message that says where they went. */
export const MOVED_OPTIONS = {
  startupTimeoutMs: 'limits.unauthenticated.loginTimeoutMs',
  maxSessionAgeMs: 'limits.sessions.maxAgeMs',
  transactionIdleTimeoutMs: 'limits.postgres.transactionIdleMs',
  maxStatementsPerQuery: 'limits.postgres.statementsPerQuery',
  maxPreparedStatements: 'limits.postgres.preparedStatements',
  maxMessageBytes: 'limits.postgres.messageBytes',
} as const
