/**
 * The admin API (docs/architecture.md, "Boot, start and shutdown"; configured as in
 * docs/configuration.md, "Admin API"): a small HTTP listener for operators, separate from the
 * protocol listeners. Every route needs `Authorization: Bearer <admin token>`; tokens are
 * stored as hashes under `admin.tokens` (from `gatehouse token hash`/`issue`).
 *
 * Routes: `GET /metrics` (Prometheus), `GET /recordings/:session` (the session's recordings),
 * `GET /recordings/:session/:file` (one asciicast file).
 */
import Fastify, { type FastifyInstance } from 'fastify'
import { existsSync, readFileSync } from 'node:fs'
import { basename } from 'node:path'
import { parseTokenHash, verifyTokenAsync } from './auth/tokens.js'
import { recordingsOf } from './cli/replay.js'
import type { MetricsRegistry } from './metrics.js'
import { parseHostPort } from './net.js'

export interface AdminConfig {
  readonly listen: string
  readonly tokens: readonly string[]
}

export async function startAdmin(config: AdminConfig, deps: { dataDir: string; metrics: MetricsRegistry }): Promise<{ app: FastifyInstance; port: number }> {
  const hashes = config.tokens.map((t, i) => {
    const h = parseTokenHash(t)
    if (!h) throw new Error(`admin.tokens[${i}]: not a token hash (use \`gatehouse token issue --identity admin\`)`)
    return h
  })
  const app = Fastify({ logger: false })
  app.addHook('onRequest', async (req, reply) => {
    const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')
    // Same check as identity tokens: constant time, every hash tried, the key derivation off the event loop.
    let ok = false
    if (m !== null) for (const h of hashes) if (await verifyTokenAsync(m[1] as string, h)) ok = true
    if (!ok) return reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'unauthorized' })
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
