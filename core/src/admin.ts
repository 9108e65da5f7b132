/**
 * The admin API (docs/architecture.md, "Boot, start and shutdown"; configured as in
 * docs/configuration.md, "Admin API"): a small HTTP listener for operators, separate from the
 * protocol listeners. Every route needs `Authorization: Bearer <admin token>`; tokens are
 * stored as hashes under `admin.tokens` (from `gatehouse token hash`/`issue`).
 *
 * Routes: `GET /metrics` (Prometheus), `GET /recordings/:session` (the session's recordings),
 * `GET /recordings/:session/:file` (one asciicast file), and tokens issued at run time:
 * `POST /tokens`, `GET /tokens`, `DELETE /tokens/:id` (auth/issued.ts).
 */
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify'
import { existsSync, readFileSync } from 'node:fs'
import { basename } from 'node:path'
import type { IssuedToken } from './state/store.js'
import type { IssuedTokens } from './auth/issued.js'
import { parseDuration, parseTokenHash, verifyTokenAsync } from './auth/tokens.js'
import { GatewayError, toGatewayError } from './errors.js'
import { recordingsOf } from './cli/replay.js'
import type { MetricsRegistry } from './metrics.js'
import { parseHostPort } from './net.js'

export interface AdminConfig {
  readonly listen: string
  readonly tokens: readonly string[]
}

export async function startAdmin(config: AdminConfig, deps: { dataDir: string; metrics: MetricsRegistry; issued: IssuedTokens }): Promise<{ app: FastifyInstance; port: number }> {
  const hashes = config.tokens.map((t, i) => {
    const h = parseTokenHash(t)
    if (!h) throw new Error(`admin.tokens[${i}]: not a token hash (use \`gatehouse token issue --identity admin\`)`)
    return h
  })
  const app = Fastify({ logger: false })
  app.addHook('onRequest', async (req, reply) => {
    const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')
    // Same check as identity tokens: constant time, every hash tried, the key derivation off the event loop.
    let who: string | undefined
    if (m !== null) for (const [i, h] of hashes.entries()) if ((await verifyTokenAsync(m[1] as string, h)) && who === undefined) who = `admin#${i}`
    if (who === undefined) return reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'unauthorized' })
    callers.set(req, who)
  })
  const callers = new WeakMap<object, string>()
  const caller = (req: object) => callers.get(req) ?? 'admin'

  // Tokens issued at run time: shown once, stored as a hash, scoped, expiring, revocable.
  app.post<{ Body: { identity: string; connections?: string[]; ttl: string; description?: string } }>(
    '/tokens',
    {
      schema: {
        body: {
          type: 'object',
          required: ['identity', 'ttl'],
          additionalProperties: false,
          properties: {
            identity: { type: 'string', minLength: 1, maxLength: 128 },
            connections: { type: 'array', items: { type: 'string', minLength: 1, maxLength: 128 }, maxItems: 64 },
            ttl: { type: 'string', pattern: '^[0-9]+\\s*(ms|s|m|h|d)$', description: 'lifetime, e.g. 15m, 12h' },
            description: { type: 'string', maxLength: 512 },
          },
        },
      },
    },
    async (req, reply) => {
      let ttlMs: number
      try {
        ttlMs = parseDuration(req.body.ttl)
      } catch (err) {
        return reply.code(400).send({ error: (err as Error).message })
      }
      try {
        const { token, record } = await deps.issued.issue({ identity: req.body.identity, ttlMs, by: caller(req), ...(req.body.connections ? { connections: req.body.connections } : {}), ...(req.body.description ? { description: req.body.description } : {}) })
        return reply.code(201).send({ token, ...publicToken(record) })
      } catch (err) {
        return refusal(reply, err)
      }
    },
  )
  app.get<{ Querystring: { identity?: string; all?: string } }>('/tokens', async (req, reply) => {
    try {
      const tokens = await deps.issued.list({ ...(req.query.identity ? { identity: req.query.identity } : {}), includeInactive: req.query.all === 'true' })
      return { tokens: tokens.map(publicToken) }
    } catch (err) {
      return refusal(reply, err)
    }
  })
  app.delete<{ Params: { id: string }; Querystring: { reason?: string } }>('/tokens/:id', async (req, reply) => {
    try {
      const revoked = await deps.issued.revoke(req.params.id, caller(req), req.query.reason)
      if (!revoked) return reply.code(404).send({ error: 'no such token' })
      return publicToken(revoked)
    } catch (err) {
      return refusal(reply, err)
    }
  })
  app.get('/metrics', async (_req, reply) => reply.type('text/plain; version=0.0.4').send(await deps.metrics.text()))
  app.get<{ Params: { session: string } }>('/recordings/:session', async (req) => ({
    session: req.params.session,
    recordings: recordingsOf(deps.dataDir, req.params.session).map((f) => basename(f)),
  }))
  app.get<{ Params: { session: string; file: string } }>('/recordings/:session/:file', async (req, reply) => {
    const file = recordingsOf(deps.dataDir, req.params.session).find((f) => basename(f) === req.params.file)
    if (!file || !existsSync(file)) return reply.code(404).send({ error: 'no such recording' })
    return reply.type('application/x-asciicast').send(readFileSync(file))
  })
  const { host, port } = parseHostPort(config.listen)
  await app.listen({ host, port })
  const address = app.server.address() as { port: number }
  return { app, port: address.port }
}

/** A token as the API shows it: never its hash. */
function publicToken(t: IssuedToken): Record<string, unknown> {
  return {
    id: t.id,
    identity: t.identity,
    ...(t.connections ? { connections: t.connections } : {}),
    ...(t.description ? { description: t.description } : {}),
    createdAt: new Date(t.createdAt).toISOString(),
    createdBy: t.createdBy,
    expiresAt: new Date(t.expiresAt).toISOString(),
    ...(t.revokedAt === undefined ? {} : { revokedAt: new Date(t.revokedAt).toISOString(), revokedBy: t.revokedBy, ...(t.revokeReason ? { revokeReason: t.revokeReason } : {}) }),
  }
}

/** A gateway error as an HTTP answer: 400 for what the caller asked wrong, 503 when the store is down. */
function refusal(reply: FastifyReply, err: unknown): FastifyReply {
  const e = err instanceof GatewayError ? err : toGatewayError(err)
  const status = e.code === 'GH_ERR_CONFIG_INVALID' ? 400 : e.code === 'GH_ERR_STATE_UNAVAILABLE' ? 503 : 500
  return reply.code(status).send({ error: e.code === 'GH_ERR_INTERNAL' ? 'internal error' : e.message, code: e.code })
}
