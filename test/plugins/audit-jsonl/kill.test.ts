/**
 * kill -9 of a gateway under load: every statement that reached the upstream has its intent
 * record in the audit file (audit-jsonl writes the record before the statement is forwarded).
 * This one is about surviving a crash; that the record comes before the forward is proved
 * deterministically in test/core/guards.test.ts (a sink that acknowledges late or fails).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { generateToken, hashToken, verifyChain } from '@gatehouse/core'
import { startPgCluster, type PgCluster } from '../../fixtures/pg-cluster.js'
import { freePort, waitForPort } from '../../fixtures/net.js'

const CLI = join(fileURLToPath(new URL('../../..', import.meta.url)), 'core/dist/cli.js')
let cluster: PgCluster
let dir: string

beforeAll(async () => {
  cluster = await startPgCluster()
  await cluster.psql("ALTER SYSTEM SET log_statement = 'all'; SELECT pg_reload_conf();")
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-kill9-'))
})
afterAll(async () => {
  await cluster?.stop()
  rmSync(dir, { recursive: true, force: true })
})

describe('kill -9 under load', () => {
  it('leaves an intent record for every statement the upstream received', async () => {
    const token = generateToken()
    const port = await freePort()
    const audit = join(dir, 'audit.jsonl')
    const config = join(dir, 'gatehouse.yaml')
    writeFileSync(
      config,
      `dataDir: ${JSON.stringify(dir)}
log: { level: warn }
identities: [{ id: agent-1, groups: [agents], tokens: [{ hash: ${JSON.stringify(hashToken(token, 'agent-1'))} }] }]
plugins: [{ use: audit-jsonl, config: { path: ${JSON.stringify(audit)}, required: true } }]
connections:
  - name: pg
    adapter: postgres
    listen: "127.0.0.1:${port}"
    upstream: { host: 127.0.0.1, port: ${cluster.port}, database: app, user: app_scram, password: ${JSON.stringify(cluster.users.scram.password)} }
policies: [{ id: p, rules: [{ id: read, effect: allow, match: { sql.statement: [SELECT] } }] }]
`,
    )
    const gateway = spawn(process.execPath, [CLI, 'start', '--config', config], { stdio: 'ignore' })
    const gone = new Promise<void>((r) => gateway.on('exit', () => r()))
    await waitForPort(port, '127.0.0.1', 15_000)
    const clients = await Promise.all(
      Array.from({ length: 4 }, async () => {
        const c = new pg.Client({ host: '127.0.0.1', port, user: 'agent-1', password: token, database: 'app' })
        c.on('error', () => undefined)
        await c.connect()
        return c
      }),
    )
    let running = true
    let answered = 0
    const load = clients.map(async (c, n) => {
      for (let i = 0; running; i++) {
        try {
          await c.query(`SELECT 'kill9-${n}-${i}' AS marker`)
          answered++
        } catch {
          return
        }
      }
    })
    // kill once the load is well under way (however slow the machine is today), mid-stream
    for (let waited = 0; answered < 80 && waited < 30_000; waited += 20) await new Promise((r) => setTimeout(r, 20))
    await new Promise((r) => setTimeout(r, 50))
    gateway.kill('SIGKILL')
    await gone
    running = false
    await Promise.all(load)
    await new Promise((r) => setTimeout(r, 300))
    const log = readFileSync(join(cluster.socketDir, 'server.log'), 'utf8')
    const reached = new Set([...log.matchAll(/statement: SELECT '(kill9-\d+-\d+)' AS marker/g)].map((m) => m[1] as string))
    const text = readFileSync(audit, 'utf8')
    const recorded = new Set(
      text
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { type: string; text?: string })
        .filter((e) => e.type === 'request' && e.text?.startsWith("SELECT 'kill9-"))
        .map((e) => /'(kill9-\d+-\d+)'/.exec(e.text as string)?.[1] as string),
    )
    expect(reached.size).toBeGreaterThan(50)
    const missing = [...reached].filter((m) => !recorded.has(m))
    expect(missing).toEqual([])
    // what was written is a whole, verifiable chain
    expect(verifyChain([{ name: 'audit.jsonl', text }]).ok).toBe(true)
  })
})
