/**
 * audit-stdout: a gateway started from the CLI writes hash-chained audit lines on stdout, and
 * its log on stderr, so a collector reading stdout gets only audit events it can verify.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { generateToken, hashToken, verifyChain } from '@gatehouse/core'
import { startPgCluster, type PgCluster } from '../../fixtures/pg-cluster.js'
import { freePort, waitForPort } from '../../fixtures/net.js'
import { psql } from '../../fixtures/clients.js'

const CLI = join(fileURLToPath(new URL('../../..', import.meta.url)), 'core/dist/cli.js')
let cluster: PgCluster
let dir: string

beforeAll(async () => {
  cluster = await startPgCluster()
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-stdout-'))
})
afterAll(async () => {
  await cluster?.stop()
  rmSync(dir, { recursive: true, force: true })
})

describe('audit-stdout', () => {
  it('writes only sealed audit lines on stdout, the log on stderr, and the chain verifies', async () => {
    const token = generateToken()
    const port = await freePort()
    const config = join(dir, 'gatehouse.yaml')
    writeFileSync(
      config,
      `dataDir: ${JSON.stringify(dir)}
identities: [{ id: agent-1, groups: [agents], tokens: [{ hash: ${JSON.stringify(hashToken(token, 'agent-1'))} }] }]
plugins: [{ use: audit-stdout, config: { required: true } }]
connections:
  - name: pg
    adapter: postgres
    listen: "127.0.0.1:${port}"
    upstream: { host: 127.0.0.1, port: ${cluster.port}, database: app, user: app_scram, password: ${JSON.stringify(cluster.users.scram.password)} }
    plugins: { record: [audit-stdout] }
policies: [{ id: p, rules: [{ id: read, effect: allow, match: { sql.statement: [SELECT] } }] }]
`,
    )
    const child = spawn(process.execPath, [CLI, 'start', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)))
    try {
      await waitForPort(port, '127.0.0.1', 15_000)
      const r = await psql({ port, user: 'agent-1', password: token }, 'SELECT 1;\nDELETE FROM nothing;\n')
      expect(r.stdout).toBe('1\n')
    } finally {
      child.kill('SIGTERM')
    }
    expect(await exited).toBe(0)
    const lines = stdout.trim().split('\n')
    const events = lines.map((l) => JSON.parse(l) as { type: string; verdict?: string; level?: number })
    expect(events.every((e) => typeof e.type === 'string' && e.level === undefined)).toBe(true)
    expect(events.filter((e) => e.type === 'request').map((e) => e.verdict)).toEqual(['allow', 'deny'])
    expect(verifyChain([{ name: 'stdout', text: stdout }]).ok).toBe(true)
    expect(stderr).toContain('"msg":"listening"')
    expect(stdout).not.toContain(token)
  })
})
