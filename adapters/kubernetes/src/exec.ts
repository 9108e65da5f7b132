/**
 * exec and attach streams over WebSocket, subprotocol `v5.channel.k8s.io` (kubectl 1.30+).
 *
 * Each binary message starts with a channel byte: 0 stdin, 1 stdout, 2 stderr, 3 the status
 * (a JSON Status: Success, or Failure with the exit code in details.causes), 4 a terminal
 * resize (JSON {Width, Height}), 255 "close this channel" (v5: the client ends stdin with
 * [255, 0]). The gateway relays the channels each side may send — the client stdin, resize and
 * close; the server stdout, stderr, status and close — and drops the rest, records a tty
 * session as asciicast, and puts the exit code in the outcome. Nothing goes upstream before the
 * request was judged; the client's upgrade is completed only once the API server accepted its own.
 */
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import WebSocket, { WebSocketServer } from 'ws'
import type { TerminalRecording } from '@gatehouse/core'

export const V5 = 'v5.channel.k8s.io'
const CHANNEL = { stdin: 0, stdout: 1, stderr: 2, status: 3, resize: 4, close: 255 } as const
const FROM_CLIENT = new Set<number>([CHANNEL.stdin, CHANNEL.resize, CHANNEL.close])
const FROM_SERVER = new Set<number>([CHANNEL.stdout, CHANNEL.stderr, CHANNEL.status, CHANNEL.close])
/** Largest message relayed (the API server's own limit is far above what a terminal sends). */
const MAX_MESSAGE = 16 * 1024 * 1024

/** What an exec or attach asks for, from its query. */
export interface ExecFacts {
  readonly command: readonly string[]
  readonly container?: string
  readonly stdin: boolean
  readonly stdout: boolean
  readonly stderr: boolean
  readonly tty: boolean
}

export function execFacts(query: ReadonlyMap<string, readonly string[]>): ExecFacts {
  const flag = (name: string) => query.get(name)?.[0] === 'true'
  const container = query.get('container')?.[0]
  return { command: [...(query.get('command') ?? [])], ...(container === undefined ? {} : { container }), stdin: flag('stdin'), stdout: flag('stdout'), stderr: flag('stderr'), tty: flag('tty') }
}

/** What a port-forward may be tunnelled with: the channel protocols (client libraries) and kubectl's SPDY-over-WebSocket tunnel (1.31+). */
export const TUNNEL_PROTOCOLS: readonly string[] = ['v5.channel.k8s.io', 'v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io', 'SPDY/3.1+portforward.k8s.io', 'portforward.k8s.io']

/**
 * The subprotocols out of `allowed` a request offers, in its order, when it is a WebSocket
 * handshake the gateway can complete (GET, version 13, a key); none otherwise. Checked before
 * the request is judged, so nothing is opened upstream for a handshake that would then fail.
 */
export function offeredProtocols(req: IncomingMessage, allowed: readonly string[]): string[] {
  if (req.method !== 'GET' || String(req.headers.upgrade ?? '').toLowerCase() !== 'websocket') return []
  if (req.headers['sec-websocket-version'] !== '13') return []
  const key = req.headers['sec-websocket-key']
  if (typeof key !== 'string' || !/^[+/0-9A-Za-z]{22}==$/.test(key)) return []
  return String(req.headers['sec-websocket-protocol'] ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter((p) => allowed.includes(p))
}

/** Whether a request is a WebSocket handshake offering the v5 channel protocol (exec, attach). */
export function offersV5(req: IncomingMessage): boolean {
  return offeredProtocols(req, [V5]).length > 0
}

/** Bytes queued towards one side before the other side is paused, and resumed below LOW. */
const HIGH_WATER = 1024 * 1024
const LOW_WATER = 256 * 1024

/** Sends `data` to `to`; pauses `from` while `to` has more than HIGH_WATER queued. */
function pipeMessage(from: WebSocket, to: WebSocket, data: Buffer): void {
  if (to.readyState !== WebSocket.OPEN) return
  to.send(data, { binary: true }, () => {
    if (from.isPaused && to.bufferedAmount < LOW_WATER) from.resume()
  })
  if (to.bufferedAmount > HIGH_WATER && !from.isPaused) from.pause()
}

export interface RelayResult {
  readonly exitCode?: number
  /** The status message when the command failed without an exit code. */
  readonly error?: string
  readonly bytesIn: number
  readonly bytesOut: number
}

/**
 * Completes the client's upgrade (with the subprotocol the API server chose) and relays between
 * it and `upstream` (already open) until either side ends. `exec`: channels by direction, the
 * exit code from the status channel. `tunnel` (port-forward): every binary message both ways,
 * counted, unread.
 */
export function relay(req: IncomingMessage, socket: Duplex, head: Buffer, upstream: WebSocket, opts: { mode: 'exec' | 'tunnel'; recording?: TerminalRecording; touch: () => void }): Promise<RelayResult> {
  const server = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: MAX_MESSAGE, handleProtocols: (offered) => (offered.has(upstream.protocol) ? upstream.protocol : false) })
  const tunnel = opts.mode === 'tunnel'
  return new Promise((resolve) => {
    // a client gone before its handshake completes: the server's stream is closed, and that is the outcome
    const early = () => {
      upstream.terminate()
      resolve({ error: 'the client went away before the stream opened', bytesIn: 0, bytesOut: 0 })
    }
    if (socket.destroyed) return early()
    socket.once('close', early)
    server.handleUpgrade(req, socket, head, (client) => {
      socket.off('close', early)
      let bytesIn = 0
      let bytesOut = 0
      let exitCode: number | undefined
      let error: string | undefined
      let ended = false
      // a close frame carries a code: pass on the other side's (1000 normal), never "no status" (kubectl reads that as an error)
      const end = (code?: number, reason?: Buffer) => {
        if (ended) return
        ended = true
        const sendable = code !== undefined && (code === 1000 || (code >= 3000 && code < 5000) || (code >= 1001 && code <= 1014 && code !== 1005 && code !== 1006)) ? code : 1000
        const why = reason && reason.length <= 123 ? reason.toString('utf8') : ''
        client.close(sendable, why)
        upstream.close(sendable, why)
        resolve({ ...(exitCode === undefined ? {} : { exitCode }), ...(error === undefined ? {} : { error }), bytesIn, bytesOut })
      }
      client.on('message', (data: Buffer, binary: boolean) => {
        opts.touch()
        if (tunnel && binary) {
          bytesIn += data.length
          return pipeMessage(client, upstream, data)
        }
        const channel = data[0]
        if (!binary || channel === undefined || !FROM_CLIENT.has(channel)) return
        bytesIn += data.length - 1
        if (channel === CHANNEL.stdin) opts.recording?.input(data.subarray(1))
        if (channel === CHANNEL.resize) {
          const size = resizeOf(data.subarray(1))
          if (size) opts.recording?.resize(size.cols, size.rows)
        }
        pipeMessage(client, upstream, data)
      })
      upstream.on('message', (data: Buffer, binary: boolean) => {
        opts.touch()
        if (tunnel && binary) {
          bytesOut += data.length
          return pipeMessage(upstream, client, data)
        }
        const channel = data[0]
        if (!binary || channel === undefined || !FROM_SERVER.has(channel)) return
        if (channel === CHANNEL.stdout || channel === CHANNEL.stderr) {
          bytesOut += data.length - 1
          opts.recording?.output(data.subarray(1))
        }
        if (channel === CHANNEL.status) {
          const status = statusOf(data.subarray(1))
          exitCode = status.exitCode
          error = status.error
        }
        pipeMessage(upstream, client, data)
      })
      client.on('close', (code: number, reason: Buffer) => end(code, reason))
      upstream.on('close', (code: number, reason: Buffer) => end(code, reason))
      client.on('error', () => end(1011))
      upstream.on('error', () => end(1011))
    })
  })
}

function resizeOf(json: Buffer): { cols: number; rows: number } | undefined {
  try {
    const v = JSON.parse(json.toString('utf8')) as { Width?: unknown; Height?: unknown }
    if (typeof v.Width === 'number' && typeof v.Height === 'number' && v.Width > 0 && v.Height > 0) return { cols: Math.min(v.Width, 10_000), rows: Math.min(v.Height, 10_000) }
  } catch {
    /* not a resize the gateway reads; the server decides */
  }
  return undefined
}

/** The exit code in a v5 status message: 0 for Success, N from details.causes[ExitCode]. */
export function statusOf(json: Buffer): { exitCode?: number; error?: string } {
  try {
    const s = JSON.parse(json.toString('utf8')) as { status?: string; message?: string; details?: { causes?: { reason?: string; message?: string }[] } }
    if (s.status === 'Success') return { exitCode: 0 }
    const cause = s.details?.causes?.find((c) => c.reason === 'ExitCode')
    const code = Number(cause?.message)
    if (cause && Number.isInteger(code)) return { exitCode: code }
    return { error: s.message ?? 'the command failed' }
  } catch {
    return { error: 'the API server sent a status the gateway could not read' }
  }
}
