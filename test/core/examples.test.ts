/** The examples stay true: the example config validates, the example plugin loads and decides. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
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
