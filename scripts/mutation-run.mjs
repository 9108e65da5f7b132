#!/usr/bin/env node
// Mutation run over the security core, one module group after another (test/mutation/groups.mjs,
// stryker.groups.mjs).
//
//   node scripts/mutation-run.mjs                 every group (hours on 2 cores)
//   node scripts/mutation-run.mjs auth ssh        only these groups
//   node scripts/mutation-run.mjs --incremental   reuse each group's last results for mutants and
//                                                 tests that did not change (Stryker --incremental)
//   node scripts/mutation-run.mjs --fast pipeline each group against its `fast` test files only
//                                                 (minutes; reports/mutation/fast/; a lower bound)
//
// Writes reports/mutation/<group>.html and <group>.json, merges every group's JSON report present
// into reports/mutation/mutation.json, and prints the score per module with
// scripts/mutation-summary.mjs. Exits non-zero when a Stryker run failed.
//
// Stryker mutates src/ in place and builds dist/ from the instrumented sources; it restores src/
// but not dist/, and the restored files keep their old mtimes: dist is rebuilt with `tsc -b --force`
// after every group (also when a group fails), so the next group and the checkout run clean code.
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { GROUPS } from '../test/mutation/groups.mjs'

const args = process.argv.slice(2)
const incremental = args.includes('--incremental')
const fast = args.includes('--fast')
const unknown = args.filter((a) => a.startsWith('-') && a !== '--incremental' && a !== '--fast')
const named = args.filter((a) => !a.startsWith('-'))
const bad = named.filter((g) => !(g in GROUPS))
if (unknown.length || bad.length) {
  process.stderr.write(`mutation-run: ${unknown.length ? `unknown option ${unknown[0]}` : `unknown group ${bad[0]}`}\n` +
    `usage: node scripts/mutation-run.mjs [--incremental] [--fast] [${Object.keys(GROUPS).join('|')} ...]\n`)
  process.exit(2)
}
const groups = named.length ? named : Object.keys(GROUPS)

const run = (cmd, argv, env = {}) => spawnSync(cmd, argv, { stdio: 'inherit', env: { ...process.env, ...env } }).status ?? 1

const failed = []
for (const g of groups) {
  const started = Date.now()
  console.log(`\n=== mutation group ${g} (${GROUPS[g].mutate.filter((m) => !m.startsWith('!')).join(', ')}) ===`)
  const status = run('npx', ['stryker', 'run', 'stryker.groups.mjs', ...(incremental ? ['--incremental'] : [])], { ...GROUPS[g].env, GATEHOUSE_MUTATION_GROUP: g, GATEHOUSE_MUTATION_FAST: fast ? '1' : '0' })
  const rebuilt = run('npx', ['tsc', '-b', '--force'])
  if (rebuilt !== 0) {
    console.error('mutation-run: `tsc -b --force` failed: dist/ may still hold instrumented code')
    process.exit(1)
  }
  console.log(`=== group ${g}: stryker exit ${status}, ${Math.round((Date.now() - started) / 60_000)} min ===`)
  if (status !== 0) failed.push(g)
}

// One report over every group that has one (this run's or an earlier run's).
const dir = fast ? 'reports/mutation/fast' : 'reports/mutation'
mkdirSync(dir, { recursive: true })
let merged
for (const g of Object.keys(GROUPS)) {
  const path = `${dir}/${g}.json`
  if (!existsSync(path)) continue
  const report = JSON.parse(readFileSync(path, 'utf8'))
  if (!merged) merged = { ...report, files: {} }
  // the shell-* groups each mutate a part of one file: its mutants are the parts' together
  for (const [file, result] of Object.entries(report.files)) {
    const seen = merged.files[file]
    merged.files[file] = seen ? { ...seen, mutants: [...seen.mutants, ...result.mutants] } : result
  }
}
if (merged) {
  writeFileSync(`${dir}/mutation.json`, JSON.stringify(merged))
  run('node', ['scripts/mutation-summary.mjs', `${dir}/mutation.json`, '--files'])
}
if (failed.length) {
  console.error(`mutation-run: stryker failed for ${failed.join(', ')}`)
  process.exit(1)
}
