import type { Server as NetServer, Socket } from 'node:net'
import { Duplex } from 'node:stream'
import { createSecureContext, TLSSocket, type SecureContext } from 'node:tls'
import type { ConnectionConfig } from './config/schema.js'
import type { Listener } from './plugin/stages.js'

/** `127.0.0.1:5432` / `[::1]:5432` → host and port. */
export function parseHostPort(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text)
  if (!m) throw new Error(`invalid host:port "${text}"`)
  const port = Number(m[3])
  if (port > 65535) throw new Error(`invalid port in "${text}"`)
  return { host: (m[1] ?? m[2]) as string, port }
}

/** What an adapter's listener knows of its open sessions. */
export interface ListenerSessions {
  readonly size: number
  [Symbol.iterator](): Iterator<{ close(reason: string): void }>
}

/**
 * Listens `server` on `listen` (host:port) and wraps it as the Listener an adapter returns.
 * `stopAccepting` is the adapter's own switch (turn new clients away), called before the server
 * stops listening; the returned promise resolves once it has stopped listening, without waiting
 * for open sessions (which `closeAll` ends after the grace period).
 */
export async function serveListener(server: NetServer, listen: string, opts: { sessions: ListenerSessions; signal: AbortSignal; stopAccepting: () => void }): Promise<Listener> {
  const { host, port } = parseHostPort(listen)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address() as { address: string; port: number }
  const stop = () =>
    new Promise<void>((resolve) => {
      opts.stopAccepting()
      server.close(() => resolve())
      // server.close waits for open sockets; resolve once it stops listening.
      setImmediate(resolve)
    })
  opts.signal.addEventListener('abort', () => void stop(), { once: true })
  return {
    address: { host: address.address, port: address.port },
    stopAccepting: stop,
    closeAll: async (reason: string) => {
      for (const s of opts.sessions) s.close(reason)
    },
    get sessions() {
      return opts.sessions.size
    },
  }
}

/** A listener's TLS, from the connection's `tls`: its certificate, and whether plaintext clients are refused. */
export interface ListenerTls {
  readonly context: SecureContext
  readonly required: boolean
}

/** The connection's `tls` as a listener takes it (undefined when the connection has none). */
export function listenerTls(tls: ConnectionConfig['tls']): ListenerTls | undefined {
  return tls ? { context: createSecureContext({ cert: tls.cert, key: tls.key }), required: tls.required } : undefined
}

/** The first byte of a TLS connection: a handshake record. */
const TLS_HANDSHAKE = 0x16

/**
 * TLS on an accepted connection, for protocols without STARTTLS (MongoDB, Redis): TLS from the
 * first byte, or, when `tls.required` is false, told apart by that byte (a TLS handshake record
 * starts with 0x16, which begins no message of those protocols). `ready` gets the stream to speak
 * the protocol on — the TLS socket once its handshake is done, or the socket itself for a
 * plaintext client — and whether it is encrypted; `failed` gets a handshake that failed (the
 * socket is destroyed; no session exists yet to record it against). A client that sends nothing
 * waits like any client that has not logged in (the login timeout ends it).
 */
export function acceptTls(socket: Socket, tls: ListenerTls, ready: (stream: Socket, secure: boolean) => void, failed: (err: Error) => void): void {
  const secure = (stream: Duplex) => {
    const wrapped = new TLSSocket(stream as Socket, { isServer: true, secureContext: tls.context })
    wrapped.once('secure', () => {
      wrapped.removeAllListeners('error')
      ready(wrapped, true)
    })
    wrapped.on('error', (err: Error) => {
      socket.destroy()
      failed(err)
    })
    socket.once('close', () => wrapped.destroy())
  }
  if (tls.required) return secure(socket)
  socket.once('data', (first: Buffer) => {
    if (first[0] !== TLS_HANDSHAKE) {
      socket.pause()
      socket.unshift(first)
      ready(socket, false)
      socket.resume()
      return
    }
    secure(replaying(socket, first))
  })
}

/**
 * `socket` as a stream that first gives back `first` (the bytes read to tell TLS from plaintext):
 * a TLSSocket over the socket itself would read from its handle and miss them.
 */
function replaying(socket: Socket, first: Buffer): Duplex {
  const stream = new Duplex({
    read: () => {
      socket.resume()
    },
    write: (chunk: Buffer, _enc, done) => {
      socket.write(chunk, done)
    },
    final: (done) => {
      socket.end()
      done()
    },
    destroy: (err, done) => {
      socket.destroy()
      done(err)
    },
  })
  stream.push(first)
  socket.on('data', (chunk: Buffer) => {
    if (!stream.push(chunk)) socket.pause()
  })
  socket.once('end', () => stream.push(null))
  socket.once('close', () => stream.destroy())
  return stream
}
