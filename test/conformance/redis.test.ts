/**
 * The conformance kit (@gatehouse/testkit) run against the Redis adapter of examples/redis-adapter,
 * loaded by package name from a node_modules directory, in front of a real redis-server that
 * requires a password, through the `redis` Node client (5.x). Markers ride in key names: the
 * policy denies `ck:denied:*` keys and holds `ck:held:*` ones; the probe asks the server itself
 * which keys exist.
 */
import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createClient } from 'redis'
import { describeConformance, type ClientResult } from '@gatehouse/testkit'
import { freePort, waitForPort } from '../fixtures/net.js'

const root = join(import.meta.dirname, '../..')
const searchDir = mkdtempSync(join(tmpdir(), 'gatehouse-redis-conformance-'))
mkdirSync(join(searchDir, 'node_modules'))
symlinkSync(join(root, 'examples', 'redis-adapter'), join(searchDir, 'node_modules', 'gatehouse-adapter-redis'))

describeConformance({
  name: 'gatehouse-adapter-redis (redis Node client, real redis-server)',
  adapter: 'gatehouse-adapter-redis',
  pluginSearchDirs: [searchDir],
  rules: {
    denied: { actions: ['redis.command'], when: 'request.redis.keys.exists(k, k.startsWith("ck:denied:"))' },
    held: { actions: ['redis.command'], when: 'request.redis.keys.exists(k, k.startsWith("ck:held:"))' },
  },
  explainDenied: { command: 'SET ck:denied:sample 1' },
  async startUpstream() {
    const port = await freePort()
    const password = `upstream-${Math.random().toString(36).slice(2)}`
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-redis-upstream-'))
    const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--requirepass', password, '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' })
    await waitForPort(port, '127.0.0.1', 10_000)
    const look = createClient({ socket: { host: '127.0.0.1', port }, password })
    await look.connect()
    return {
      connection: { upstream: { host: '127.0.0.1', port, password } },
      seen: async (marker) => (await look.keys(`*${marker}*`)).length,
      close: async () => {
        await look.quit().catch(() => undefined)
        server.kill('SIGTERM')
        rmSync(dir, { recursive: true, force: true })
      },
    }
  },
  client: {
    async connect({ host, port, identity, token }) {
      const c = createClient({ socket: { host, port, reconnectStrategy: false }, username: identity, password: token })
      // without reconnecting, the client reports a connection the server closed as this error (and a quit as 'end')
      const closed = new Promise<void>((resolve) => {
        c.on('end', () => resolve())
        c.on('error', (err: Error) => {
          if (/socket closed/i.test(err.message)) resolve()
        })
      })
      await c.connect()
      const key = { allowed: 'ck:allowed:', denied: 'ck:denied:', held: 'ck:held:' }
      return {
        closed,
        send: async (kind, marker): Promise<ClientResult> => {
          try {
            await c.sendCommand(['SET', `${key[kind]}${marker}`, '1'])
            return { ok: true }
          } catch (err) {
            return { ok: false, error: (err as Error).message }
          }
        },
        close: async () => {
          if (c.isOpen) await c.close()
        },
      }
    },
  },
})
