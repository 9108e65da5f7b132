/**
 * One Redis client connection through the gateway.
 *
 * - Login: `AUTH <identity> <token>` or `HELLO <2|3> AUTH <identity> <token>`, checked by core
 *   (`pipeline.authenticate`); nothing but AUTH, HELLO and QUIT before it. The upstream connection
 *   is opened after it, with the gateway's own credential.
 * - Commands are handled one at a time, in order (pipelined commands wait their turn): each is
 *   read, described from the server's own command table (commands.ts), judged, recorded, and only
 *   then sent; its reply is relayed as it came.
 * - The model of the upstream session (the selected database, an open MULTI) is updated from the
 *   upstream's replies, never from what the client asked for. Replies are framed the same way in
 *   RESP2 and RESP3, so a HELLO that changes the protocol is judged and relayed like any command.
 * - A command refused inside MULTI makes EXEC fail as the server would have (EXECABORT): the
 *   transaction is discarded upstream, so the commands queued before it never run.
 * - Commands after which replies stop pairing with commands (SUBSCRIBE, MONITOR, CLIENT TRACKING,
 *   replication) or that would log the upstream connection out (RESET) are refused.
 */
import type { Socket } from 'node:net'
import { GatewayError, isGatewayError, type ConnectionSlot, type GatewayRequest, type Logger, type Pipeline, type SessionHandle } from '@gatehouse/core'
import { factsOf, type CommandSpec } from './commands.js'
import type { RedisLimits } from './config.js'
import { CommandReader, encodeCommand, encodeError, type ArgList, type Command, OK, parseReply, RespError, RespLimitError, RespProtocolError, type RespValue } from './resp.js'
import { UpstreamConnection, type UpstreamConfig } from './upstream.js'

/** Commands after which the connection is no longer one reply per command, or which would undo the upstream login. */
const NOT_RELAYED: ReadonlyMap<string, string> = new Map([
  ['subscribe', 'publish/subscribe is not relayed by the gateway'],
  ['psubscribe', 'publish/subscribe is not relayed by the gateway'],
  ['ssubscribe', 'publish/subscribe is not relayed by the gateway'],
  ['monitor', 'MONITOR is not relayed by the gateway'],
  ['sync', 'replication is not relayed by the gateway'],
  ['psync', 'replication is not relayed by the gateway'],
  ['reset', 'RESET would log the gateway out of the upstream'],
])

/**
 * Why the gateway will not relay this command, if it will not: it would break the pairing of one
 * reply per command (subscriptions, MONITOR, replication, CLIENT TRACKING, CLIENT REPLY OFF|SKIP),
 * log the gateway out upstream (RESET), or change the session only if a transaction later
 * succeeds (SELECT or HELLO inside MULTI: queued, applied at EXEC or never; the gateway would have
 * to guess which database or protocol the next commands run in).
 */
function notRelayedReason(name: string, argv: ArgList, inMulti: boolean): string | undefined {
  const known = NOT_RELAYED.get(name)
  if (known !== undefined) return known
  const sub = argv.at(1)?.toString('utf8').toLowerCase()
  if (name === 'client' && sub === 'tracking') return 'CLIENT TRACKING is not relayed by the gateway'
  if (name === 'client' && sub === 'reply') return 'CLIENT REPLY is not relayed by the gateway: every command gets its reply'
  if (name === 'select' && inMulti) return 'SELECT inside MULTI is not relayed by the gateway: select the database before MULTI'
  if (name === 'hello' && inMulti) return 'HELLO inside MULTI is not relayed by the gateway: choose the protocol before MULTI'
  return undefined
}

/** Where a word AUTH is in HELLO's arguments from `from` on (HELLO protover [AUTH user pass] [SETNAME name]), or -1. */
function helloAuthAt(argv: ArgList, from = 2): number {
  for (let i = from; i < argv.length; i++) if ((argv.at(i) as Buffer).toString('utf8').toLowerCase() === 'auth') return i
  return -1
}

const MAX_TEXT = 2048
/** Commands a connection may send before it logs in. */
const MAX_COMMANDS_BEFORE_LOGIN = 16

export interface SessionDeps {
  readonly pipeline: Pipeline
  readonly upstream: UpstreamConfig
  readonly logger: Logger
  readonly slot: ConnectionSlot
  readonly limits: () => RedisLimits
  /**
   * The forms in which the server could hand back the gateway's own credential (the password;
   * the SHA-256 hex ACL GETUSER shows): a reply holding one is withheld, whatever the policy
   * allowed (CONFIG GET requirepass, ACL GETUSER …), since callers never see the credential.
   */
  readonly secrets: readonly Buffer[]
  /** Where the client connects from (a TLS stream over a replayed socket does not know). */
  readonly client: { readonly address: string; readonly port: number }
  /** Whether the client's connection is encrypted. */
  readonly tls: boolean
  /**
   * What the server says about commands, asked on the listener's own connection (never a
   * session's, where inside MULTI the question would be queued): its command table, read once,
   * and the keys of a movable-keys command (COMMAND GETKEYS).
   */
  readonly server: {
    commandTable(): Promise<ReadonlyMap<string, CommandSpec>>
    getKeys(command: Command): Promise<RespValue>
  }
}

export class RedisSession {
  readonly handle: SessionHandle
  private readonly reader: CommandReader
  private working = false
  private closed = false
  private up: UpstreamConnection | undefined
  private table: ReadonlyMap<string, CommandSpec> | undefined
  /** The upstream session as its replies say it is. */
  private db = 0
  private inMulti = false
  /** A command was refused after MULTI: EXEC must fail. */
  private multiRefused = false
  private commandsBeforeLogin = 0

  constructor(
    private readonly socket: Socket,
    private readonly deps: SessionDeps,
  ) {
    this.handle = deps.pipeline.openSession({ protocol: 'redis', clientAddress: `${deps.client.address}:${deps.client.port}`, tls: deps.tls })
    this.handle.busyWhen(() => this.working)
    this.handle.onTerminate((t) => {
      this.write(encodeError(`ERR gatehouse: ${t.reason}`))
      this.close(t.reason)
    })
    this.reader = new CommandReader(deps.limits)
    socket.on('data', (chunk: Buffer) => {
      this.reader.push(chunk)
      void this.pump()
    })
    socket.on('error', () => this.close('client socket error'))
    socket.once('close', () => this.close('the client closed the connection'))
  }

  close(reason: string): void {
    if (this.closed) return
    this.closed = true
    this.socket.destroy()
    this.up?.close()
    void this.handle.end(reason)
  }

  private write(bytes: Buffer): void {
    if (!this.closed) this.socket.write(bytes)
  }

  private async pump(): Promise<void> {
    if (this.working || this.closed) return
    this.working = true
    this.socket.pause()
    try {
      for (;;) {
        let command: Command | undefined
        try {
          command = this.reader.next()
        } catch (err) {
          if (!(err instanceof RespProtocolError)) throw err
          this.write(encodeError(`ERR Protocol error: ${err.message}`))
          await this.deps.pipeline.protocolEvent(this.handle.info, { event: 'redis.protocol-error', reason: err.message })
          // a limit is also counted as one (gatehouse_limit_refusals_total), recorded by the event above
          if (err instanceof RespLimitError) await this.deps.pipeline.limitReached(this.handle.info, err.limit, err.message, { recorded: true })
          this.close(`protocol error: ${err.message}`)
          return
        }
        if (!command || this.closed) break
        this.handle.touch()
        await this.command(command)
        if (this.closed) return
        if (this.socket.writableNeedDrain) await new Promise<void>((resolve) => this.socket.once('drain', resolve).once('close', resolve))
      }
    } catch (err) {
      this.deps.logger.error({ session: this.handle.info.id, err: String(err) }, 'redis session failed')
      this.close('internal gateway error')
      return
    } finally {
      this.working = false
    }
    if (!this.closed) this.socket.resume()
  }

  private async command(command: Command): Promise<void> {
    const { argv } = command
    const name = (argv.at(0) as Buffer).toString('utf8').toLowerCase()
    if (name === 'quit') {
      this.write(OK)
      this.close('the client quit')
      return
    }
    if (!this.up) return this.beforeLogin(name, argv)
    if (name === 'auth' || (name === 'hello' && helloAuthAt(argv, 1) >= 0)) {
      const reason = 'this connection is logged in already; open a new connection to log in as another identity'
      void this.deps.pipeline.protocolEvent(this.handle.info, { event: 'auth.refused', reason })
      return this.write(encodeError(`ERR gatehouse: ${reason}`))
    }
    const notRelayed = notRelayedReason(name, argv, this.inMulti)
    if (notRelayed !== undefined) {
      // refused inside MULTI like any refusal: EXEC then answers EXECABORT and runs nothing
      if (this.inMulti) this.multiRefused = true
      const err = await this.deps.pipeline.refuse(this.unjudgedRequest(name, argv), { rule: 'gatehouse/not-relayed', reason: notRelayed, code: 'GH_ERR_PROTOCOL_UNSUPPORTED' })
      this.refused(err)
      return
    }
    await this.judgeAndForward(name, command)
  }

  private async beforeLogin(name: string, argv: ArgList): Promise<void> {
    if (name === 'auth') {
      if (argv.length !== 3) return this.notLoggedIn(name, 'ERR gatehouse: log in with AUTH <identity> <token> (a gateway identity and its token)')
      return this.login(argv.at(1) as Buffer, argv.at(2) as Buffer, 2, false)
    }
    if (name === 'hello') {
      const proto = argv.length < 2 ? 2 : Number((argv.at(1) as Buffer).toString('utf8'))
      if (proto !== 2 && proto !== 3) return this.write(encodeError('NOPROTO unsupported protocol version'))
      const auth = helloAuthAt(argv)
      if (auth < 0 || argv.at(auth + 2) === undefined) return this.notLoggedIn(name, 'NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time')
      return this.login(argv.at(auth + 1) as Buffer, argv.at(auth + 2) as Buffer, proto, true)
    }
    this.notLoggedIn(name, 'NOAUTH Authentication required.')
  }

  /** A command that needs a login it does not carry: recorded once per connection; one that keeps trying is closed rather than left to fill the audit. */
  private notLoggedIn(name: string, error: string): void {
    this.commandsBeforeLogin++
    if (this.commandsBeforeLogin === 1) void this.deps.pipeline.protocolEvent(this.handle.info, { event: 'auth.missing', reason: `${name.slice(0, 64)} before login` })
    this.write(encodeError(error))
    if (this.commandsBeforeLogin >= MAX_COMMANDS_BEFORE_LOGIN) this.close('too many commands before login')
  }

  /** Core checks the token; then the upstream connection is opened with the gateway's credential. */
  private async login(user: Buffer, token: Buffer, proto: 2 | 3, hello: boolean): Promise<void> {
    const identity = user.toString('utf8')
    try {
      await this.deps.pipeline.authenticate(this.handle.info, { kind: 'password', user: identity, password: token.toString('utf8') })
    } catch (err) {
      const e = isGatewayError(err) ? err : new GatewayError('GH_ERR_AUTH_FAILED')
      // core has recorded the failure
      this.write(encodeError(e.code === 'GH_ERR_AUTH_FAILED' ? 'WRONGPASS invalid username-password pair or user is disabled.' : `ERR gatehouse: ${e.clientMessage}`))
      if (this.deps.pipeline.loginAttemptsLeft(this.handle.info) <= 0) this.close('too many failed logins on this connection')
      return
    }
    let opened: { conn: UpstreamConnection; hello: Buffer }
    try {
      opened = await UpstreamConnection.open(this.deps.upstream, proto, this.deps.limits().upstreamTimeoutMs)
      this.table = await this.deps.server.commandTable()
    } catch (err) {
      this.deps.logger.warn({ session: this.handle.info.id, err: (err as Error).message }, 'upstream connection failed')
      this.write(encodeError('ERR gatehouse: the upstream is unavailable'))
      this.close('upstream unavailable')
      return
    }
    if (this.closed) {
      opened.conn.close()
      return
    }
    this.up = opened.conn
    this.deps.slot.authenticated()
    // HELLO answers with the server's description; AUTH with OK
    this.write(hello ? opened.hello : OK)
  }

  private async judgeAndForward(name: string, command: Command): Promise<void> {
    const { argv } = command
    const facts = await factsOf(this.table as ReadonlyMap<string, CommandSpec>, argv, () => this.deps.server.getKeys(command)).catch((err: unknown) => ({ error: `ERR gatehouse: ${(err as Error).message}` }))
    if ('error' in facts) {
      // the server would refuse it as well (arity, bad key arguments): recorded as refused, answered with the server's words
      if (this.inMulti) this.multiRefused = true
      await this.deps.pipeline.refuse(this.unjudgedRequest(name, argv), { rule: 'gatehouse/unreadable', reason: facts.error, code: 'GH_ERR_PARSE_FAILED' })
      this.write(encodeError(facts.error))
      return
    }
    const request = this.deps.pipeline.request(this.handle.info, { action: 'redis.command', target: facts.keys.length === 1 ? `db${this.db}:${facts.keys[0]}` : `db${this.db}`, text: textOf(argv), attrs: { redis: { ...facts, db: this.db, ...(this.inMulti ? { inMulti: true } : {}) } } })
    if (name === 'exec' && this.multiRefused) return this.abortExec(request)
    const admission = await this.deps.pipeline.admit(request)
    if (!admission.admitted) {
      if (this.inMulti) this.multiRefused = true
      return this.refused(admission.error)
    }
    // the bytes judged, as they came: the reader takes only the canonical form, which is what re-encoding would send
    const reply = await this.forwardRaw(command.raw, request)
    if (!reply) return
    const failed = reply[0] === 0x2d || reply[0] === 0x21
    this.learn(name, argv, reply, failed)
    if (this.deps.secrets.some((secret) => reply.includes(secret))) {
      const message = "the reply held the gateway's upstream credential and was withheld"
      this.deps.logger.warn({ session: this.handle.info.id, request: request.id }, message)
      this.deps.pipeline.complete(request, { error: { code: 'gatehouse/credential-withheld', message } })
      return this.write(encodeError(`ERR gatehouse: ${message}`))
    }
    this.deps.pipeline.complete(request, failed ? { error: { code: 'redis', message: errorText(reply) } } : { status: 'ok', ...countOf(reply) })
    this.write(reply)
  }

  /** The request for a command the gateway refuses before describing it (not relayed, unreadable): its name and where it was sent. */
  private unjudgedRequest(name: string, argv: ArgList): GatewayRequest {
    return this.deps.pipeline.request(this.handle.info, { action: 'redis.command', target: `db${this.db}`, text: textOf(argv), attrs: { redis: { command: name, db: this.db, ...(this.inMulti ? { inMulti: true } : {}) } } })
  }

  /** What the reply says about the upstream session: the database, MULTI. */
  private learn(name: string, argv: ArgList, reply: Buffer, failed: boolean): void {
    if (failed) {
      if (name === 'exec' || name === 'discard') this.endMulti()
      return
    }
    if (name === 'select') this.db = Number((argv.at(1) as Buffer).toString('utf8'))
    else if (name === 'multi') this.inMulti = true
    else if (name === 'exec' || name === 'discard') this.endMulti()
  }

  private endMulti(): void {
    this.inMulti = false
    this.multiRefused = false
  }

  /** EXEC after a refused command: the server would answer EXECABORT and run nothing; so does the gateway. */
  private async abortExec(request: GatewayRequest): Promise<void> {
    const reason = 'a command of this transaction was refused'
    await this.deps.pipeline.refuse(request, { rule: 'gatehouse/transaction-aborted', reason })
    const discarded = await this.forwardRaw(encodeCommand(['DISCARD']))
    if (!discarded) return
    this.endMulti()
    this.write(encodeError('EXECABORT Transaction discarded because of previous errors.'))
  }

  /** Sends a command, encoded, and waits for its reply. */
  private async forwardRaw(command: Buffer, request?: GatewayRequest): Promise<Buffer | undefined> {
    try {
      return await (this.up as UpstreamConnection).send(command)
    } catch (err) {
      if (request) this.deps.pipeline.complete(request, { error: { code: 'GH_ERR_UPSTREAM_UNAVAILABLE', message: 'the upstream connection failed' } })
      this.deps.logger.warn({ session: this.handle.info.id, err: (err as Error).message }, 'upstream connection failed')
      this.write(encodeError('ERR gatehouse: the upstream connection failed'))
      this.close('upstream connection failed')
      return undefined
    }
  }

  /** A refusal as Redis says "no permission": -NOPERM, naming the rule. */
  private refused(err: GatewayError): void {
    const prefix = err.kind === 'AccessDenied' ? 'NOPERM' : 'ERR'
    this.write(encodeError(`${prefix} gatehouse: ${err.clientMessage}`))
  }
}

/**
 * A command as the audit shows it: its words, quoted where needed, AUTH arguments hidden, cut at
 * 2 KiB. Only what the cut keeps is looked at: a million arguments or a 100 MB value cost no more
 * than 2 KiB of text (a word is read from its first bytes; 4 per character cover any UTF-8).
 */
export function textOf(argv: ArgList): string {
  const words: string[] = []
  /** The length of `words.join(' ')`. */
  let joined = -1
  let hideNext = 0
  for (const a of argv) {
    if (joined > MAX_TEXT) break
    let word: string
    if (hideNext > 0) {
      word = '"REDACTED"'
      hideNext--
    } else {
      const s = a.subarray(0, 4 * MAX_TEXT + 4).toString('utf8')
      word = /^[\x21-\x7e]+$/.test(s) && !s.includes('"') ? s : JSON.stringify(s)
      // MIGRATE … AUTH password / AUTH2 user password
      const upper = s.toUpperCase()
      if (upper === 'AUTH') hideNext = 1
      else if (upper === 'AUTH2') hideNext = 2
    }
    words.push(word)
    joined += word.length + 1
  }
  const text = words.join(' ')
  return text.length > MAX_TEXT ? `${text.slice(0, MAX_TEXT)}…` : text
}

function errorText(reply: Buffer): string {
  const v = parseReply(reply).value
  return (v instanceof RespError ? v.message : 'error').slice(0, 300)
}

/** Elements of an array reply, as the outcome's rows. */
function countOf(reply: Buffer): { rows?: number } {
  if (reply[0] !== 0x2a && reply[0] !== 0x7e) return {}
  const n = Number(reply.toString('latin1', 1, reply.indexOf(0x0d)))
  return n >= 0 ? { rows: n } : {}
}
