/**
 * One client session of the PostgreSQL adapter: handshake, authentication through core, the
 * upstream login, then the message relay with one request per statement text and per execution.
 *
 * Why it is shaped this way:
 * - What the upstream session holds (statements, portals, settings) is the SessionModel's
 *   (session-model.ts), whose invariants say why the gateway cannot judge one text while the
 *   server runs another: every statement and portal the server sees is named by the gateway,
 *   once. This file is the relay around it: it renames the client's names, judges, and routes
 *   the server's answers back to the model.
 * - Every backend message is attributed to the oldest outstanding client message (a FIFO of
 *   expectations), which is how PostgreSQL itself orders responses. This lets the gateway count
 *   rows and errors per statement, and put its own error exactly where PostgreSQL would have.
 * - A statement is judged when its text first arrives (Query or Parse: a Parse takes locks and
 *   can fail loudly, so a denied one never reaches the server) and each execution again, with
 *   its parameters (Execute).
 * - A refused statement is not simply dropped: the gateway sends the upstream a statement that
 *   fails, and shows the client its own error in place of the upstream's. The upstream thus
 *   enters the same state PostgreSQL would after an error (an open transaction is aborted, an
 *   extended-protocol pipeline is skipped to Sync), so a refusal can never leave half of an
 *   implicit transaction committed.
 * - After each statement the server's command tag is checked against the statement judged (a
 *   tripwire: a SELECT cannot complete as DELETE unless the model drifted); a mismatch ends the
 *   session and is audited as an integrity event.
 * - While a statement waits for the pipeline (policy, the intent record), reading from the
 *   client pauses; backend data is streamed to the client without being buffered whole.
 */
import { randomBytes } from 'node:crypto'
import { isUtf8 } from 'node:buffer'
import type { Socket } from 'node:net'
import { TLSSocket, type SecureContext } from 'node:tls'
import {
  GatewayError,
  isGatewayError,
  type ExplainedRequest,
  type ConnectionConfig,
  type Admission,
  type ErrorCode,
  type GatewayRequest,
  type HeldNotice,
  holdTerms,
  type Logger,
  type Pipeline,
  type SessionHandle,
  type Termination,
} from '@gatehouse/core'
import type { PostgresLimits } from './config.js'
import { callText, type FunctionName, type FunctionOids } from './function-oids.js'
import { setText, startupSettings } from './startup-settings.js'
import { AUTH, B, buildAuth, buildAuthSasl, buildBackendKeyData, buildError, buildReadyForQuery, parseCommandTag, parseErrorFields, parseParameterStatus, rowsFromTag } from './codec/backend.js'
import {
  buildExecute,
  buildParse,
  buildQuery,
  buildTarget,
  CANCEL_REQUEST,
  F,
  GSSENC_REQUEST,
  PROTOCOL_3_0,
  parseBind,
  parseCancel,
  type BindMessage,
  type ParseMessage,
  parseExecute,
  parseFunctionCall,
  parseParse,
  parsePassword,
  parseSaslInitial,
  parseStartupParams,
  parseTarget,
  renameBind,
  renameParse,
  SSL_REQUEST,
  TERMINATE,
} from './codec/frontend.js'
import { InvalidStartupPacket, MessageReader, MessageTooLarge, ProtocolViolation, type FrontendMessage } from './codec/reader.js'
import type { PostgresOptions, UpstreamConfig } from './config.js'
import { renderError, SQLSTATE } from './errors.js'
import { NO_SUCH_NAME, RESERVED_PREFIX, SessionModel, type NameChange, type ServerStatement } from './session-model.js'
import type { AnalyzedStatement, SqlAnalysis, SqlAnalyzer } from './sql/analyze.js'
import { isAcceptedClientEncoding, mergeExecuted, preparedFacts, type SqlFacts } from './sql/facts.js'
import { tagContradicts } from './sql/tags.js'
import { cancelUpstream, connectUpstream, UpstreamRefused, type UpstreamSession } from './upstream.js'

export interface SessionDeps {
  readonly connection: ConnectionConfig
  readonly upstream: UpstreamConfig
  readonly options: PostgresOptions
  /** `channelBinding`: the certificate's tls-server-end-point data, when its signature algorithm has one. */
  readonly tls: { context: SecureContext; required: boolean; channelBinding?: Buffer } | undefined
  readonly pipeline: Pipeline
  readonly analyzer: SqlAnalyzer
  readonly logger: Logger
  /** Function OIDs to names, for FunctionCall (shared by the connection's sessions). */
  readonly functionOids: FunctionOids
  /** Cancel keys handed to clients → the session that owns them. */
  readonly cancelKeys: Map<string, PostgresSession>
  /** Called once the client has logged in and the upstream is ready: it no longer counts against core's login limits. */
  readonly loggedIn?: () => void
}

/** A statement sent upstream whose outcome is still to be recorded. */
interface Pending {
  readonly request: GatewayRequest | undefined
  rows: number
  /** A SQL-level PREPARE: the statement its name holds once the upstream confirms it. */
  prepares?: { readonly name: string; readonly statement: ServerStatement }
  /** Set at CommandComplete; recorded at ReadyForQuery, when the transaction's fate is known. */
  done?: Outcome
  /** The model's position when it was sent (a transaction's end drops the portals bound before it). */
  at?: number
}

type Outcome = { rows?: number; status?: string; error?: { code: string; message: string }; skipped?: boolean }

type Expectation =
  | { kind: 'query'; stmts: Pending[]; idx: number; substitute?: Buffer; fastpath?: true }
  | { kind: 'parse'; change: NameChange; pending: Pending }
  | { kind: 'bind'; change: NameChange }
  | { kind: 'close'; change: NameChange }
  | { kind: 'describe' }
  /** `copyIn`: a COPY … FROM STDIN; `copyEnded` once the client sent CopyDone or CopyFail for it. */
  | { kind: 'execute'; pending: Pending; copyIn?: true; copyEnded?: true }
  | { kind: 'substitute'; error: Buffer }
  /** `inCopy`: sent while an extended-protocol COPY FROM STDIN may be taking data: the server ignores it once the copy starts. */
  | { kind: 'sync'; inCopy?: true }

/** Sent upstream in place of a refused statement: fails with a syntax error, visibly so in server logs. */
const REFUSAL_SQL = 'gatehouse: statement refused by the gateway'
const STATUS_IDLE = 0x49 // 'I'
const EMPTY = Buffer.alloc(0)

/** Statements whose completion ends the transaction, and with it its portals. */
const ENDS_TRANSACTION: ReadonlySet<string> = new Set(['COMMIT', 'ROLLBACK', 'PREPARE TRANSACTION'])

const keyOf = (pid: number, secret: Buffer) => `${pid}:${secret.toString('hex')}`
const FLUSH = Buffer.from([F.Flush, 0, 0, 0, 4])

/** Whether the request is a COPY … FROM STDIN: the server then takes data from the client. */
function copiesFromClient(request: GatewayRequest | undefined): boolean {
  const copy = (request?.attrs.sql as SqlFacts | undefined)?.copy
  return copy?.direction === 'from' && copy.target === 'client'
}

/** What a client may send while the server takes COPY FROM STDIN data (Flush and Sync it ignores). */
const COPY_IN_MESSAGES: ReadonlySet<number> = new Set([F.CopyData, F.CopyDone, F.CopyFail, F.Flush, F.Sync, F.Terminate])

/** The upstream answered something the gateway did not expect: its view of the session is no longer trustworthy. */
class Desync extends Error {
  constructor(message: string, head: Expectation | undefined) {
    super(`unexpected ${message} while expecting ${head?.kind ?? 'nothing'}`)
  }
}

/**
 * Writes `pieces` in order with one write(2): small pieces (the common case: a few protocol
 * messages, some the gateway built) are joined into one buffer, which costs less than Node's
 * corked writev path; large ones go through cork/uncork without copying. False when the socket
 * asks the caller to wait for 'drain'.
 */
function writeAll(socket: Socket, pieces: readonly Buffer[]): boolean {
  if (pieces.length === 1) return socket.write(pieces[0] as Buffer)
  let total = 0
  for (const p of pieces) total += p.length
  if (total <= JOIN_BELOW) return socket.write(Buffer.concat(pieces as Buffer[], total))
  socket.cork()
  for (const p of pieces) socket.write(p)
  socket.uncork()
  return !socket.writableNeedDrain
}
const JOIN_BELOW = 64 * 1024

export class PostgresSession {
  private client: Socket
  private reader: MessageReader
  private handle: SessionHandle | undefined
  private upstream: UpstreamSession | undefined
  private upSocket: Socket | undefined
  private phase: 'startup' | 'auth' | 'connecting' | 'ready' | 'closed' = 'startup'
  private pumping = false
  /** The pump waits for the server: resumed when `until` holds (or the session closed). */
  private quietWaiter: { until: () => boolean; resolve: () => void } | undefined
  private commitError: { code: string; message: string } | undefined
  private pausedForPump = false
  private readonly expect: Expectation[] = []
  private upQueue: Buffer[] = []
  /** The gateway's model of the upstream session; exists once the upstream login succeeded. */
  private model: SessionModel | undefined
  private discardUntilSync = false
  /** Extended-protocol messages forwarded since the last Sync: the server holds an implicit transaction open. */
  private unsynced = false
  private idleTimer: NodeJS.Timeout | undefined
  private cancelKey: string | undefined
  // backend stream state
  /**
   * A backend message (or its header) that began in an earlier chunk and is not relayed as it
   * streams: its chunks so far, and how many bytes it needs in all. Joined once when complete,
   * never per chunk: a 20 MB ErrorResponse (`SELECT repeat('x', 2e7)::int` quotes its input) would
   * otherwise be copied again with every piece.
   */
  private upPending: { chunks: Buffer[]; bytes: number; need: number } | undefined
  private streamRemaining = 0
  private closeReason: string | undefined

  private get closed(): boolean {
    return this.phase === 'closed'
  }
  private authWaiter: ((msg: FrontendMessage) => void) | undefined
  private user = ''
  private startupParams = new Map<string, string>()

  constructor(
    socket: Socket,
    private readonly deps: SessionDeps,
  ) {
    this.client = socket
    this.reader = new MessageReader(this.limits.messageBytes)
  }

  start(): void {
    this.client.setNoDelay(true)
    this.attachClient(this.client)
  }

  /** The adapter's own limits (limits.postgres), as core resolved them; a config reload replaces them. */
  private get limits(): PostgresLimits {
    return this.deps.pipeline.limits.adapter as PostgresLimits
  }

  /** Core's login timeout passed before the client logged in (core counted and recorded it). */
  loginTimedOut(): void {
    this.fatal(SQLSTATE.protocolViolation, `gatehouse: startup timed out: the client did not log in within ${this.deps.pipeline.limits.unauthenticated.loginTimeoutMs} ms`)
  }

  /** Core ended the session (a limit, or the credential expired or was removed): the client is told why. */
  private readonly renderTermination = (t: Termination): void => {
    const code = t.cause === 'sessions.idle' ? SQLSTATE.idleSessionTimeout : t.cause === 'postgres.transaction-idle' ? SQLSTATE.idleInTransactionTimeout : SQLSTATE.adminShutdown
    this.fatal(code, `gatehouse: terminating the session: ${t.reason}`)
  }

  private attachClient(socket: Socket): void {
    socket.on('data', this.onClientData)
    socket.on('error', this.onClientError)
    socket.on('close', this.onClientClose)
  }

  private detachClient(socket: Socket): void {
    socket.off('data', this.onClientData)
    socket.off('error', this.onClientError)
    socket.off('close', this.onClientClose)
  }

  private readonly onClientData = (chunk: Buffer) => {
    this.reader.push(chunk)
    this.handle?.touch()
    this.flushedForIdle = false
    if (this.idleTimer) {
      clearTimeout(this.idleTimer)
      this.idleTimer = undefined
    }
    if (this.pumping) {
      if (this.reader.buffered > PostgresSession.MAX_BUFFERED_WHILE_WAITING) {
        this.client.pause()
        this.pausedForPump = true
      }
      return
    }
    void this.pump()
  }

  private readonly onClientError = (err: Error) => {
    this.deps.logger.debug({ err: err.message, session: this.handle?.info.id }, 'client socket error')
    this.close(`client error: ${(err as NodeJS.ErrnoException).code ?? err.message}`)
  }

  private readonly onClientClose = () => this.close(this.closeReason ?? 'client disconnected')

  /** Ends the session now: both sockets, the pipeline session, pending outcomes. Idempotent. */
  close(reason: string): void {
    if (this.phase === 'closed') return
    this.phase = 'closed'
    this.closeReason = reason
    clearTimeout(this.idleTimer)
    clearTimeout(this.stallTimer)
    if (this.cancelKey) this.deps.cancelKeys.delete(this.cancelKey)
    this.settle(undefined)
    for (const e of this.expect) this.abandon(e, reason)
    this.expect.length = 0
    this.wakeQuietWaiter()
    if (this.upSocket && !this.upSocket.destroyed) {
      this.upSocket.end(TERMINATE)
      this.upSocket.destroySoon()
    }
    if (!this.client.destroyed) this.client.end()
    setTimeout(() => this.client.destroy(), 1000).unref()
    void this.handle?.end(reason)
  }

  private abandon(e: Expectation, reason: string): void {
    const error = { code: 'GH_ERR_SESSION_CLOSED', message: `session closed before the statement finished: ${reason}` }
    if (e.kind === 'query') for (let i = e.idx; i < e.stmts.length; i++) this.finish(e.stmts[i] as Pending, { error })
    else if (e.kind === 'execute' || e.kind === 'parse') this.finish(e.pending, { error })
  }

  /** Sends a FATAL error and closes (handshake failures, protocol violations). */
  private fatal(code: string, message: string): void {
    if (this.phase === 'closed') return
    if (!this.client.destroyed && this.client.writable) this.client.write(buildError({ severity: 'FATAL', code, message }))
    this.close(this.closeReason ?? message)
  }

  /** The session's handle, opened on first need: events before authentication are recorded under it too. */
  private session(): SessionHandle {
    if (!this.handle) {
      this.handle = this.deps.pipeline.openSession({ protocol: 'postgres', clientAddress: `${this.client.remoteAddress ?? '?'}:${this.client.remotePort ?? 0}`, tls: this.client instanceof TLSSocket })
      this.handle.onTerminate(this.renderTermination)
      this.handle.busyWhen(() => this.working())
    }
    return this.handle
  }

  /** Records a protocol-level event (core logs, counts and audits it). */
  private protocolEvent(event: string, reason: string, attrs?: Record<string, unknown>): Promise<void> {
    return this.deps.pipeline.protocolEvent(this.session().info, { event, reason, ...(attrs ? { attrs } : {}) })
  }

  /**
   * Ends the session with a FATAL the gateway decided on (a connection refused at startup, a
   * protocol violation, a limit), after recording it as a protocol event.
   */
  private endWith(code: string, message: string, event = 'startup.refused', attrs?: Record<string, unknown>): void {
    if (this.closed) return
    void this.protocolEvent(event, message, { sqlstate: code, ...attrs })
    this.fatal(code, message)
  }

  // ---------------------------------------------------------------- client side

  private async pump(): Promise<void> {
    if (this.pumping || this.phase === 'closed') return
    this.pumping = true
    try {
      while (!this.closed) {
        if (this.phase === 'startup') {
          const packet = this.reader.nextStartup()
          if (!packet) break
          // Not paused: the handshake reads its own messages (TLS, SASL) while this awaits.
          const r = this.onStartupPacket(packet.code, packet.body)
          if (r) await r
          continue
        }
        const msg = this.reader.next()
        if (!msg) break
        const r = this.onClientMessage(msg)
        if (r) await r
      }
      this.flushUpstream()
    } catch (err) {
      if (err instanceof InvalidStartupPacket) {
        // as PostgreSQL does: recorded, and the connection closed without an answer
        void this.protocolEvent('protocol.violation', err.message)
        this.close(`protocol violation: ${err.message}`)
      } else if (err instanceof MessageTooLarge) {
        void this.deps.pipeline.limitReached(this.session().info, 'postgres.message-bytes', err.message)
        this.fatal(SQLSTATE.protocolViolation, `gatehouse: ${err.message}`)
      } else if (err instanceof ProtocolViolation) this.endWith(SQLSTATE.protocolViolation, `gatehouse: protocol violation: ${err.message}`, 'protocol.violation')
      else {
        this.deps.logger.error({ err: (err as Error).stack ?? String(err), session: this.handle?.info.id }, 'session failed')
        this.fatal(SQLSTATE.internalError, 'gatehouse: internal error')
      }
    } finally {
      this.pumping = false
      if (this.pausedForPump && !this.closed) {
        this.pausedForPump = false
        this.client.resume()
      }
      this.armIdleTimer()
    }
  }

  /**
   * While the pump awaits a stage, bytes the client keeps sending are only buffered; past this
   * much, reading from the client pauses until the pump has caught up (then `pump` resumes it).
   */
  private static readonly MAX_BUFFERED_WHILE_WAITING = 1 << 20

  // ---------------------------------------------------------------- startup and authentication

  private onStartupPacket(code: number, body: Buffer): Promise<void> | undefined {
    if (code === SSL_REQUEST) {
      if (this.client instanceof TLSSocket) throw new ProtocolViolation('SSLRequest inside TLS')
      if (!this.deps.tls) {
        this.client.write('N')
        return undefined
      }
      // Bytes after SSLRequest but before the TLS handshake would be injected plaintext.
      if (this.reader.buffered > 0) throw new ProtocolViolation('unexpected data after SSLRequest')
      this.client.write('S')
      return this.upgradeTls(this.deps.tls.context)
    }
    if (code === GSSENC_REQUEST) {
      this.client.write('N')
      return undefined
    }
    if (code === CANCEL_REQUEST) {
      const { pid, secret } = parseCancel(body)
      const target = this.deps.cancelKeys.get(keyOf(pid, secret))
      void this.protocolEvent('cancel', target ? 'cancel request forwarded to the session it names' : 'cancel request with an unknown key ignored', target ? { target: target.handle?.info.id } : { pid })
      if (target) target.cancel()
      this.close('cancel request')
      return undefined
    }
    if (code >> 16 !== 3) {
      this.endWith(SQLSTATE.protocolViolation, `gatehouse: unsupported frontend protocol ${code >> 16}.${code & 0xffff}`, 'startup.refused', { protocol: `${code >> 16}.${code & 0xffff}` })
      return undefined
    }
    return this.onStartup(code, parseStartupParams(body))
  }

  private async upgradeTls(context: SecureContext): Promise<void> {
    const plain = this.client
    this.detachClient(plain)
    const secure = new TLSSocket(plain, { isServer: true, secureContext: context })
    this.client = secure
    this.attachClient(secure)
    await new Promise<void>((resolve) => {
      secure.once('secure', () => resolve())
      secure.once('close', () => resolve())
    })
  }

  private async onStartup(code: number, params: Map<string, string>): Promise<void> {
    const tls = this.client instanceof TLSSocket
    if (this.deps.tls?.required && !tls) {
      this.endWith(SQLSTATE.invalidAuthorization, `gatehouse: connection "${this.deps.connection.name}" requires TLS (use sslmode=require or stronger)`)
      return
    }
    const replication = params.get('replication')
    if (replication !== undefined && !['false', 'off', 'no', '0'].includes(replication.toLowerCase())) {
      this.endWith(SQLSTATE.featureNotSupported, 'gatehouse: replication connections are not supported', 'startup.refused', { replication })
      return
    }
    const user = params.get('user')
    if (!user) {
      this.endWith(SQLSTATE.invalidAuthorization, 'gatehouse: no user name in startup packet')
      return
    }
    const encoding = params.get('client_encoding')
    if (encoding !== undefined && !isAcceptedClientEncoding(encoding) && !isSqlAscii(encoding)) {
      this.endWith(SQLSTATE.featureNotSupported, `gatehouse: client_encoding "${encoding}" is not supported: the gateway reads SQL as UTF-8 (connect with client_encoding=UTF8)`, 'startup.refused', { client_encoding: encoding })
      return
    }
    this.user = user
    this.startupParams = params
    // A newer minor protocol or _pq_ options: say what we speak, as PostgreSQL does.
    const unknownOptions = [...params.keys()].filter((k) => k.startsWith('_pq_.'))
    if ((code & 0xffff) !== 0 || unknownOptions.length > 0) {
      const names = Buffer.concat(unknownOptions.map((k) => Buffer.from(`${k}\0`)))
      const body = Buffer.allocUnsafe(8)
      body.writeInt32BE(PROTOCOL_3_0, 0)
      body.writeInt32BE(unknownOptions.length, 4)
      const msg = Buffer.concat([Buffer.from([B.NegotiateProtocolVersion, 0, 0, 0, 0]), body, names])
      msg.writeInt32BE(msg.length - 1, 1)
      this.client.write(msg)
    }
    this.session()
    this.phase = 'auth'
    try {
      if (this.deps.options.clientAuth === 'cleartext') await this.authCleartext()
      else await this.authScram()
    } catch (err) {
      const e = isGatewayError(err) ? err : new GatewayError('GH_ERR_AUTH_FAILED', String(err))
      if (err instanceof ProtocolViolation) throw err
      const sqlstate = e.code === 'GH_ERR_AUTH_SCOPE' ? SQLSTATE.invalidAuthorization : e.code === 'GH_ERR_PROTOCOL' ? SQLSTATE.protocolViolation : SQLSTATE.invalidPassword
      const message = e.code === 'GH_ERR_AUTH_FAILED' ? `gatehouse: authentication failed for user "${user}"` : `gatehouse: ${e.clientMessage}`
      // Core has recorded the failure (auth.failure).
      this.fatal(sqlstate, message)
      return
    }
    if (this.closed) return
    await this.connectUpstream()
  }

  private nextAuthMessage(): Promise<FrontendMessage> {
    return new Promise((resolve) => {
      this.authWaiter = resolve
      this.pumpAuth()
    })
  }

  /** Delivers a buffered authentication message while `pump` is awaiting this session's auth. */
  private pumpAuth(): void {
    if (!this.authWaiter) return
    let msg: FrontendMessage | undefined
    try {
      msg = this.reader.next()
    } catch (err) {
      this.endWith(SQLSTATE.protocolViolation, `gatehouse: protocol violation: ${(err as Error).message}`, 'protocol.violation')
      return
    }
    if (!msg) return
    const waiter = this.authWaiter
    this.authWaiter = undefined
    waiter(msg)
  }

  private readonly onAuthData = () => this.pumpAuth()

  private async authMessage(): Promise<FrontendMessage> {
    this.client.on('data', this.onAuthData)
    try {
      const msg = await this.nextAuthMessage()
      if (msg.type !== F.Password) throw new ProtocolViolation(`expected a password message, got '${String.fromCharCode(msg.type)}'`)
      return msg
    } finally {
      this.client.off('data', this.onAuthData)
    }
  }

  private async authCleartext(): Promise<void> {
    const session = (this.handle as SessionHandle).info
    this.client.write(buildAuth(AUTH.Cleartext))
    const msg = await this.authMessage()
    await this.deps.pipeline.authenticate(session, { kind: 'password', user: this.user, password: parsePassword(msg.body) })
  }

  private async authScram(): Promise<void> {
    const session = (this.handle as SessionHandle).info
    // Over TLS, SCRAM-SHA-256-PLUS binds the proof to this TLS connection (tls-server-end-point):
    // a man in the middle with another certificate cannot relay the login.
    const binding = this.client instanceof TLSSocket ? this.deps.tls?.channelBinding : undefined
    this.client.write(buildAuthSasl(binding ? ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256'] : ['SCRAM-SHA-256']))
    const initial = parseSaslInitial((await this.authMessage()).body)
    const plus = initial.mechanism === 'SCRAM-SHA-256-PLUS'
    if (initial.mechanism !== 'SCRAM-SHA-256' && !(plus && binding)) throw new GatewayError('GH_ERR_AUTH_UNSUPPORTED', `SASL mechanism ${initial.mechanism} not supported`)
    const exchange = this.deps.pipeline.scram(session, this.user, binding ? { data: binding, plus } : undefined)
    this.client.write(buildAuth(AUTH.SASLContinue, Buffer.from(exchange.start(initial.data), 'utf8')))
    const final = (await this.authMessage()).body.toString('utf8')
    const { serverFinal } = await exchange.finish(final)
    this.client.write(buildAuth(AUTH.SASLFinal, Buffer.from(serverFinal, 'utf8')))
  }

  private async connectUpstream(): Promise<void> {
    this.phase = 'connecting'
    const handle = this.handle as SessionHandle
    // A connection serves one database: a client that asks for another is told so, as
    // PostgreSQL tells it the database does not exist (after authentication, as PostgreSQL does).
    const served = this.deps.upstream.database
    const asked = this.startupParams.get('database') || this.user
    if (asked !== served) {
      this.endWith(SQLSTATE.invalidCatalogName, `gatehouse: connection "${this.deps.connection.name}" serves database "${served}", not "${asked}"`, 'startup.refused', { database: asked })
      return
    }
    const forwarded = await this.startupSettings()
    if (!forwarded || this.closed) return
    // The gateway reads text as UTF-8: the server must too, whatever its database's encoding.
    const encoding = forwarded.params.client_encoding
    if (encoding === undefined || !isSqlAscii(encoding)) forwarded.params.client_encoding = 'UTF8'
    let up: UpstreamSession
    try {
      up = await connectUpstream(this.deps.upstream, forwarded.params, handle.info.signal)
    } catch (err) {
      const e = isGatewayError(err) ? err : new GatewayError('GH_ERR_UPSTREAM_UNAVAILABLE', String(err))
      for (const r of forwarded.judged) this.deps.pipeline.complete(r, { error: { code: e.code, message: e.message } })
      // The server refused a setting the client asked for: the client sees why, as it would directly.
      if (err instanceof UpstreamRefused && err.setting && forwarded.judged.length > 0) {
        this.closeReason = `${e.code}: ${e.message}`
        this.endWith(err.sqlstate, err.serverMessage, 'startup.refused', { code: e.code })
        return
      }
      this.deps.logger.warn({ session: handle.info.id, code: e.code, err: e.message }, 'upstream connection failed')
      const sqlstate = e.code === 'GH_ERR_UPSTREAM_AUTH' ? SQLSTATE.serverRejected : SQLSTATE.connectionFailure
      this.closeReason = `${e.code}: ${e.message}`
      this.endWith(sqlstate, `gatehouse: upstream of connection "${this.deps.connection.name}" is unavailable`, 'startup.upstream-unavailable', { code: e.code })
      return
    }
    if (this.closed) {
      up.socket.destroy()
      return
    }
    this.deps.loggedIn?.()
    for (const r of forwarded.judged) this.deps.pipeline.complete(r, { status: 'SET' })
    this.upstream = up
    this.upSocket = up.socket
    this.model = new SessionModel({ parameters: up.parameters, status: up.status })
    const unreadable = this.unreadableEncoding()
    if (unreadable) {
      up.socket.destroy()
      this.endWith(SQLSTATE.featureNotSupported, `gatehouse: ${unreadable}`, 'startup.refused', { client_encoding: this.model.settings.get('client_encoding'), server_encoding: this.model.settings.get('server_encoding') })
      return
    }
    // The upstream backend's real pid (clients compare it with pg_backend_pid(), filter their own
    // NOTIFYs by it, terminate their own backend with it), with a secret of the gateway's own:
    // the upstream's secret never reaches the client, so a cancel goes through the gateway.
    const pid = up.pid
    const secret = randomBytes(4)
    this.cancelKey = keyOf(pid, secret)
    this.deps.cancelKeys.set(this.cancelKey, this)
    up.socket.on('data', this.onUpstreamData)
    up.socket.on('error', (err) => this.close(`upstream error: ${(err as NodeJS.ErrnoException).code ?? err.message}`))
    up.socket.on('close', () => this.close(this.closeReason ?? 'upstream closed the connection'))
    up.socket.on('drain', () => this.client.resume())
    this.client.on('drain', () => {
      clearTimeout(this.stallTimer)
      this.stallTimer = undefined
      this.upSocket?.resume()
    })
    this.client.cork()
    this.client.write(buildAuth(AUTH.Ok))
    for (const m of up.parameterMessages) this.client.write(m)
    this.client.write(buildBackendKeyData(pid, secret))
    this.client.write(buildReadyForQuery(up.status))
    this.client.uncork()
    this.phase = 'ready'
    if (up.leftover.length > 0) this.onUpstreamData(up.leftover)
  }

  /**
   * The settings the client asked for at startup (startup-settings.ts), as the startup parameters
   * to send upstream. Those named in `options.forwardParams` (what drivers send on their own:
   * application_name, DateStyle …) pass as before; every other one is judged as the `SET` it
   * amounts to (action sql.query, attribute `startup`), and a refusal ends the session with a
   * FATAL naming the setting. Any of them that would make the gateway misread text is refused
   * before policy. Undefined when the session was ended.
   */
  private async startupSettings(): Promise<{ params: Record<string, string>; judged: GatewayRequest[] } | undefined> {
    const asked = startupSettings(this.startupParams)
    if ('error' in asked) {
      this.endWith(SQLSTATE.featureNotSupported, `gatehouse: ${asked.error}`, 'startup.refused')
      return undefined
    }
    const passed = new Set(this.deps.options.forwardParams.map((n) => n.toLowerCase()))
    const info = (this.handle as SessionHandle).info
    const params: Record<string, string> = {}
    const judged: GatewayRequest[] = []
    for (const setting of asked.settings) {
      // PostgreSQL's setting names are case-insensitive: one name, one value, as the gateway judged it.
      const name = setting.name.toLowerCase()
      if (name === 'client_encoding') {
        if (!isAcceptedClientEncoding(setting.value) && !isSqlAscii(setting.value)) {
          this.endWith(SQLSTATE.featureNotSupported, `gatehouse: client_encoding "${setting.value}" is not supported: the gateway reads SQL as UTF-8 (connect with client_encoding=UTF8)`, 'startup.refused', { client_encoding: setting.value })
          return undefined
        }
        params[name] = setting.value
        continue
      }
      const text = setText({ ...setting, name })
      const analysis = await this.deps.analyzer.analyzeOrDefer(text, this.owner())
      if (this.closed) return undefined
      const u = unjudgeable(text, analysis)
      const facts = analysis.ok ? (analysis.statements[0] as AnalyzedStatement | undefined)?.facts : undefined
      if (u || !facts) {
        const reason = u?.reason ?? 'the setting could not be read'
        const request = this.deps.pipeline.request(info, { action: 'sql.query', text, attrs: { ...(u?.attrs ?? {}), startup: { from: setting.from } } })
        const error = await this.deps.pipeline.refuse(request, { rule: u?.rule ?? 'gatehouse/parse', reason, code: u?.code ?? 'GH_ERR_PARSE_FAILED' })
        this.fatal(SQLSTATE.featureNotSupported, `gatehouse: the startup setting ${name} was refused: ${error.clientMessage}`)
        return undefined
      }
      if (!passed.has(name)) {
        const request = this.deps.pipeline.request(info, { action: 'sql.query', text, attrs: { sql: facts, startup: { from: setting.from } } })
        const admission = await this.deps.pipeline.admit(request)
        if (this.closed) return undefined
        if (!admission.admitted) {
          // The pipeline recorded the refusal; the client learns which setting, and why.
          this.fatal(SQLSTATE.insufficientPrivilege, `gatehouse: the startup setting ${name} was refused: ${admission.error.clientMessage}`)
          return undefined
        }
        judged.push(request)
      }
      params[name] = setting.value
    }
    // never from the client, whatever it named: the gateway's own login decides these
    for (const key of ['user', 'database', 'options', 'replication']) delete params[key]
    return { params, judged }
  }

  /** Why the server would read the client's bytes in an encoding other than the gateway's, if it would. */
  private unreadableEncoding(): string | undefined {
    const client = this.model?.settings.get('client_encoding')
    if (client === undefined || isAcceptedClientEncoding(client)) return undefined
    // SQL_ASCII: the server takes the bytes as they are, in the database's encoding.
    const server = this.model?.settings.get('server_encoding')
    if (isSqlAscii(client) && server !== undefined && isAcceptedClientEncoding(server)) return undefined
    return `client_encoding ${client} (server_encoding ${server ?? 'unknown'}) is not supported: the gateway reads SQL as UTF-8`
  }

  /** Forwards a cancel for this session's running statement to the upstream backend. */
  cancel(): void {
    // a statement held for review has not reached the server: the cancel withdraws it here
    if (this.handle && this.deps.pipeline.withdrawHeld(this.handle.info, 'the client cancelled the statement while it was held')) {
      this.deps.logger.info({ session: this.handle.info.id }, 'cancel request withdrew a statement held for review')
      return
    }
    const up = this.upstream
    if (!up) return
    this.deps.logger.info({ session: this.handle?.info.id }, 'cancel request forwarded to upstream')
    cancelUpstream(this.deps.upstream, up.pid, up.secret).catch((err: unknown) => this.deps.logger.warn({ err: String(err) }, 'cancel forwarding failed'))
  }

  // ---------------------------------------------------------------- limits

  /**
   * Inside an open transaction or an unsynced pipeline the server holds locks and a snapshot,
   * and its own idle_in_transaction_session_timeout does not fire while an extended-protocol
   * message is unsynced. The gateway ends a session whose client stays silent there too long.
   */
  private armIdleTimer(): void {
    const ms = this.limits.transactionIdleMs
    if (ms <= 0 || this.closed || this.phase !== 'ready' || this.idleTimer) return
    if (!this.unsynced && this.model?.txStatus === STATUS_IDLE) return
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined
      // The server is still working for the client (a long statement): not the client's silence.
      if (this.working()) return this.armIdleTimer()
      if (!this.unsynced && this.model?.txStatus === STATUS_IDLE) return
      this.handle?.terminate({ cause: 'postgres.transaction-idle', code: 'GH_ERR_SESSION_LIMIT', reason: `idle inside a transaction or an unsynced pipeline for more than ${ms} ms (limits.postgres.transactionIdleMs)` })
    }, ms)
    this.idleTimer.unref()
  }

  // ---------------------------------------------------------------- ready: client → upstream

  /** Queues a message for the upstream; `flushUpstream` writes the queue in one go. */
  private toUpstream(buf: Buffer): void {
    const q = this.upQueue
    const last = q[q.length - 1]
    // Consecutive messages from one received chunk go out as one view, so one write.
    if (last !== undefined && last.buffer === buf.buffer && last.byteOffset + last.length === buf.byteOffset) {
      q[q.length - 1] = Buffer.from(last.buffer, last.byteOffset, last.length + buf.length)
    } else q.push(buf)
  }

  private flushUpstream(): void {
    const up = this.upSocket
    const q = this.upQueue
    if (q.length === 0) return
    this.upQueue = []
    if (!up || up.destroyed) return
    const ok = writeAll(up, q)
    // Backpressure: stop reading the client until the upstream drains.
    if (!ok) this.client.pause()
  }

  private get state(): SessionModel {
    return this.model as SessionModel
  }

  private onClientMessage(msg: FrontendMessage): Promise<void> | undefined {
    const t = msg.type
    // During COPY FROM STDIN the server takes only copy messages; anything else makes it end the
    // session ("protocol synchronization was lost"). The gateway does the same, rather than
    // holding the message until the copy ends, which it never would.
    if (this.copyingIn && !COPY_IN_MESSAGES.has(t)) throw new ProtocolViolation(`unexpected message type '${String.fromCharCode(t)}' during COPY from stdin; protocol synchronization was lost`)
    if (this.discardUntilSync && t !== F.Sync && t !== F.Terminate) return undefined
    switch (t) {
      case F.Query:
        return this.afterQuiet(() => this.onQuery(msg), this.afterUnsynced())
      case F.Parse:
        return this.afterQuiet(() => this.onParse(msg))
      case F.Bind:
        return this.onBind(msg)
      case F.Execute:
        return this.onExecute(msg)
      case F.Describe:
        return this.onDescribe(msg)
      case F.Close:
        return this.onClose(msg)
      case F.Sync:
        this.discardUntilSync = false
        this.unsynced = false
        this.expect.push(this.copyFromClientPending(false) ? { kind: 'sync', inCopy: true } : { kind: 'sync' })
        this.toUpstream(msg.raw)
        this.state.endBlock()
        return undefined
      case F.CopyDone:
      case F.CopyFail:
        // sent with the COPY itself, before the server started it: that copy is complete already;
        // one with no COPY FROM STDIN pending the server ignores, and so does the gateway
        if (this.copyingIn) this.copyingIn = false
        else if (this.copyFromClientPending(true)) this.copyEndsAhead++
        for (const e of this.expect) if (e.kind === 'execute' && e.copyIn) e.copyEnded = true
        this.toUpstream(msg.raw)
        return undefined
      case F.Flush:
      case F.CopyData:
        this.toUpstream(msg.raw)
        return undefined
      case F.Terminate:
        this.flushUpstream()
        this.closeReason = 'client terminated'
        this.close('client terminated')
        return undefined
      case F.FunctionCall:
        return this.afterQuiet(() => this.onFunctionCall(msg), this.afterUnsynced())
      default:
        throw new ProtocolViolation(`unexpected message type '${String.fromCharCode(t)}'`)
    }
  }

  private afterQuiet(next: () => Promise<void> | undefined, until?: () => boolean): Promise<void> | undefined {
    const q = until ? (until() ? undefined : this.waitForServer(until)) : this.quiet()
    return q ? q.then(() => (this.closed || this.discardUntilSync ? undefined : next())) : next()
  }

  /**
   * A Query (or FunctionCall) after extended-protocol messages with no Sync between: the server
   * runs it only if none of them failed, and skips it otherwise, without a ReadyForQuery. So the
   * gateway waits until the server has answered all of them: then it knows which (and drops the
   * message, as the server will, when one failed).
   */
  private afterUnsynced(): (() => boolean) | undefined {
    return this.unsynced ? () => this.expect.length === 0 : undefined
  }

  /**
   * While a message waited (for the server, an analysis, the pipeline), an error from the server
   * may have put the upstream into skip-to-Sync mode: it will not answer this message, so the
   * gateway must not forward it nor expect an answer. True when the message is to be dropped.
   */
  private skipping(pending?: Pending): boolean {
    if (!this.discardUntilSync) return false
    if (pending) this.finish(pending, { skipped: true })
    return true
  }

  /**
   * Before a Query or Parse text is judged, every earlier statement finishes (the gateway asks
   * the upstream to flush its output): SQL-level prepared statements it resolves (EXECUTE x)
   * must be the ones the server confirmed, and the settings the ones the server reported.
   */
  private quiet(): Promise<void> | undefined {
    if (!this.busy()) return undefined
    return this.waitForServer()
  }

  /** Flushes what is queued, asks the upstream to answer everything it has, and waits until nothing runs. */
  private waitForServer(until: () => boolean = () => !this.busy()): Promise<void> {
    this.flushUpstream()
    this.upSocket?.write(FLUSH)
    return new Promise((resolve) => {
      this.quietWaiter = { until, resolve }
    })
  }

  /**
   * Whether the server is working for the client, for the idle limits: a statement is running.
   * An Execute the client never follows with Sync or Flush leaves its results in the server's
   * output buffer and the statement looks busy forever; so the first time a busy session is
   * checked, the gateway sends a Flush of its own (it has no response: results just come back,
   * and the statement settles). Busy at a later check means the server really is working. A
   * client that does not read its results is silent, not working.
   */
  private working(): boolean {
    if (!this.busy()) {
      this.flushedForIdle = false
      return false
    }
    if (this.client.writableNeedDrain) return false
    if (!this.flushedForIdle && !this.pumping && this.phase === 'ready') {
      this.flushedForIdle = true
      this.toUpstream(FLUSH)
      this.flushUpstream()
    }
    return true
  }

  private flushedForIdle = false

  /** The server is taking COPY FROM STDIN data: until the client's CopyDone or CopyFail, or the server's error. */
  private copyingIn = false
  /** CopyDone or CopyFail the client sent for a copy the server has not started yet (all in one write). */
  private copyEndsAhead = 0

  /**
   * A client that stops reading what it asked for holds its upstream backend (and, once both
   * directions are blocked, the gateway reads nothing from it, so not even its disconnect is
   * seen). A client that has not drained anything for `limits.postgres.clientStallMs` is ended.
   */
  private stallTimer: NodeJS.Timeout | undefined

  private armStallTimer(): void {
    const ms = this.limits.clientStallMs
    if (ms <= 0 || this.stallTimer || this.closed) return
    this.stallTimer = setTimeout(() => {
      this.stallTimer = undefined
      if (!this.client.writableNeedDrain || this.closed) return
      this.handle?.terminate({ cause: 'postgres.client-stalled', code: 'GH_ERR_SESSION_LIMIT', reason: `the client read none of its results for ${ms} ms (limits.postgres.clientStallMs)` })
      // it is not reading: it will not see a FATAL either
      this.client.destroy()
    }, ms)
    this.stallTimer.unref()
  }

  /**
   * A COPY FROM STDIN was sent and its CopyDone not yet: through the extended protocol only, or
   * also in a simple Query the server has not answered yet.
   */
  private copyFromClientPending(viaQueryToo: boolean): boolean {
    for (const e of this.expect) {
      if (e.kind === 'execute' && e.copyIn && !e.copyEnded) return true
      if (viaQueryToo && e.kind === 'query' && e.stmts.slice(e.idx).some((p) => copiesFromClient(p.request))) return true
    }
    return false
  }

  private busy(): boolean {
    for (const e of this.expect) if (e.kind === 'query' || e.kind === 'execute' || e.kind === 'substitute') return true
    return false
  }

  private wakeQuietWaiter(): void {
    const w = this.quietWaiter
    if (!w || !(this.closed || w.until())) return
    this.quietWaiter = undefined
    w.resolve()
  }

  /** The settings under which the gateway's SQL parsing would not match the server's. */
  private unsafeSetting(): string | undefined {
    const scs = this.state.settings.get('standard_conforming_strings')
    if (scs !== undefined && scs !== 'on') return 'standard_conforming_strings is off'
    return undefined
  }

  private newRequest(text: string, attrs: Record<string, unknown>, params?: readonly (string | null)[], prepareOnly = false): GatewayRequest {
    return this.deps.pipeline.request((this.handle as SessionHandle).info, { action: 'sql.query', text, attrs, params, onHeld: this.onHeld, deferReview: prepareOnly })
  }

  /**
   * A statement held for review: the client learns it waits, and for which review, in a
   * NoticeResponse (psql prints it at once). Written between two of the server's messages only:
   * while a row or a COPY chunk is half relayed, it waits for its end.
   */
  private readonly onHeld = (hold: HeldNotice): void => {
    const notice = buildError(
      {
        severity: 'NOTICE',
        code: '00000',
        message: `gatehouse: this statement is held for review ${hold.review}: ${hold.reason}`,
        detail: holdTerms(hold),
      },
      B.NoticeResponse,
    )
    const send = (): void => {
      if (this.closed) return
      // between two messages of the server's answers only: a DataRow or CopyData may be half relayed
      if (this.streamRemaining > 0) {
        setTimeout(send, 5).unref()
        return
      }
      this.client.write(notice)
    }
    send()
  }

  /**
   * The server decodes a message's text in the client encoding, which the gateway holds to
   * UTF-8; bytes that are not UTF-8 would decode to something else on each side. Refused with
   * PostgreSQL's own SQLSTATE.
   */
  private invalidText(body: Buffer, start: number, end: number): boolean {
    return !isUtf8(body.subarray(start, end))
  }

  private onQuery(msg: FrontendMessage): Promise<void> | undefined {
    if (this.closed) return undefined
    // A simple Query destroys the unnamed statement and portal upstream.
    this.state.simpleQuery()
    const end = msg.body.indexOf(0)
    if (end < 0) throw new ProtocolViolation('Query message is not NUL-terminated')
    if (this.invalidText(msg.body, 0, end)) return this.refuseInvalidText(this.substituteQuery)
    const text = msg.body.toString('utf8', 0, end)
    const analysis = this.deps.analyzer.analyzeOrDefer(text, this.owner())
    if (analysis instanceof Promise) return analysis.then((a) => (this.closed ? undefined : this.onQueryAnalysed(msg, text, a)))
    return this.onQueryAnalysed(msg, text, analysis)
  }

  private refuseInvalidText(substitute: (error: Buffer) => void): Promise<void> {
    const reason = 'invalid byte sequence for encoding "UTF8": the gateway and the server read text as UTF-8'
    return this.refuse(this.newRequest('', { sql: { error: reason } }), 'gatehouse/encoding', reason, 'GH_ERR_PARSE_FAILED', substitute, '22021')
  }

  /** Whose turn a background parse takes: the principal, so many sessions of one token share one turn. */
  private owner(): string {
    return this.handle?.info.principal?.id ?? ''
  }

  private onQueryAnalysed(msg: FrontendMessage, text: string, analysis: SqlAnalysis): Promise<void> | undefined {
    const unjudgeable = this.refuseUnjudgeable(text, analysis, undefined, this.substituteQuery)
    if (unjudgeable || !analysis.ok) return unjudgeable
    const max = this.limits.statementsPerQuery
    if (analysis.statements.length > max) {
      const reason = `the query holds ${analysis.statements.length} statements, more than the gateway's limit of ${max} (limits.postgres.statementsPerQuery)`
      void this.deps.pipeline.limitReached(this.session().info, 'postgres.statements-per-query', reason, { recorded: true })
      return this.refuse(this.newRequest(text, { sql: { error: 'too many statements', statements: analysis.statements.length } }), 'gatehouse/limits', reason, 'GH_ERR_PROTOCOL_UNSUPPORTED', this.substituteQuery, '54000')
    }
    if (analysis.statements.length === 0) {
      // An empty query (blanks, a lone `;`, a comment): nothing runs, PostgreSQL answers EmptyQueryResponse.
      this.expect.push({ kind: 'query', stmts: [], idx: 0 })
      this.toUpstream(msg.raw)
      this.state.endBlock()
      this.unsynced = false
      return undefined
    }
    if (analysis.statements.length === 1) {
      // The common case, without a promise when the pipeline answers synchronously.
      const s = analysis.statements[0] as AnalyzedStatement
      const facts = this.resolveExecutes(s.facts)
      if (typeof facts === 'string') return this.refuseUnknownStatement(s.text, facts, undefined, this.substituteQuery)
      return this.admitThen(this.newRequest(s.text, { sql: facts }), msg.raw, 'query')
    }
    return this.onMultiStatementQuery(msg, analysis.statements)
  }

  /**
   * Refuses, before policy, what the gateway cannot judge: any statement while the session runs
   * with settings under which its parse would differ from the server's, text the parser rejects
   * or that reads two ways, statements that would switch the session to such settings, and SQL
   * that names the gateway's own statements and portals. Returns undefined otherwise.
   */
  private refuseUnjudgeable(text: string, analysis: SqlAnalysis, params: readonly (string | null)[] | undefined, substitute: (error: Buffer) => void): Promise<void> | undefined {
    const unsafe = this.unsafeSetting()
    if (unsafe) return this.refuse(this.newRequest(text, { sql: { error: unsafe } }, params), 'gatehouse/session-settings', `${unsafe}; the gateway cannot judge statements safely`, 'GH_ERR_PROTOCOL_UNSUPPORTED', substitute)
    const u = unjudgeable(text, analysis)
    if (u) return this.refuse(this.newRequest(u.text, u.attrs, params), u.rule, u.reason, u.code, substitute, undefined, u.position)
    return undefined
  }

  /** Asks the pipeline; forwards `raw` when admitted, or puts a refusal in its place. */
  private admitThen(request: GatewayRequest, raw: Buffer, kind: 'query' | 'execute'): Promise<void> | undefined {
    const admission = this.deps.pipeline.admit(request)
    if (admission instanceof Promise) return admission.then((a) => this.afterAdmission(raw, request, a, kind))
    this.afterAdmission(raw, request, admission, kind)
    return undefined
  }

  private afterAdmission(raw: Buffer, request: GatewayRequest, admission: Admission, kind: 'query' | 'execute' | 'fastpath'): void {
    if (this.closed) return
    if (kind === 'execute' && this.skipping(admission.admitted ? { request, rows: 0 } : undefined)) return
    if (!admission.admitted) {
      // The pipeline has recorded the refusal; the client sees it where PostgreSQL would put an error.
      ;(kind === 'execute' ? this.substituteExtended : this.substituteQuery)(renderError(admission.error))
      return
    }
    const pending: Pending = { request, rows: 0, at: this.state.position }
    this.forgetSqlLevelState(pending)
    if (kind === 'query' || kind === 'fastpath') {
      this.expect.push({ kind: 'query', stmts: [pending], idx: 0, ...(kind === 'fastpath' ? { fastpath: true as const } : {}) })
      this.toUpstream(raw)
      this.state.endBlock()
      this.unsynced = false
    } else {
      this.expect.push(copiesFromClient(request) ? { kind: 'execute', pending, copyIn: true } : { kind: 'execute', pending })
      this.toUpstream(raw)
      this.unsynced = true
    }
  }

  /** Refuses a request the gateway will not put to policy; the pipeline records it. */
  private async refuse(request: GatewayRequest, rule: string, reason: string, code: ErrorCode, substitute: (error: Buffer) => void, sqlstate?: string, position?: number): Promise<void> {
    const error = await this.deps.pipeline.refuse(request, { rule, reason, code })
    if (!this.closed) substitute(renderError(error, sqlstate, position))
  }

  /**
   * Several statements in one Query: each judged and recorded; if one is refused, none runs and
   * none is held for review (core's admitAll).
   */
  private async onMultiStatementQuery(msg: FrontendMessage, statements: readonly AnalyzedStatement[]): Promise<void> {
    const requests: GatewayRequest[] = []
    for (const s of statements) {
      const facts = this.resolveExecutes(s.facts)
      if (typeof facts === 'string') return this.refuseUnknownStatement(s.text, facts, undefined, this.substituteQuery)
      requests.push(this.newRequest(s.text, { sql: facts }))
    }
    const { admitted, error } = await this.deps.pipeline.admitAll(requests)
    const stmts: Pending[] = admitted.map((request) => ({ request, rows: 0, at: this.state.position }))
    if (error) {
      // Nothing in the string runs: the statements admitted before the refusal are recorded as skipped.
      for (const p of stmts) this.finish(p, { skipped: true })
      if (!this.closed) this.substituteQuery(renderError(error))
      return
    }
    if (this.closed) {
      for (const p of stmts) this.finish(p, { skipped: true })
      return
    }
    for (const p of stmts) this.forgetSqlLevelState(p)
    this.expect.push({ kind: 'query', stmts, idx: 0 })
    this.toUpstream(msg.raw)
    this.state.endBlock()
    this.unsynced = false
  }

  /**
   * SQL-level PREPARE, DEALLOCATE and DISCARD change the SQL-level prepared statements. A
   * PREPARE's name is forgotten now and learned when the upstream confirms the PREPARE, so a
   * PREPARE that fails (a duplicate name) cannot make the gateway misjudge a later EXECUTE. A
   * DEALLOCATE or DISCARD, and code the gateway cannot see through (which may do either),
   * make it forget the names now (fail closed).
   */
  private forgetSqlLevelState(p: Pending): void {
    const facts = p.request?.attrs.sql as SqlFacts | undefined
    if (!facts?.kinds) return
    const prepare = facts.prepare
    if (prepare) {
      this.state.forgetSqlStatement(prepare.name)
      const held = preparedFacts(facts)
      if (held && p.request?.text !== undefined) p.prepares = { name: prepare.name, statement: { serverName: prepare.name, text: p.request.text, analysis: { ok: true, statements: [{ text: p.request.text, facts: held }] } } }
    }
    for (const d of facts.deallocates) this.state.forgetSqlStatement(d)
    if (facts.opaque || facts.dynamic) this.state.forgetSqlStatement('*')
  }

  /** Sends the upstream a failing query in place of the client's; the client sees `error` instead. */
  private readonly substituteQuery = (error: Buffer): void => {
    this.expect.push({ kind: 'query', stmts: [], idx: 0, substitute: error })
    this.toUpstream(buildQuery(REFUSAL_SQL))
    this.state.endBlock()
    this.unsynced = false
  }

  /**
   * A FunctionCall (large objects through libpq, psycopg2, pgjdbc, pg_dump): judged as the SQL
   * call of the function its OID names on the upstream, with the same attributes and rules as
   * `SELECT schema.name($1, …)` and its arguments as parameters, then forwarded as sent.
   */
  private async onFunctionCall(msg: FrontendMessage): Promise<void> {
    const call = parseFunctionCall(msg.body)
    const info = (this.handle as SessionHandle).info
    const unresolved = (reason: string, code: ErrorCode, sqlstate: string) =>
      this.refuse(this.deps.pipeline.request(info, { action: 'sql.query', text: `FunctionCall oid=${call.oid}`, attrs: { sql: { error: reason }, functionCall: { oid: call.oid } }, params: call.args }), 'gatehouse/function-call', reason, code, this.substituteQuery, sqlstate)
    let fn: FunctionName | undefined
    try {
      fn = await this.deps.functionOids.resolve(call.oid)
    } catch (err) {
      return unresolved(`the gateway could not look up function OID ${call.oid}: ${isGatewayError(err) ? err.message : String(err)}`, 'GH_ERR_UPSTREAM_UNAVAILABLE', SQLSTATE.connectionFailure)
    }
    if (this.closed) return
    if (!fn) return unresolved(`function with OID ${call.oid} does not exist`, 'GH_ERR_POLICY_DENIED', '42883')
    const text = callText(fn, call.args.length)
    const analysis = await this.deps.analyzer.analyzeOrDefer(text, this.owner())
    if (this.closed) return
    const unjudgeable = this.refuseUnjudgeable(text, analysis, call.args, this.substituteQuery)
    if (unjudgeable || !analysis.ok) return unjudgeable
    const facts = (analysis.statements[0] as AnalyzedStatement).facts
    const request = this.deps.pipeline.request(info, { action: 'sql.query', text, attrs: { sql: facts, functionCall: { oid: call.oid, function: `${fn.schema}.${fn.name}` } }, params: call.args })
    this.afterAdmission(msg.raw, request, await this.deps.pipeline.admit(request), 'fastpath')
  }

  // ---------------------------------------------------------------- extended protocol

  /** Answers a name conflict as PostgreSQL would, after the server settled an earlier change to the name. */
  private async conflictThen(kind: 'S' | 'P', name: string, next: () => Promise<void> | undefined): Promise<void> {
    for (;;) {
      const c = this.state.conflict(kind, name)
      if (c === 'free') return next()
      // A statement still running may end the transaction (and its portals) or deallocate every statement.
      if (c === 'taken' && this.busy()) {
        await this.waitForServer()
        if (this.closed || this.skipping()) return
        continue
      }
      if (c === 'taken') {
        // The gateway answers in the server's place, with the server's words: recorded like any refusal.
        const message = `${kind === 'S' ? 'prepared statement' : 'cursor'} "${name}" already exists`
        const sqlstate = kind === 'S' ? '42P05' : '42P03'
        void this.protocolEvent('name.in-use', message, { sqlstate, name })
        this.substituteExtended(buildError({ code: sqlstate, message }))
        return
      }
      await this.waitForServer(() => this.state.conflict(kind, name) !== 'unsettled')
      if (this.closed || this.skipping()) return
    }
  }

  private onParse(msg: FrontendMessage): Promise<void> | undefined {
    if (this.closed) return undefined
    const p = parseParse(msg.body)
    const bad = this.badName(p.name)
    if (bad) return bad
    if (this.state.conflict('S', p.name) !== 'free') return this.conflictThen('S', p.name, () => this.onParseFree(msg, p))
    return this.onParseFree(msg, p)
  }

  private onParseFree(msg: FrontendMessage, p: ParseMessage): Promise<void> | undefined {
    if (p.name !== '' && this.state.held.statements >= this.limits.preparedStatements) {
      return this.refuseLimit(`too many prepared statements in this session (limit ${this.limits.preparedStatements}, limits.postgres.preparedStatements); close some first`)
    }
    const nameEnd = msg.body.indexOf(0)
    const queryEnd = msg.body.indexOf(0, nameEnd + 1)
    if (this.invalidText(msg.body, nameEnd + 1, queryEnd)) return this.refuseInvalidText(this.substituteExtended)
    const analysis = this.deps.analyzer.analyzeOrDefer(p.query, this.owner())
    if (analysis instanceof Promise) return analysis.then((a) => (this.closed ? undefined : this.onParseAnalysed(msg, p, a)))
    return this.onParseAnalysed(msg, p, analysis)
  }

  /** A Parse is judged like the statement it holds: it takes locks and its text is what every Execute of it runs. */
  private onParseAnalysed(msg: FrontendMessage, p: ParseMessage, analysis: SqlAnalysis): Promise<void> | undefined {
    const unjudgeable = this.refuseUnjudgeable(p.query, analysis, undefined, this.substituteExtended)
    if (unjudgeable || !analysis.ok) return unjudgeable
    if (analysis.statements.length > 1) {
      // PostgreSQL refuses it too (42601): say so in its terms, and record it.
      return this.refuse(this.newRequest(p.query, { sql: { error: 'multiple statements' } }), 'gatehouse/parse', 'cannot insert multiple commands into a prepared statement', 'GH_ERR_PARSE_FAILED', this.substituteExtended)
    }
    if (analysis.statements.length === 0) {
      this.forwardParse(msg, p, analysis, { request: undefined, rows: 0 })
      return undefined
    }
    const s = analysis.statements[0] as AnalyzedStatement
    const facts = this.resolveExecutes(s.facts)
    if (typeof facts === 'string') return this.refuseUnknownStatement(s.text, facts, undefined, this.substituteExtended)
    const request = this.newRequest(s.text, { sql: facts, phase: 'parse' }, undefined, true)
    const admission = this.deps.pipeline.admit(request)
    if (admission instanceof Promise) return admission.then((a) => this.afterParseAdmission(msg, p, analysis, request, a))
    this.afterParseAdmission(msg, p, analysis, request, admission)
    return undefined
  }

  private afterParseAdmission(msg: FrontendMessage, p: ParseMessage, analysis: SqlAnalysis, request: GatewayRequest, admission: Admission): void {
    if (this.closed) return
    if (!admission.admitted) {
      this.substituteExtended(renderError(admission.error))
      return
    }
    this.forwardParse(msg, p, analysis, { request, rows: 0 })
  }

  private forwardParse(msg: FrontendMessage, p: ParseMessage, analysis: SqlAnalysis, pending: Pending): void {
    if (this.skipping(pending)) return
    const { statement, change } = this.state.parse(p.name, p.query, analysis)
    this.expect.push({ kind: 'parse', change, pending })
    this.toUpstream(statement.serverName === p.name ? msg.raw : renameParse(msg.body, statement.serverName))
    this.unsynced = true
  }

  /**
   * Runs `next` once the client's `name` can be resolved: at once, except for the unnamed
   * statement or portal while an earlier block's change to it is unsettled (session-model.ts,
   * invariant 2), when the gateway first waits for the server.
   */
  private whenResolvable(kind: 'S' | 'P', name: string, next: () => Promise<void> | undefined): Promise<void> | undefined {
    if (this.state.resolvable(kind, name)) return next()
    return this.waitForServer(() => this.state.resolvable(kind, name)).then(() => (this.closed || this.skipping() ? undefined : next()))
  }

  private onBind(msg: FrontendMessage): Promise<void> | undefined {
    const b = parseBind(msg.body)
    const bad = this.badName(b.portal, b.statement)
    if (bad) return bad
    return this.whenResolvable('S', b.statement, () => this.onBindResolved(msg, b))
  }

  private onBindResolved(msg: FrontendMessage, b: BindMessage): Promise<void> | undefined {
    const statement = this.state.statement(b.statement)
    if (!statement) return this.refuseUnknownName('S', b.statement, b.params, 'BIND')
    if (this.state.conflict('P', b.portal) !== 'free') return this.conflictThen('P', b.portal, () => this.onBindFree(msg, b, statement))
    return this.onBindFree(msg, b, statement)
  }

  private onBindFree(msg: FrontendMessage, b: BindMessage, statement: ServerStatement): Promise<void> | undefined {
    if (b.portal !== '' && this.state.held.portals >= this.limits.preparedStatements) {
      return this.refuseLimit(`too many open portals in this session (limit ${this.limits.preparedStatements}, limits.postgres.preparedStatements); close some first`)
    }
    const { portal, change } = this.state.bindPortal(b.portal, statement, b.params)
    this.expect.push({ kind: 'bind', change })
    this.toUpstream(portal.serverName === b.portal && statement.serverName === b.statement ? msg.raw : renameBind(msg.body, portal.serverName, statement.serverName))
    this.unsynced = true
    return undefined
  }

  private onDescribe(msg: FrontendMessage): Promise<void> | undefined {
    const target = parseTarget(msg.body)
    const bad = this.badName(target.name)
    if (bad) return bad
    return this.whenResolvable(target.kind, target.name, () => {
      const object = target.kind === 'S' ? this.state.statement(target.name) : this.state.portal(target.name)
      // Not a protocol-level name: a SQL-level cursor or prepared statement (psycopg describes the
      // cursor it DECLAREd). Describing runs nothing; the server answers for its own object.
      this.expect.push({ kind: 'describe' })
      this.toUpstream(buildTarget(F.Describe, target.kind, object ? object.serverName : target.name))
      this.unsynced = true
      return undefined
    })
  }

  private onClose(msg: FrontendMessage): Promise<void> | undefined {
    const target = parseTarget(msg.body)
    const bad = this.badName(target.name)
    if (bad) return bad
    // A name not bound at protocol level is the client's SQL-level cursor or prepared statement (or
    // nothing: closing that is not an error). The server closes its own object of that name.
    const { serverName, change } = this.state.close(target.kind, target.name)
    if (target.kind === 'S' && serverName === target.name) this.state.forgetSqlStatement(target.name)
    this.expect.push({ kind: 'close', change })
    this.toUpstream(buildTarget(F.Close, target.kind, serverName))
    this.unsynced = true
    return undefined
  }

  private onExecute(msg: FrontendMessage): Promise<void> | undefined {
    const { portal: name, maxRows } = parseExecute(msg.body)
    const bad = this.badName(name)
    if (bad) return bad
    return this.whenResolvable('P', name, () => this.onExecuteResolved(msg, name, maxRows))
  }

  private onExecuteResolved(msg: FrontendMessage, name: string, maxRows: number): Promise<void> | undefined {
    const portal = this.state.portal(name)
    if (!portal) return this.refuseUnknownName('P', name, undefined, 'EXECUTE')
    const stmt = portal.statement
    const a = stmt.analysis
    const raw = portal.serverName === name ? msg.raw : buildExecute(portal.serverName, maxRows)
    const unjudgeable = this.refuseUnjudgeable(stmt.text, a, portal.params, this.substituteExtended)
    if (unjudgeable || !a.ok) return unjudgeable
    if (a.statements.length === 0) {
      // An empty query: nothing runs, PostgreSQL answers EmptyQueryResponse.
      this.expect.push({ kind: 'execute', pending: { request: undefined, rows: 0 } })
      this.toUpstream(raw)
      this.unsynced = true
      return undefined
    }
    const s = a.statements[0] as AnalyzedStatement
    const facts = this.resolveExecutes(s.facts)
    if (typeof facts === 'string') return this.refuseUnknownStatement(s.text, facts, portal.params, this.substituteExtended)
    return this.admitThen(this.newRequest(s.text, { sql: facts, phase: 'execute' }, portal.params), raw, 'execute')
  }

  /**
   * A SQL-level EXECUTE is judged by the statement it runs: the facts of the SQL-level prepared
   * statement the server confirmed are merged in. Returns the name that cannot be resolved when
   * one cannot.
   */
  private resolveExecutes(facts: SqlFacts): SqlFacts | string {
    if (facts.executes.length === 0) return facts
    const executed: SqlFacts[] = []
    for (const name of facts.executes) {
      const a = this.state.sqlStatement(name)?.analysis
      if (!a || !a.ok || a.statements.length !== 1) return name
      executed.push((a.statements[0] as AnalyzedStatement).facts)
    }
    return mergeExecuted(facts, executed)
  }

  private refuseUnknownStatement(text: string, name: string, params: readonly (string | null)[] | undefined, substitute: (error: Buffer) => void): Promise<void> {
    const u = unknownStatement(name)
    // a name that cannot exist upstream gets PostgreSQL's own answer; one that may gets the refusal's
    const sqlstate = this.state.mayHoldSqlStatement(name) ? undefined : '26000'
    return this.refuse(this.newRequest(text, u.attrs, params), u.rule, u.reason, 'GH_ERR_POLICY_DENIED', substitute, sqlstate)
  }

  /** A protocol message names a statement or portal the client does not hold: PostgreSQL's own error, recorded. */
  private refuseUnknownName(kind: 'S' | 'P', name: string, params: readonly (string | null)[] | undefined, verb: string): Promise<void> {
    const what = kind === 'S' ? (name === '' ? 'unnamed prepared statement' : `prepared statement "${name}"`) : `portal "${name}"`
    const reason = `${what} does not exist`
    const request = this.newRequest(`${verb} ${kind === 'S' ? 'statement' : 'portal'} "${name}"`, { sql: { error: reason } }, params)
    return this.refuse(request, 'gatehouse/unknown-statement', reason, 'GH_ERR_POLICY_DENIED', this.substituteExtended, kind === 'S' ? '26000' : '34000')
  }

  private async refuseLimit(reason: string): Promise<void> {
    await this.deps.pipeline.limitReached(this.session().info, 'postgres.prepared-statements', reason)
    if (!this.closed) this.substituteExtended(renderError(new GatewayError('GH_ERR_PROTOCOL_UNSUPPORTED', reason), '54000'))
  }

  /**
   * PostgreSQL keys prepared statements and portals by their first 63 bytes, in the server's
   * encoding. The gateway's own names never reach the server as the client's, but a client's
   * name longer than that, or outside printable ASCII, or in the gateway's reserved prefix, is
   * refused (and audited): every driver uses short ASCII names.
   */
  private badName(...names: string[]): Promise<void> | undefined {
    for (const name of names) {
      if (name.length <= 63 && /^[\x20-\x7e]*$/.test(name) && !name.toLowerCase().startsWith(RESERVED_PREFIX)) continue
      const reason = `prepared statement and portal names must be printable ASCII of at most 63 bytes, not starting with "${RESERVED_PREFIX}"`
      const shown = name.length > 80 ? `${name.slice(0, 80)}…` : name
      return this.protocolEvent('name.refused', reason, { name: shown }).then(() => {
        if (!this.closed) this.substituteExtended(renderError(new GatewayError('GH_ERR_PROTOCOL_UNSUPPORTED', reason)))
      })
    }
    return undefined
  }

  /**
   * Extended protocol: make the upstream fail here (a Parse that cannot succeed), so it skips to
   * Sync exactly as PostgreSQL would after an error; the client sees `error`; the gateway
   * discards the client's messages until Sync.
   */
  private readonly substituteExtended = (error: Buffer): void => {
    if (this.skipping()) return
    this.expect.push({ kind: 'substitute', error })
    this.toUpstream(buildParse(NO_SUCH_NAME, REFUSAL_SQL))
    this.discardUntilSync = true
    this.unsynced = true
  }

  // ---------------------------------------------------------------- ready: upstream → client

  private readonly onUpstreamData = (chunk: Buffer) => {
    this.handle?.touch()
    if (this.closed) return
    let buf = chunk
    if (this.upPending) {
      const pending = this.upPending
      pending.chunks.push(chunk)
      pending.bytes += chunk.length
      if (pending.bytes < pending.need) return
      buf = Buffer.concat(pending.chunks, pending.bytes)
      this.upPending = undefined
    }
    // Pieces to send, in order: views into `buf` and the gateway's own replacement messages.
    const pieces: Buffer[] = []
    let i = 0
    let passFrom = 0
    const n = buf.length
    try {
      while (i < n) {
        if (this.streamRemaining > 0) {
          const take = Math.min(this.streamRemaining, n - i)
          this.streamRemaining -= take
          i += take
          continue
        }
        if (n - i < 5) {
          if (passFrom < i) pieces.push(buf.subarray(passFrom, i))
          this.upPending = { chunks: [Buffer.from(buf.subarray(i))], bytes: n - i, need: 5 }
          passFrom = n
          break
        }
        const type = buf[i] as number
        const len = buf.readInt32BE(i + 1)
        if (len < 4) throw new Error(`invalid backend message length ${len}`)
        const end = i + 1 + len
        if (type === B.DataRow || type === B.CopyData) {
          if (type === B.DataRow) this.countRow()
          if (end > n) {
            this.streamRemaining = end - n
            i = n
            break
          }
          i = end
          continue
        }
        if (end > n) {
          if (passFrom < i) pieces.push(buf.subarray(passFrom, i))
          this.upPending = { chunks: [Buffer.from(buf.subarray(i))], bytes: n - i, need: end - i }
          passFrom = n
          break
        }
        const replacement = this.onBackendMessage(type, buf.subarray(i + 5, end))
        if (replacement !== undefined) {
          if (passFrom < i) pieces.push(buf.subarray(passFrom, i))
          if (replacement.length > 0) pieces.push(replacement)
          passFrom = end
        }
        i = end
        if (this.closed) return
      }
      if (passFrom < n) pieces.push(passFrom === 0 ? buf : buf.subarray(passFrom, n))
    } catch (err) {
      // Fail closed: a session whose statement tracking is off cannot be judged any more.
      this.deps.logger.error({ err: (err as Error).message, session: this.handle?.info.id }, 'upstream protocol state lost; session closed')
      if (pieces.length > 0) this.client.write(pieces.length === 1 ? (pieces[0] as Buffer) : Buffer.concat(pieces))
      void this.protocolEvent('upstream.desync', (err as Error).message)
      this.fatal(SQLSTATE.protocolViolation, 'gatehouse: lost track of the upstream protocol state; session closed')
      return
    }
    this.wakeQuietWaiter()
    const ok = pieces.length === 0 || writeAll(this.client, pieces)
    // Backpressure: stop reading the upstream until the client drains.
    if (!ok) {
      this.upSocket?.pause()
      this.armStallTimer()
    }
    if (this.expect.length === 0) this.armIdleTimer()
  }

  private countRow(): void {
    const head = this.expect[0]
    if (head?.kind === 'execute') head.pending.rows++
    else if (head?.kind === 'query') {
      const p = head.stmts[head.idx]
      if (p) p.rows++
    }
  }

  private finish(p: Pending, outcome: Outcome): void {
    if (p.request) this.deps.pipeline.complete(p.request, outcome)
  }

  /**
   * Statements that completed since the last ReadyForQuery. Their outcomes are recorded at
   * ReadyForQuery: an implicit commit can still fail (a deferred constraint) after a statement's
   * CommandComplete, and then the statement did not take effect.
   */
  private completed: Pending[] = []

  /** CommandComplete of a statement: the tripwire, then what it changed in the model. Returns false when the session was ended. */
  private complete(p: Pending, tag: string): boolean {
    const facts = p.request?.attrs.sql as SqlFacts | undefined
    if (p.request && facts?.statement !== undefined) {
      const contradiction = tagContradicts(facts, tag)
      if (contradiction) {
        this.integrityViolation(p, facts, tag, contradiction)
        return false
      }
    }
    p.done = { rows: rowsFromTag(tag) ?? p.rows, status: tag }
    const model = this.state
    if (p.prepares && model.held.statements < this.limits.preparedStatements) model.learnSqlStatement(p.prepares.name, p.prepares.statement)
    if (facts && p.at !== undefined && ENDS_TRANSACTION.has(facts.statement) && facts.tag !== 'ROLLBACK TO SAVEPOINT') model.transactionEnded(p.at)
    if (p.at !== undefined && tag === 'DEALLOCATE ALL') model.serverDroppedAll(p.at, false)
    else if (p.at !== undefined && tag === 'DISCARD ALL') model.serverDroppedAll(p.at, true)
    this.completed.push(p)
    return true
  }

  /** The server ran something other than what was judged: record both, end the session. */
  private integrityViolation(p: Pending, facts: SqlFacts, tag: string, reason: string): void {
    this.finish(p, { status: tag, error: { code: 'GH_ERR_INTEGRITY', message: reason } })
    void this.deps.pipeline.integrity((this.handle as SessionHandle).info, { ...(p.request ? { request: p.request } : {}), expected: facts.statement, actual: tag, reason })
    this.closeReason = `integrity violation: ${reason}`
    this.fatal(SQLSTATE.internalError, 'gatehouse: the server ran something other than the statement the gateway judged; the session was ended')
  }

  /** At ReadyForQuery: record the held outcomes; a commit-time error lands on the last statement. */
  private settle(commitError: { code: string; message: string } | undefined): void {
    if (this.completed.length === 0) return
    const list = this.completed
    this.completed = []
    const last = list[list.length - 1]
    if (commitError && last?.done) last.done = { ...last.done, error: { code: commitError.code, message: `failed at commit: ${commitError.message}` } }
    for (const p of list) this.finish(p, p.done ?? { skipped: true })
  }

  /** Handles one whole backend message. Returns undefined to pass it on, or the bytes to send instead (empty: drop). */
  private onBackendMessage(type: number, body: Buffer): Buffer | undefined {
    const head = this.expect[0]
    const model = this.state
    switch (type) {
      case B.ParameterStatus: {
        const [k, v] = parseParameterStatus(body)
        model.settings.set(k, v)
        if (k === 'client_encoding' || k === 'server_encoding') {
          const unreadable = this.unreadableEncoding()
          if (unreadable) {
            void this.protocolEvent('session.unreadable-encoding', unreadable)
            this.fatal(SQLSTATE.featureNotSupported, `gatehouse: ${unreadable}; the session was ended`)
          }
        }
        return undefined
      }
      case B.CommandComplete: {
        const tag = parseCommandTag(body)
        if (head?.kind === 'query') {
          const p = head.stmts[head.idx++]
          if (p && !this.complete(p, tag)) return EMPTY
        } else if (head?.kind === 'execute') {
          this.expect.shift()
          if (!this.complete(head.pending, tag)) return EMPTY
        } else throw new Desync('CommandComplete', head)
        return undefined
      }
      case B.EmptyQueryResponse:
        if (head?.kind === 'execute') this.expect.shift()
        else if (head?.kind !== 'query') throw new Desync('EmptyQueryResponse', head)
        return undefined
      case B.CopyInResponse:
        if (this.copyEndsAhead > 0) this.copyEndsAhead--
        else this.copyingIn = true
        // A message the client sent before the server started the copy, and that waits for the
        // server, can only be a protocol violation now: the server will take nothing but copy data.
        if (this.copyingIn && this.quietWaiter) {
          this.endWith(SQLSTATE.protocolViolation, 'gatehouse: protocol violation: a message other than COPY data was sent during COPY from stdin; protocol synchronization was lost', 'protocol.violation')
          return undefined
        }
        // An extended-protocol COPY FROM STDIN has started: the server ignores the Syncs the
        // client sent before its CopyDone (libpq sends one right after Execute), so no answer comes for them.
        if (head?.kind === 'execute' && head.copyIn) {
          for (let i = this.expect.length - 1; i > 0; i--) {
            const e = this.expect[i] as Expectation
            if (e.kind === 'sync' && e.inCopy) this.expect.splice(i, 1)
          }
        }
        return undefined
      case B.FunctionCallResponse: {
        if (head?.kind !== 'query' || !head.fastpath) throw new Desync('FunctionCallResponse', head)
        const p = head.stmts[head.idx++]
        if (p) {
          p.done = { status: 'FUNCTION CALL' }
          this.completed.push(p)
        }
        return undefined
      }
      case B.PortalSuspended:
        if (head?.kind !== 'execute') throw new Desync('PortalSuspended', head)
        this.expect.shift()
        this.finish(head.pending, { rows: head.pending.rows, status: 'suspended' })
        return undefined
      case B.ReadyForQuery:
        // no copy outlives its query cycle (copy messages the server dropped after an error included)
        this.copyingIn = false
        this.copyEndsAhead = 0
        model.readyForQuery(body[0] as number)
        this.settle(this.commitError)
        this.commitError = undefined
        if (head?.kind === 'query') {
          this.expect.shift()
          for (let i = head.idx; i < head.stmts.length; i++) this.finish(head.stmts[i] as Pending, { skipped: true })
        } else if (head?.kind === 'sync') this.expect.shift()
        else throw new Desync('ReadyForQuery', head)
        return undefined
      case B.ErrorResponse:
        this.copyingIn = false
        return this.onBackendError(head, body)
      case B.ParseComplete:
        if (head?.kind !== 'parse') throw new Desync('ParseComplete', head)
        this.expect.shift()
        this.finish(head.pending, { status: 'PARSE' })
        return undefined
      case B.BindComplete:
        if (head?.kind !== 'bind') throw new Desync('BindComplete', head)
        this.expect.shift()
        return undefined
      case B.CloseComplete:
        if (head?.kind !== 'close') throw new Desync('CloseComplete', head)
        this.expect.shift()
        return undefined
      case B.RowDescription:
        if (head?.kind === 'describe') this.expect.shift()
        else if (head?.kind !== 'query') throw new Desync('RowDescription', head)
        return undefined
      case B.NoData:
        if (head?.kind !== 'describe') throw new Desync('NoData', head)
        this.expect.shift()
        return undefined
      default:
        return undefined
    }
  }

  private onBackendError(head: Expectation | undefined, body: Buffer): Buffer | undefined {
    if (!head) return undefined
    const fields = parseErrorFields(body)
    const error = { code: `SQLSTATE ${fields.get('C') ?? '?'}`, message: fields.get('M') ?? 'error' }
    if (head.kind === 'query') {
      if (head.substitute) return head.substitute
      const p = head.stmts[head.idx]
      if (p) {
        head.idx++
        this.finish(p, { error })
      } else this.commitError = error
      return undefined
    }
    // An error at Sync: the implicit transaction failed to commit (a deferred constraint). The
    // statements already reported their completion; the client sees the error as is.
    if (head.kind === 'sync') {
      this.commitError = error
      return undefined
    }
    // Extended protocol: the failing message, then everything up to Sync is skipped upstream.
    const undone: Expectation[] = [this.expect.shift() as Expectation]
    while (this.expect.length > 0 && this.expect[0]?.kind !== 'sync') undone.push(this.expect.shift() as Expectation)
    // Undo newest first, so a name changed twice ends up as it was before both.
    const sqlstate = fields.get('C') ?? '?'
    for (let i = undone.length - 1; i >= 0; i--) this.rollback(undone[i] as Expectation, i === 0 ? { ...error, sqlstate } : undefined)
    // The upstream now ignores everything until the client's Sync; so must the gateway, or it
    // would track statements the upstream never created.
    if (this.expect.length === 0) this.discardUntilSync = true
    return head.kind === 'substitute' ? head.error : undefined
  }

  /** Undoes what a failed or skipped extended-protocol message did to the session's state. */
  private rollback(e: Expectation, error: { code: string; message: string; sqlstate: string } | undefined): void {
    switch (e.kind) {
      case 'parse':
        this.state.rollback(e.change, error?.sqlstate)
        this.finish(e.pending, error ? { error: { code: error.code, message: error.message } } : { skipped: true })
        break
      case 'bind':
      case 'close':
        this.state.rollback(e.change, error?.sqlstate)
        break
      case 'execute':
        this.finish(e.pending, error ? { error: { code: error.code, message: error.message } } : { skipped: true })
        break
      case 'query':
        for (let i = e.idx; i < e.stmts.length; i++) this.finish(e.stmts[i] as Pending, { skipped: true })
        break
      default:
        break
    }
  }
}

/** SQL_ASCII, by the names PostgreSQL accepts for it: no conversion, the bytes are read in the server's encoding. */
function isSqlAscii(name: string): boolean {
  return name.toUpperCase().replace(/[^A-Z0-9]/g, '') === 'SQLASCII'
}

/** A statement the gateway refuses before policy, with the rule id and reason it reports. */
interface Unjudgeable {
  readonly text: string
  readonly attrs: Record<string, unknown>
  readonly rule: string
  readonly reason: string
  readonly code: ErrorCode
  /** Where the parser stopped (1-based characters), for the client's caret. */
  readonly position?: number
}

/**
 * Text the parser rejects or that reads two ways, a statement that would switch the session to
 * settings the gateway cannot parse under, and SQL naming the gateway's own statements and portals.
 */
function unjudgeable(text: string, analysis: SqlAnalysis): Unjudgeable | undefined {
  if (!analysis.ok) {
    const rule = analysis.rule ?? 'gatehouse/parse'
    const reason = rule === 'gatehouse/parse' ? `statement could not be parsed: ${analysis.error}` : analysis.error
    return { text, attrs: { sql: { error: analysis.error } }, rule, reason, code: 'GH_ERR_PARSE_FAILED', ...(analysis.position ? { position: analysis.position } : {}) }
  }
  for (const s of analysis.statements) {
    const f = s.facts
    if (f.settingRisk !== undefined) return { text: s.text, attrs: { sql: f }, rule: 'gatehouse/session-settings', reason: `the statement ${f.settingRisk}; the gateway could no longer judge statements safely`, code: 'GH_ERR_PROTOCOL_UNSUPPORTED' }
    const reserved = f.names.find((n) => n.toLowerCase().startsWith(RESERVED_PREFIX))
    if (reserved !== undefined) return { text: s.text, attrs: { sql: f }, rule: 'gatehouse/reserved-name', reason: `the name "${reserved}" is reserved for the gateway's own prepared statements and portals`, code: 'GH_ERR_POLICY_DENIED' }
  }
  return undefined
}

function unknownStatement(name: string): { attrs: Record<string, unknown>; rule: string; reason: string } {
  return { attrs: { sql: { error: `unknown prepared statement "${name}"` } }, rule: 'gatehouse/unknown-statement', reason: `prepared statement "${name}" was not created through the gateway (or did not succeed); it cannot be judged` }
}

/**
 * `gatehouse policy explain --sql`: the requests a simple Query with this text becomes, with the
 * refusals a session makes before policy. A SQL EXECUTE cannot be resolved outside a session
 * and is reported as the session would report an unknown name.
 */
export function explainSql(analyzer: SqlAnalyzer, text: string): ExplainedRequest[] {
  const analysis = analyzer.analyze(text)
  const u = unjudgeable(text, analysis)
  if (u) return [{ action: 'sql.query', text: u.text, attrs: u.attrs, refusal: { rule: u.rule, reason: u.reason } }]
  if (!analysis.ok) return []
  return analysis.statements.map((s): ExplainedRequest => {
    const name = s.facts.executes[0]
    if (name !== undefined) {
      const unknown = unknownStatement(name)
      return { action: 'sql.query', text: s.text, attrs: { sql: s.facts }, refusal: { rule: unknown.rule, reason: `${unknown.reason} (explain runs outside any session)` } }
    }
    return { action: 'sql.query', text: s.text, attrs: { sql: s.facts } }
  })
}
