/** The postgres adapter's listener: accepts clients and runs a session for each. */
import { createServer, type Server, type Socket } from 'node:net'
import { X509Certificate } from 'node:crypto'
import { createSecureContext } from 'node:tls'
import { checkMovedOptions, GatewayError, inject, tlsServerEndPoint, injectable, serveListener, PluginContextToken, validate, type PluginContext, type ConnectionConfig, type Listener, type Logger, type Pipeline, type ProtocolAdapter, type ExplainInput, type ExplainedRequest } from '@gatehouse/core'
import { MOVED_OPTIONS, PostgresLimits, PostgresOptions, UpstreamConfig } from './config.js'
import { explainSql, PostgresSession } from './session.js'
import { loadSqlParser, SqlAnalyzer } from './sql/analyze.js'
import { BackgroundParser } from './sql/background.js'
import { buildError } from './codec/backend.js'
import { SQLSTATE } from './errors.js'
import { FunctionOids } from './function-oids.js'
import { queryUpstream } from './upstream.js'

@injectable()
export class PostgresAdapter implements ProtocolAdapter {
  readonly protocol = 'postgres'
  readonly actions = ['sql.query'] as const
  /** Its own limits, under `limits.postgres`. */
  readonly limits = PostgresLimits
  /** Parses every text the analysis cache has not seen, off the event loop, with a time budget. */
  private readonly background = new BackgroundParser()
  /** Shared across connections: analysis depends only on the SQL text. */
  readonly analyzer = new SqlAnalyzer(8192, this.background)

  private readonly logger: Logger

  constructor(@inject(PluginContextToken) ctx: PluginContext) {
    this.logger = ctx.logger
  }

  checkConnection(connection: ConnectionConfig, path: string): void {
    checkMovedOptions(connection.options, path, MOVED_OPTIONS)
    const options = validate(PostgresOptions, connection.options ?? {}, { base: `${path}.options` })
    validate(UpstreamConfig, connection.upstream, { base: `${path}.upstream` })
    if (options.clientAuth === 'cleartext' && !connection.tls?.required) {
      throw new GatewayError('GH_ERR_CONFIG_INVALID', `${path}.options.clientAuth: cleartext tokens need TLS; set ${path}.tls with required: true`)
    }
  }

  /** At gateway shutdown, after sessions ended: stops the background parser. */
  async close(): Promise<void> {
    await this.background.close()
  }

  async explain(input: ExplainInput): Promise<readonly ExplainedRequest[]> {
    if (input.sql === undefined) throw new GatewayError('GH_ERR_CONFIG_INVALID', 'a postgres connection is explained with --sql')
    await loadSqlParser()
    return explainSql(this.analyzer, input.sql)
  }

  async listen(connection: ConnectionConfig, pipeline: Pipeline, signal: AbortSignal): Promise<Listener> {
    await loadSqlParser()
    this.background.warm()
    const upstream = validate(UpstreamConfig, connection.upstream)
    const options = validate(PostgresOptions, connection.options ?? {})
    const binding = connection.tls ? tlsServerEndPoint(Buffer.from(new X509Certificate(connection.tls.cert).raw)) : undefined
    const tls = connection.tls ? { context: createSecureContext({ cert: connection.tls.cert, key: connection.tls.key }), required: connection.tls.required, ...(binding ? { channelBinding: binding } : {}) } : undefined
    const logger = this.logger.child({ connection: connection.name })
    const cancelKeys = new Map<string, PostgresSession>()
    const functionOids = new FunctionOids((sql) => queryUpstream(upstream, sql, signal))
    const sessions = new Set<PostgresSession>()
    let accepting = true
    const server: Server = createServer({ noDelay: true }, (socket: Socket) => {
      if (!accepting) {
        socket.end(buildError({ severity: 'FATAL', code: SQLSTATE.adminShutdown, message: 'gatehouse: the gateway is shutting down' }))
        return
      }
      // core's limits: how many may be logging in at once, in all and from one source address
      let session: PostgresSession | undefined
      const slot = pipeline.admitConnection(socket.remoteAddress ?? '', 'postgres', () => session?.loginTimedOut())
      if (!slot) {
        socket.end(buildError({ severity: 'FATAL', code: SQLSTATE.tooManyConnections, message: 'gatehouse: too many connections are logging in from this address; try again later' }))
        return
      }
      const started = new PostgresSession(socket, { connection, upstream, options, tls, pipeline, analyzer: this.analyzer, logger, cancelKeys, functionOids, loggedIn: () => slot.authenticated() })
      session = started
      sessions.add(started)
      socket.once('close', () => {
        sessions.delete(started)
        slot.release()
      })
      started.start()
    })
    server.on('error', (err) => logger.error({ err: err.message }, 'listener error'))
    return serveListener(server, connection.listen, {
      sessions,
      signal,
      stopAccepting: () => {
        accepting = false
      },
    })
  }
}
