// @ts-check
import { readFileSync } from 'node:fs'
// The security core in module groups for mutation testing: what each group mutates and the test
// files that exercise it. Read by stryker.groups.mjs and scripts/mutation-run.mjs.
// `env`: environment for the group's test runs.
// `fast`: the test files that need no long-lived gateway process or cluster per test file (or are
// quick with one): `node scripts/mutation-run.mjs --fast` runs a group against them in minutes
// instead of hours. Mutants only the other files reach count as "no coverage" there, so a fast
// score is a lower bound of the full one; the scores in test/mutation/SURVIVORS.md say which.
const PROGRAMS = 'adapters/ssh/src/shell/programs.ts'

/**
 * Where programs.ts's parts start (1-based lines): the word reader and the helpers before the
 * program handlers, the handlers (from `interface WrapperSpec`), and the walk (`class Script`).
 * Throws when a declaration moved out of the file, so a renamed one cannot silently empty a part.
 */
function shellParts() {
  const lines = readFileSync(new URL(`../../${PROGRAMS}`, import.meta.url), 'utf8').split('\n')
  const at = (/** @type {string} */ start) => {
    const i = lines.findIndex((l) => l.startsWith(start))
    if (i < 0) throw new Error(`test/mutation/groups.mjs: no line starting with ${JSON.stringify(start)} in ${PROGRAMS}`)
    return i + 1
  }
  return { handlers: at('interface WrapperSpec {'), script: at('class Script {'), lines: lines.length - (lines.at(-1) === '' ? 1 : 0) }
}
const SHELL_PARTS = shellParts()

/** @type {Record<string, { mutate: string[], testFiles: string[], fast: string[], env?: Record<string, string> }>} */
export const GROUPS = {
  audit: {
    mutate: ['core/src/audit/**/*.ts', '!**/index.ts'],
    testFiles: [
      'test/core/audit-chain-forgery.test.ts',
      'test/plugins/audit-jsonl/batch.test.ts',
      'test/core/serialize.test.ts',
      'test/core/spool.test.ts',
      'test/core/recorder.test.ts',
      'test/core/audit-required.test.ts',
      'test/core/guards.test.ts',
      'test/plugins/audit-jsonl/chain.test.ts',
      'test/plugins/audit-webhook/webhook.test.ts',
      'test/plugins/audit-postgres/postgres.test.ts',
      'test/plugins/audit-stdout/stdout.test.ts',
    ],
    fast: ['test/core/audit-chain-forgery.test.ts', 'test/plugins/audit-jsonl/batch.test.ts', 'test/core/serialize.test.ts', 'test/core/spool.test.ts', 'test/core/recorder.test.ts', 'test/core/audit-required.test.ts', 'test/core/guards.test.ts'],
  },
  policy: {
    mutate: ['plugins/policy/src/**/*.ts', '!**/index.ts'],
    testFiles: [
      'test/plugins/policy/rule-language.test.ts',
      'test/plugins/policy/readme-policies.test.ts',
      'test/core/policy.test.ts',
      'test/core/guards.test.ts',
      'test/adapters/postgres/evasion.test.ts',
      'test/adapters/ssh/explain.test.ts',
    ],
    fast: ['test/plugins/policy/rule-language.test.ts', 'test/plugins/policy/readme-policies.test.ts', 'test/core/policy.test.ts', 'test/core/guards.test.ts'],
  },
  pipeline: {
    mutate: ['core/src/pipeline/**/*.ts', '!**/index.ts'],
    testFiles: [
      'test/core/pipeline.test.ts',
      'test/core/pipeline-lifecycle.test.ts',
      'test/core/pipeline-edges.test.ts',
      'test/core/guards.test.ts',
      'test/core/throttle.test.ts',
      'test/core/admission.test.ts',
      'test/core/limits.test.ts',
      'test/core/session-limits.test.ts',
      'test/core/audit-required.test.ts',
      'test/core/auth-token.test.ts',
      'test/core/secrets.test.ts',
      'test/adapters/postgres/psql.test.ts',
      'test/adapters/postgres/session-attacks.test.ts',
      'test/adapters/ssh/ssh.test.ts',
    ],
    fast: ['test/core/pipeline.test.ts', 'test/core/pipeline-lifecycle.test.ts', 'test/core/pipeline-edges.test.ts', 'test/core/throttle.test.ts', 'test/core/admission.test.ts', 'test/core/audit-required.test.ts', 'test/core/auth-token.test.ts'],
  },
  auth: {
    mutate: ['core/src/auth/**/*.ts', 'plugins/auth-*/src/**/*.ts'],
    testFiles: [
      'test/core/scram.test.ts',
      'test/core/auth-token.test.ts',
      'test/plugins/auth-ssh-key/keys.test.ts',
      'test/core/secrets.test.ts',
      'test/adapters/postgres/auth.test.ts',
      'test/adapters/postgres/upstream-attacks.test.ts',
      'test/adapters/ssh/keys.test.ts',
    ],
    fast: ['test/core/scram.test.ts', 'test/core/auth-token.test.ts', 'test/plugins/auth-ssh-key/keys.test.ts', 'test/core/secrets.test.ts'],
  },
  postgres: {
    mutate: ['adapters/postgres/src/upstream.ts', 'adapters/postgres/src/session-model.ts'],
    testFiles: [
      'test/adapters/postgres/session-model.test.ts',
      'test/adapters/postgres/upstream-login.test.ts',
      'test/adapters/postgres/upstream-attacks.test.ts',
      'test/adapters/postgres/session-attacks.test.ts',
      'test/adapters/postgres/interleavings.test.ts',
      'test/adapters/postgres/transparency.test.ts',
      'test/adapters/postgres/drivers.test.ts',
      'test/adapters/postgres/psql.test.ts',
      'test/adapters/postgres/auth.test.ts',
    ],
    fast: ['test/adapters/postgres/session-model.test.ts', 'test/adapters/postgres/upstream-login.test.ts'],
  },
  ssh: {
    mutate: ['adapters/ssh/src/upstream.ts', 'adapters/ssh/src/sftp.ts', 'adapters/ssh/src/shell/**/*.ts', '!adapters/ssh/src/shell/programs.ts', '!adapters/ssh/src/shell/analyze-worker.ts', '!**/index.ts'],
    testFiles: [
      'test/adapters/ssh/sftp-units.test.ts',
      'test/adapters/ssh/upstream.test.ts',
      'test/adapters/ssh/programs.test.ts',
      'test/adapters/ssh/explain.test.ts',
      'test/adapters/ssh/ssh.test.ts',
      'test/adapters/ssh/ssh-attacks.test.ts',
      'test/adapters/ssh/keys.test.ts',
    ],
    fast: ['test/adapters/ssh/sftp-units.test.ts', 'test/adapters/ssh/ssh-attacks.test.ts', 'test/adapters/ssh/ssh.test.ts', 'test/adapters/ssh/upstream.test.ts', 'test/adapters/ssh/programs.test.ts'],
  },
  // programs.ts (the shell analysis) in three parts, each against the tests that exercise it: whole,
  // it is some 4,000 mutants and more than a session's time. The parts are found by their first
  // declarations (shellParts below), so they follow the file as it changes.
  'shell-words': {
    mutate: [`${PROGRAMS}:1-${SHELL_PARTS.handlers - 1}`],
    testFiles: ['test/adapters/ssh/programs.test.ts', 'test/adapters/ssh/programs-bash.test.ts', 'test/adapters/ssh/programs-handlers.test.ts', 'test/adapters/ssh/explain.test.ts'],
    fast: ['test/adapters/ssh/programs.test.ts', 'test/adapters/ssh/programs-handlers.test.ts'],
    // the bash oracle at half its cases: each mutant reruns it. Since the part starts at line 1 (880
    // mutants), that is about two hours on two cores (134 mutants in 18 minutes on 2026-12-03);
    // `--fast` (without the oracle) takes 20 minutes, and its survivors can then be run again with
    // the oracle by line (see test/mutation/SURVIVORS.md)
    env: { GH_ORACLE_SCALE: '0.5' },
  },
  'shell-handlers': {
    // programs-wrappers.test.ts (the strace oracle of wrapper chains) is left out on purpose: one
    // 8-second test that covers most handlers would rerun for each of some 1,500 mutants (about
    // 100 minutes more); mutants only it kills count as survivors here, so the score is a lower bound
    mutate: [`${PROGRAMS}:${SHELL_PARTS.handlers}-${SHELL_PARTS.script - 1}`],
    testFiles: ['test/adapters/ssh/programs.test.ts', 'test/adapters/ssh/programs-handlers.test.ts', 'test/adapters/ssh/explain.test.ts'],
    fast: ['test/adapters/ssh/programs.test.ts', 'test/adapters/ssh/programs-handlers.test.ts'],
  },
  'shell-script': {
    mutate: [`${PROGRAMS}:${SHELL_PARTS.script}-${SHELL_PARTS.lines}`],
    testFiles: ['test/adapters/ssh/programs.test.ts', 'test/adapters/ssh/programs-handlers.test.ts', 'test/adapters/ssh/explain.test.ts'],
    fast: ['test/adapters/ssh/programs.test.ts', 'test/adapters/ssh/programs-handlers.test.ts'],
  },
}
