/**
 * The admin API (docs/architecture.md, "Boot, start and shutdown"; configured as in
 * docs/configuration.md, "Admin API"): a small HTTP listener for operators, separate from the
 * protocol listeners. Every route needs `Authorization: Bearer <admin token>`; tokens are
 * stored as hashes under `admin.tokens` (from `gatehouse token hash`/`issue`).
 *
 * Routes: `GET /metrics` (Prometheus), `GET /recordings/:session` (the session's recordings),
 * `GET /recordings/:session/:file` (one asciicast file), and tokens issued at run time:
 * `POST /tokens`, `GET /tokens`, `DELETE /tokens/:id` (auth/issued.ts); held requests:
 * `GET /reviews`, `GET /reviews/:id`, `POST /reviews/:id/approve|deny` (review/reviews.ts);
 * `GET /sessions`, `DELETE /sessions/:id`; `GET /healthz` and `GET /readyz` (no token).
 * Roles: auditor reads, approver also decides reviews, admin does everything.
 */
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify'
import swagger from '@fastify/swagger'
import { existsSync, readFileSync } from 'node:fs'
import { basename } from 'node:path'
import type { IssuedToken } from './state/store.js'
import type { IssuedTokens } from './auth/issued.js'
import type { Reviews } from './review/reviews.js'
import type { ReviewStatus } from './state/store.js'
import type { AuditEvent } from './audit/events.js'
import type { AuditQuery } from './plugin/stages.js'
import type { LiveSession } from './pipeline/pipeline.js'
import type { Logger } from './logger.js'
import { parseDuration, parseTokenHash, verifyTokenAsync } from './auth/tokens.js'
import { GatewayError, toGatewayError } from './errors.js'
import { recordingsOf } from './cli/replay.js'
import type { MetricsRegistry } from './metrics.js'
import { parseHostPort } from './net.js'

export type AdminRole = 'admin' | 'approver' | 'auditor'

export interface AdminConfig {
  readonly listen: string
  readonly tokens: readonly (string | { readonly id: string; readonly hash: string; readonly role: AdminRole })[]
}

/** What each role may do: auditors read, approvers also decide reviews, admins do everything. */
const RANK: Record<AdminRole, number> = { auditor: 0, approver: 1, admin: 2 }

export interface AdminDeps {
  readonly dataDir: string
  /** Refused callers are logged (address and route, never the token). */
  readonly logger?: Logger
  readonly metrics: MetricsRegistry
  readonly issued: IssuedTokens
  readonly reviews: Reviews
  readonly sessions: { list(): LiveSession[]; terminate(id: string, by: string, reason?: string): boolean }
  /** Every listener open and the gateway not stopping. */
  readonly ready: () => boolean
  /** Sets the gauges that are read at scrape time (sessions open, requests held). */
  readonly beforeScrape: () => void
  /** Proves a bearer token that is not an admin token (admin.authenticate): its caller and role. */
  readonly bearer?: ((token: string, client: string) => Promise<{ id: string; role: AdminRole | undefined } | undefined>) | undefined
  /** The audit as a sink that can read it back stores it (audit-jsonl), when one is configured. */
  readonly audit: ((filter: AuditQuery) => Promise<AuditEvent[]>) | undefined
}

const ID = { type: 'object', properties: { id: { type: 'string' } }, required: ['id'] } as const
const REASON = { type: 'object', properties: { reason: { type: 'string', maxLength: 1024 } } } as const

/** Probes answer without a token: they say nothing but up or not, and a kubelet holds no secret. */
const OPEN_ROUTES = new Set(['/healthz', '/readyz'])

export async function startAdmin(config: AdminConfig, deps: AdminDeps): Promise<{ app: FastifyInstance; port: number }> {
  const callersConfigured = config.tokens.map((t, i) => {
    const entry = typeof t === 'string' ? { id: `admin#${i}`, hash: t, role: 'admin' as const } : t
    const h = parseTokenHash(entry.hash)
    if (!h) throw new Error(`admin.tokens[${i}]: not a token hash (use \`gatehouse token issue --identity admin\`)`)
    return { id: entry.id, role: entry.role, hash: h }
  })
  const app = Fastify({ logger: false })
  // The OpenAPI document, generated from the routes' own schemas, at /openapi.json.
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'Gatehouse admin API', version: '1', description: 'Operators: sessions, issued tokens, held requests, metrics and recordings. Bearer admin tokens; roles auditor < approver < admin.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  })
  app.addHook('onRequest', async (req, reply) => {
    if (OPEN_ROUTES.has(req.routeOptions.url ?? '') && req.method === 'GET') return
    const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')
    // Same check as identity tokens: constant time, every hash tried, the key derivation off the event loop.
    let who: { id: string; role: AdminRole } | undefined
    if (m !== null) for (const c of callersConfigured) if ((await verifyTokenAsync(m[1] as string, c.hash)) && who === undefined) who = c
    if (who === undefined && m !== null && deps.bearer) {
      // not an admin token: an authenticate plugin (a JWT from the identity provider) may prove it
      const proved = await deps.bearer(m[1] as string, req.ip)
      if (proved && proved.role === undefined) {
        deps.logger?.warn({ client: req.ip, route: `${req.method} ${req.routeOptions.url ?? req.url}`, caller: proved.id }, 'admin API caller refused: no role')
        return reply.code(403).send({ error: `forbidden: ${proved.id} is in no group that holds an admin role (admin.roles)` })
      }
      if (proved) who = { id: proved.id, role: proved.role as AdminRole }
    }
    if (who === undefined) {
      deps.logger?.warn({ client: req.ip, route: `${req.method} ${req.routeOptions.url ?? req.url}` }, 'admin API caller refused: no valid token')
      return reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'unauthorized' })
    }
    callers.set(req, who)
    const needed = neededRole(req.method, req.routeOptions.url ?? req.url)
    if (RANK[who.role] < RANK[needed]) {
      deps.logger?.warn({ client: req.ip, route: `${req.method} ${req.routeOptions.url ?? req.url}`, caller: who.id, role: who.role, needed }, 'admin API caller refused: role too low')
      return reply.code(403).send({ error: `forbidden: this needs the ${needed} role; ${who.id} has ${who.role}` })
    }
  })
  const callers = new WeakMap<object, { id: string; role: AdminRole }>()
  const caller = (req: object) => callers.get(req)?.id ?? 'admin'

  // Tokens issued at run time: shown once, stored as a hash, scoped, expiring, revocable.
  app.post<{ Body: { identity: string; connections?: string[]; ttl: string; description?: string } }>(
    '/tokens',
    {
      schema: {
        summary: 'issue a short-lived token (shown once)',
        tags: ['tokens'],
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
  app.get<{ Querystring: { identity?: string; all?: string } }>('/tokens', { schema: { summary: 'issued tokens, newest first (never their hashes)', tags: ['tokens'], querystring: { type: 'object', properties: { identity: { type: 'string' }, all: { type: 'string', enum: ['true', 'false'] } } } } }, async (req, reply) => {
    try {
      const tokens = await deps.issued.list({ ...(req.query.identity ? { identity: req.query.identity } : {}), includeInactive: req.query.all === 'true' })
      return { tokens: tokens.map(publicToken) }
    } catch (err) {
      return refusal(reply, err)
    }
  })
  app.delete<{ Params: { id: string }; Querystring: { reason?: string } }>('/tokens/:id', { schema: { summary: 'revoke an issued token; its sessions end at once', tags: ['tokens'], params: ID, querystring: REASON } }, async (req, reply) => {
    try {
      const revoked = await deps.issued.revoke(req.params.id, caller(req), req.query.reason)
      if (!revoked) return reply.code(404).send({ error: 'no such token' })
      return publicToken(revoked)
    } catch (err) {
      return refusal(reply, err)
    }
  })
  // Held requests: list, show, approve (with an optional grant), deny.
  app.get<{ Querystring: { status?: string; connection?: string } }>('/reviews', { schema: { summary: 'reviews of held requests (pending by default)', tags: ['reviews'], querystring: { type: 'object', properties: { status: { type: 'string', enum: ['pending', 'approved', 'denied', 'expired', 'all'] }, connection: { type: 'string' } } } } }, async (req, reply) => {
    const status = req.query.status ?? 'pending'
    if (!['pending', 'approved', 'denied', 'expired', 'all'].includes(status)) return reply.code(400).send({ error: 'status is one of pending, approved, denied, expired, all' })
    try {
      const reviews = await deps.reviews.list({ ...(status === 'all' ? {} : { status: status as ReviewStatus }), ...(req.query.connection ? { connection: req.query.connection } : {}) })
      return { reviews }
    } catch (err) {
      return refusal(reply, err)
    }
  })
  app.get<{ Params: { id: string } }>('/reviews/:id', { schema: { summary: 'one review: the request as the approver sees it', tags: ['reviews'], params: ID } }, async (req, reply) => {
    try {
      const review = await deps.reviews.get(req.params.id)
      return review ?? reply.code(404).send({ error: 'no such review' })
    } catch (err) {
      return refusal(reply, err)
    }
  })
  const voteSchema = {
    tags: ['reviews'],
    params: ID,
    body: {
      type: 'object',
      additionalProperties: false,
      properties: {
        reason: { type: 'string', maxLength: 1024 },
        grant: {
          type: 'object',
          additionalProperties: false,
          required: ['minutes'],
          properties: {
            minutes: { type: 'integer', minimum: 1, maximum: 1440 },
            match: { type: 'object', description: 'what later requests must match (attribute → allowed values); default: the same action, statement kind and tables' },
          },
        },
      },
    },
  }
  type VoteBody = { reason?: string; grant?: { minutes: number; match?: Record<string, unknown> } } | undefined
  for (const approve of [true, false]) {
    // a vote without a body (curl -X POST …/approve) is a vote without reason or grant
    const noBody = async (req: { body: unknown }) => {
      req.body ??= {}
    }
    app.post<{ Params: { id: string }; Body: VoteBody }>(`/reviews/:id/${approve ? 'approve' : 'deny'}`, { schema: { ...voteSchema, summary: approve ? 'approve a held request (optionally with a grant)' : 'deny a held request' }, preValidation: noBody }, async (req, reply) => {
      const body = req.body ?? {}
      if (!approve && body.grant) return reply.code(400).send({ error: 'a denial carries no grant' })
      try {
        const r = await deps.reviews.decide(req.params.id, { by: caller(req), approve, ...(body.reason ? { reason: body.reason } : {}), at: Date.now() }, body.grant)
        if (r.result === 'not-found') return reply.code(404).send({ error: 'no such review' })
        if (r.result === 'self-approval') return reply.code(403).send({ error: 'a requester cannot decide its own request', review: r.review })
        if (r.result === 'already-decided' || r.result === 'already-voted' || r.result === 'expired') return reply.code(409).send({ error: r.result, review: r.review })
        return { result: r.result, review: r.review, ...(r.grant ? { grant: r.grant } : {}) }
      } catch (err) {
        return refusal(reply, err)
      }
    })
  }

  // Grants given with approvals: listed, and revoked by an approver when one was a mistake.
  app.get<{ Querystring: { principal?: string; connection?: string } }>(
    '/grants',
    { schema: { summary: 'grants in force now', tags: ['reviews'], querystring: { type: 'object', properties: { principal: { type: 'string' }, connection: { type: 'string' } } } } },
    async (req, reply) => {
      try {
        const grants = await deps.reviews.grants({ ...(req.query.principal ? { principal: req.query.principal } : {}), ...(req.query.connection ? { connection: req.query.connection } : {}) })
        return { grants: grants.map((g) => ({ ...g, createdAt: new Date(g.createdAt).toISOString(), expiresAt: new Date(g.expiresAt).toISOString() })) }
      } catch (err) {
        return refusal(reply, err)
      }
    },
  )
  app.delete<{ Params: { id: string } }>('/grants/:id', { schema: { summary: 'revoke a grant now', tags: ['reviews'], params: ID } }, async (req, reply) => {
    try {
      const g = await deps.reviews.revokeGrant(req.params.id, caller(req))
      return g ?? reply.code(404).send({ error: 'no such grant' })
    } catch (err) {
      return refusal(reply, err)
    }
  })

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())
  app.get('/metrics', { schema: { summary: 'Prometheus metrics', tags: ['operations'] } }, async (_req, reply) => {
    deps.beforeScrape()
    return reply.type('text/plain; version=0.0.4').send(await deps.metrics.text())
  })
  app.get('/healthz', { schema: { summary: 'liveness probe (no token)', tags: ['operations'], security: [] } }, async () => ({ status: 'ok' }))
  app.get('/readyz', { schema: { summary: 'readiness probe (no token): every listener open, not shutting down', tags: ['operations'], security: [] } }, async (_req, reply) => (deps.ready() ? { status: 'ready' } : reply.code(503).send({ status: 'not ready' })))

  // Sessions open now, on every connection; an operator can end one.
  app.get<{ Querystring: { connection?: string; principal?: string } }>('/sessions', { schema: { summary: 'sessions open now', tags: ['sessions'], querystring: { type: 'object', properties: { connection: { type: 'string' }, principal: { type: 'string' } } } } }, async (req) => {
    const sessions = deps.sessions
      .list()
      .filter((s) => (req.query.connection === undefined || s.connection === req.query.connection) && (req.query.principal === undefined || s.principal === req.query.principal))
      .map((s) => ({ ...s, startedAt: new Date(s.startedAt).toISOString(), lastActive: new Date(s.lastActive).toISOString() }))
    return { sessions }
  })
  // The audit, read back: by session, principal, connection, action, verdict, type and time.
  const auditQuery = {
    type: 'object',
    additionalProperties: false,
    properties: {
      session: { type: 'string' },
      principal: { type: 'string' },
      connection: { type: 'string' },
      action: { type: 'string' },
      verdict: { type: 'string', enum: ['allow', 'deny', 'review'] },
      type: { type: 'string' },
      request: { type: 'string' },
      from: { type: 'string', format: 'date-time' },
      to: { type: 'string', format: 'date-time' },
      limit: { type: 'integer', minimum: 1, maximum: 10_000, default: 100 },
    },
  } as const
  type AuditQueryString = { session?: string; principal?: string; connection?: string; action?: string; verdict?: string; type?: string; request?: string; from?: string; to?: string; limit: number }
  const readAudit = async (reply: FastifyReply, q: AuditQueryString) => {
    if (!deps.audit) return reply.code(501).send({ error: 'no configured audit sink can be read back (audit-jsonl can)' })
    const { from, to, ...rest } = q
    try {
      return { events: await deps.audit({ ...rest, ...(from ? { from: Date.parse(from) } : {}), ...(to ? { to: Date.parse(to) } : {}) }) }
    } catch (err) {
      return refusal(reply, err)
    }
  }
  app.get<{ Querystring: AuditQueryString }>('/audit', { schema: { summary: 'audit events, newest first', tags: ['audit'], querystring: auditQuery } }, async (req, reply) => readAudit(reply, req.query))
  app.get<{ Params: { id: string }; Querystring: { limit: number } }>(
    '/sessions/:id/events',
    { schema: { summary: "a session's audit events, newest first", tags: ['sessions'], params: ID, querystring: { type: 'object', properties: { limit: { type: 'integer', minimum: 1, maximum: 10_000, default: 1000 } } } } },
    async (req, reply) => readAudit(reply, { session: req.params.id, limit: req.query.limit }),
  )

  app.delete<{ Params: { id: string }; Querystring: { reason?: string } }>('/sessions/:id', { schema: { summary: 'end a session now', tags: ['sessions'], params: ID, querystring: REASON } }, async (req, reply) => {
    if (!deps.sessions.terminate(req.params.id, caller(req), req.query.reason)) return reply.code(404).send({ error: 'no such session open' })
    return { terminated: req.params.id }
  })
  app.get<{ Params: { session: string } }>('/recordings/:session', { schema: { summary: "a session's terminal recordings", tags: ['recordings'], params: { type: 'object', properties: { session: { type: 'string' } }, required: ['session'] } } }, async (req) => ({
    session: req.params.session,
    recordings: recordingsOf(deps.dataDir, req.params.session).map((f) => basename(f)),
  }))
  app.get<{ Params: { session: string; file: string } }>('/recordings/:session/:file', { schema: { summary: 'one recording (asciicast v2)', tags: ['recordings'], params: { type: 'object', properties: { session: { type: 'string' }, file: { type: 'string' } }, required: ['session', 'file'] } } }, async (req, reply) => {
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

/** The least role a route needs: reading is for auditors, deciding reviews for approvers, the rest for admins. */
function neededRole(method: string, url: string): AdminRole {
  if (method === 'GET' || method === 'HEAD') return 'auditor'
  if (/^\/reviews\/[^/]+\/(approve|deny)$/.test(url) || url.startsWith('/reviews/:id/') || url === '/grants/:id') return 'approver'
  return 'admin'
}
