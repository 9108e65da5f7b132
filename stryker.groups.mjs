// @ts-check
// The security core's mutation run, one module group at a time (scripts/mutation-run.mjs drives it).
//
//   GATEHOUSE_MUTATION_GROUP=auth npx stryker run stryker.groups.mjs
//
// Each group mutates one part of the security core and runs only the test files that exercise it:
// the dry run (every test, for per-test coverage) then takes minutes instead of the whole suite's
// half hour under instrumentation, and a group's report can be redone alone after a test is added.
// Same mechanics as stryker.config.mjs (in place, rebuilt with tsc, `tsc -b --force` afterwards).
import base from './stryker.config.mjs'
import { GROUPS } from './test/mutation/groups.mjs'

const name = process.env.GATEHOUSE_MUTATION_GROUP ?? ''
// GATEHOUSE_MUTATION_FAST=1: the group's `fast` test files, short timeouts, reports under fast/
const fast = process.env.GATEHOUSE_MUTATION_FAST === '1'
const group = GROUPS[name]
if (!group) throw new Error(`GATEHOUSE_MUTATION_GROUP must be one of ${Object.keys(GROUPS).join(', ')} (got ${JSON.stringify(name)})`)

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
const dir = fast ? 'reports/mutation/fast' : 'reports/mutation'
const config = {
  ...base,
  mutate: group.mutate,
  testFiles: fast ? group.fast : group.testFiles,
  ...(fast ? { timeoutMS: 5000, timeoutFactor: 1.5 } : {}),
  htmlReporter: { fileName: `${dir}/${name}.html` },
  jsonReporter: { fileName: `${dir}/${name}.json` },
  incrementalFile: `${dir}/${name}.incremental.json`,
}
export default config
