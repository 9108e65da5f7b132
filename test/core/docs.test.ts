/**
 * The README and docs/ document what the code does: every error code, and the quickstart
 * commands. And they hold together: every docs/ page is linked from the README, every relative
 * link and anchor leads somewhere, every YAML example parses, and the README stays short.
 */
import { describe, expect, it } from 'vitest'
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parse } from 'yaml'
import { ERROR_CODES } from '@gatehouse/core'

const root = fileURLToPath(new URL('../..', import.meta.url))
const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
/** A page of docs/, where the README's reference material lives. */
const doc = (page: string) => readFileSync(join(root, 'docs', `${page}.md`), 'utf8')
const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { scripts: Record<string, string> }

describe('README and docs/', () => {
  it('lists every error code with its kind and message, and no code that does not exist (docs/operations.md)', () => {
    const rows = [...doc('operations').matchAll(/^\| `(GH_ERR_[A-Z_]+)` \| (\w+) \| (yes|no) \| ([^|]+) \|/gm)]
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

/** Markdown text without fenced code blocks (their `# comments` are not headings, their `[x](y)` not links). */
function prose(markdown: string): string {
  return markdown.replace(/^```[^\n]*\n[\s\S]*?^```$/gm, '')
}

/** The targets of every inline link `[text](target)` outside code. */
function links(markdown: string): string[] {
  const text = prose(markdown).replace(/`[^`\n]*`/g, '')
  return [...text.matchAll(/\[[^\]]*\]\(([^)\s]+)\)/g)].map((m) => m[1] as string)
}

/** The anchors GitHub gives a page's headings: lower-cased, punctuation dropped, spaces to hyphens, repeats numbered. */
function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>()
  const out = new Set<string>()
  for (const m of prose(markdown).matchAll(/^#{1,6} +(.+?) *#*$/gm)) {
    const text = (m[1] as string).replace(/\[([^\]]*)\]\([^)]*\)/g, '$1').replace(/[`*]/g, '')
    const slug = text.toLowerCase().replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '').replace(/ /g, '-')
    const n = seen.get(slug) ?? 0
    seen.set(slug, n + 1)
    out.add(n === 0 ? slug : `${slug}-${n}`)
  }
  return out
}

describe('docs/', () => {
  const pages = readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).sort()
  const files = ['README.md', ...pages.map((p) => `docs/${p}`)]

  it('has its pages, each linked from the README', () => {
    expect(pages).toEqual(expect.arrayContaining(['architecture.md', 'audit.md', 'benchmarks.md', 'configuration.md', 'operations.md', 'plugins.md', 'policy.md', 'postgres.md', 'ssh.md']))
    const linked = new Set(links(readme).map((l) => l.split('#')[0]))
    expect(pages.filter((p) => !linked.has(`docs/${p}`))).toEqual([])
  })

  it('every relative link in the README and docs/ points at a file that exists, and every #anchor at a heading in it', () => {
    const broken: string[] = []
    for (const file of files) {
      for (const link of links(readFileSync(join(root, file), 'utf8'))) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(link)) continue
        const [path = '', anchor] = link.split('#')
        const target = path === '' ? join(root, file) : resolve(dirname(join(root, file)), decodeURI(path))
        if (!existsSync(target)) broken.push(`${file}: ${link} (no file ${relative(root, target)})`)
        else if (anchor !== undefined && !(target.endsWith('.md') && anchors(readFileSync(target, 'utf8')).has(anchor))) broken.push(`${file}: ${link} (no heading #${anchor} in ${relative(root, target)})`)
      }
    }
    expect(broken).toEqual([])
  })

  it('every ```yaml block in docs/ parses', () => {
    let blocks = 0
    for (const page of pages) {
      for (const [i, m] of [...doc(page.replace(/\.md$/, '')).matchAll(/^```yaml\n([\s\S]*?)^```$/gm)].entries()) {
        blocks++
        expect(() => parse(m[1] as string), `docs/${page}, yaml block ${i + 1}`).not.toThrow()
      }
    }
    expect(blocks).toBeGreaterThan(0)
  })

  it('docs/plugins.md shows the same example plugin as the README', () => {
    const example = (markdown: string) => /```js\n\/\/ examples\/custom-plugin\/index\.js[^\n]*\n([\s\S]*?)```/.exec(markdown)?.[1]
    expect(example(doc('plugins'))).toBeDefined()
    expect(example(doc('plugins'))).toBe(example(readme))
  })

  it("docs/benchmarks.md quotes bench:pg's own report: its table parses in the bench's format, the ratio line follows from it, and the prose names the run's date", async () => {
    const { parseReport } = (await import(pathToFileURL(join(root, 'bench', 'pg-report.mjs')).href)) as { parseReport: (text: string) => { header: string; rows: { target: string; mode: string }[]; idle: { sessions: number }[]; ratios: Record<string, string> } }
    const page = doc('benchmarks')
    const block = /## PostgreSQL throughput[\s\S]*?```text\n([\s\S]*?)```/.exec(page)?.[1]
    expect(block, 'a ```text block with the report under "PostgreSQL throughput"').toBeDefined()
    const report = parseReport(block as string)
    for (const target of ['direct', 'haproxy', 'node-pipe', 'gatehouse']) for (const mode of ['simple', 'extended', 'prepared']) expect(report.rows.some((r) => r.target === target && r.mode === mode), `${target} ${mode}`).toBe(true)
    expect(report.idle.map((r) => r.sessions)).toEqual([200, 2000])
    const date = /, (\d{4}-\d{2}-\d{2}),/.exec(report.header)?.[1]
    expect(page).toContain(`Run on ${date}`)
    // a figure typed by hand into the table is caught: the ratio line is recomputed from it
    const doubled = (block as string).replace(/^(gatehouse +simple +)([\d.]+)/m, (_, head: string, tps: string) => `${head}${(Number(tps) * 2).toFixed(1)}`)
    expect(doubled).not.toBe(block)
    expect(() => parseReport(doubled)).toThrow(/does not follow/)
    // the aim is for the gateway with its required audit sink: a run with BENCH_AUDIT=off or best-effort is marked, and refused here
    expect(report.header).not.toMatch(/gatehouse audit/)
    expect(() => parseReport(`${(block as string).trimEnd()} (gatehouse audit off)\n`)).toThrow(/does not follow/)
  })

  it('keeps the README under 15 KB', () => {
    expect(Buffer.byteLength(readme, 'utf8')).toBeLessThan(15_000)
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

describe('the gatehouse commands the docs show', () => {
  const pages = ['README.md', ...readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)]
  /** Every `gatehouse …` command line in a page: inline code, and code lines (continuations joined). */
  const commands = (markdown: string): string[] => {
    const out: string[] = []
    const joined = markdown.replace(/\\\n\s*/g, ' ')
    for (const m of joined.matchAll(/`(?:npx )?gatehouse ([^`]+)`/g)) out.push((m[1] as string).replace(/"[^"]*"|'[^']*'/g, 'VALUE'))
    // fenced blocks, read line by line (a closing fence is not an opening one)
    let fence: string | undefined
    for (const line of joined.split('\n')) {
      const f = /^\s*```(\w*)\s*$/.exec(line)
      if (f) {
        fence = fence === undefined ? (f[1] as string) : undefined
        continue
      }
      if (fence === undefined || !['sh', 'bash', 'console', ''].includes(fence)) continue
      // quoted arguments are values, not options: "journalctl -u app" is one word
      const m = /(?:^|\s|\$ )(?:npx )?gatehouse ([^#|]+)/.exec(line.replace(/"[^"]*"|'[^']*'/g, 'VALUE'))
      if (m) out.push((m[1] as string).trim())
    }
    return out
  }
  const helpOf = new Map<string, { ok: boolean; text: string }>()
  const help = (path: string[]) => {
    const key = path.join(' ')
    if (!helpOf.has(key)) {
      const r = spawnSync(process.execPath, [join(root, 'core/dist/cli.js'), ...path, '--help'], { encoding: 'utf8' })
      helpOf.set(key, { ok: r.status === 0, text: r.stdout })
    }
    return helpOf.get(key) as { ok: boolean; text: string }
  }

  it('name commands that exist, with options those commands take', () => {
    let checked = 0
    for (const page of pages) {
      for (const line of commands(readFileSync(join(root, page), 'utf8'))) {
        const words = line.replace(/[[\]]/g, ' ').split(/\s+/).filter(Boolean)
        // the command path: leading words that are subcommands of the one before
        const path: string[] = []
        for (const w of words) {
          if (w.startsWith('-')) break
          const sub = help(path).text.match(new RegExp(`^  ${w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\b`, 'm'))
          if (!sub) break
          path.push(w)
        }
        expect(path.length, `${page}: "gatehouse ${line}" names no command`).toBeGreaterThan(0)
        const h = help(path)
        expect(h.ok, `${page}: gatehouse ${path.join(' ')} --help`).toBe(true)
        for (const flag of words.filter((w) => /^--?[a-z]/.test(w)).map((w) => w.replace(/=.*$/, ''))) {
          expect(h.text, `${page}: "gatehouse ${line}": ${flag} is not an option of gatehouse ${path.join(' ')}`).toMatch(new RegExp(`(^|[\\s,])${flag}[\\s,<]`, 'm'))
        }
        checked++
      }
    }
    expect(checked).toBeGreaterThan(15)
  })
})
