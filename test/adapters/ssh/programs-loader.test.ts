/**
 * analyzeCommand before loadShellParser has completed. Kept out of the mutation groups on purpose
 * (test/mutation/groups.mjs): its fresh module instance runs every module-level line of
 * programs.ts inside a test, so Stryker would count the handler tables and constants as covered by
 * it and run their (static) mutants against a test that cannot see them.
 */
import { expect, it, vi } from 'vitest'
import { analyzeCommand, loadShellParser } from '../../../adapters/ssh/dist/shell/programs.js'

it('before loadShellParser has completed, analyzeCommand throws and says what to call (a fresh module instance)', async () => {
  await loadShellParser()
  vi.resetModules()
  const fresh = (await import('../../../adapters/ssh/dist/shell/programs.js')) as typeof import('../../../adapters/ssh/dist/shell/programs.js')
  expect(fresh.analyzeCommand).not.toBe(analyzeCommand)
  expect(() => fresh.analyzeCommand('ls')).toThrow(new Error('analyzeCommand: the shell parser is not loaded; await loadShellParser() first'))
  // the instance the rest of the suite uses is loaded and answers
  expect(analyzeCommand('ls').ok).toBe(true)
})
