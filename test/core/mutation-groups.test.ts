/**
 * The mutation run's module groups (test/mutation/groups.mjs): every test file a group names
 * exists and is one vitest runs, so a renamed test cannot silently drop out of a group and make
 * its mutants look untested (or a fast run look better than it is).
 */
import { describe, expect, it } from 'vitest'
import { existsSync } from 'node:fs'
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
      const path = glob.includes('*') ? (glob.split('*')[0] as string).replace(/[^/]*$/, '') : glob
      expect(existsSync(path), glob).toBe(true)
    }
  })
})
