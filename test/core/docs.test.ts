/** The README documents what the code does: every error code, and the quickstart commands. */
import { describe, expect, it } from 'vitest'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { ERROR_CODES } from '@gatehouse/core'

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { scripts: Record<string, string> }

describe('README', () => {
  it('lists every error code with its kind and message, and no code that does not exist', () => {
    const rows = [...readme.matchAll(/^\| `(GH_ERR_[A-Z_]+)` \| (\w+) \| (yes|no) \| ([^|]+) \|/gm)]
    const documented = new Map(rows.map((m) => [m[1] as string, { kind: m[2], safe: m[3] === 'yes', message: (m[4] as string).trim() }]))
    expect([...documented.keys()].sort()).toEqual(Object.keys(ERROR_CODES).sort())
    for (const [code, spec] of Object.entries(ERROR_CODES)) expect(documented.get(code)).toEqual({ kind: spec.kind, safe: spec.safe, message: spec.message })
  })

  it('gives a two-command quickstart that exists in package.json', () => {
    const block = /## Quickstart[\s\S]*?```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? ''
    const commands = block.split('\n').map((l) => l.replace(/#.*/, '').trim()).filter(Boolean)
    expect(commands).toEqual(['npm start', 'npm test'])
    expect(pkg.scripts.start).toContain('demo')
    expect(pkg.scripts.test).toContain('vitest run')
  })
})

describe('npm test checks its prerequisites first', () => {
  const script = new URL('../../scripts/test-prerequisites.mjs', import.meta.url).pathname
  const run = (path: string) => spawnSync(process.execPath, [script], { env: { ...process.env, PATH: path }, encoding: 'utf8' })

  it('runs the check before vitest', () => {
    expect(pkg.scripts.test).toMatch(/node scripts\/test-prerequisites\.mjs && vitest run$/)
  })

  it('names each missing program, the Debian package and why, and exits 1; with everything here it is silent', () => {
    const missing = run('/nonexistent')
    expect(missing.status).toBe(1)
    expect(missing.stderr).toContain('npm test: the test suite needs programs that are not installed:')
    expect(missing.stderr).toContain('  tmux (Debian package tmux): interactive ssh under a pty')
    expect(missing.stderr).toContain('  psql (Debian package postgresql-client-15): the PostgreSQL client the tests drive')
    expect(missing.stderr).toMatch(/apt-get install -y --no-install-recommends .*openssh-client/)
    const present = run(process.env.PATH ?? '')
    expect(present.stderr).toBe('')
    expect(present.status).toBe(0)
  })
})
