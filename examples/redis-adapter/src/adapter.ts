/** The redis adapter's listener: Redis clients (redis-cli, client libraries) connect here as to a Redis server. */
import { createHash } from 'node:crypto'
import { createServer, type Socket } from 'node:net'
import { acceptTls, GatewayError, listenerTls, parseHostPort, serveListener, validate, type ConnectionConfig, type ExplainedRequest, type ExplainInput, type Listener, type Logger, type Pipeline, type ProtocolAdapter } from '@gatehouse/core'
import { commandTable, enumeratedPatterns, opaqueReason, type CommandSpec } from './commands.js'
import { RedisLimits, RedisOptions, UpstreamSchema } from './config.js'
import { RedisSession, textOf } from './session.js'
import { encodeCommand, prefixed, type Command } from './resp.js'
import { UpstreamConnection } from './upstream.js'

export const REDIS_ACTIONS = ['redis.command'] as const

export class RedisAdapter implements ProtocolAdapter {
  readonly protocol = 'redis'
  readonly actions = REDIS_ACTIONS
  readonly limits = RedisLimits

  constructor(private readonly logger: Logger) {}

  checkConnection(connection: ConnectionConfig, path: string): void {
    const upstream = validate(UpstreamSchema, connection.upstream, { base: `${path}.upstream` })
    const options = validate(RedisOptions, connection.options ?? {}, { base: `${path}.options` })
    if ((upstream.tls.cert === undefined) !== (upstream.tls.key === undefined)) throw new GatewayError('GH_ERR_CONFIG_INVALID', `${path}.upstream.tls: a client certificate needs both cert and key`)
    if (upstream.tls.mode === 'disable' && (upstream.tls.ca ?? upstream.tls.cert ?? upstream.tls.servername) !== undefined) throw new GatewayError('GH_ERR_CONFIG_INVALID', `${path}.upstream.tls: ca, cert and servername are used only with mode require or verify-full; set the mode`)
    // AUTH and HELLO carry the caller's token as it is: beyond loopback only over TLS
    if (!connection.tls?.required && !options.plaintextTokens && !isLoopback(parseHostPort(connection.listen).host)) {
      throw new GatewayError('GH_ERR_CONFIG_INVALID', `${path}: listening on ${connection.listen} without tls.required: true would take callers' tokens in plain text over the network (AUTH carries them as they are); add tls (cert, key, required: true), listen on loopback, or set options.plaintextTokens: true where a mesh or tunnel encrypts the link`)
    }
  }

  /** `gatehouse policy explain --command "SET k v"`: by position only (explain connects nowhere, so movable keys are not asked of a server). */
  async explain(input: ExplainInput): Promise<readonly ExplainedRequest[]> {
    if (input.command === undefined) throw new GatewayError('GH_ERR_CONFIG_INVALID', 'a redis connection is explained with --command "SET key value"')
    const argv = input.command.trim().split(/\s+/).map((w) => Buffer.from(w))
    const command = (argv[0] as Buffer).toString('utf8').toLowerCase()
    // without the server's table, every script runner counts as scripting
    const opaque = opaqueReason(command, argv, true)
    const patterns = enumeratedPatterns(command, argv[1]?.toString('utf8').toLowerCase(), argv)
    return [{ action: 'redis.command', text: textOf(argv), attrs: { redis: { command, keys: argv.slice(1, 2).map(String), ...(opaque ? { opaque: true, code: [opaque] } : {}), enumerates: patterns !== undefined, ...(patterns ? { patterns } : {}), note: 'explained without the server: keys by position' } } }]
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
          .then((c) => c.ask(encodeCommand(['COMMAND'])))
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
    const tls = listenerTls(connection.tls)
    const listener = createServer({ noDelay: true }, (socket) => {
      const slot = accepting ? pipeline.admitConnection(socket.remoteAddress ?? '', 'redis', () => socket.destroy()) : undefined
      if (!slot) {
        socket.destroy()
        return
      }
      socket.on('error', () => socket.destroy())
      // released however the connection ends, before or after its session starts
      socket.once('close', () => slot.release())
      const client = { address: socket.remoteAddress ?? '?', port: socket.remotePort ?? 0 }
      const start = (stream: Socket, encrypted: boolean) => {
        const session = new RedisSession(stream, { pipeline, upstream, logger, slot, limits, server, secrets, client, tls: encrypted })
        sessions.add(session)
        stream.once('close', () => sessions.delete(session))
      }
      if (!tls) return start(socket, false)
      // Redis has no STARTTLS: TLS from the first byte (a command starts with `*`, a handshake with 0x16)
      acceptTls(socket, tls, start, (err) => logger.warn({ client: client.address, err: err.message }, 'TLS handshake failed: connection refused'))
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

/** Whether `host` (as `listen` names it) is this machine's loopback. */
function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^(?:::ffff:)?127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
}
