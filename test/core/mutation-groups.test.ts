/**
 * The mutation run's module groups (test/mutation/groups.mjs): every test file a group names
 * exists and is one vitest runs, so a renamed test cannot silently drop out of a group and make
 * its mutants look untested (or a fast run look better than it is).
 */
import { describe, expect, it } from 'vitest'
import { existsSync, readFileSync } from 'node:fs'
// @ts-ignore -- plain JS module
import { GROUPS } from '../mutation/groups.mjs'

type Group = { mutate: string[]; testFiles: string[]; fast: string[] }

describe('mutation groups', () => {
  it.each(Object.entries(GROUPS as Record<string, Group>))('%s: its test files exist, its fast files are test files, its mutate paths name sources that exist', (_name, group) => {
    for (const f of [...group.testFiles, ...group.fast]) {
      expect(existsSync(f), f).toBe(true)
      expect(f).toMatch(/^test\/.*\.test\.ts$/)
      expect(f).not.toMatch(/\.load\.test\.ts$/)
    }
    expect(group.fast.length).toBeGreaterThan(0)
    // a file must exist; a glob's directory (up to its first wildcard) too: a moved directory empties the group
    for (const glob of group.mutate.filter((g) => !g.startsWith('!'))) {
      const file = glob.replace(/:\d+-\d+$/, '')
      const path = file.includes('*') ? (file.split('*')[0] as string).replace(/[^/]*$/, '') : file
      expect(existsSync(path), glob).toBe(true)
    }
  })

  it('the shell-* groups cut programs.ts into parts that cover every line once, and the ssh group leaves it to them', () => {
    const groups = GROUPS as Record<string, Group>
    const ranges = ['shell-words', 'shell-handlers', 'shell-script'].map((g) => {
      const m = /^adapters\/ssh\/src\/shell\/programs\.ts:(\d+)-(\d+)$/.exec(groups[g]?.mutate.join(' ') ?? '')
      expect(m, g).not.toBeNull()
      return [Number(m?.[1]), Number(m?.[2])] as const
    })
    const lines = readFileSync('adapters/ssh/src/shell/programs.ts', 'utf8').replace(/\n$/, '').split('\n').length
    expect(ranges[0]?.[0]).toBe(1)
    for (let i = 1; i < ranges.length; i++) expect(ranges[i]?.[0]).toBe((ranges[i - 1]?.[1] ?? 0) + 1)
    expect(ranges.at(-1)?.[1]).toBe(lines)
    for (const [from, to] of ranges) expect(to - from).toBeGreaterThan(300)
    expect(groups.ssh?.mutate).toContain('!adapters/ssh/src/shell/programs.ts')
  })
})
