/**
 * One SSH client connection through the gateway: authenticate the caller (a registered public
 * key, or a gateway token as the password), open the gateway's own connection to the target
 * with the brokered credential, and put every channel and global request through the pipeline.
 *
 * Why it is shaped this way:
 * - Nothing reaches the target before a decision: exec, shell, subsystem, every forwarded TCP
 *   connection, agent and X11 requests each become a request that policy judges and the audit
 *   records first. Forwarding, agent and X11 are refused unless a rule allows them.
 * - A refusal speaks SSH: a denied command gets `gatehouse: denied by <rule>: <reason>` on
 *   stderr and exit status 126; a denied channel or forward is refused as "administratively
 *   prohibited"; the connection stays usable for what is allowed.
 * - The relay is faithful: stdout and stderr stay apart, flow control is end to end, and the
 *   exit status is sent only after the target's channel has ended and closed, before the
 *   client's channel ends (an exit status sent after end is dropped).
 * - One session never ends the process: every handler the session registers runs through
 *   `on()`, which turns a throw or a rejected promise into the end of this session alone
 *   (logged, and recorded as a protocol event). Nothing here registers a handler any other way.
 * - The target is reached only when an admitted request needs it (`target()`): `ssh -N` with
 *   nothing allowed never logs into the target.
 * - Every attempt leaves a trace: refused environment names, channel types and channel requests
 *   the gateway does not relay, a second exec on a channel and a packet too large to read are
 *   each recorded as a refused request (or, before login, a protocol event).
 */
import ssh2, { type AuthContext, type ClientChannel, type Connection, type PseudoTtyInfo, type ServerChannel, type Session, type SFTPWrapper, type Client as SshClient, type TcpipBindInfo, type TcpipRequestInfo } from 'ssh2'
import type { Duplex } from 'node:stream'
import { GatewayError, holdTerms, isGatewayError, toGatewayError, type Admission, type GatewayRequest, type HeldNotice, type Logger, type Pipeline, type SessionHandle, type TerminalRecorder, type TerminalRecording, type Termination } from '@gatehouse/core'
import { disconnect, DISCONNECT } from './disconnect.js'
import type { SshOptions, UpstreamConfig } from './config.js'
import type { CommandAnalysis } from './shell/programs.js'
import { COMMAND_VARIABLES } from './shell/code-args.js'
import { SftpProxy } from './sftp.js'
import { connectUpstream, UpstreamError } from './upstream.js'

/** Environment variables that make the target's shell run something, or change which program runs. */
const NEVER_PASSED_ENV = /^(BASH_ENV|ENV|PS[0-4]|PROMPT_COMMAND|SHELLOPTS|BASHOPTS|BASH_FUNC_.*|BASH_XTRACEFD|LD_.*|PATH|IFS|GLOBIGNORE|CDPATH|HISTFILE|MAIL|MAILPATH|PYTHON.*|PERL5.*|RUBY.*|NODE_OPTIONS|GIT_.*)$/
/** …and those that name a program to run (PAGER, EDITOR, the askpass programs): the analysis reads them as scripts only when the command line sets them. */
function neverPassed(name: string): boolean {
  return NEVER_PASSED_ENV.test(name) || COMMAND_VARIABLES.has(name)
}

/** SSH_OPEN_ADMINISTRATIVELY_PROHIBITED (RFC 4254 §5.1). */
const ADMINISTRATIVELY_PROHIBITED = 1

/** The signal names RFC 4254 §6.10 defines, exactly as written there; any other name is refused. */
const SIGNALS = new Set(['ABRT', 'ALRM', 'FPE', 'HUP', 'ILL', 'INT', 'KILL', 'PIPE', 'QUIT', 'SEGV', 'TERM', 'USR1', 'USR2'])

/** A subsystem name the gateway passes on: printable ASCII, no spaces, bounded (sshd looks it up by name in its config). */
const SUBSYSTEM_NAME = /^[\x21-\x7e]{1,64}$/

/** Channel types the gateway handles (ssh2 refuses every other type itself, and this session records it). */
const HANDLED_CHANNELS = new Set(['session', 'direct-tcpip', 'direct-streamlocal@openssh.com'])

export interface SshSessionDeps {
  readonly connection: string
  readonly upstream: UpstreamConfig
  readonly options: SshOptions
  readonly pipeline: Pipeline
  readonly recorder: TerminalRecorder
  readonly logger: Logger
  /** Analyses a command line off the event loop (shell/analyze-worker.ts), in turn by owner (the principal). */
  readonly analyze: (command: string, owner: string) => Promise<CommandAnalysis>
}

/** What a session channel has been told before its exec/shell/subsystem request. */
interface ChannelSetup {
  /**
   * The channel's exec, shell or subsystem was received: its pty and environment are fixed from
   * then on. ssh2 still emits later `pty-req` and `env` requests (it only stops replying), and
   * taking them would run the command with settings other than the ones judged.
   */
  started?: boolean
  pty?: PseudoTtyInfo
  readonly env: Record<string, string>
  window?: { cols: number; rows: number; width: number; height: number }
  /** The target's channel once the request runs: window changes and signals go to it. */
  up?: ClientChannel
  recording?: TerminalRecording
}

interface Counters {
  bytesIn: number
  bytesOut: number
}

export class SshSession {
  private handle: SessionHandle | undefined
  private upstream: Promise<SshClient> | undefined
  private closed = false
  /** Why the connection is ending, when the gateway knows better than "client disconnected". */
  private endReason: string | undefined
  private readonly remoteForwards = new Map<string, TcpipBindInfo>()

  /** Outcomes still to be recorded for requests in flight, by whoever ends them first. */
  private readonly openOutcomes = new Set<(status: string) => void>()
  /** Exec and subsystem channels relayed now (terminal sessions do not count). */
  private running = 0

  /**
   * @param authenticated called once the client has logged in (the listener's login timer stops)
   */
  constructor(
    private readonly client: Connection,
    private readonly clientAddress: string,
    private readonly deps: SshSessionDeps,
    private readonly authenticated: () => void = () => undefined,
    /** The client's TCP connection: destroyed shortly after the session closes, whether or not the client ends its side. */
    private readonly socket?: { destroy(): void },
  ) {}

  start(): void {
    this.handle = this.deps.pipeline.openSession({ protocol: 'ssh', clientAddress: this.clientAddress, tls: false })
    this.handle.onTerminate((t) => this.terminated(t))
    // a command or subsystem running is work even when nothing moves; an idle shell is idle
    this.handle.busyWhen(() => this.running > 0)
    this.on(this.client, 'authentication', 'authentication', (ctx: AuthContext) => this.onAuthentication(ctx))
    this.on(this.client, 'ready', 'ready', () => {
      if (this.closed) return
      this.authenticated()
      this.onReady()
    })
    this.on(this.client, 'error', 'client error', (err: Error) => this.onClientError(err))
    this.on(this.client, 'close', 'client close', () => this.close(this.endReason ?? 'client disconnected'))
  }

  /**
   * Registers a handler of this session. A throw, or a promise it returns that rejects, ends
   * this session only: the error is logged and recorded, the connections are closed, and every
   * other session goes on. Every handler a session registers goes through here.
   */
  private on(emitter: { on(event: string, listener: (...args: never[]) => void): unknown }, event: string, where: string, handler: (...args: never[]) => unknown): void {
    emitter.on(event, (...args: never[]) => {
      let result: unknown
      try {
        result = handler(...args)
      } catch (err) {
        return this.fault(where, err)
      }
      if (isThenable(result)) result.then(undefined, (err: unknown) => this.fault(where, err))
    })
  }

  /** A handler failed: the session ends, and the failure is logged and recorded. */
  private fault(where: string, err: unknown): void {
    const message = err instanceof Error ? err.message : String(err)
    this.deps.logger.error({ err: message, where, session: this.handle?.info.id }, 'ssh session failed; ending it')
    if (this.handle && !this.closed) void this.deps.pipeline.protocolEvent(this.info, { event: 'session.fault', reason: `internal error in ${where}: ${message}` })
    this.close(`internal error in ${where}`)
  }

  /**
   * The client's connection failed. A packet larger than ssh2 reads (about 35 KB: a very long
   * command line) ends the connection, as in OpenSSH; it is recorded, since no request was.
   */
  private onClientError(err: Error): void {
    this.deps.logger.debug({ err: err.message, session: this.info.id }, 'client connection error')
    if (!/packet length/i.test(err.message)) return
    this.endReason = 'the client sent a packet larger than the gateway reads (about 35 KB)'
    if (this.info.principal) void this.refuseUnjudged('ssh.packet', 'oversized packet', {}, 'gatehouse/limits', this.endReason)
    else void this.deps.pipeline.protocolEvent(this.info, { event: 'packet.too-large', reason: this.endReason })
  }

  private get info() {
    return (this.handle as SessionHandle).info
  }

  /** Channel traffic (not SSH keepalives, which clients answer on their own): the session is not idle. */
  touch(): void {
    this.handle?.touch()
  }

  /**
   * Core ended the session (a limit, or the credential expired or was removed): the client gets
   * an SSH disconnect message that says why (OpenSSH prints "Received disconnect … : <reason>").
   */
  private terminated(t: Termination): void {
    if (this.closed) return
    this.endReason = t.reason
    disconnect(this.client, t.cause.startsWith('credential.') ? DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE : DISCONNECT.BY_APPLICATION, `gatehouse: session ended: ${t.reason}`)
    this.close(t.reason)
  }

  /** Ends both connections and the pipeline session. Idempotent. */
  close(reason: string): void {
    if (this.closed) return
    this.closed = true
    for (const record of [...this.openOutcomes]) record(`session ended: ${reason}`)
    this.client.end()
    // a client that ignores DISCONNECT and keeps its half open must not hold the socket outside every limit
    if (this.socket) setTimeout(() => this.socket?.destroy(), 1000).unref()
    this.upstream?.then((u) => u.end(), () => undefined)
    this.handle?.end(reason).catch((err: unknown) => this.deps.logger.error({ err: String(err), session: this.handle?.info.id }, 'could not end the session'))
  }

  // ------------------------------------------------------------------ authentication

  private async onAuthentication(ctx: AuthContext): Promise<void> {
    // A session closed for too many failures answers nothing more, and establishes nothing.
    if (this.closed) return ctx.reject()
    const user = ctx.username
    try {
      if (ctx.method === 'password') {
        await this.deps.pipeline.authenticate(this.info, { kind: 'password', user, password: ctx.password })
        return this.closed ? ctx.reject() : ctx.accept()
      }
      if (ctx.method === 'publickey') {
        // The first round only asks whether a key would do; proof of possession comes with the signature.
        if (!ctx.signature || !ctx.blob) return ctx.accept()
        const key = ssh2.utils.parseKey(ctx.key.data)
        if (key instanceof Error || !key.verify(ctx.blob, ctx.signature, ctx.hashAlgo)) {
          // refused before core is asked: core records and counts it like its own refusals
          await this.deps.pipeline.loginRefused(this.info, user, new GatewayError('GH_ERR_AUTH_FAILED', 'public key signature does not verify'))
          return this.rejectLogin(ctx)
        }
        await this.deps.pipeline.authenticate(this.info, { kind: 'public-key', user, algorithm: ctx.key.algo, key: ctx.key.data })
        return this.closed ? ctx.reject() : ctx.accept()
      }
      return ctx.reject(['publickey', 'password'])
    } catch (err) {
      if (!isGatewayError(err)) {
        this.deps.logger.error({ err: String(err), session: this.info.id }, 'authentication failed unexpectedly')
        await this.deps.pipeline.loginRefused(this.info, user, toGatewayError(err, 'GH_ERR_AUTH_FAILED'))
      }
      // A session cap is no reason to try another key: the client is told why, and the connection ends.
      if (isGatewayError(err) && err.code === 'GH_ERR_LIMIT_SESSIONS') {
        disconnect(this.client, DISCONNECT.TOO_MANY_CONNECTIONS, `gatehouse: ${err.clientMessage}`)
        return this.close(err.message)
      }
      return this.rejectLogin(ctx)
    }
  }

  /** Refuses one login attempt; once core says the connection has none left, it ends. */
  private rejectLogin(ctx: AuthContext): void {
    ctx.reject(['publickey', 'password'])
    if (this.deps.pipeline.loginAttemptsLeft(this.info) > 0) return
    disconnect(this.client, DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE, 'gatehouse: too many authentication failures')
    this.close('too many authentication failures (limits.logins.perConnection)')
  }

  private onReady(): void {
    this.on(this.client, 'session', 'session channel', (accept: () => Session) => this.onSessionChannel(accept()))
    this.on(this.client, 'tcpip', 'direct-tcpip', (accept: () => ServerChannel, reject: () => void, info: TcpipRequestInfo) => this.onDirectTcpip(accept, reject, info))
    this.on(this.client, 'request', 'global request', (accept: ((port?: number) => void) | undefined, reject: (() => void) | undefined, name: string, info: TcpipBindInfo) => this.onGlobalRequest(accept, reject, name, info))
    this.on(this.client, 'openssh.streamlocal', 'streamlocal', async (_accept: unknown, reject: () => void, info: { socketPath?: string }) => {
      await this.judgeUnsupported('ssh.forward', `forward to unix socket ${info?.socketPath ?? ''}`, { kind: 'local-socket', path: info?.socketPath ?? '' })
      reject()
    })
    this.watchUnhandledChannels()
  }

  /**
   * ssh2 refuses channel types it does not know (`ssh -w` tunnels, `x11`, `auth-agent@openssh.com`
   * opened by a client) without telling anyone; the gateway records each as a refused request.
   * It wraps the one protocol handler that sees them, and passes every open on unchanged.
   */
  private watchUnhandledChannels(): void {
    const handlers = (this.client as unknown as { _protocol?: { _handlers?: Record<string, (...args: unknown[]) => unknown> } })._protocol?._handlers
    const original = handlers?.CHANNEL_OPEN
    if (!handlers || !original) return
    handlers.CHANNEL_OPEN = (p: unknown, info: unknown) => {
      const type = (info as { type?: unknown } | undefined)?.type
      if (typeof type === 'string' && !HANDLED_CHANNELS.has(type) && !this.closed) {
        this.refuseUnjudged('ssh.channel', `channel ${printable(type)}`, { type: printable(type) }, 'gatehouse/unsupported', `the gateway does not relay ${printable(type)} channels`).catch((err: unknown) => this.fault('channel open', err))
      }
      return original(p, info)
    }
  }

  /**
   * The target connection, opened on first use by an admitted request: one per client
   * connection, carrying every channel. A session that never needs the target never logs in.
   */
  private target(): Promise<SshClient> {
    if (this.closed) return Promise.reject(new UpstreamError('the session has ended', 'unreachable'))
    if (!this.upstream) {
      const upstream = connectUpstream(this.deps.upstream, this.info.signal)
      this.upstream = upstream
      upstream.then(
        (u) => {
          if (this.closed) return u.end()
          this.on(u, 'close', 'target close', () => this.close('target closed the connection'))
          this.on(u, 'error', 'target error', (err: Error) => this.deps.logger.warn({ err: err.message, session: this.info.id }, 'target connection error'))
          this.on(u, 'tcp connection', 'remote forward connection', (info: TcpipRequestInfo, accept: () => ClientChannel, reject: () => void) => this.onRemoteForwardConnection(info, accept, reject))
        },
        // Reported to the caller by the request that needed the target; a session that ended first is not news.
        (err: unknown) => {
          if (!this.closed) this.deps.logger.warn({ err: (err as Error).message, session: this.info.id }, 'cannot reach the target')
        },
      )
    }
    return this.upstream
  }

  // ------------------------------------------------------------------ requests

  private request(action: string, text: string, attrs: Record<string, unknown>, onHeld?: (hold: HeldNotice) => void): GatewayRequest {
    return this.deps.pipeline.request(this.info, { action, text, attrs: { ssh: attrs }, ...(onHeld ? { onHeld } : {}) })
  }

  /** A held exec or shell: the client reads on stderr that it waits, and for which review. */
  private heldOn(channel: ServerChannel): (hold: HeldNotice) => void {
    return (hold) => {
      if (channel.destroyed) return
      channel.stderr.write(`gatehouse: held for review ${hold.review}: ${hold.reason}; ${holdTerms(hold)}\n`)
    }
  }

  private async admit(request: GatewayRequest): Promise<Admission> {
    return await this.deps.pipeline.admit(request)
  }

  /**
   * A request the gateway does not relay (agent and X11 forwarding, unix-socket forwards): put
   * to policy and recorded like any other, then refused even if a rule allows it.
   */
  private async judgeUnsupported(action: string, text: string, attrs: Record<string, unknown>): Promise<void> {
    const request = this.request(action, text, attrs)
    const admission = await this.admit(request)
    if (admission.admitted) this.deps.pipeline.complete(request, { status: 'unsupported', error: { code: 'GH_ERR_PROTOCOL_UNSUPPORTED', message: `${text} is not supported by the gateway` } })
  }

  /**
   * A request the gateway refuses before policy (a limit, something it does not relay): recorded
   * as a refused request under `rule`, never put to policy.
   */
  private async refuseUnjudged(action: string, text: string, attrs: Record<string, unknown>, rule: string, reason: string): Promise<void> {
    if (!this.handle || !this.info.principal) return
    await this.deps.pipeline.refuse(this.request(action, text, attrs), { rule, reason, code: 'GH_ERR_PROTOCOL_UNSUPPORTED' })
  }

  // ------------------------------------------------------------------ session channels

  private onSessionChannel(session: Session): void {
    const setup: ChannelSetup = { env: {} }
    this.on(session, 'pty', 'pty', (accept: (() => void) | undefined, _reject: unknown, info: PseudoTtyInfo) => {
      if (setup.started) return
      setup.pty = info
      setup.window = { cols: info.cols, rows: info.rows, width: info.width, height: info.height }
      accept?.()
    })
    this.on(session, 'window-change', 'window-change', (accept: (() => void) | undefined, _reject: unknown, info: PseudoTtyInfo) => {
      setup.window = { cols: info.cols, rows: info.rows, width: info.width, height: info.height }
      setup.up?.setWindow(info.rows, info.cols, info.height, info.width)
      setup.recording?.resize(info.cols, info.rows)
      accept?.()
    })
    this.on(session, 'signal', 'signal', (accept: (() => void) | undefined, reject: (() => void) | undefined, info: { name: unknown }) => {
      // RFC 4254 names only, as written there (ssh2 would upper-case `int` and throw on others)
      const name = typeof info.name === 'string' ? info.name : ''
      if (!SIGNALS.has(name) || !setup.up) {
        reject?.()
        return this.refuseUnjudged('ssh.signal', `signal ${printable(name)}`, { signal: printable(name) }, 'gatehouse/signal', setup.up ? `${printable(name)} is not a signal RFC 4254 defines` : 'no command is running on this channel')
      }
      setup.up.signal(name)
      accept?.()
    })
    this.on(session, 'env', 'env', (accept: (() => void) | undefined, reject: (() => void) | undefined, info: { key: string; val: string }) => {
      if (setup.started) return this.refuseUnjudged('ssh.env', `env ${printable(info.key)}`, { name: printable(info.key) }, 'gatehouse/env', 'the channel already runs its command; its environment is fixed')
      if (this.envAllowed(info.key)) {
        setup.env[info.key] = info.val
        return accept?.()
      }
      reject?.()
      // the name only: values may hold secrets
      return this.refuseUnjudged('ssh.env', `env ${printable(info.key)}`, { name: printable(info.key) }, 'gatehouse/env', neverPassed(info.key) ? `${printable(info.key)} changes what the target runs; it is never passed` : `${printable(info.key)} is not in options.env`)
    })
    this.on(session, 'auth-agent', 'auth-agent', async (_accept: unknown, reject: (() => void) | undefined) => {
      await this.judgeUnsupported('ssh.agent-forward', 'agent forwarding', {})
      reject?.()
    })
    this.on(session, 'x11', 'x11', async (_accept: unknown, reject: (() => void) | undefined, info: { single: boolean; screen: number }) => {
      await this.judgeUnsupported('ssh.x11', 'X11 forwarding', { single: info.single, screen: info.screen })
      reject?.()
    })
    // exec and shell are accepted at once and judged after: ssh2 drops a client's EOF that
    // arrives before the accept (and accept then fails), and a refusal is an exit status anyway.
    // A channel runs one request: a second exec, shell or subsystem is refused (accept() gives nothing).
    this.on(session, 'exec', 'exec', (accept: () => ServerChannel | undefined, reject: unknown, info: { command: string }) => {
      const down = accept()
      if (!down) return this.secondRequest(session, reject !== undefined, 'ssh.exec', info.command, { command: info.command })
      setup.started = true
      down.pause()
      return this.onExec(setup, down, info.command)
    })
    this.on(session, 'shell', 'shell', (accept: () => ServerChannel | undefined, reject: unknown) => {
      const down = accept()
      if (!down) return this.secondRequest(session, reject !== undefined, 'ssh.shell', 'shell', {})
      setup.started = true
      down.pause()
      return this.onShell(setup, down)
    })
    // Accepted at once too: OpenSSH's sftp sends its first packet without waiting for the reply,
    // and ssh2 drops data that arrives before the accept.
    this.on(session, 'sftp', 'sftp', (accept: () => SFTPWrapper | undefined, reject: unknown) => {
      const sftp = accept()
      if (!sftp) return this.secondRequest(session, reject !== undefined, 'ssh.sftp', 'sftp', { subsystem: 'sftp', op: 'session' })
      setup.started = true
      return this.onSftp(sftp)
    })
    this.on(session, 'subsystem', 'subsystem', (accept: () => ServerChannel | undefined, reject: (() => void) | undefined, info: { name: string }) => {
      // Nothing that is not a plain name reaches the target: a NUL or a control byte makes sshd drop the connection.
      if (!SUBSYSTEM_NAME.test(info.name)) {
        reject?.()
        return this.refuseUnjudged('ssh.subsystem', `subsystem ${printable(info.name)}`, { subsystem: printable(info.name) }, 'gatehouse/subsystem', 'a subsystem name is printable ASCII without spaces, at most 64 characters')
      }
      const down = accept()
      if (!down) return this.secondRequest(session, reject !== undefined, 'ssh.subsystem', `subsystem ${info.name}`, { subsystem: info.name })
      setup.started = true
      down.pause()
      return this.onSubsystem(setup, down, info.name)
    })
  }

  /**
   * A second exec, shell or subsystem on a channel that already runs one: ssh2 has nothing to
   * hand out and would leave a client that asked for a reply waiting. Answered with a failure
   * and recorded as refused.
   */
  private async secondRequest(session: Session, wantReply: boolean, action: string, text: string, attrs: Record<string, unknown>): Promise<void> {
    const raw = session as unknown as { _chanInfo?: { outgoing?: { id: number } } }
    const proto = (this.client as unknown as { _protocol?: { channelFailure(id: number): void } })._protocol
    const id = raw._chanInfo?.outgoing?.id
    if (wantReply && proto && id !== undefined) proto.channelFailure(id)
    await this.refuseUnjudged(action, text, attrs, 'gatehouse/one-request-per-channel', 'this channel already runs a command, shell or subsystem')
  }

  private envAllowed(name: string): boolean {
    // Variables the shell on the target executes or that change what runs: never passed,
    // whatever options.env says (the command analysis cannot see them).
    if (neverPassed(name)) return false
    for (const pattern of this.deps.options.env) {
      if (pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : name === pattern) return true
    }
    return false
  }

  private ptyAttrs(setup: ChannelSetup): Record<string, unknown> | undefined {
    const w = setup.window
    return setup.pty ? { term: setup.pty.term, cols: w?.cols ?? setup.pty.cols, rows: w?.rows ?? setup.pty.rows } : undefined
  }

  private async onExec(setup: ChannelSetup, down: ServerChannel, command: string): Promise<void> {
    const analysis = await this.deps.analyze(command, this.info.principal?.id ?? '')
    const pty = this.ptyAttrs(setup)
    const attrs: Record<string, unknown> = analysis.ok
      ? { command, ...analysis.facts, ...(pty ? { pty } : {}), env: [...new Set([...Object.keys(setup.env), ...analysis.facts.env])] }
      : { command, error: analysis.error, ...(pty ? { pty } : {}) }
    const request = this.request('ssh.exec', command, attrs, this.heldOn(down))
    if (!analysis.ok) {
      await this.deps.pipeline.refuse(request, { rule: 'gatehouse/parse', reason: `the command could not be judged: ${analysis.error}`, code: 'GH_ERR_PARSE_FAILED' })
      return this.denyExec(down, 'gatehouse/parse', `the command could not be judged: ${analysis.error}`)
    }
    const admission = await this.admit(request)
    if (!admission.admitted) return this.refuseExec(down, admission)
    await this.runOnTarget(request, setup, () => down, (message) => this.failExec(down, message), (u, cb) => u.exec(command, { ...(setup.pty ? { pty: this.ptyOptions(setup) } : {}), env: setup.env }, cb), setup.pty !== undefined)
  }

  private async onShell(setup: ChannelSetup, down: ServerChannel): Promise<void> {
    const pty = this.ptyAttrs(setup)
    const request = this.request('ssh.shell', 'shell', { pty: pty ?? false, env: Object.keys(setup.env) }, this.heldOn(down))
    const admission = await this.admit(request)
    if (!admission.admitted) return this.refuseExec(down, admission)
    await this.runOnTarget(request, setup, () => down, (message) => this.failExec(down, message), (u, cb) => u.shell(setup.pty ? this.ptyOptions(setup) : false, { env: setup.env }, cb), true)
  }

  /**
   * SFTP operation by operation (sftp.ts). The session itself is one `ssh.sftp` request (op
   * `session`); each operation that touches a path is another.
   */
  private onSftp(client: SFTPWrapper): void {
    const request = this.request('ssh.sftp', 'sftp', { subsystem: 'sftp', op: 'session' })
    const started = performance.now()
    let operations = 0
    const target = (async (): Promise<SFTPWrapper> => {
      const admission = await this.admit(request)
      if (!admission.admitted) throw new SftpRefused(`denied by ${admission.decision.rule ?? 'default-deny'}: ${admission.decision.reason ?? 'denied'}`, 126)
      try {
        const u = await this.target()
        return await new Promise<SFTPWrapper>((resolve, reject) => u.sftp((err, sftp) => (err ? reject(err) : resolve(sftp))))
      } catch (err) {
        const message = err instanceof UpstreamError ? err.message : `the target refused sftp: ${(err as Error).message}`
        this.deps.pipeline.complete(request, { error: { code: err instanceof UpstreamError ? 'GH_ERR_UPSTREAM_UNAVAILABLE' : 'GH_ERR_UPSTREAM_REFUSED', message } })
        throw new SftpRefused(message, 255)
      }
    })()
    const proxy = new SftpProxy(
      client,
      target,
      this.deps.pipeline,
      this.info,
      () => operations++,
      // every sftp request (reads and writes on handles too) is traffic: the session is not idle
      (emitter, event, where, handler) =>
        this.on(emitter, event, where, (...args: never[]) => {
          this.touch()
          return handler(...args)
        }),
      (reason) => {
        void this.deps.pipeline.limitReached(this.info, 'ssh.sftp-unread', reason)
        this.close(reason)
      },
    )
    proxy.start()
    const raw = client as unknown as { _protocol?: { exitStatus(id: number, code: number): void; channelExtData(id: number, data: Buffer, type: number): void }; outgoing?: { id: number; state: string } }
    const open = () => raw._protocol !== undefined && raw.outgoing !== undefined && (raw.outgoing.state === 'open' || raw.outgoing.state === 'eof')
    // The client's EOF ends the SFTP session: exit status 0, then close the channel, as sshd does
    // when sftp-server exits (scp treats a missing exit status as a failure). ssh2's SFTP
    // object has no exit() and no stderr; the same messages a channel sends are sent here.
    this.on(client, 'end', 'sftp end', () => {
      if (open()) raw._protocol?.exitStatus(raw.outgoing?.id as number, 0)
      client.end()
    })
    target.then(
      (t) => {
        this.on(t, 'close', 'target sftp close', () => client.end())
        this.on(client, 'close', 'sftp close', () => {
          t.end()
          proxy.finish()
          this.deps.pipeline.complete(request, { status: `${operations} operations` })
          this.deps.logger.debug({ session: this.info.id, ms: Math.round(performance.now() - started) }, 'sftp closed')
        })
      },
      // sftp and scp print the channel's stderr: the caller sees why, as for a refused command
      (err: unknown) => {
        const refused = err instanceof SftpRefused ? err : new SftpRefused((err as Error).message, 255)
        if (open()) {
          raw._protocol?.channelExtData(raw.outgoing?.id as number, Buffer.from(`gatehouse: ${refused.message}\n`), 1)
          raw._protocol?.exitStatus(raw.outgoing?.id as number, refused.status)
        }
        client.end()
      },
    )
  }

  private async onSubsystem(setup: ChannelSetup, down: ServerChannel, name: string): Promise<void> {
    const action = name === 'sftp' ? 'ssh.sftp' : 'ssh.subsystem'
    const request = this.request(action, `subsystem ${name}`, { subsystem: name })
    const admission = await this.admit(request)
    if (!admission.admitted) return this.denyExec(down, admission.decision.rule ?? 'default-deny', admission.decision.reason ?? 'denied')
    await this.runOnTarget(request, setup, () => down, (message) => this.failExec(down, message), (u, cb) => u.subsys(name, cb), false)
  }

  private ptyOptions(setup: ChannelSetup) {
    const p = setup.pty as PseudoTtyInfo
    const w = setup.window ?? p
    return { term: p.term, cols: w.cols, rows: w.rows, width: w.width, height: w.height, modes: p.modes }
  }

  /** A refused command or shell: the reason on stderr, exit status 126, the channel closed. */
  /** A refused exec or shell: a held one that was denied or timed out says so; a denial names its rule. */
  private refuseExec(channel: ServerChannel, admission: Admission & { admitted: false }): void {
    if (admission.error.code === 'GH_ERR_REVIEW_DENIED' || admission.error.code === 'GH_ERR_REVIEW_EXPIRED' || admission.error.code === 'GH_ERR_STATE_UNAVAILABLE') {
      if (channel.destroyed) return
      channel.stderr.write(`gatehouse: ${admission.error.clientMessage}\n`)
      channel.exit(126)
      channel.end()
      return
    }
    this.denyExec(channel, admission.decision.rule ?? 'default-deny', admission.decision.reason ?? 'denied')
  }

  private denyExec(channel: ServerChannel, rule: string, reason: string): void {
    channel.stderr.write(`gatehouse: denied by ${rule}: ${reason}\n`)
    channel.exit(126)
    channel.end()
  }

  /** An allowed command the target could not run: the reason on stderr, exit status 255 (as ssh reports its own failures). */
  private failExec(channel: ServerChannel, message: string): void {
    channel.stderr.write(`gatehouse: ${message}\n`)
    channel.exit(255)
    channel.end()
  }

  /**
   * Opens the matching channel on the target and relays it. `record`: a terminal session, kept
   * as an asciicast recording.
   */
  private async runOnTarget(
    request: GatewayRequest,
    setup: ChannelSetup,
    claim: () => ServerChannel | undefined,
    refuse: (message: string) => void,
    open: (u: SshClient, cb: (err: Error | undefined, channel: ClientChannel) => void) => void,
    record: boolean,
  ): Promise<void> {
    let up: ClientChannel
    let exit: ExitHolder
    try {
      const target = await this.target()
      ;[up, exit] = await new Promise<[ClientChannel, ExitHolder]>((resolve, rejectOpen) =>
        open(target, (err, ch) => {
          if (err) return rejectOpen(err)
          // The target's success, data, exit-status and close can arrive in one read, handled
          // before the promise settles: the exit status must be caught here, not after an await
          // (data waits in the stream's buffer; an 'exit' event does not wait).
          resolve([ch, captureExit(ch)])
        }),
      )
    } catch (err) {
      const message = err instanceof UpstreamError ? err.message : `the target refused the channel: ${(err as Error).message}`
      this.deps.pipeline.complete(request, { error: { code: err instanceof UpstreamError ? 'GH_ERR_UPSTREAM_UNAVAILABLE' : 'GH_ERR_UPSTREAM_REFUSED', message } })
      refuse(message)
      return
    }
    const down = claim()
    if (!down) {
      up.close()
      this.deps.pipeline.complete(request, { skipped: true })
      return
    }
    setup.up = up
    if (record && setup.pty) setup.recording = this.openRecording(request, setup)
    this.relaySessionChannel(request, down, up, exit, setup.recording)
    down.resume()
  }

  private openRecording(request: GatewayRequest, setup: ChannelSetup): TerminalRecording | undefined {
    const w = setup.window ?? setup.pty
    try {
      return this.deps.recorder.open({ session: this.info.id, request: request.id, cols: w?.cols ?? 80, rows: w?.rows ?? 24, term: setup.pty?.term, title: request.text, recordInput: this.deps.options.recordInput })
    } catch (err) {
      this.deps.logger.error({ err: String(err), session: this.info.id }, 'cannot open terminal recording')
      return undefined
    }
  }

  private relaySessionChannel(request: GatewayRequest, down: ServerChannel, up: ClientChannel, exitHolder: ExitHolder, recording: TerminalRecording | undefined): void {
    const counters: Counters = { bytesIn: 0, bytesOut: 0 }
    const started = performance.now()
    // client → target
    this.on(down, 'data', 'relay data', (d: Buffer) => {
      this.touch()
      counters.bytesIn += d.length
      recording?.input(d)
      if (!up.write(d)) down.pause()
    })
    this.on(up, 'drain', 'relay drain', () => down.resume())
    this.on(down, 'end', 'relay end', () => up.end())
    // target → client, stdout and stderr apart
    this.on(up, 'data', 'relay data', (d: Buffer) => {
      this.touch()
      counters.bytesOut += d.length
      recording?.output(d)
      if (!down.write(d)) up.pause()
    })
    this.on(up.stderr, 'data', 'relay data', (d: Buffer) => {
      this.touch()
      counters.bytesOut += d.length
      recording?.output(d)
      if (!down.stderr.write(d)) up.stderr.pause()
    })
    this.on(down, 'drain', 'relay drain', () => {
      up.resume()
      up.stderr.resume()
    })
    // The outcome is recorded once, by whichever ends first: the target's channel, the client's
    // channel (a client that stops reading and leaves), or the session.
    let recorded = false
    // a command or subsystem is work while it runs, silent or not; a shell waits on its user
    const working = request.action !== 'ssh.shell'
    const record = (status: string | number) => {
      if (recorded) return
      recorded = true
      this.openOutcomes.delete(record)
      if (working) this.running--
      void recording?.close()
      this.deps.pipeline.complete(request, { status, bytesIn: counters.bytesIn, bytesOut: counters.bytesOut, ...(recording ? { recording: recording.path } : {}) })
      this.deps.logger.debug({ session: this.info.id, request: request.id, ms: Math.round(performance.now() - started) }, 'channel closed')
    }
    this.openOutcomes.add(record)
    if (working) this.running++
    this.on(up, 'close', 'relay close', () => {
      // Everything the target sent has been written: now the exit status, then end.
      const exit = exitHolder.exit
      if (exit && 'code' in exit) down.exit(exit.code)
      else if (exit) down.exit(exit.signal, exit.coreDumped, exit.description)
      down.end()
      record(exit ? ('code' in exit ? exit.code : `signal ${exit.signal}`) : 'closed')
    })
    this.on(down, 'close', 'relay close', () => {
      up.close()
      record('client closed the channel')
    })
  }

  // ------------------------------------------------------------------ forwarding

  /** direct-tcpip: `ssh -L` and `ssh -D` open these to reach a host through the target. */
  private async onDirectTcpip(accept: () => ServerChannel, reject: () => void, info: TcpipRequestInfo): Promise<void> {
    const text = `forward to ${info.destIP}:${info.destPort}`
    const request = this.request('ssh.forward', text, { kind: 'local', host: info.destIP, port: info.destPort, originator: `${info.srcIP}:${info.srcPort}` })
    const admission = await this.admit(request)
    if (!admission.admitted) return this.prohibit(reject, admission.decision.rule ?? 'default-deny')
    let up: ClientChannel
    try {
      const target = await this.target()
      up = await new Promise<ClientChannel>((resolve, rejectOpen) => target.forwardOut(info.srcIP, info.srcPort, info.destIP, info.destPort, (err, ch) => (err ? rejectOpen(err) : resolve(ch))))
    } catch (err) {
      this.deps.pipeline.complete(request, { error: { code: 'GH_ERR_UPSTREAM_REFUSED', message: `the target could not connect: ${(err as Error).message}` } })
      return reject()
    }
    this.pipeStreams(request, accept(), up)
  }

  /**
   * Refuses a channel open as "administratively prohibited" (what OpenSSH prints for a forward
   * the server's policy refuses). ssh2's reject() says "connect failed" for an accepted channel
   * type and takes no reason, so the one protocol call it makes is given the right reason and
   * description; reject() still does its own bookkeeping.
   */
  private prohibit(reject: () => void, rule: string): void {
    const proto = (this.client as unknown as { _protocol?: { channelOpenFail: (remote: number, reason: number, desc: string) => void } })._protocol
    if (!proto) return reject()
    const original = proto.channelOpenFail
    proto.channelOpenFail = (remote: number) => original.call(proto, remote, ADMINISTRATIVELY_PROHIBITED, `gatehouse: denied by ${rule}`)
    try {
      reject()
    } finally {
      proto.channelOpenFail = original
    }
  }

  /** tcpip-forward: `ssh -R` asks the target to listen and send connections back. */
  private async onGlobalRequest(accept: ((port?: number) => void) | undefined, reject: (() => void) | undefined, name: string, info: TcpipBindInfo): Promise<void> {
    if (name === 'tcpip-forward') {
      const request = this.request('ssh.forward', `listen on ${info.bindAddr}:${info.bindPort}`, { kind: 'remote', host: info.bindAddr, port: info.bindPort })
      const admission = await this.admit(request)
      if (!admission.admitted) return reject?.()
      try {
        const target = await this.target()
        const port = await new Promise<number>((resolve, rejectBind) => target.forwardIn(info.bindAddr, info.bindPort, (err, p) => (err ? rejectBind(err) : resolve(p))))
        this.remoteForwards.set(`${info.bindAddr}:${port}`, info)
        this.deps.pipeline.complete(request, { status: `listening on ${info.bindAddr}:${port}` })
        accept?.(port)
      } catch (err) {
        this.deps.pipeline.complete(request, { error: { code: 'GH_ERR_UPSTREAM_REFUSED', message: (err as Error).message } })
        reject?.()
      }
      return
    }
    if (name === 'streamlocal-forward@openssh.com') {
      const path = (info as unknown as { socketPath?: string }).socketPath ?? ''
      await this.judgeUnsupported('ssh.forward', `listen on unix socket ${path}`, { kind: 'remote-socket', path })
      return reject?.()
    }
    if (name === 'cancel-tcpip-forward') {
      const key = `${info.bindAddr}:${info.bindPort}`
      if (!this.remoteForwards.has(key)) return reject?.()
      this.remoteForwards.delete(key)
      // The target connection may be gone (ssh2's unforwardIn then throws "Not connected"):
      // the forward is gone with it, and the client is told it was cancelled either way.
      const target = await this.target().catch(() => undefined)
      try {
        target?.unforwardIn(info.bindAddr, info.bindPort, () => undefined)
      } catch (err) {
        this.deps.logger.debug({ err: (err as Error).message, session: this.info.id }, 'cancel-tcpip-forward on a closed target connection')
      }
      return accept?.()
    }
    reject?.()
  }

  /** A connection the target accepted on a remote forward: back to the client, recorded. */
  private async onRemoteForwardConnection(info: TcpipRequestInfo, accept: () => ClientChannel, reject: () => void): Promise<void> {
    const key = `${info.destIP}:${info.destPort}`
    if (!this.remoteForwards.has(key)) return reject()
    const request = this.request('ssh.forward', `connection from ${info.srcIP}:${info.srcPort} to ${key}`, { kind: 'remote-connection', host: info.destIP, port: info.destPort, originator: `${info.srcIP}:${info.srcPort}` })
    const admission = await this.admit(request)
    if (!admission.admitted) return reject()
    this.client.forwardOut(info.destIP, info.destPort, info.srcIP, info.srcPort, (err, down) => {
      if (err) {
        this.deps.pipeline.complete(request, { error: { code: 'GH_ERR_UPSTREAM_REFUSED', message: err.message } })
        return reject()
      }
      this.pipeStreams(request, down, accept())
    })
  }

  /** Relays a forwarded TCP stream both ways with flow control, and records its byte counts. */
  private pipeStreams(request: GatewayRequest, down: Duplex, up: Duplex): void {
    const counters: Counters = { bytesIn: 0, bytesOut: 0 }
    this.on(down, 'data', 'forward data', (d: Buffer) => {
      this.touch()
      counters.bytesIn += d.length
      if (!up.write(d)) down.pause()
    })
    this.on(up, 'data', 'forward data', (d: Buffer) => {
      this.touch()
      counters.bytesOut += d.length
      if (!down.write(d)) up.pause()
    })
    this.on(up, 'drain', 'forward drain', () => down.resume())
    this.on(down, 'drain', 'forward drain', () => up.resume())
    this.on(down, 'end', 'forward end', () => up.end())
    this.on(up, 'end', 'forward end', () => down.end())
    let done = false
    const finish = () => {
      if (done) return
      done = true
      this.openOutcomes.delete(finish)
      down.destroy()
      up.destroy()
      this.deps.pipeline.complete(request, { status: 'closed', bytesIn: counters.bytesIn, bytesOut: counters.bytesOut })
    }
    this.openOutcomes.add(finish)
    this.on(down, 'close', 'forward close', finish)
    this.on(up, 'close', 'forward close', finish)
    this.on(down, 'error', 'forward error', finish)
    this.on(up, 'error', 'forward error', finish)
  }
}

/** Why an SFTP session does not start: the text for the caller's stderr and the exit status. */
class SftpRefused extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message)
  }
}

const isThenable = (value: unknown): value is PromiseLike<unknown> => typeof (value as PromiseLike<unknown> | undefined)?.then === 'function'

/** A name the client sent, safe to log and audit: control bytes shown as escapes, at most 128 characters. */
function printable(text: string): string {
  const shown = JSON.stringify(text).slice(1, -1)
  return shown.length > 128 ? `${shown.slice(0, 128)}…` : shown
}

type Exit = { code: number } | { signal: string; coreDumped: boolean; description: string }

/** The target channel's exit status, once it arrives. */
interface ExitHolder {
  exit: Exit | undefined
}

/** Listens for the channel's exit status from now on; call in the callback that hands out the channel. */
function captureExit(ch: ClientChannel): ExitHolder {
  const holder: ExitHolder = { exit: undefined }
  ch.on('exit', (code: number | null, signal?: string, coreDumped?: boolean, description?: string) => {
    holder.exit = code !== null && code !== undefined ? { code } : { signal: signal ?? 'KILL', coreDumped: coreDumped === true, description: description ?? '' }
  })
  return holder
}
