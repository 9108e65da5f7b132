/** The mongodb adapter's listener: MongoDB clients (drivers, mongosh) connect here as to a mongod. */
import { createServer, type Socket } from 'node:net'
import { BSON } from 'bson'
import { acceptTls, GatewayError, inject, injectable, listenerTls, PluginContextToken, serveListener, validate, type ConnectionConfig, type ExplainedRequest, type ExplainInput, type Listener, type Logger, type Pipeline, type PluginContext, type ProtocolAdapter } from '@gatehouse/core'
import { analyseCommand, commandName } from './command.js'
import { plainDbRefs } from './codec/dbref.js'
import { MongoLimits, MongoOptions, UpstreamConfig } from './config.js'
import { MongoSession } from './session.js'
import { Upstream } from './upstream.js'

/** Every action the adapter produces. */
export const MONGO_ACTIONS = ['mongo.command'] as const

@injectable()
export class MongoAdapter implements ProtocolAdapter {
  readonly protocol = 'mongodb'
  readonly actions = MONGO_ACTIONS
  readonly limits = MongoLimits
  private readonly logger: Logger

  constructor(@inject(PluginContextToken) ctx: PluginContext) {
    this.logger = ctx.logger
  }

  checkConnection(connection: ConnectionConfig, path: string): void {
    validate(UpstreamConfig, connection.upstream, { base: `${path}.upstream` })
    validate(MongoOptions, connection.options ?? {}, { base: `${path}.options` })
  }

  /** `gatehouse policy explain --command '{"find": "users", "filter": {…}, "$db": "app"}'` (extended JSON). */
  async explain(input: ExplainInput): Promise<readonly ExplainedRequest[]> {
    if (input.command === undefined) throw new GatewayError('GH_ERR_CONFIG_INVALID', 'a mongodb connection is explained with --command \'{"find": "users", "filter": {…}, "$db": "app"}\' (a command in extended JSON)')
    let doc: BSON.Document
    try {
      doc = BSON.EJSON.parse(input.command, { relaxed: false }) as BSON.Document
    } catch (err) {
      return [{ action: 'mongo.command', text: input.command, attrs: {}, refusal: { rule: 'gatehouse/parse', reason: `not a command in extended JSON: ${(err as Error).message}` } }]
    }
    // read it back as the wire would carry it
    doc = plainDbRefs(BSON.deserialize(BSON.serialize(doc), { promoteValues: false, bsonRegExp: true }))
    const db = typeof doc.$db === 'string' ? doc.$db : 'admin'
    return [{ action: 'mongo.command', text: input.command, attrs: { mongo: { ...analyseCommand(doc, db), command: commandName(doc) } } }]
  }

  async listen(connection: ConnectionConfig, pipeline: Pipeline, signal: AbortSignal): Promise<Listener> {
    const upstream = new Upstream(validate(UpstreamConfig, connection.upstream))
    const options = validate(MongoOptions, connection.options ?? {})
    const tls = listenerTls(connection.tls)
    const logger = this.logger.child({ connection: connection.name })
    const limits = () => pipeline.limits.adapter as MongoLimits
    const sessions = new Set<MongoSession>()
    const monitors = { count: 0, bySource: new Map<string, number>() }
    const lsids = new Map<string, { readonly identity: string; readonly sessions: Set<MongoSession> }>()
    let connectionIds = 0
    let accepting = true

    const start = (socket: Socket, slot: NonNullable<ReturnType<Pipeline['admitConnection']>>, client: { address: string; port: number; local: string }) => {
      const session = new MongoSession(socket, { connection: connection.name, pipeline, upstream, logger, slot, limits, connectionId: ++connectionIds, advertise: options.advertise, monitors, lsids, client })
      sessions.add(session)
      // the slot is released when the client's socket closes (below)
      socket.once('close', () => sessions.delete(session))
    }

    const server = createServer({ noDelay: true }, (socket) => {
      const slot = accepting ? pipeline.admitConnection(socket.remoteAddress ?? '', 'mongodb', () => socket.destroy()) : undefined
      if (!slot) {
        socket.destroy()
        return
      }
      socket.on('error', () => socket.destroy())
      const client = { address: socket.remoteAddress ?? '?', port: socket.remotePort ?? 0, local: hostPort(socket.localAddress ?? '127.0.0.1', socket.localPort ?? 0) }
      // released however the connection ends, before or after its session starts (releasing twice is harmless)
      socket.once('close', () => slot.release())
      if (!tls) return start(socket, slot, client)
      // MongoDB has no STARTTLS: TLS starts with the first byte, which tells the two apart (as mongod's allowTLS does)
      acceptTls(socket, tls, (stream) => start(stream, slot, client), (err) => {
        // no session exists yet to record it against (a plaintext client of a TLS-only listener ends here): a log line
        logger.warn({ client: client.address, err: err.message }, 'TLS handshake failed: connection refused')
      })
    })
    server.on('error', (err: Error) => logger.error({ err: err.message }, 'listener error'))
    signal.addEventListener('abort', () => void upstream.close(), { once: true })
    return serveListener(server, connection.listen, {
      sessions: { get size() { return sessions.size }, [Symbol.iterator]: () => sessions[Symbol.iterator]() },
      signal,
      stopAccepting: () => {
        accepting = false
      },
    })
  }
}

function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}
