/** The ssh adapter's listener: an ssh2 server whose every client connection runs an SshSession. */
import { createRequire } from 'node:module'
import { createServer, type Socket } from 'node:net'
import ssh2, { type CipherAlgorithm } from 'ssh2'
import { BackgroundPool, checkMovedOptions, GatewayError, inject, injectable, serveListener, PluginContextToken, TerminalRecorder, validate, type ConnectionConfig, type ExplainedRequest, type ExplainInput, type Listener, type Logger, type Pipeline, type PluginContext, type ProtocolAdapter } from '@gatehouse/core'
import { SshLimits, SshOptions, UpstreamConfig } from './config.js'
import { SshSession } from './session.js'
import { analyzeCommand, loadShellParser, type CommandAnalysis } from './shell/programs.js'

/**
 * Ciphers the gateway offers clients. OpenSSH clients prefer chacha20-poly1305. ssh2 runs it in
 * native code when its optional binding was built at install (it needs a C++ toolchain), and in
 * JavaScript otherwise, at a fifth of the speed; without the binding, only AES is offered, which
 * Node runs in OpenSSL with the CPU's AES instructions.
 */
const NATIVE_CHACHA = (() => {
  try {
    createRequire(import.meta.url).resolve('ssh2/lib/protocol/crypto/build/Release/sshcrypto.node')
    return true
  } catch {
    return false
  }
})()
const AES: CipherAlgorithm[] = ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com', 'aes128-ctr', 'aes192-ctr', 'aes256-ctr']
const CIPHERS: CipherAlgorithm[] = NATIVE_CHACHA ? ['chacha20-poly1305@openssh.com', ...AES] : AES

@injectable()
export class SshAdapter implements ProtocolAdapter {
  readonly protocol = 'ssh'
  readonly actions = ['ssh.exec', 'ssh.shell', 'ssh.sftp', 'ssh.subsystem', 'ssh.forward', 'ssh.agent-forward', 'ssh.x11', 'ssh.env', 'ssh.signal', 'ssh.channel', 'ssh.packet'] as const
  /** Its own limits, under `limits.ssh`. */
  readonly limits = SshLimits
  private readonly logger: Logger
  /**
   * Command lines are analysed off the event loop, each within a second: tree-sitter's error
   * recovery is superlinear on some hostile lines (16 KB of `a|` took 10 s, then aborted its
   * WebAssembly module), which on the loop would stall every session of every protocol.
   */
  private readonly analysis = new BackgroundPool<string, CommandAnalysis>(new URL('./shell/analyze-worker.js', import.meta.url), {
    budgetMs: 1000,
    failed: (kind, detail) => ({ ok: false, error: kind === 'timeout' ? `the command line ${detail} to analyse` : kind === 'crashed' ? `the command line could not be analysed: the analyser ${detail}` : detail }),
  })

  constructor(
    @inject(PluginContextToken) ctx: PluginContext,
    @inject(TerminalRecorder) private readonly recorder: TerminalRecorder,
  ) {
    this.logger = ctx.logger
  }

  checkConnection(connection: ConnectionConfig, path: string): void {
    checkMovedOptions(connection.options, path, { loginTimeoutMs: 'limits.unauthenticated.loginTimeoutMs', maxAuthAttempts: 'limits.logins.perConnection' })
    const upstream = validate(UpstreamConfig, connection.upstream, { base: `${path}.upstream` })
    validate(SshOptions, connection.options ?? {}, { base: `${path}.options` })
    if (!upstream.privateKey && !upstream.password) throw new GatewayError('GH_ERR_CONFIG_INVALID', `${path}.upstream: set privateKey or password, the credential the gateway uses on the target`)
    if (connection.tls) throw new GatewayError('GH_ERR_CONFIG_INVALID', `${path}.tls: SSH brings its own encryption; configure options.hostKeys instead`)
  }

  /** At gateway shutdown, after sessions ended: stops the analysis workers. */
  async close(): Promise<void> {
    await this.analysis.close()
  }

  async explain(input: ExplainInput): Promise<readonly ExplainedRequest[]> {
    if (input.command === undefined) throw new GatewayError('GH_ERR_CONFIG_INVALID', 'an ssh connection is explained with --command')
    await loadShellParser()
    const a = analyzeCommand(input.command)
    if (!a.ok) return [{ action: 'ssh.exec', text: input.command, attrs: { ssh: { command: input.command, error: a.error } }, refusal: { rule: 'gatehouse/parse', reason: `the command could not be judged: ${a.error}` } }]
    return [{ action: 'ssh.exec', text: input.command, attrs: { ssh: { command: input.command, ...a.facts } } }]
  }

  async listen(connection: ConnectionConfig, pipeline: Pipeline, signal: AbortSignal): Promise<Listener> {
    await loadShellParser()
    this.analysis.warm()
    const analyze = (command: string, owner: string) => this.analysis.run(command, owner)
    const upstream = validate(UpstreamConfig, connection.upstream)
    const options = validate(SshOptions, connection.options ?? {})
    const logger = this.logger.child({ connection: connection.name })
    const sessions = new Set<SshSession>()
    let accepting = true
    const server = new ssh2.Server({ hostKeys: options.hostKeys, ident: 'Gatehouse', algorithms: { cipher: CIPHERS } }, (client, info) => {
      if (!accepting) {
        // ssh2 emits socket errors (EPIPE from a client already gone) on the connection: without a listener, that would throw
        client.on('error', () => undefined)
        client.end()
        return
      }
      const socket = pending.get(`${info.ip}:${info.port}`)
      const session = new SshSession(client, `${info.ip}:${info.port}`, { connection: connection.name, upstream, options, pipeline, recorder: this.recorder, logger, analyze }, () => socket?.authenticated(), socket?.socket)
      sessions.add(session)
      client.on('close', () => sessions.delete(session))
      session.start()
    })
    server.on('error', (err: Error) => logger.error({ err: err.message }, 'listener error'))
    // Our own listener in front of ssh2's: core's limits decide how many may be logging in at
    // once, in all and from one source address, and drop a connection that has not logged in
    // within limits.unauthenticated.loginTimeoutMs, even one that never sends its greeting
    // (ssh2 only hands a connection over after the greeting).
    const pending = new Map<string, { socket: Socket; authenticated: () => void }>()
    const listener = createServer({ noDelay: true }, (socket) => {
      const slot = accepting ? pipeline.admitConnection(socket.remoteAddress ?? '', 'ssh', () => socket.destroy()) : undefined
      if (!slot) {
        socket.destroy()
        return
      }
      const key = `${socket.remoteAddress ?? ''}:${socket.remotePort ?? 0}`
      const entry = {
        socket,
        authenticated: () => {
          pending.delete(key)
          slot.authenticated()
        },
      }
      pending.set(key, entry)
      socket.once('close', () => {
        entry.authenticated()
        slot.release()
      })
      server.injectSocket(socket)
    })
    listener.on('error', (err: Error) => logger.error({ err: err.message }, 'listener error'))
    return serveListener(listener, connection.listen, {
      sessions,
      signal,
      stopAccepting: () => {
        accepting = false
      },
    })
  }
}
