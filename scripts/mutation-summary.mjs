#!/usr/bin/env node
// Prints the mutation score per module from a Stryker JSON report (mutation-testing-report-schema)
// and exits 1 when a score is below the threshold.
//
//   node scripts/mutation-summary.mjs [report.json] [--threshold N] [--each] [--files] [--survivors]
//
//   report.json    default reports/mutation/mutation.json
//   --threshold N  fail (exit 1) if the overall score is below N (0-100)
//   --each         apply the threshold to every module instead of the overall score
//   --files        also print one row per file
//   --survivors    list surviving and uncovered mutants (file:line:col mutator original -> replacement)
//
// Score as Stryker counts it: (killed + timeout) / (killed + timeout + survived + no coverage).
// Ignored (static, excluded), compile and runtime errors are shown but do not count.
import { readFileSync } from 'node:fs'

const MODULES = [
  ['core/pipeline', 'core/src/pipeline/'],
  ['core/auth', 'core/src/auth/'],
  ['core/audit', 'core/src/audit/'],
  ['plugins/policy', 'plugins/policy/src/'],
  ['plugins/auth-*', /^plugins\/auth-[^/]+\/src\//],
  ['postgres/upstream', 'adapters/postgres/src/upstream.ts'],
  ['postgres/session-model', 'adapters/postgres/src/session-model.ts'],
  ['ssh/upstream', 'adapters/ssh/src/upstream.ts'],
  ['ssh/sftp', 'adapters/ssh/src/sftp.ts'],
  ['ssh/shell', 'adapters/ssh/src/shell/'],
]

function usage(msg) {
  process.stderr.write(`mutation-summary: ${msg}\nusage: node scripts/mutation-summary.mjs [report.json] [--threshold N] [--each] [--files] [--survivors]\n`)
  process.exit(2)
}

const args = process.argv.slice(2)
let reportPath = 'reports/mutation/mutation.json'
let threshold
let each = false, perFile = false, survivors = false
for (let i = 0; i < args.length; i++) {
  const a = args[i]
  if (a === '--threshold') {
    threshold = Number(args[++i])
    if (!Number.isFinite(threshold) || threshold < 0 || threshold > 100) usage(`--threshold needs a number 0-100, got ${args[i]}`)
  } else if (a === '--each') each = true
  else if (a === '--files') perFile = true
  else if (a === '--survivors') survivors = true
  else if (a.startsWith('-')) usage(`unknown option ${a}`)
  else reportPath = a
}

let report
try {
  report = JSON.parse(readFileSync(reportPath, 'utf8'))
} catch (err) {
  usage(`cannot read ${reportPath}: ${err.message}`)
}
if (!report || typeof report.files !== 'object') usage(`${reportPath} is not a mutation-testing report (no "files")`)

const root = (report.projectRoot ?? process.cwd()).replace(/\\/g, '/').replace(/\/?$/, '/')
const rel = (f) => { const p = f.replace(/\\/g, '/'); return p.startsWith(root) ? p.slice(root.length) : p }
const moduleOf = (file) => {
  for (const [name, match] of MODULES) if (typeof match === 'string' ? file === match || (match.endsWith('/') && file.startsWith(match)) : match.test(file)) return name
  return 'other'
}

const empty = () => ({ Killed: 0, Survived: 0, NoCoverage: 0, Timeout: 0, Ignored: 0, CompileError: 0, RuntimeError: 0, Pending: 0 })
const byModule = new Map()
const byFile = new Map()
const total = empty()
const undetected = []
for (const [name, file] of Object.entries(report.files)) {
  const path = rel(name)
  const mod = moduleOf(path)
  if (!byModule.has(mod)) byModule.set(mod, empty())
  const m = byModule.get(mod)
  const f = empty()
  byFile.set(path, f)
  const lines = typeof file.source === 'string' ? file.source.split('\n') : []
  for (const mutant of file.mutants ?? []) {
    const s = mutant.status in total ? mutant.status : 'Pending'
    m[s]++; f[s]++; total[s]++
    if (survivors && (s === 'Survived' || s === 'NoCoverage')) {
      const { start, end } = mutant.location
      let original = ''
      if (start.line === end.line) original = (lines[start.line - 1] ?? '').slice(start.column - 1, end.column - 1)
      else original = `${(lines[start.line - 1] ?? '').slice(start.column - 1)} …`
      undetected.push({ path, line: start.line, col: start.column, status: s, mutator: mutant.mutatorName, original, replacement: mutant.replacement ?? '' })
    }
  }
}

const score = (c) => {
  const detected = c.Killed + c.Timeout
  const valid = detected + c.Survived + c.NoCoverage
  return valid === 0 ? NaN : (100 * detected) / valid
}
const fmt = (n) => (Number.isNaN(n) ? '   n/a' : n.toFixed(2).padStart(6))
const row = (name, c, width) =>
  `${name.padEnd(width)} ${fmt(score(c))} ${String(c.Killed).padStart(7)} ${String(c.Timeout).padStart(7)} ${String(c.Survived).padStart(8)} ${String(c.NoCoverage).padStart(8)} ${String(c.Ignored).padStart(7)} ${String(c.CompileError + c.RuntimeError).padStart(6)}`

const order = [...MODULES.map(([n]) => n), 'other'].filter((n) => byModule.has(n))
const width = Math.max(24, ...order.map((n) => n.length), ...(perFile ? [...byFile.keys()].map((p) => p.length + 2) : []))
const header = `${'module'.padEnd(width)}  score  killed timeout survived no-cover ignored errors`
console.log(header)
console.log('-'.repeat(header.length))
for (const name of order) {
  console.log(row(name, byModule.get(name), width))
  if (perFile) for (const [p, c] of [...byFile].filter(([p]) => moduleOf(p) === name).sort()) console.log(row(`  ${p}`, c, width))
}
console.log('-'.repeat(header.length))
console.log(row('all', total, width))

if (survivors && undetected.length) {
  console.log(`\nundetected mutants (${undetected.length}):`)
  const clip = (s) => { const t = s.replace(/\s+/g, ' '); return t.length > 70 ? `${t.slice(0, 67)}...` : t }
  for (const u of undetected.sort((a, b) => a.path.localeCompare(b.path) || a.line - b.line || a.col - b.col))
    console.log(`${u.path}:${u.line}:${u.col} ${u.status === 'NoCoverage' ? '[no coverage] ' : ''}${u.mutator}: ${clip(u.original)} -> ${clip(u.replacement)}`)
}

if (threshold !== undefined) {
  const failing = each ? order.filter((n) => score(byModule.get(n)) < threshold) : score(total) < threshold ? ['all'] : []
  if (failing.length) {
    console.error(`\nmutation score below ${threshold}: ${failing.map((n) => `${n} ${fmt(score(n === 'all' ? total : byModule.get(n))).trim()}`).join(', ')}`)
    process.exit(1)
  }
  console.log(`\nmutation score at or above ${threshold}${each ? ' in every module' : ''}`)
}
