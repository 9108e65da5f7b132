import type { Server as NetServer } from 'node:net'
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
