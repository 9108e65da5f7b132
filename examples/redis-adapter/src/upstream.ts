/**
 * One connection to the Redis server per logged-in session, logged in with the credential the
 * gateway holds (HELLO … AUTH): the caller never sees it. Replies come back in the order commands
 * were sent; the session sends one command at a time.
 */
import { connect, type Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { ByteQueue, encodeCommand, parseReply, ReplyScanner, RespError, RespProtocolError, type RespValue } from './resp.js'

export interface UpstreamConfig {
  readonly host: string
  readonly port: number
  readonly user?: string
  readonly password?: string
  /** TLS to the server; the password is sent only once the handshake (and, with verify-full, the certificate check) is done. */
  readonly tls?: { readonly mode: 'disable' | 'require' | 'verify-full'; readonly ca?: string; readonly servername?: string; readonly cert?: string; readonly key?: string }
}

export class UpstreamConnection {
  /** Reply bytes as they arrive, and where the reply at their front ends (scanned once, however it is cut). */
  private readonly bytes = new ByteQueue()
  private readonly scanner = new ReplyScanner()
  private waiting: { resolve: (reply: Buffer) => void; reject: (err: Error) => void }[] = []
  private failed: Error | undefined

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk))
    socket.on('error', (err) => this.fail(err))
    socket.on('close', () => this.fail(new Error('the upstream closed the connection')))
  }

  /** Connects and logs in; `hello` is the server's answer to HELLO, in the protocol asked for. */
  static async open(config: UpstreamConfig, proto: 2 | 3, timeoutMs: number): Promise<{ conn: UpstreamConnection; hello: Buffer }> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const tls = config.tls && config.tls.mode !== 'disable' ? config.tls : undefined
      const s = tls
        ? tlsConnect({ host: config.host, port: config.port, ca: tls.ca, cert: tls.cert, key: tls.key, servername: tls.servername, rejectUnauthorized: tls.mode === 'verify-full' })
        : connect({ host: config.host, port: config.port })
      const timer = setTimeout(() => s.destroy(new Error('connect timed out')), timeoutMs)
      s.setNoDelay(true)
      s.once(tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer)
        resolve(s)
      })
      s.once('error', (err) => {
        clearTimeout(timer)
        reject(err)
      })
    })
    const conn = new UpstreamConnection(socket)
    const argv = config.password === undefined ? ['HELLO', String(proto)] : ['HELLO', String(proto), 'AUTH', config.user ?? 'default', config.password]
    const hello = await conn.send(encodeCommand(argv))
    if (hello[0] === 0x2d || hello[0] === 0x21) {
      conn.close()
      // the server's message, never the credential
      throw new Error(`the upstream refused the gateway's login: ${String((parseReply(hello).value as RespError).message).slice(0, 200)}`)
    }
    return { conn, hello }
  }

  /** Sends one command, encoded as RESP (exactly one: `encodeCommand`, or a command's bytes as read); resolves with its whole reply, raw. */
  send(command: Buffer): Promise<Buffer> {
    if (this.failed) return Promise.reject(this.failed)
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject })
      this.socket.write(command)
    })
  }

  /** Sends one command and reads its reply as a value (for the replies the adapter reads itself). */
  async ask(command: Buffer): Promise<RespValue> {
    return parseReply(await this.send(command)).value
  }

  private onData(chunk: Buffer): void {
    this.bytes.push(chunk)
    for (;;) {
      let end: number
      try {
        end = this.scanner.scan(this.bytes.view())
      } catch (err) {
        this.fail(err instanceof RespProtocolError ? err : new Error(String(err)))
        return
      }
      if (end < 0) return
      const reply = Buffer.from(this.bytes.view().subarray(0, end))
      this.bytes.consume(end)
      const w = this.waiting.shift()
      // a reply nobody asked for (a push message): the adapter refuses the commands that cause them
      if (!w) {
        this.fail(new Error('the upstream sent a reply no command asked for'))
        return
      }
      w.resolve(reply)
    }
  }

  private fail(err: Error): void {
    if (this.failed) return
    this.failed = err
    this.socket.destroy()
    for (const w of this.waiting.splice(0)) w.reject(err)
  }

  get closed(): boolean {
    return this.failed !== undefined
  }

  close(): void {
    this.fail(new Error('closed'))
  }
}
