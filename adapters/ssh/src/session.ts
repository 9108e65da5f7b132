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
 */
import ssh2, { type AuthContext, type ClientChannel, type Connection, type PseudoTtyInfo, type ServerChannel, type Session, type SFTPWrapper, type Client as SshClient, type TcpipBindInfo, type TcpipRequestInfo } from 'ssh2'
import type { Duplex } from 'node:stream'
import { GatewayError, isGatewayError, type Admission, type GatewayRequest, type Logger, type Pipeline, type SessionHandle, type TerminalRecorder, type TerminalRecording } from '@gatehouse/core'
import type { SshOptions, UpstreamConfig } from './config.js'
import { analyzeCommand } from './shell/programs.js'
import { SftpProxy } from './sftp.js'
import { connectUpstream, UpstreamError } from './upstream.js'

/** Environment variables that make the target's shell run something, or change which program runs. */
const NEVER_PASSED_ENV = /^(BASH_ENV|ENV|PS[0-4]|PROMPT_COMMAND|SHELLOPTS|BASHOPTS|BASH_FUNC_.*|BASH_XTRACEFD|LD_.*|PATH|IFS|GLOBIGNORE|CDPATH|HISTFILE|MAIL|MAILPATH|PYTHON.*|PERL5.*|RUBY.*|NODE_OPTIONS|GIT_.*)$/

/** SSH_OPEN_ADMINISTRATIVELY_PROHIBITED (RFC 4254 §5.1). */
const ADMINISTRATIVELY_PROHIBITED = 1

export interface SshSessionDeps {
  readonly connection: string
  readonly upstream: UpstreamConfig
  readonly options: SshOptions
  readonly pipeline: Pipeline
  readonly recorder: TerminalRecorder
  readonly logger: Logger
}

/** What a session channel has been told before its exec/shell/subsystem request. */
interface ChannelSetup {
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
  private authFailures = 0
  private closed = false
  private readonly remoteForwards = new Map<string, TcpipBindInfo>()

  /** Outcomes still to be recorded for requests in flight, by whoever ends them first. */
  private readonly openOutcomes = new Set<(status: string) => void>()

  /**
   * @param authenticated called once the client has logged in (the listener's login timer stops)
   */
  constructor(
    private readonly client: Connection,
    private readonly clientAddress: string,
    private readonly deps: SshSessionDeps,
    private readonly authenticated: () => void = () => undefined,
  ) {}

  start(): void {
    this.handle = this.deps.pipeline.openSession({ protocol: 'ssh', clientAddress: this.clientAddress, tls: false })
    this.client.on('authentication', (ctx) => void this.onAuthentication(ctx))
    this.client.on('ready', () => {
      if (this.closed) return
      this.authenticated()
      this.onReady()
    })
    this.client.on('error', (err) => this.deps.logger.debug({ err: err.message, session: this.info.id }, 'client connection error'))
    this.client.on('close', () => this.close('client disconnected'))
  }

  private get info() {
    return (this.handle as SessionHandle).info
  }

  /** Ends both connections and the pipeline session. Idempotent. */
  close(reason: string): void {
    if (this.closed) return
    this.closed = true
    for (const record of [...this.openOutcomes]) record(`session ended: ${reason}`)
    this.client.end()
    void this.upstream?.then((u) => u.end(), () => undefined)
    void this.handle?.end(reason)
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
        if (key instanceof Error || !key.verify(ctx.blob, ctx.signature, ctx.hashAlgo)) throw new GatewayError('GH_ERR_AUTH_FAILED', 'public key signature does not verify')
        await this.deps.pipeline.authenticate(this.info, { kind: 'public-key', user, algorithm: ctx.key.algo, key: ctx.key.data })
        return this.closed ? ctx.reject() : ctx.accept()
      }
      return ctx.reject(['publickey', 'password'])
    } catch (err) {
      this.authFailures++
      if (!isGatewayError(err)) this.deps.logger.error({ err: String(err), session: this.info.id }, 'authentication failed unexpectedly')
      ctx.reject(['publickey', 'password'])
      if (this.authFailures >= this.deps.options.maxAuthAttempts) this.close('too many authentication failures')
    }
  }

  private onReady(): void {
    // One connection to the target per client connection; its channels carry every request.
    this.upstream = connectUpstream(this.deps.upstream, this.info.signal)
    this.upstream.then(
      (u) => {
        u.on('close', () => this.close('target closed the connection'))
        u.on('error', (err) => this.deps.logger.warn({ err: err.message, session: this.info.id }, 'target connection error'))
        u.on('tcp connection', (info, accept, reject) => this.onRemoteForwardConnection(info, accept, reject))
      },
      (err: unknown) => this.deps.logger.warn({ err: (err as Error).message, session: this.info.id }, 'cannot reach the target'),
    )
    this.client.on('session', (accept) => this.onSessionChannel(accept()))
    this.client.on('tcpip', (accept, reject, info) => void this.onDirectTcpip(accept, reject, info))
    this.client.on('request', (accept, reject, name, info) => void this.onGlobalRequest(accept, reject, name, info))
    this.client.on('openssh.streamlocal', (_accept, reject, info: { socketPath?: string }) =>
      void this.judgeUnsupported('ssh.forward', `forward to unix socket ${info?.socketPath ?? ''}`, { kind: 'local-socket', path: info?.socketPath ?? '' }).then(() => reject()),
    )
  }

  // ------------------------------------------------------------------ requests

  private request(action: string, text: string, attrs: Record<string, unknown>): GatewayRequest {
    return this.deps.pipeline.request(this.info, { action, text, attrs: { ssh: attrs } })
  }

  /** A terminal request: its attributes name the recording it will have, so the audit points to it. */
  private terminalRequest(action: string, text: string, attrs: Record<string, unknown>): GatewayRequest {
    const request = this.request(action, text, attrs)
    ;(request.attrs.ssh as Record<string, unknown>).recording = this.deps.recorder.pathFor(this.info.id, request.id)
    return request
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

  private target(): Promise<SshClient> {
    return this.upstream ?? Promise.reject(new UpstreamError('not connected', 'unreachable'))
  }

  // ------------------------------------------------------------------ session channels

  private onSessionChannel(session: Session): void {
    const setup: ChannelSetup = { env: {} }
    session.on('pty', (accept, _reject, info) => {
      setup.pty = info
      setup.window = { cols: info.cols, rows: info.rows, width: info.width, height: info.height }
      accept?.()
    })
    session.on('window-change', (accept, _reject, info) => {
      setup.window = { cols: info.cols, rows: info.rows, width: info.width, height: info.height }
      setup.up?.setWindow(info.rows, info.cols, info.height, info.width)
      setup.recording?.resize(info.cols, info.rows)
      accept?.()
    })
    session.on('signal', (accept, _reject, info) => {
      setup.up?.signal(info.name)
      accept?.()
    })
    session.on('env', (accept, reject, info) => {
      if (this.envAllowed(info.key)) {
        setup.env[info.key] = info.val
        accept?.()
      } else reject?.()
    })
    session.on('auth-agent', (_accept, reject) => {
      void this.judgeUnsupported('ssh.agent-forward', 'agent forwarding', {}).then(() => reject?.())
    })
    session.on('x11', (_accept, reject, info) => {
      void this.judgeUnsupported('ssh.x11', 'X11 forwarding', { single: info.single, screen: info.screen }).then(() => reject?.())
    })
    // exec and shell are accepted at once and judged after: ssh2 drops a client's EOF that
    // arrives before the accept (and accept then fails), and a refusal is an exit status anyway.
    session.on('exec', (accept, _reject, info) => {
      const down = accept()
      if (!down) return
      down.pause()
      void this.onExec(setup, down, info.command)
    })
    session.on('shell', (accept) => {
      const down = accept()
      if (!down) return
      down.pause()
      void this.onShell(setup, down)
    })
    // Accepted at once too: OpenSSH's sftp sends its first packet without waiting for the reply,
    // and ssh2 drops data that arrives before the accept.
    session.on('sftp', (accept) => {
      const sftp = accept()
      if (sftp) this.onSftp(sftp)
    })
    session.on('subsystem', (accept, _reject, info) => {
      const down = accept()
      if (!down) return
      down.pause()
      void this.onSubsystem(setup, down, info.name)
    })
  }

  private envAllowed(name: string): boolean {
    // Variables the shell on the target executes or that change what runs: never passed,
    // whatever options.env says (the command analysis cannot see them).
    if (NEVER_PASSED_ENV.test(name)) return false
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
    const analysis = analyzeCommand(command)
    const pty = this.ptyAttrs(setup)
    const attrs: Record<string, unknown> = analysis.ok
      ? { command, ...analysis.facts, ...(pty ? { pty } : {}), env: Object.keys(setup.env) }
      : { command, error: analysis.error, ...(pty ? { pty } : {}) }
    const request = pty ? this.terminalRequest('ssh.exec', command, attrs) : this.request('ssh.exec', command, attrs)
    if (!analysis.ok) {
      await this.deps.pipeline.refuse(request, { rule: 'gatehouse/parse', reason: `the command could not be judged: ${analysis.error}`, code: 'GH_ERR_PARSE_FAILED' })
      return this.denyExec(down, 'gatehouse/parse', `the command could not be judged: ${analysis.error}`)
    }
    const admission = await this.admit(request)
    if (!admission.admitted) return this.denyExec(down, admission.decision.rule ?? 'default-deny', admission.decision.reason ?? 'denied')
    await this.runOnTarget(request, setup, () => down, (message) => this.failExec(down, message), (u, cb) => u.exec(command, { ...(setup.pty ? { pty: this.ptyOptions(setup) } : {}), env: setup.env }, cb), setup.pty !== undefined)
  }

  private async onShell(setup: ChannelSetup, down: ServerChannel): Promise<void> {
    const pty = this.ptyAttrs(setup)
    const request = pty ? this.terminalRequest('ssh.shell', 'shell', { pty, env: Object.keys(setup.env) }) : this.request('ssh.shell', 'shell', { pty: false, env: Object.keys(setup.env) })
    const admission = await this.admit(request)
    if (!admission.admitted) return this.denyExec(down, admission.decision.rule ?? 'default-deny', admission.decision.reason ?? 'denied')
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
      if (!admission.admitted) throw new GatewayError('GH_ERR_POLICY_DENIED', admission.decision.reason ?? 'denied')
      const u = await this.target()
      return await new Promise<SFTPWrapper>((resolve, reject) => u.sftp((err, sftp) => (err ? reject(err) : resolve(sftp))))
    })()
    const proxy = new SftpProxy(client, target, this.deps.pipeline, this.info, () => operations++)
    proxy.start()
    // The client's EOF ends the SFTP session: exit status 0, then close the channel, as sshd does
    // when sftp-server exits (scp treats a missing exit status as a failure). ssh2's SFTP
    // object has no exit(); it sends the same message a channel's exit() does.
    client.on('end', () => {
      const raw = client as unknown as { _protocol?: { exitStatus(id: number, code: number): void }; outgoing?: { id: number; state: string } }
      if (raw._protocol && raw.outgoing && (raw.outgoing.state === 'open' || raw.outgoing.state === 'eof')) raw._protocol.exitStatus(raw.outgoing.id, 0)
      client.end()
    })
    target.then(
      (t) => {
        t.on('close', () => client.end())
        client.on('close', () => {
          t.end()
          proxy.finish()
          this.deps.pipeline.complete(request, { status: `${operations} operations` })
          this.deps.logger.debug({ session: this.info.id, ms: Math.round(performance.now() - started) }, 'sftp closed')
        })
      },
      (err: unknown) => {
        if (!(err instanceof GatewayError)) this.deps.pipeline.complete(request, { error: { code: 'GH_ERR_UPSTREAM_UNAVAILABLE', message: (err as Error).message } })
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
    down.on('data', (d: Buffer) => {
      counters.bytesIn += d.length
      recording?.input(d)
      if (!up.write(d)) down.pause()
    })
    up.on('drain', () => down.resume())
    down.on('end', () => up.end())
    // target → client, stdout and stderr apart
    up.on('data', (d: Buffer) => {
      counters.bytesOut += d.length
      recording?.output(d)
      if (!down.write(d)) up.pause()
    })
    up.stderr.on('data', (d: Buffer) => {
      counters.bytesOut += d.length
      recording?.output(d)
      if (!down.stderr.write(d)) up.stderr.pause()
    })
    down.on('drain', () => {
      up.resume()
      up.stderr.resume()
    })
    // The outcome is recorded once, by whichever ends first: the target's channel, the client's
    // channel (a client that stops reading and leaves), or the session.
    let recorded = false
    const record = (status: string | number) => {
      if (recorded) return
      recorded = true
      this.openOutcomes.delete(record)
      void recording?.close()
      this.deps.pipeline.complete(request, { status, bytesIn: counters.bytesIn, bytesOut: counters.bytesOut })
      this.deps.logger.debug({ session: this.info.id, request: request.id, ms: Math.round(performance.now() - started) }, 'channel closed')
    }
    this.openOutcomes.add(record)
    up.on('close', () => {
      // Everything the target sent has been written: now the exit status, then end.
      const exit = exitHolder.exit
      if (exit && 'code' in exit) down.exit(exit.code)
      else if (exit) down.exit(exit.signal, exit.coreDumped, exit.description)
      down.end()
      record(exit ? ('code' in exit ? exit.code : `signal ${exit.signal}`) : 'closed')
    })
    down.on('close', () => {
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
      const target = await this.target().catch(() => undefined)
      target?.unforwardIn(info.bindAddr, info.bindPort, () => undefined)
      return accept?.()
    }
    reject?.()
  }

  /** A connection the target accepted on a remote forward: back to the client, recorded. */
  private onRemoteForwardConnection(info: TcpipRequestInfo, accept: () => ClientChannel, reject: () => void): void {
    const key = `${info.destIP}:${info.destPort}`
    if (!this.remoteForwards.has(key)) return reject()
    const request = this.request('ssh.forward', `connection from ${info.srcIP}:${info.srcPort} to ${key}`, { kind: 'remote-connection', host: info.destIP, port: info.destPort, originator: `${info.srcIP}:${info.srcPort}` })
    void Promise.resolve(this.deps.pipeline.admit(request)).then((admission) => {
      if (!admission.admitted) return reject()
      this.client.forwardOut(info.destIP, info.destPort, info.srcIP, info.srcPort, (err, down) => {
        if (err) {
          this.deps.pipeline.complete(request, { error: { code: 'GH_ERR_UPSTREAM_REFUSED', message: err.message } })
          return reject()
        }
        this.pipeStreams(request, down, accept())
      })
    })
  }

  /** Relays a forwarded TCP stream both ways with flow control, and records its byte counts. */
  private pipeStreams(request: GatewayRequest, down: Duplex, up: Duplex): void {
    const counters: Counters = { bytesIn: 0, bytesOut: 0 }
    down.on('data', (d: Buffer) => {
      counters.bytesIn += d.length
      if (!up.write(d)) down.pause()
    })
    up.on('data', (d: Buffer) => {
      counters.bytesOut += d.length
      if (!down.write(d)) up.pause()
    })
    up.on('drain', () => down.resume())
    down.on('drain', () => up.resume())
    down.on('end', () => up.end())
    up.on('end', () => down.end())
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
    down.on('close', finish)
    up.on('close', finish)
    down.on('error', finish)
    up.on('error', finish)
  }
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
