/**
 * The conformance kit against a test adapter small enough to read at once
 * (test/fixtures/plugins/node_modules/gatehouse-test-lines: a made-up line protocol), to show
 * the kit's checks can fail: written correctly the adapter passes; each fault it can be started
 * with (forwarding before the intent is recorded, forwarding what policy denied, answering a
 * denial with OK, never ending sessions with core) makes the checks that guard that promise fail
 * in a run of this same file in a child vitest.
 */
import { execFile } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createConnection, createServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { describeConformance, type ClientResult } from '@gatehouse/testkit'

const FAULT = process.env.GATEHOUSE_KIT_FAULT
const root = join(import.meta.dirname, '../..')

/** Reads one line at a time from a socket. */
function lineReader(socket: Socket): () => Promise<string | undefined> {
  let buf = ''
  const waiting: ((l: string | undefined) => void)[] = []
  const ready: string[] = []
  socket.setEncoding('utf8')
  socket.on('data', (chunk: string) => {
    buf += chunk
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i)
      buf = buf.slice(i + 1)
      const w = waiting.shift()
      if (w) w(line)
      else ready.push(line)
    }
  })
  socket.on('close', () => {
    for (const w of waiting.splice(0)) w(undefined)
  })
  return () => (ready.length > 0 ? Promise.resolve(ready.shift()) : socket.destroyed ? Promise.resolve(undefined) : new Promise((r) => waiting.push(r)))
}

describeConformance({
  name: `gatehouse-test-lines${FAULT ? ` with fault ${FAULT}` : ''}`,
  adapter: 'gatehouse-test-lines',
  pluginSearchDirs: [join(root, 'test/fixtures/plugins')],
  rules: {
    denied: { actions: ['lines.do'], match: { 'lines.verb': ['wipe'] } },
    held: { actions: ['lines.do'], match: { 'lines.verb': ['drop'] } },
  },
  explainDenied: { command: 'wipe everything' },
  async startUpstream() {
    const received: string[] = []
    const server = createServer((s) => {
      const next = lineReader(s)
      void (async () => {
        for (let l = await next(); l !== undefined; l = await next()) {
          received.push(l)
          s.write('DONE\n')
        }
      })()
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const port = (server.address() as { port: number }).port
    return {
      connection: { upstream: { port }, ...(FAULT ? { options: { fault: FAULT } } : {}) },
      seen: async (marker) => received.filter((l) => l.includes(marker)).length,
      close: () => new Promise<void>((r) => server.close(() => r())),
    }
  },
  client: {
    async connect({ host, port, identity, token }) {
      const socket = createConnection(port, host)
      await once(socket, 'connect')
      const closed = new Promise<void>((r) => socket.once('close', () => r()))
      const next = lineReader(socket)
      socket.write(`LOGIN ${identity} ${token}\n`)
      const answer = await next()
      if (answer !== 'OK') {
        socket.destroy()
        throw new Error(answer ?? 'connection closed')
      }
      const verb = { allowed: 'put', denied: 'wipe', held: 'drop' }
      return {
        closed,
        send: async (kind, marker): Promise<ClientResult> => {
          socket.write(`DO ${verb[kind]} ${marker}\n`)
          const a = await next()
          return a === 'OK' ? { ok: true } : { ok: false, error: a ?? 'connection closed' }
        },
        close: async () => {
          socket.destroy()
        },
      }
    },
  },
  timeoutMs: 20_000,
})

/** Runs this file in a child vitest with `fault`; the names of the checks that failed. */
async function failedChecks(fault: string): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-kit-fault-'))
  try {
    const out = join(dir, 'report.json')
    await new Promise<void>((resolve) => {
      execFile(join(root, 'node_modules/.bin/vitest'), ['run', 'test/conformance/kit.test.ts', '--reporter=json', `--outputFile=${out}`], { cwd: root, env: { ...process.env, GATEHOUSE_KIT_FAULT: fault }, timeout: 240_000 }, () => resolve())
    })
    const report = JSON.parse(readFileSync(out, 'utf8')) as { testResults: { assertionResults: { title: string; status: string }[] }[] }
    return report.testResults.flatMap((f) => f.assertionResults).filter((a) => a.status === 'failed').map((a) => a.title)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

describe.skipIf(FAULT !== undefined)('the kit catches an adapter that breaks a promise', () => {
  it('forwarding before the intent is recorded fails the intent check', async () => {
    const failed = await failedChecks('forward-first')
    expect(failed).toContain('the intent is recorded before the request is forwarded: while the record is being written the upstream has seen nothing')
    expect(failed.some((t) => t.startsWith('a denied request'))).toBe(true)
  }, 300_000)

  it('forwarding a denied request, or answering a denial with OK, fails the denial check', async () => {
    for (const fault of ['ignore-deny', 'silent-deny']) {
      const failed = await failedChecks(fault)
      expect(failed, fault).toContain("a denied request gets the protocol's own error naming the rule, never reaches the upstream, and the connection stays usable")
    }
  }, 300_000)

  it('never ending sessions with core fails the session-record and limit checks', async () => {
    const failed = await failedChecks('no-session-end')
    expect(failed).toContain('session start and end are recorded once each')
    expect(failed.some((t) => t.startsWith('session limits apply'))).toBe(true)
  }, 300_000)
})
