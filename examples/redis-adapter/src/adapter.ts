/** The redis adapter's listener: Redis clients (redis-cli, client libraries) connect here as to a Redis server. */
import { createHash } from 'node:crypto'
import { createServer } from 'node:net'
import { GatewayError, serveListener, validate, type ConnectionConfig, type ExplainedRequest, type ExplainInput, type Listener, type Logger, type Pipeline, type ProtocolAdapter } from '@gatehouse/core'
import { commandTable, opaqueReason, type CommandSpec } from './commands.js'
import { RedisLimits, UpstreamSchema } from './config.js'
import { RedisSession, textOf } from './session.js'
import { prefixed, type Command } from './resp.js'
import { UpstreamConnection } from './upstream.js'

export const REDIS_ACTIONS = ['redis.command'] as const

export class RedisAdapter implements ProtocolAdapter {
  readonly protocol = 'redis'
  readonly actions = REDIS_ACTIONS
  readonly limits = RedisLimits

  constructor(private readonly logger: Logger) {}

  checkConnection(connection: ConnectionConfig, path: string): void {
    validate(UpstreamSchema, connection.upstream, { base: `${path}.upstream` })
    if (connection.tls) throw new GatewayError('GH_ERR_CONFIG_INVALID', `${path}.tls: the redis adapter does not terminate TLS yet`)
  }

  /** `gatehouse policy explain --command "SET k v"`: by position only (explain connects nowhere, so movable keys are not asked of a server). */
  async explain(input: ExplainInput): Promise<readonly ExplainedRequest[]> {
    if (input.command === undefined) throw new GatewayError('GH_ERR_CONFIG_INVALID', 'a redis connection is explained with --command "SET key value"')
    const argv = input.command.trim().split(/\s+/).map((w) => Buffer.from(w))
    const command = (argv[0] as Buffer).toString('utf8').toLowerCase()
    // without the server's table, every script runner counts as scripting
    const opaque = opaqueReason(command, argv, true)
    return [{ action: 'redis.command', text: textOf(argv), attrs: { redis: { command, keys: argv.slice(1, 2).map(String), ...(opaque ? { opaque: true, code: [opaque] } : {}), note: 'explained without the server: keys by position' } } }]
  }

  async listen(connection: ConnectionConfig, pipeline: Pipeline, signal: AbortSignal): Promise<Listener> {
    const upstream = validate(UpstreamSchema, connection.upstream)
    const secrets = upstream.password ? [Buffer.from(upstream.password), Buffer.from(createHash('sha256').update(upstream.password).digest('hex'))] : []
    const logger = this.logger.child({ connection: connection.name })
    const limits = () => pipeline.limits.adapter as RedisLimits
    const sessions = new Set<RedisSession>()
    // The server's command table and COMMAND GETKEYS are asked on a connection of their own: on a
    // session's connection inside MULTI they would be queued, not answered.
    let metadata: Promise<UpstreamConnection> | undefined
    const metadataConnection = async (): Promise<UpstreamConnection> => {
      const open = await (metadata ??= UpstreamConnection.open(upstream, 2, limits().upstreamTimeoutMs).then((o) => o.conn))
      if (!open.closed) return open
      metadata = undefined
      return metadataConnection()
    }
    let table: Promise<ReadonlyMap<string, CommandSpec>> | undefined
    const server = {
      commandTable: () =>
        (table ??= metadataConnection()
          .then((c) => c.ask(['COMMAND']))
          .then(commandTable)
          .catch((err: unknown) => {
            table = undefined
            metadata = undefined
            throw err
          })),
      getKeys: async (command: Command) => (await metadataConnection()).ask(prefixed(['COMMAND', 'GETKEYS'], command)),
    }
    signal.addEventListener('abort', () => void metadata?.then((c) => c.close(), () => undefined), { once: true })
    let accepting = true
    const listener = createServer({ noDelay: true }, (socket) => {
      const slot = accepting ? pipeline.admitConnection(socket.remoteAddress ?? '', 'redis', () => socket.destroy()) : undefined
      if (!slot) {
        socket.destroy()
        return
      }
      const session = new RedisSession(socket, { pipeline, upstream, logger, slot, limits, server, secrets })
      sessions.add(session)
      socket.once('close', () => {
        sessions.delete(session)
        slot.release()
      })
    })
    listener.on('error', (err: Error) => logger.error({ err: err.message }, 'listener error'))
    return serveListener(listener, connection.listen, {
      sessions: { get size() { return sessions.size }, [Symbol.iterator]: () => sessions[Symbol.iterator]() },
      signal,
      stopAccepting: () => {
        accepting = false
      },
    })
  }
}

