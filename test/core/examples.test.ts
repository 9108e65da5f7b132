/** The examples stay true: the example config validates, the example plugin loads and decides. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startPgCluster } from '../fixtures/pg-cluster.js'
import { freePort, waitForPort } from '../fixtures/net.js'
import { loadPluginDefinition, type GatewayRequest, type PolicyEngine } from '@gatehouse/core'

const root = fileURLToPath(new URL('../..', import.meta.url))
let dir: string

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-examples-'))
  mkdirSync(join(dir, 'node_modules'))
  symlinkSync(join(root, 'examples', 'custom-plugin'), join(dir, 'node_modules', 'gatehouse-plugin-business-hours'))
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('examples', () => {
  it('local-postgres/gatehouse.yaml validates', async () => {
    const r = await new Promise<{ code: number; out: string }>((resolve) =>
      execFile(process.execPath, [join(root, 'core/dist/cli.js'), 'validate', '--config', join(root, 'examples/local-postgres/gatehouse.yaml')], { env: { ...process.env, ORDERS_DB_PASSWORD: 'x' } }, (err, stdout, stderr) =>
        resolve({ code: err ? 1 : 0, out: stdout + stderr }),
      ),
    )
    expect(r.out).toContain(': ok (1 connection(s)')
    expect(r.code).toBe(0)
  })

  it("the README's plugin is the example package's code, installed with a command that leaves package.json alone", () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8')
    const block = /```js\n\/\/ examples\/custom-plugin\/index\.js[^\n]*\n([\s\S]*?)```/.exec(readme)?.[1]
    const source = readFileSync(join(root, 'examples', 'custom-plugin', 'index.js'), 'utf8')
    expect(block).toBe(source.slice(source.indexOf('import ')))
    expect(readme).toContain('```sh\nnpm install --no-save ./examples/custom-plugin\n```')
    expect(JSON.parse(readFileSync(join(root, 'examples', 'custom-plugin', 'package.json'), 'utf8')).name).toBe('gatehouse-plugin-business-hours')
  })

  it('local-postgres: the README steps work as written (against a throwaway PostgreSQL in place of 127.0.0.1:5432)', async () => {
    const pg = await startPgCluster()
    const work = mkdtempSync(join(tmpdir(), 'gatehouse-example-pg-'))
    let gateway: ChildProcess | undefined
    try {
      const readme = readFileSync(join(root, 'examples/local-postgres/README.md'), 'utf8')
      const blocks = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => (m[1] as string).replace(/^ +/gm, '').trim().split('\n'))
      const [setup, issue, start, connect] = blocks as [string[], string[], string[], string[]]
      const sh = (line: string, env: Record<string, string> = {}) =>
        new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
          execFile('sh', ['-c', line], { cwd: root, env: { ...process.env, ...env } }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr })),
        )
      // 1. the database and the table; the throwaway cluster's superuser is reached over its socket
      for (const line of setup) expect(await sh(line.replace('-h 127.0.0.1', `-h ${pg.socketDir} -p ${pg.port}`))).toMatchObject({ code: 0 })
      // (the cluster's postgres has no password over TCP: the gateway logs in as its SCRAM user)
      expect(await sh(`psql -X -h ${pg.socketDir} -p ${pg.port} -U postgres -d orders -c 'GRANT SELECT, DELETE ON orders TO app_scram'`)).toMatchObject({ code: 0 })
      // 2. the token, and its hash in a copy of the config
      expect(issue).toEqual(['npx gatehouse token issue --identity ci-runner --connections orders-db --ttl 12h'])
      const issued = await sh(`${(issue[0] as string).replace('npx gatehouse', 'npx --no-install gatehouse')}`)
      expect(issued.code).toBe(0)
      const token = /^ {2}(gh_\S+)$/m.exec(issued.stdout)?.[1] as string
      const hash = (JSON.parse(/^ {2}- (\{.*\})$/m.exec(issued.stdout)?.[1] as string) as { hash: string }).hash
      const port = await freePort()
      const config = readFileSync(join(root, 'examples/local-postgres/gatehouse.yaml'), 'utf8')
        .replace(/hash: "SCRAM-SHA-256\$[^"]+"/, `hash: ${JSON.stringify(hash)}`)
        .replace('listen: 127.0.0.1:15433', `listen: 127.0.0.1:${port}`)
        .replace('port: 5432', `port: ${pg.port}`)
        .replace('user: postgres', `user: ${pg.users.scram.user}`)
        .replace('dataDir: ../../.gatehouse/local-postgres', `dataDir: ${JSON.stringify(join(work, 'data'))}`)
      mkdirSync(join(work, 'examples/local-postgres'), { recursive: true })
      writeFileSync(join(work, 'examples/local-postgres/gatehouse.yaml'), config)
      // 3. start it as written, from the copy's root, with the upstream password in the environment
      expect(start).toEqual(['ORDERS_DB_PASSWORD=… npx gatehouse start --config examples/local-postgres/gatehouse.yaml'])
      gateway = spawn(process.execPath, [join(root, 'core/dist/cli.js'), 'start', '--config', 'examples/local-postgres/gatehouse.yaml'], { cwd: work, env: { ...process.env, ORDERS_DB_PASSWORD: pg.users.scram.password }, stdio: ['ignore', 'pipe', 'pipe'] })
      await waitForPort(port)
      // 4. the agent's reads work; its DELETE is refused with 42501
      const [read, del] = connect.map((line) => line.replace('<token>', token).replace(':15433/', `:${port}/`).replace(/\s+# .*$/, ''))
      const r = await sh(`${read} -At`)
      expect(r.stderr).toBe('')
      expect(r.stdout).toContain('ada|42.00')
      const d = await sh(`${del} -v VERBOSITY=verbose`)
      expect(d.stderr).toMatch(/ERROR: {2}42501: gatehouse: denied by rule "ci-read-only\/sql-write\//)
      // 5. the audit log verifies
      gateway.kill('SIGTERM')
      await new Promise((res) => gateway?.once('exit', res))
      const verified = await sh(`npx --no-install gatehouse audit verify ${join(work, 'data', 'audit.jsonl')}`)
      expect(verified.stdout).toMatch(/^ok: \d+ events, chain intact/)
    } finally {
      if (gateway && gateway.exitCode === null && gateway.signalCode === null) gateway.kill('SIGKILL')
      await pg.stop()
      rmSync(work, { recursive: true, force: true })
    }
  }, 120_000)

  it('the custom plugin loads by package name and judges requests', async () => {
    const def = await loadPluginDefinition('gatehouse-plugin-business-hours', 'plugins[0]', [dir])
    expect(def.stage).toBe('decide')
    const engine = (await def.register(undefined as never, { from: 0, to: 24 }, undefined as never)) as PolicyEngine
    const req = (statement: string) => ({ attrs: { sql: { statement } } }) as unknown as GatewayRequest
    expect(await engine.decide(req('DELETE'), undefined as never)).toMatchObject({ verdict: 'allow' })
    const closed = (await def.register(undefined as never, { from: 0, to: 1 }, undefined as never)) as PolicyEngine
    const hour = new Date().getUTCHours()
    expect((await closed.decide(req('DELETE'), undefined as never)).verdict).toBe(hour < 1 ? 'allow' : 'deny')
    expect((await closed.decide(req('SELECT'), undefined as never)).verdict).toBe('allow')
  })
})
