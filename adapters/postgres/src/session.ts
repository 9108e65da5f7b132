/**
 * One client session of the PostgreSQL adapter: handshake, authentication through core, the
 * upstream login, then the message relay with one request per executed statement.
 *
 * Why it is shaped this way:
 * - Every backend message is attributed to the oldest outstanding client message (a FIFO of
 *   expectations), which is how PostgreSQL itself orders responses. This lets the gateway count
 *   rows and errors per statement, and put its own error exactly where PostgreSQL would have.
 * - A refused statement is not simply dropped: the gateway sends the upstream a statement that
 *   fails, and shows the client its own error in place of the upstream's. The upstream thus
 *   enters the same state PostgreSQL would after an error (an open transaction is aborted, an
 *   extended-protocol pipeline is skipped to Sync), so a refusal can never leave half of an
 *   implicit transaction committed.
 * - Prepared statements and portals are tracked per session and committed only when the
 *   upstream confirms them; an Execute is judged by the statement the upstream will run, and an
 *   Execute of anything the gateway has not seen parsed is refused (fail closed).
 * - While a statement waits for the pipeline (policy, the intent record), reading from the
 *   client pauses; backend data is streamed to the client without being buffered whole.
 */
import { randomBytes, randomInt } from 'node:crypto'
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
  type Logger,
  type Pipeline,
  type SessionHandle,
} from '@gatehouse/core'
import { AUTH, B, buildAuth, buildAuthSasl, buildBackendKeyData, buildError, buildReadyForQuery, parseCommandTag, parseErrorFields, parseParameterStatus, rowsFromTag } from './codec/backend.js'
import {
  CANCEL_REQUEST,
  F,
  GSSENC_REQUEST,
  PROTOCOL_3_0,
  SSL_REQUEST,
  buildParse,
  buildQuery,
  parseBind,
  parseCancel,
  parseExecute,
  parseParse,
  parsePassword,
  parseQuery,
  parseSaslInitial,
  parseStartupParams,
  parseTarget,
  TERMINATE,
} from './codec/frontend.js'
import { MessageReader, ProtocolViolation, type FrontendMessage } from './codec/reader.js'
import type { PostgresOptions, UpstreamConfig } from './config.js'
import { renderError, SQLSTATE } from './errors.js'
import type { AnalyzedStatement, SqlAnalysis, SqlAnalyzer } from './sql/analyze.js'
import { isUnsafeClientEncoding, mergeExecuted, preparedFacts, type SqlFacts } from './sql/facts.js'
import { cancelUpstream, connectUpstream, type UpstreamSession } from './upstream.js'

export interface SessionDeps {
  readonly connection: ConnectionConfig
  readonly upstream: UpstreamConfig
  readonly options: PostgresOptions
  readonly tls: { context: SecureContext; required: boolean } | undefined
  readonly pipeline: Pipeline
  readonly analyzer: SqlAnalyzer
  readonly logger: Logger
  /** Cancel keys handed to clients → the session that owns them. */
  readonly cancelKeys: Map<string, PostgresSession>
}

/** A statement sent upstream whose outcome is still to be recorded. */
interface Pending {
  readonly request: GatewayRequest | undefined
  rows: number
  /** A SQL-level PREPARE: the statement its name holds once the upstream confirms it. */
  prepares?: { readonly name: string; readonly statement: PreparedStatement }
  /** Set at CommandComplete; recorded at ReadyForQuery, when the transaction's fate is known. */
  done?: Outcome
}

type Outcome = { rows?: number; status?: string; error?: { code: string; message: string }; skipped?: boolean }

interface PreparedStatement {
  readonly query: string
  readonly analysis: SqlAnalysis
}

interface Portal {
  readonly statement: PreparedStatement | undefined
  readonly params: readonly (string | null)[]
}

type Expectation =
  | { kind: 'query'; stmts: Pending[]; idx: number; substitute?: Buffer; failed?: boolean }
  | { kind: 'parse'; name: string; prev: PreparedStatement | undefined }
  | { kind: 'bind'; name: string; prev: Portal | undefined }
  | { kind: 'close'; target: 'S' | 'P'; name: string; prevStatement: PreparedStatement | undefined; prevPortal: Portal | undefined }
  | { kind: 'describe' }
  | { kind: 'execute'; pending: Pending }
  | { kind: 'substitute'; error: Buffer }
  | { kind: 'sync' }

/** Sent upstream in place of a refused statement: fails with a syntax error, visibly so in server logs. */
const REFUSAL_SQL = 'gatehouse: statement refused by the gateway'
const STATUS_IDLE = 0x49 // 'I'

const keyOf = (pid: number, secret: Buffer) => `${pid}:${secret.toString('hex')}`
const FLUSH = Buffer.from([F.Flush, 0, 0, 0, 4])

/** The upstream answered something the gateway did not expect: its view of the session is no longer trustworthy. */
class Desync extends Error {
  constructor(message: string, head: Expectation | undefined) {
    super(`unexpected ${message} while expecting ${head?.kind ?? 'nothing'}`)
  }
}

export class PostgresSession {
  private client: Socket
  private reader: MessageReader
  private handle: SessionHandle | undefined
  private upstream: UpstreamSession | undefined
  private upSocket: Socket | undefined
  private phase: 'startup' | 'auth' | 'connecting' | 'ready' | 'closed' = 'startup'
  private startupTimer: NodeJS.Timeout | undefined
  private pumping = false
  private quietWaiter: (() => void) | undefined
  private commitError: { code: string; message: string } | undefined
  private pausedForPump = false
  private readonly expect: Expectation[] = []
  private upQueue: Buffer[] = []
  private readonly statements = new Map<string, PreparedStatement>()
  private readonly portals = new Map<string, Portal>()
  private discardUntilSync = false
  private txStatus = STATUS_IDLE
  private settings = new Map<string, string>()
  private cancelKey: string | undefined
  // backend stream state
  private upPending: Buffer | undefined
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
    this.reader = new MessageReader(deps.options.maxMessageBytes)
  }

  start(): void {
    this.client.setNoDelay(true)
    this.startupTimer = setTimeout(() => this.fatal(SQLSTATE.protocolViolation, 'gatehouse: startup timed out'), this.deps.options.startupTimeoutMs)
    this.attachClient(this.client)
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
    clearTimeout(this.startupTimer)
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
    else if (e.kind === 'execute') this.finish(e.pending, { error })
  }

  /** Sends a FATAL error and closes (handshake failures, protocol violations). */
  private fatal(code: string, message: string): void {
    if (this.phase === 'closed') return
    if (!this.client.destroyed && this.client.writable) this.client.write(buildError({ severity: 'FATAL', code, message }))
    this.close(this.closeReason ?? message)
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
      if (err instanceof ProtocolViolation) this.fatal(SQLSTATE.protocolViolation, `gatehouse: protocol violation: ${err.message}`)
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
      if (target) target.cancel()
      else this.deps.logger.info({ client: this.client.remoteAddress }, 'cancel request with unknown key ignored')
      this.close('cancel request')
      return undefined
    }
    if (code >> 16 !== 3) throw new ProtocolViolation(`unsupported frontend protocol ${code >> 16}.${code & 0xffff}`)
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
      this.fatal(SQLSTATE.invalidAuthorization, `gatehouse: connection "${this.deps.connection.name}" requires TLS (use sslmode=require or stronger)`)
      return
    }
    const replication = params.get('replication')
    if (replication !== undefined && !['false', 'off', 'no', '0'].includes(replication.toLowerCase())) {
      this.fatal(SQLSTATE.featureNotSupported, 'gatehouse: replication connections are not supported')
      return
    }
    const user = params.get('user')
    if (!user) {
      this.fatal(SQLSTATE.invalidAuthorization, 'gatehouse: no user name in startup packet')
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
    this.handle = this.deps.pipeline.openSession({ protocol: 'postgres', clientAddress: `${this.client.remoteAddress ?? '?'}:${this.client.remotePort ?? 0}`, tls })
    this.phase = 'auth'
    try {
      if (this.deps.options.clientAuth === 'cleartext') await this.authCleartext()
      else await this.authScram()
    } catch (err) {
      const e = isGatewayError(err) ? err : new GatewayError('GH_ERR_AUTH_FAILED', String(err))
      if (err instanceof ProtocolViolation) throw err
      const sqlstate = e.code === 'GH_ERR_AUTH_SCOPE' ? SQLSTATE.invalidAuthorization : e.code === 'GH_ERR_PROTOCOL' ? SQLSTATE.protocolViolation : SQLSTATE.invalidPassword
      const message = e.code === 'GH_ERR_AUTH_FAILED' ? `gatehouse: authentication failed for user "${user}"` : `gatehouse: ${e.clientMessage}`
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
      this.fatal(SQLSTATE.protocolViolation, `gatehouse: protocol violation: ${(err as Error).message}`)
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
    const exchange = this.deps.pipeline.scram(session, this.user)
    this.client.write(buildAuthSasl(['SCRAM-SHA-256']))
    const initial = parseSaslInitial((await this.authMessage()).body)
    if (initial.mechanism !== 'SCRAM-SHA-256') throw new GatewayError('GH_ERR_AUTH_UNSUPPORTED', `SASL mechanism ${initial.mechanism} not supported`)
    this.client.write(buildAuth(AUTH.SASLContinue, Buffer.from(exchange.start(initial.data), 'utf8')))
    const final = (await this.authMessage()).body.toString('utf8')
    const { serverFinal } = await exchange.finish(final)
    this.client.write(buildAuth(AUTH.SASLFinal, Buffer.from(serverFinal, 'utf8')))
  }

  private async connectUpstream(): Promise<void> {
    this.phase = 'connecting'
    const handle = this.handle as SessionHandle
    const forwarded: Record<string, string> = {}
    for (const name of this.deps.options.forwardParams) {
      const v = this.startupParams.get(name)
      if (v !== undefined && !['user', 'database', 'options', 'replication'].includes(name)) forwarded[name] = v
    }
    let up: UpstreamSession
    try {
      up = await connectUpstream(this.deps.upstream, forwarded, handle.info.signal)
    } catch (err) {
      const e = isGatewayError(err) ? err : new GatewayError('GH_ERR_UPSTREAM_UNAVAILABLE', String(err))
      this.deps.logger.warn({ session: handle.info.id, code: e.code, err: e.message }, 'upstream connection failed')
      const sqlstate = e.code === 'GH_ERR_UPSTREAM_AUTH' ? SQLSTATE.serverRejected : SQLSTATE.connectionFailure
      this.closeReason = `${e.code}: ${e.message}`
      this.fatal(sqlstate, `gatehouse: upstream of connection "${this.deps.connection.name}" is unavailable`)
      return
    }
    if (this.closed) {
      up.socket.destroy()
      return
    }
    clearTimeout(this.startupTimer)
    this.upstream = up
    this.upSocket = up.socket
    this.settings = new Map(up.parameters)
    this.txStatus = up.status
    // Our own cancel key: the upstream's never reaches the client.
    const pid = randomInt(1, 0x7fffffff)
    const secret = randomBytes(4)
    this.cancelKey = keyOf(pid, secret)
    this.deps.cancelKeys.set(this.cancelKey, this)
    up.socket.on('data', this.onUpstreamData)
    up.socket.on('error', (err) => this.close(`upstream error: ${(err as NodeJS.ErrnoException).code ?? err.message}`))
    up.socket.on('close', () => this.close(this.closeReason ?? 'upstream closed the connection'))
    up.socket.on('drain', () => this.client.resume())
    this.client.on('drain', () => this.upSocket?.resume())
    this.client.cork()
    this.client.write(buildAuth(AUTH.Ok))
    for (const m of up.parameterMessages) this.client.write(m)
    this.client.write(buildBackendKeyData(pid, secret))
    this.client.write(buildReadyForQuery(up.status))
    this.client.uncork()
    this.phase = 'ready'
    if (up.leftover.length > 0) this.onUpstreamData(up.leftover)
  }

  /** Forwards a cancel for this session's running statement to the upstream backend. */
  cancel(): void {
    const up = this.upstream
    if (!up) return
    this.deps.logger.info({ session: this.handle?.info.id }, 'cancel request forwarded to upstream')
    cancelUpstream(this.deps.upstream, up.pid, up.secret).catch((err: unknown) => this.deps.logger.warn({ err: String(err) }, 'cancel forwarding failed'))
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
    let ok: boolean
    if (q.length === 1) ok = up.write(q[0] as Buffer)
    else {
      up.cork()
      for (const b of q) up.write(b)
      up.uncork()
      ok = !up.writableNeedDrain
    }
    // Backpressure: stop reading the client until the upstream drains.
    if (!ok) this.client.pause()
  }

  private onClientMessage(msg: FrontendMessage): Promise<void> | undefined {
    const t = msg.type
    if (this.discardUntilSync && t !== F.Sync && t !== F.Terminate) return undefined
    switch (t) {
      case F.Query: {
        const q = this.quiet()
        return q ? q.then(() => this.onQuery(msg)) : this.onQuery(msg)
      }
      case F.Parse: {
        const q = this.quiet()
        return q ? q.then(() => this.onParse(msg)) : this.onParse(msg)
      }
      case F.Bind:
        return this.onBind(msg)
      case F.Execute:
        return this.onExecute(msg)
      case F.Describe: {
        const target = parseTarget(msg.body)
        if (this.refuseBadName(target.name)) return undefined
        this.expect.push({ kind: 'describe' })
        this.toUpstream(msg.raw)
        return undefined
      }
      case F.Close: {
        const target = parseTarget(msg.body)
        if (this.refuseBadName(target.name)) return undefined
        const prevStatement = target.kind === 'S' ? this.statements.get(target.name) : undefined
        const prevPortal = target.kind === 'P' ? this.portals.get(target.name) : undefined
        if (target.kind === 'S') this.statements.delete(target.name)
        else this.portals.delete(target.name)
        this.expect.push({ kind: 'close', target: target.kind, name: target.name, prevStatement, prevPortal })
        this.toUpstream(msg.raw)
        return undefined
      }
      case F.Sync:
        this.discardUntilSync = false
        this.expect.push({ kind: 'sync' })
        this.toUpstream(msg.raw)
        return undefined
      case F.Flush:
      case F.CopyData:
      case F.CopyDone:
      case F.CopyFail:
        this.toUpstream(msg.raw)
        return undefined
      case F.Terminate:
        this.flushUpstream()
        this.closeReason = 'client terminated'
        this.close('client terminated')
        return undefined
      case F.FunctionCall:
        return this.refuseFunctionCall(msg)
      default:
        throw new ProtocolViolation(`unexpected message type '${String.fromCharCode(t)}'`)
    }
  }

  /**
   * The server lexes a Query or Parse text with the settings in force when it gets to it, which
   * earlier statements still running may change (SET, set_config, a function that calls it).
   * So before analysing such a text the gateway lets every earlier statement finish (asking the
   * upstream to flush its output), then judges with the settings the upstream reported.
   */
  private quiet(): Promise<void> | undefined {
    if (!this.busy()) return undefined
    this.flushUpstream()
    this.upSocket?.write(FLUSH)
    return new Promise((resolve) => {
      this.quietWaiter = resolve
    })
  }

  private busy(): boolean {
    for (const e of this.expect) if (e.kind === 'query' || e.kind === 'execute' || e.kind === 'substitute') return true
    return false
  }

  private wakeQuietWaiter(): void {
    if (this.quietWaiter && (this.closed || !this.busy())) {
      const w = this.quietWaiter
      this.quietWaiter = undefined
      w()
    }
  }

  /** The settings under which the gateway's SQL parsing would not match the server's. */
  private unsafeSetting(): string | undefined {
    const scs = this.settings.get('standard_conforming_strings')
    if (scs !== undefined && scs !== 'on') return 'standard_conforming_strings is off'
    const enc = this.settings.get('client_encoding')
    if (enc !== undefined && isUnsafeClientEncoding(enc)) return `client_encoding ${enc} is not supported`
    return undefined
  }

  private newRequest(text: string, attrs: Record<string, unknown>, params?: readonly (string | null)[]): GatewayRequest {
    return this.deps.pipeline.request((this.handle as SessionHandle).info, { action: 'sql.query', text, attrs, ...(params ? { params } : {}) })
  }

  private onQuery(msg: FrontendMessage): Promise<void> | undefined {
    if (this.closed) return undefined
    // A simple Query destroys the unnamed statement and portal upstream.
    this.statements.delete('')
    this.portals.delete('')
    const text = parseQuery(msg.body)
    const analysis = this.deps.analyzer.analyzeOrDefer(text, this.owner())
    if (analysis instanceof Promise) return analysis.then((a) => (this.closed ? undefined : this.onQueryAnalysed(msg, text, a)))
    return this.onQueryAnalysed(msg, text, analysis)
  }

  /** Whose turn a background parse takes: the principal, so many sessions of one token share one turn. */
  private owner(): string {
    return this.handle?.info.principal?.id ?? ''
  }

  private onQueryAnalysed(msg: FrontendMessage, text: string, analysis: SqlAnalysis): Promise<void> | undefined {
    const unjudgeable = this.refuseUnjudgeable(text, analysis, undefined, this.substituteQuery)
    if (unjudgeable || !analysis.ok) return unjudgeable
    if (analysis.statements.length === 1) {
      // The common case, without a promise when the pipeline answers synchronously.
      const s = analysis.statements[0] as AnalyzedStatement
      const facts = this.resolveExecutes(s.facts)
      if (typeof facts === 'string') return this.refuseUnknownStatement(s.text, facts, undefined, this.substituteQuery)
      return this.admitThen(this.newRequest(s.text, { sql: facts }), msg, 'query')
    }
    return this.onMultiStatementQuery(msg, analysis.statements)
  }

  /**
   * Refuses, before policy, what the gateway cannot judge: any statement while the session runs
   * with settings under which its parse would differ from the server's, text the parser rejects,
   * and statements that would switch the session to such settings. Returns undefined otherwise.
   */
  private refuseUnjudgeable(text: string, analysis: SqlAnalysis, params: readonly (string | null)[] | undefined, substitute: (error: Buffer) => void): Promise<void> | undefined {
    const unsafe = this.unsafeSetting()
    if (unsafe) return this.refuse(this.newRequest(text, { sql: { error: unsafe } }, params), 'gatehouse/session-settings', `${unsafe}; the gateway cannot judge statements safely`, 'GH_ERR_PROTOCOL_UNSUPPORTED', substitute)
    const u = unjudgeable(text, analysis)
    if (u) return this.refuse(this.newRequest(u.text, u.attrs, params), u.rule, u.reason, u.code, substitute)
    return undefined
  }

  /** Asks the pipeline; forwards `msg` when admitted, or puts a refusal in its place. */
  private admitThen(request: GatewayRequest, msg: FrontendMessage, kind: 'query' | 'execute'): Promise<void> | undefined {
    const admission = this.deps.pipeline.admit(request)
    if (admission instanceof Promise) return admission.then((a) => this.afterAdmission(msg, request, a, kind))
    this.afterAdmission(msg, request, admission, kind)
    return undefined
  }

  private afterAdmission(msg: FrontendMessage, request: GatewayRequest, admission: Admission, kind: 'query' | 'execute'): void {
    if (this.closed) return
    if (!admission.admitted) {
      // The pipeline has recorded the refusal; the client sees it where PostgreSQL would put an error.
      ;(kind === 'query' ? this.substituteQuery : this.substituteExtended)(renderError(admission.error))
      return
    }
    const pending: Pending = { request, rows: 0 }
    this.forgetSqlLevelState(pending)
    this.expect.push(kind === 'query' ? { kind: 'query', stmts: [pending], idx: 0 } : { kind: 'execute', pending })
    this.toUpstream(msg.raw)
  }

  /** Refuses a request the gateway will not put to policy; the pipeline records it. */
  private async refuse(request: GatewayRequest, rule: string, reason: string, code: ErrorCode, substitute: (error: Buffer) => void): Promise<void> {
    const error = await this.deps.pipeline.refuse(request, { rule, reason, code })
    if (!this.closed) substitute(renderError(error))
  }

  /** Several statements in one Query: each judged and recorded; if one is refused, none runs. */
  private async onMultiStatementQuery(msg: FrontendMessage, statements: readonly AnalyzedStatement[]): Promise<void> {
    const stmts: Pending[] = []
    let refusal: GatewayError | undefined
    for (const s of statements) {
      const facts = this.resolveExecutes(s.facts)
      if (typeof facts === 'string') {
        for (const p of stmts) this.finish(p, { skipped: true })
        return this.refuseUnknownStatement(s.text, facts, undefined, this.substituteQuery)
      }
      const request = this.newRequest(s.text, { sql: facts })
      const admission = await this.deps.pipeline.admit(request)
      if (admission.admitted) stmts.push({ request, rows: 0 })
      else refusal ??= admission.error
      if (this.closed) return
    }
    if (refusal) {
      // Nothing in the string runs: the allowed statements are recorded as skipped.
      for (const p of stmts) this.finish(p, { skipped: true })
      this.substituteQuery(renderError(refusal))
      return
    }
    for (const p of stmts) this.forgetSqlLevelState(p)
    this.expect.push({ kind: 'query', stmts, idx: 0 })
    this.toUpstream(msg.raw)
  }

  /**
   * SQL-level PREPARE, DEALLOCATE, DISCARD, DECLARE and CLOSE change the prepared statements and
   * portals the protocol-level names refer to (SQL and protocol names share one namespace). A
   * PREPARE's name is forgotten now and learned when the upstream confirms the PREPARE, so a
   * PREPARE that fails (a duplicate name) cannot make the gateway misjudge a later EXECUTE.
   * DEALLOCATE and DISCARD make the gateway forget everything (fail closed).
   */
  private forgetSqlLevelState(p: Pending): void {
    const facts = p.request?.attrs.sql as SqlFacts | undefined
    if (!facts?.kinds) return
    const prepare = facts.prepare
    if (prepare) {
      this.statements.delete(prepare.name)
      const held = preparedFacts(facts)
      if (held && p.request?.text !== undefined) p.prepares = { name: prepare.name, statement: { query: p.request.text, analysis: { ok: true, statements: [{ text: p.request.text, facts: held }] } } }
    }
    for (const k of facts.kinds) {
      if (k === 'DEALLOCATE' || k === 'DISCARD') this.statements.clear()
      if (k === 'DECLARE' || k === 'CLOSE' || k === 'DISCARD') this.portals.clear()
    }
  }

  /** Sends the upstream a failing query in place of the client's; the client sees `error` instead. */
  private readonly substituteQuery = (error: Buffer): void => {
    this.expect.push({ kind: 'query', stmts: [], idx: 0, substitute: error })
    this.toUpstream(buildQuery(REFUSAL_SQL))
  }

  private async refuseFunctionCall(msg: FrontendMessage): Promise<void> {
    const oid = msg.body.length >= 4 ? msg.body.readUInt32BE(0) : 0
    const request = this.deps.pipeline.request((this.handle as SessionHandle).info, { action: 'sql.function-call', text: `FunctionCall oid=${oid}`, attrs: { sql: { functionOid: oid } } })
    return this.refuse(request, 'gatehouse/function-call', 'the FunctionCall protocol message is not allowed through the gateway', 'GH_ERR_PROTOCOL_UNSUPPORTED', this.substituteQuery)
  }

  private onParse(msg: FrontendMessage): Promise<void> | undefined {
    if (this.closed) return undefined
    const p = parseParse(msg.body)
    if (this.refuseBadName(p.name)) return undefined
    if (!this.statements.has(p.name) && this.statements.size >= this.deps.options.maxPreparedStatements) {
      this.substituteExtended(renderError(new GatewayError('GH_ERR_PROTOCOL_UNSUPPORTED', `too many prepared statements in this session (limit ${this.deps.options.maxPreparedStatements}); close some first`)))
      return undefined
    }
    const analysis = this.deps.analyzer.analyzeOrDefer(p.query, this.owner())
    if (analysis instanceof Promise) return analysis.then((a) => (this.closed ? undefined : this.onParseAnalysed(msg, p, a)))
    return this.onParseAnalysed(msg, p, analysis)
  }

  private onParseAnalysed(msg: FrontendMessage, p: { name: string; query: string }, analysis: SqlAnalysis): undefined {
    const prev = this.statements.get(p.name)
    this.statements.set(p.name, { query: p.query, analysis })
    this.expect.push({ kind: 'parse', name: p.name, prev })
    this.toUpstream(msg.raw)
    return undefined
  }

  private onBind(msg: FrontendMessage): undefined {
    const b = parseBind(msg.body)
    if (this.refuseBadName(b.portal, b.statement)) return undefined
    if (!this.portals.has(b.portal) && this.portals.size >= this.deps.options.maxPreparedStatements) {
      this.substituteExtended(renderError(new GatewayError('GH_ERR_PROTOCOL_UNSUPPORTED', `too many open portals in this session (limit ${this.deps.options.maxPreparedStatements}); close some first`)))
      return undefined
    }
    const prev = this.portals.get(b.portal)
    this.portals.set(b.portal, { statement: this.statements.get(b.statement), params: b.params })
    this.expect.push({ kind: 'bind', name: b.portal, prev })
    this.toUpstream(msg.raw)
    return undefined
  }

  private onExecute(msg: FrontendMessage): Promise<void> | undefined {
    const { portal: name } = parseExecute(msg.body)
    if (this.refuseBadName(name)) return undefined
    const portal = this.portals.get(name)
    const stmt = portal?.statement
    const info = (this.handle as SessionHandle).info
    if (!portal || !stmt) {
      const request = this.deps.pipeline.request(info, { action: 'sql.query', text: `EXECUTE portal "${name}"`, attrs: { sql: { error: 'unknown portal or statement' } } })
      return this.refuse(request, 'gatehouse/unknown-statement', 'the portal or prepared statement was not created through the gateway; it cannot be judged', 'GH_ERR_POLICY_DENIED', this.substituteExtended)
    }
    const a = stmt.analysis
    const unjudgeable = this.refuseUnjudgeable(stmt.query, a, portal.params, this.substituteExtended)
    if (unjudgeable || !a.ok) return unjudgeable
    if (a.statements.length === 0) {
      // An empty query: nothing runs, PostgreSQL answers EmptyQueryResponse.
      this.expect.push({ kind: 'execute', pending: { request: undefined, rows: 0 } })
      this.toUpstream(msg.raw)
      return
    }
    if (a.statements.length > 1) return this.refuse(this.newRequest(stmt.query, { sql: { error: 'multiple statements' } }, portal.params), 'gatehouse/parse', 'a prepared statement must contain one statement', 'GH_ERR_PARSE_FAILED', this.substituteExtended)
    const s = a.statements[0] as AnalyzedStatement
    const facts = this.resolveExecutes(s.facts)
    if (typeof facts === 'string') return this.refuseUnknownStatement(s.text, facts, portal.params, this.substituteExtended)
    return this.admitThen(this.newRequest(s.text, { sql: facts }, portal.params), msg, 'execute')
  }

  /**
   * A SQL-level EXECUTE is judged by the statement it runs: the facts of the prepared statement
   * (made by a Parse or a SQL PREPARE the gateway saw succeed) are merged in. Returns the name
   * that cannot be resolved when one cannot.
   */
  private resolveExecutes(facts: SqlFacts): SqlFacts | string {
    if (facts.executes.length === 0) return facts
    const executed: SqlFacts[] = []
    for (const name of facts.executes) {
      const a = this.statements.get(name)?.analysis
      if (!a || !a.ok || a.statements.length !== 1) return name
      executed.push((a.statements[0] as AnalyzedStatement).facts)
    }
    return mergeExecuted(facts, executed)
  }

  private refuseUnknownStatement(text: string, name: string, params: readonly (string | null)[] | undefined, substitute: (error: Buffer) => void): Promise<void> {
    const u = unknownStatement(name)
    return this.refuse(this.newRequest(text, u.attrs, params), u.rule, u.reason, 'GH_ERR_POLICY_DENIED', substitute)
  }

  /**
   * PostgreSQL keys prepared statements and portals by their first 63 bytes, in the server's
   * encoding: `a…a` (63) and `a…aX` (64) are one name to the server and two to a map keyed by the
   * full name. So the gateway could judge one statement while the server runs another. Names
   * longer than 63 bytes, or outside printable ASCII (whose bytes the server may convert), are
   * refused; every driver uses short ASCII names.
   */
  private refuseBadName(...names: string[]): boolean {
    for (const name of names) {
      if (name.length <= 63 && /^[\x20-\x7e]*$/.test(name)) continue
      this.substituteExtended(renderError(new GatewayError('GH_ERR_PROTOCOL_UNSUPPORTED', 'prepared statement and portal names must be printable ASCII of at most 63 bytes')))
      return true
    }
    return false
  }

  /**
   * Extended protocol: make the upstream fail here (a Parse that cannot succeed), so it skips to
   * Sync exactly as PostgreSQL would after an error; the client sees `error`; the gateway
   * discards the client's messages until Sync.
   */
  private readonly substituteExtended = (error: Buffer): void => {
    this.expect.push({ kind: 'substitute', error })
    this.toUpstream(buildParse('gatehouse_refused', REFUSAL_SQL))
    this.discardUntilSync = true
  }

  // ---------------------------------------------------------------- ready: upstream → client

  private readonly onUpstreamData = (chunk: Buffer) => {
    if (this.closed) return
    let buf = chunk
    if (this.upPending) {
      buf = Buffer.concat([this.upPending, chunk])
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
          this.upPending = Buffer.from(buf.subarray(i))
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
          this.upPending = Buffer.from(buf.subarray(i))
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
      }
      if (passFrom < n) pieces.push(passFrom === 0 ? buf : buf.subarray(passFrom, n))
    } catch (err) {
      // Fail closed: a session whose statement tracking is off cannot be judged any more.
      this.deps.logger.error({ err: (err as Error).message, session: this.handle?.info.id }, 'upstream protocol state lost; session closed')
      if (pieces.length > 0) this.client.write(pieces.length === 1 ? (pieces[0] as Buffer) : Buffer.concat(pieces))
      this.fatal(SQLSTATE.protocolViolation, 'gatehouse: lost track of the upstream protocol state; session closed')
      return
    }
    this.wakeQuietWaiter()
    const out = this.client
    let ok = true
    if (pieces.length === 1) ok = out.write(pieces[0] as Buffer)
    else if (pieces.length > 1) {
      out.cork()
      for (const p of pieces) out.write(p)
      out.uncork()
      ok = !out.writableNeedDrain
    }
    // Backpressure: stop reading the upstream until the client drains.
    if (!ok) this.upSocket?.pause()
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

  private complete(p: Pending, outcome: Outcome): void {
    p.done = outcome
    if (p.prepares && (this.statements.has(p.prepares.name) || this.statements.size < this.deps.options.maxPreparedStatements)) this.statements.set(p.prepares.name, p.prepares.statement)
    this.completed.push(p)
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
    switch (type) {
      case B.ParameterStatus: {
        const [k, v] = parseParameterStatus(body)
        this.settings.set(k, v)
        return undefined
      }
      case B.CommandComplete: {
        const tag = parseCommandTag(body)
        if (head?.kind === 'query') {
          const p = head.stmts[head.idx++]
          if (p) this.complete(p, { rows: rowsFromTag(tag) ?? p.rows, status: tag })
        } else if (head?.kind === 'execute') {
          this.expect.shift()
          this.complete(head.pending, { rows: rowsFromTag(tag) ?? head.pending.rows, status: tag })
        } else throw new Desync('CommandComplete', head)
        return undefined
      }
      case B.EmptyQueryResponse:
        if (head?.kind === 'execute') this.expect.shift()
        else if (head?.kind !== 'query') throw new Desync('EmptyQueryResponse', head)
        return undefined
      case B.PortalSuspended:
        if (head?.kind !== 'execute') throw new Desync('PortalSuspended', head)
        this.expect.shift()
        this.finish(head.pending, { rows: head.pending.rows, status: 'suspended' })
        return undefined
      case B.ReadyForQuery:
        this.txStatus = body[0] as number
        this.settle(this.commitError)
        this.commitError = undefined
        if (head?.kind === 'query') {
          this.expect.shift()
          for (let i = head.idx; i < head.stmts.length; i++) this.finish(head.stmts[i] as Pending, { skipped: true })
        } else if (head?.kind === 'sync') this.expect.shift()
        else throw new Desync('ReadyForQuery', head)
        // Portals live until the end of their transaction.
        if (this.txStatus === STATUS_IDLE) this.portals.clear()
        return undefined
      case B.ErrorResponse:
        return this.onBackendError(head, body)
      case B.ParseComplete:
        if (head?.kind !== 'parse') throw new Desync('ParseComplete', head)
        this.expect.shift()
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
    // Undo newest first, so a name parsed twice ends up as it was before both.
    for (let i = undone.length - 1; i >= 0; i--) this.rollback(undone[i] as Expectation, i === 0 ? error : undefined)
    // The upstream now ignores everything until the client's Sync; so must the gateway, or it
    // would track statements the upstream never created.
    if (this.expect.length === 0) this.discardUntilSync = true
    return head.kind === 'substitute' ? head.error : undefined
  }

  /** Undoes what a failed or skipped extended-protocol message did to the session's state. */
  private rollback(e: Expectation, error: { code: string; message: string } | undefined): void {
    switch (e.kind) {
      case 'parse':
        if (e.prev) this.statements.set(e.name, e.prev)
        else this.statements.delete(e.name)
        break
      case 'bind':
        if (e.prev) this.portals.set(e.name, e.prev)
        else this.portals.delete(e.name)
        break
      case 'close':
        if (e.prevStatement) this.statements.set(e.name, e.prevStatement)
        if (e.prevPortal) this.portals.set(e.name, e.prevPortal)
        break
      case 'execute':
        this.finish(e.pending, error ? { error } : { skipped: true })
        break
      case 'query':
        for (let i = e.idx; i < e.stmts.length; i++) this.finish(e.stmts[i] as Pending, { skipped: true })
        break
      default:
        break
    }
  }
}

/** A statement the gateway refuses before policy, with the rule id and reason it reports. */
interface Unjudgeable {
  readonly text: string
  readonly attrs: Record<string, unknown>
  readonly rule: string
  readonly reason: string
  readonly code: ErrorCode
}

/** Text the parser rejects, or a statement that would switch the session to settings the gateway cannot parse under. */
function unjudgeable(text: string, analysis: SqlAnalysis): Unjudgeable | undefined {
  if (!analysis.ok) return { text, attrs: { sql: { error: analysis.error } }, rule: 'gatehouse/parse', reason: `statement could not be parsed: ${analysis.error}`, code: 'GH_ERR_PARSE_FAILED' }
  const risky = analysis.statements.find((s) => s.facts.settingRisk !== undefined)
  if (risky) return { text: risky.text, attrs: { sql: risky.facts }, rule: 'gatehouse/session-settings', reason: `the statement ${risky.facts.settingRisk}; the gateway could no longer judge statements safely`, code: 'GH_ERR_PROTOCOL_UNSUPPORTED' }
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
