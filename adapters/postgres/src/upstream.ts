/**
 * The upstream side: opens a connection to the real PostgreSQL server and logs in with the
 * credentials from the connection config (SCRAM-SHA-256, md5, password or trust), optionally
 * over TLS. The client never sees these credentials, and they are never logged: errors carry
 * the server's message, not what was sent.
 */
import { createHash } from 'node:crypto'
import { isIP, connect as netConnect, type Socket } from 'node:net'
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls'
import { GatewayError, ScramClient } from '@gatehouse/core'
import { AUTH, B, parseErrorFields, parseParameterStatus } from './codec/backend.js'
import { buildCancel, buildPassword, buildQuery, buildSaslInitial, buildSaslResponse, buildSslRequest, buildStartup, TERMINATE } from './codec/frontend.js'
import type { UpstreamConfig } from './config.js'

export interface UpstreamSession {
  readonly socket: Socket | TLSSocket
  /** ParameterStatus messages as received, to relay to the client. */
  readonly parameterMessages: Buffer[]
  readonly parameters: Map<string, string>
  readonly pid: number
  readonly secret: Buffer
  readonly status: number
  /** Bytes received after ReadyForQuery (normally none). */
  readonly leftover: Buffer
}

/** Why a login deadline (see `loginDeadline`) fired: the session closed, or the time ran out. */
function abortReason(session: AbortSignal, cfg: UpstreamConfig, what: string): Error {
  return new Error(session.aborted ? 'session closed' : `${what} did not finish within ${cfg.connectTimeoutMs} ms`)
}

interface Deadline {
  readonly signal: AbortSignal
  /** Stops the timer and lets go of the session's signal. */
  clear(): void
}

/**
 * The session's signal, or `connectTimeoutMs` after now, whichever comes first. Like libpq's
 * connect_timeout it bounds the whole login (TCP, TLS, authentication), not only the TCP connect:
 * an upstream that accepts and then says nothing must not hold the session, or its socket, forever.
 * A timer of its own (cleared when the login ends): an `AbortSignal.timeout` inside
 * `AbortSignal.any` was seen never to fire here.
 */
function loginDeadline(cfg: UpstreamConfig, session: AbortSignal): Deadline {
  const controller = new AbortController()
  const abort = () => controller.abort()
  const timer = setTimeout(abort, cfg.connectTimeoutMs)
  if (session.aborted) abort()
  else session.addEventListener('abort', abort, { once: true })
  return {
    signal: controller.signal,
    clear: () => {
      clearTimeout(timer)
      session.removeEventListener('abort', abort)
    },
  }
}

function openSocket(cfg: UpstreamConfig, session: AbortSignal, deadline: AbortSignal): Promise<Socket> {
  return new Promise((resolve, reject) => {
    if (deadline.aborted) {
      reject(abortReason(session, cfg, 'connect'))
      return
    }
    const socket = netConnect({ host: cfg.host, port: cfg.port })
    socket.setNoDelay(true)
    const onAbort = () => fail(abortReason(session, cfg, 'connect'))
    deadline.addEventListener('abort', onAbort, { once: true })
    function fail(err: Error) {
      deadline.removeEventListener('abort', onAbort)
      socket.destroy()
      reject(err)
    }
    socket.once('error', fail)
    socket.once('connect', () => {
      deadline.removeEventListener('abort', onAbort)
      socket.off('error', fail)
      resolve(socket)
    })
  })
}

/** Reads whole backend messages from a socket during login. */
class LoginReader {
  private waiting: ((err?: Error) => void) | undefined
  private error: Error | undefined
  private readonly onData = (chunk: Buffer) => {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk])
    this.wake()
  }
  private readonly onEnd = () => {
    this.error ??= new Error('upstream closed the connection during login')
    this.wake()
  }
  private readonly onError = (err: Error) => {
    this.error ??= err
    this.wake()
  }

  /** `buf`: bytes already read from the socket (what an earlier reader left over). */
  constructor(
    private readonly socket: Socket,
    private buf: Buffer = Buffer.alloc(0),
  ) {
    socket.on('data', this.onData)
    socket.on('end', this.onEnd)
    socket.on('close', this.onEnd)
    socket.on('error', this.onError)
  }

  private wake() {
    const w = this.waiting
    this.waiting = undefined
    w?.()
  }

  async message(): Promise<{ type: number; body: Buffer }> {
    for (;;) {
      if (this.buf.length >= 5) {
        const len = this.buf.readInt32BE(1)
        if (len < 4 || len > 1 << 20) throw new Error(`invalid message length ${len} from upstream during login`)
        if (this.buf.length >= len + 1) {
          const type = this.buf[0] as number
          const body = this.buf.subarray(5, len + 1)
          this.buf = this.buf.subarray(len + 1)
          return { type, body }
        }
      }
      await this.wait()
    }
  }

  private wait(): Promise<void> {
    if (this.error) return Promise.reject(this.error)
    return new Promise((resolve, reject) => {
      this.waiting = () => (this.error && this.buf.length === 0 ? reject(this.error) : resolve())
    })
  }

  detach(): Buffer {
    this.socket.off('data', this.onData)
    this.socket.off('end', this.onEnd)
    this.socket.off('close', this.onEnd)
    this.socket.off('error', this.onError)
    const rest = this.buf
    this.buf = Buffer.alloc(0)
    return rest
  }
}

/** The upstream refused the login; `setting` is set when it refused a setting the client asked for (its message names it). */
export class UpstreamRefused extends GatewayError {
  constructor(
    code: 'GH_ERR_UPSTREAM_AUTH' | 'GH_ERR_UPSTREAM_UNAVAILABLE',
    readonly sqlstate: string,
    readonly serverMessage: string,
  ) {
    super(code, `upstream refused the connection: ${serverMessage} (SQLSTATE ${sqlstate})`)
  }

  /** A refusal of a setting's name or value (22023, 42704, 55P02 …), which the client may see as is. */
  get setting(): boolean {
    return /^(22|42|55)/.test(this.sqlstate)
  }
}

function serverError(body: Buffer, code: 'GH_ERR_UPSTREAM_AUTH' | 'GH_ERR_UPSTREAM_UNAVAILABLE'): GatewayError {
  const f = parseErrorFields(body)
  const sqlstate = f.get('C') ?? ''
  // 28xxx: the server refused our credentials.
  const kind = sqlstate.startsWith('28') ? 'GH_ERR_UPSTREAM_AUTH' : code
  return new UpstreamRefused(kind, sqlstate, f.get('M') ?? 'unknown error')
}

/** Opens and logs in an upstream connection. Throws GatewayError (GH_ERR_UPSTREAM_*) with a safe message. */
export async function connectUpstream(cfg: UpstreamConfig, clientParams: Record<string, string>, signal: AbortSignal): Promise<UpstreamSession> {
  const deadline = loginDeadline(cfg, signal)
  try {
    return await login(cfg, clientParams, signal, deadline.signal)
  } finally {
    deadline.clear()
  }
}

async function login(cfg: UpstreamConfig, clientParams: Record<string, string>, signal: AbortSignal, deadline: AbortSignal): Promise<UpstreamSession> {
  let socket: Socket | TLSSocket
  try {
    socket = await openSocket(cfg, signal, deadline)
  } catch (err) {
    throw new GatewayError('GH_ERR_UPSTREAM_UNAVAILABLE', `cannot reach upstream ${cfg.host}:${cfg.port}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err })
  }
  const tcp = socket
  // past the deadline every read below fails with the reason, and the sockets are closed
  const onAbort = () => {
    const reason = abortReason(signal, cfg, 'login')
    socket.destroy(reason)
    tcp.destroy(reason)
  }
  deadline.addEventListener('abort', onAbort, { once: true })
  try {
    if (cfg.tls.mode !== 'disable') socket = await startTls(socket, cfg)
    const reader = new LoginReader(socket)
    socket.write(buildStartup({ ...clientParams, user: cfg.user, database: cfg.database }))
    let scram: ScramClient | undefined
    const parameterMessages: Buffer[] = []
    const parameters = new Map<string, string>()
    let pid = 0
    let secret = Buffer.alloc(4)
    const password = () => {
      if (cfg.password === undefined) throw new GatewayError('GH_ERR_UPSTREAM_AUTH', 'upstream asked for a password but the connection has none configured')
      return cfg.password
    }
    for (;;) {
      const { type, body } = await reader.message()
      if (type === B.ErrorResponse) throw serverError(body, 'GH_ERR_UPSTREAM_UNAVAILABLE')
      if (type === B.Authentication) {
        const code = body.readInt32BE(0)
        checkAuthRequest(cfg, code, socket, scram)
        switch (code) {
          case AUTH.Ok:
            break
          case AUTH.Cleartext:
            socket.write(buildPassword(password()))
            break
          case AUTH.MD5: {
            const salt = body.subarray(4, 8)
            const inner = createHash('md5').update(password() + cfg.user).digest('hex')
            const outer = createHash('md5').update(inner).update(salt).digest('hex')
            socket.write(buildPassword(`md5${outer}`))
            break
          }
          case AUTH.SASL: {
            const mechanisms = body.toString('utf8', 4).split('\0').filter(Boolean)
            if (!mechanisms.includes('SCRAM-SHA-256')) throw new GatewayError('GH_ERR_UPSTREAM_AUTH', `upstream offers only ${mechanisms.join(', ')}`)
            scram = new ScramClient(password())
            socket.write(buildSaslInitial('SCRAM-SHA-256', scram.first()))
            break
          }
          case AUTH.SASLContinue:
            if (!scram) throw new Error('unexpected SASLContinue')
            socket.write(buildSaslResponse(await scram.finalAsync(body.toString('utf8', 4))))
            break
          case AUTH.SASLFinal:
            if (!scram) throw new Error('unexpected SASLFinal')
            scram.verify(body.toString('utf8', 4))
            break
          default:
            throw new GatewayError('GH_ERR_UPSTREAM_AUTH', `upstream asked for unsupported authentication method ${code}`)
        }
        continue
      }
      if (type === B.ParameterStatus) {
        const [k, v] = parseParameterStatus(body)
        parameters.set(k, v)
        const raw = Buffer.allocUnsafe(5 + body.length)
        raw[0] = type
        raw.writeInt32BE(4 + body.length, 1)
        body.copy(raw, 5)
        parameterMessages.push(raw)
        continue
      }
      if (type === B.BackendKeyData) {
        pid = body.readInt32BE(0)
        secret = Buffer.from(body.subarray(4))
        continue
      }
      if (type === B.NoticeResponse || type === B.NegotiateProtocolVersion) continue
      if (type === B.ReadyForQuery) {
        const leftover = reader.detach()
        return { socket, parameterMessages, parameters, pid, secret, status: body[0] as number, leftover }
      }
      throw new Error(`unexpected message '${String.fromCharCode(type)}' from upstream during login`)
    }
  } catch (err) {
    socket.destroy()
    tcp.destroy()
    if (err instanceof GatewayError) throw err
    throw new GatewayError('GH_ERR_UPSTREAM_UNAVAILABLE', `upstream login failed: ${(err as Error).message}`, { cause: err })
  } finally {
    deadline.removeEventListener('abort', onAbort)
  }
}

/**
 * Refuses an authentication request the upstream must not make. The server side of the login is
 * not trusted until it proves itself: an impostor in the upstream's place (a hijacked address, a
 * man in the middle without verify-full TLS) must not learn the password or be let in unproven.
 * - A SCRAM exchange ends with the server's signature: AuthenticationOk before it means the server
 *   never proved it knows the password.
 * - The password in cleartext only over TLS.
 * - `auth: trust` expects no request at all; `auth: scram-sha-256` accepts only a proven SCRAM login.
 */
function checkAuthRequest(cfg: UpstreamConfig, code: number, socket: Socket | TLSSocket, scram: ScramClient | undefined): void {
  if (cfg.auth === 'trust' && code !== AUTH.Ok) throw new GatewayError('GH_ERR_UPSTREAM_AUTH', 'upstream asked for authentication but the connection is configured for trust')
  if (code === AUTH.Ok && scram !== undefined && !scram.verified) throw new GatewayError('GH_ERR_UPSTREAM_AUTH', 'upstream ended the SCRAM login without proving it knows the password (no server signature)')
  if (cfg.auth === 'scram-sha-256') {
    const scramStep = code === AUTH.SASL || code === AUTH.SASLContinue || code === AUTH.SASLFinal
    if (!scramStep && !(code === AUTH.Ok && scram?.verified)) throw new GatewayError('GH_ERR_UPSTREAM_AUTH', `upstream asked for authentication method ${code} but the connection requires SCRAM-SHA-256 (auth: scram-sha-256)`)
  }
  if (code === AUTH.Cleartext && !('encrypted' in socket && socket.encrypted)) throw new GatewayError('GH_ERR_UPSTREAM_AUTH', 'upstream asked for the password in cleartext over an unencrypted connection; set upstream tls.mode')
}

async function startTls(socket: Socket, cfg: UpstreamConfig): Promise<TLSSocket> {
  socket.write(buildSslRequest())
  const answer = await new Promise<number>((resolve, reject) => {
    socket.once('data', (d: Buffer) => (d.length === 1 ? resolve(d[0] as number) : reject(new Error('unexpected bytes after SSLRequest'))))
    socket.once('error', reject)
    socket.once('close', () => reject(new Error('upstream closed during SSLRequest')))
  })
  if (answer !== 0x53) throw new GatewayError('GH_ERR_UPSTREAM_UNAVAILABLE', 'upstream does not accept TLS but the connection requires it')
  const verify = cfg.tls.mode === 'verify-full'
  // SNI names a host, never an address (RFC 6066)
  const isIp = isIP(cfg.host) !== 0
  const options: ConnectionOptions = {
    socket,
    host: cfg.host,
    rejectUnauthorized: verify,
    ...(cfg.tls.ca ? { ca: cfg.tls.ca } : {}),
    ...(cfg.tls.servername ? { servername: cfg.tls.servername } : isIp ? {} : { servername: cfg.host }),
    ...(verify ? {} : { checkServerIdentity: () => undefined }),
  }
  return new Promise((resolve, reject) => {
    const tls = tlsConnect(options)
    tls.once('secureConnect', () => resolve(tls))
    tls.once('error', (err) => reject(new GatewayError('GH_ERR_UPSTREAM_UNAVAILABLE', `TLS to upstream failed: ${err.message}`)))
  })
}

/** Sends a CancelRequest for an upstream backend on a fresh connection. */
export async function cancelUpstream(cfg: UpstreamConfig, pid: number, secret: Buffer): Promise<void> {
  const never = new AbortController().signal
  const deadline = loginDeadline(cfg, never)
  const socket = await openSocket(cfg, never, deadline.signal).finally(deadline.clear)
  await new Promise<void>((resolve) => {
    socket.end(buildCancel(pid, secret), () => resolve())
    socket.once('error', () => resolve())
  })
  socket.destroy()
}

/**
 * Runs one catalog query on a connection of its own (the gateway's credentials, the connection's
 * database) and returns its rows as text; a server error is thrown as GH_ERR_UPSTREAM_UNAVAILABLE.
 * For lookups the gateway needs to judge a request, never for the client's own statements.
 */
export async function queryUpstream(cfg: UpstreamConfig, sql: string, signal: AbortSignal): Promise<(string | null)[][]> {
  const up = await connectUpstream(cfg, { client_encoding: 'UTF8', application_name: 'gatehouse catalog lookup' }, signal)
  // the query is bounded like the login: a statement waiting on the lookup must not wait forever
  // on an upstream that stopped answering
  const deadline = loginDeadline(cfg, signal)
  const reader = new LoginReader(up.socket, up.leftover)
  const onAbort = () => up.socket.destroy(abortReason(signal, cfg, 'catalog lookup'))
  deadline.signal.addEventListener('abort', onAbort, { once: true })
  if (deadline.signal.aborted) onAbort()
  try {
    up.socket.write(buildQuery(sql))
    const rows: (string | null)[][] = []
    let error: string | undefined
    for (;;) {
      const { type, body } = await reader.message()
      if (type === B.DataRow) {
        const row: (string | null)[] = []
        let at = 2
        for (let i = body.readInt16BE(0); i > 0; i--) {
          const len = body.readInt32BE(at)
          at += 4
          row.push(len < 0 ? null : body.toString('utf8', at, at + len))
          if (len > 0) at += len
        }
        rows.push(row)
      } else if (type === B.ErrorResponse) error = parseErrorFields(body).get('M') ?? 'error'
      else if (type === B.ReadyForQuery) break
    }
    if (error !== undefined) throw new GatewayError('GH_ERR_UPSTREAM_UNAVAILABLE', `catalog lookup failed: ${error}`)
    return rows
  } catch (err) {
    if (err instanceof GatewayError) throw err
    throw new GatewayError('GH_ERR_UPSTREAM_UNAVAILABLE', `catalog lookup failed: ${(err as Error).message}`, { cause: err })
  } finally {
    deadline.clear()
    up.socket.end(TERMINATE)
    up.socket.destroy()
  }
}
