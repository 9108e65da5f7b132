// @ts-check
// bench:pg's output format, in one place: bench/pg.mjs prints its report with `formatReport`, and
// the docs test reads the report pasted into docs/benchmarks.md back with `parseReport`, so the
// figures there are always a run's own output (never numbers typed by hand or edited afterwards:
// the ratio line must agree with the table).

/**
 * @typedef {{ target: string, mode: string, tps: number, latencyMs: number, p50Ms?: number, p99Ms?: number,
 *             cpuUsPerTx?: number, rssMiB?: number }} Row
 * @typedef {{ target: string, sessions: number, rssMiB: number, perSessionKiB: number }} IdleRow
 * @typedef {{ header: string, rows: Row[], idle: IdleRow[], ratios: Record<string, string> }} Report
 */

export const MODE_NAMES = ['simple', 'extended', 'prepared']
const COLUMNS = ['target', 'mode', 'tps', 'p50 ms', 'p99 ms', 'avg ms', 'proxy cpu us/tx', 'proxy rss MiB']
const IDLE_COLUMNS = ['idle sessions', 'target', 'rss MiB', 'KiB per session']

/** @param {number | undefined} v @param {number} digits */
const num = (v, digits) => (v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits))

/** @param {string[][]} rows @param {number} leftColumns */
function table(rows, leftColumns) {
  const widths = (rows[0] ?? []).map((_, i) => Math.max(...rows.map((row) => (row[i] ?? '').length)))
  const line = (/** @type {string[]} */ row) => row.map((cell, i) => (i < leftColumns ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ').trimEnd()
  return [line(rows[0] ?? []), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)]
}

/** gatehouse tps / haproxy tps for `mode`, two decimals, or 'n/a'. @param {Row[]} rows @param {string} mode */
export function ratio(rows, mode) {
  const tps = (/** @type {string} */ target) => rows.find((r) => r.target === target && r.mode === mode)?.tps
  const g = tps('gatehouse')
  const h = tps('haproxy')
  return g !== undefined && h !== undefined && h > 0 ? (g / h).toFixed(2) : 'n/a'
}

/** The last line of every run, what the issue's "done when" reads. @param {Row[]} rows */
export function ratioLine(rows) {
  return `ratio gatehouse/haproxy ${MODE_NAMES.map((m) => `${m}=${ratio(rows, m)}`).join(' ')}`
}

/**
 * @param {{ header: string, rows: Row[], idle: IdleRow[] }} report
 * @returns {string} the report, ending with the ratio line
 */
export function formatReport({ header, rows, idle }) {
  const out = [header]
  out.push(...table([COLUMNS, ...rows.map((r) => [r.target, r.mode, num(r.tps, 1), num(r.p50Ms, 3), num(r.p99Ms, 3), num(r.latencyMs, 3), num(r.cpuUsPerTx, 1), num(r.rssMiB, 1)])], 2))
  if (idle.length > 0) {
    out.push('')
    out.push(...table([IDLE_COLUMNS, ...idle.map((r) => [String(r.sessions), r.target, num(r.rssMiB, 1), num(r.perSessionKiB, 1)])], 0))
  }
  out.push(ratioLine(rows))
  return out.join('\n')
}

/**
 * Reads a report `formatReport` printed. Throws when the text is not one: a wrong header or
 * column, a malformed cell, or a ratio line that does not follow from the table.
 * @param {string} text
 * @returns {Report}
 */
export function parseReport(text) {
  const lines = text.trim().split('\n')
  const header = lines.shift() ?? ''
  if (!/^pgbench -n -S -c \d+ -j \d+ -T \d+ \(scale \d+, sslmode=disable\)/.test(header)) throw new Error(`not a bench:pg report header: ${header}`)
  const cells = (/** @type {string | undefined} */ l) => (l ?? '').trim().split(/ {2,}/)
  const expectColumns = (/** @type {string[]} */ got, /** @type {string[]} */ want) => {
    if (got.join('|') !== want.join('|')) throw new Error(`columns ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`)
  }
  expectColumns(cells(lines.shift()), COLUMNS)
  lines.shift() // rule
  const value = (/** @type {string} */ s, /** @type {string} */ what) => {
    if (s === '-') return undefined
    if (!/^\d+(\.\d+)?$/.test(s)) throw new Error(`${what}: not a number: ${s}`)
    return Number(s)
  }
  /** @type {Row[]} */
  const rows = []
  while (lines.length > 0 && lines[0] !== '' && !(lines[0] ?? '').startsWith('ratio ')) {
    const c = cells(lines.shift())
    if (c.length !== COLUMNS.length) throw new Error(`row ${JSON.stringify(c)} has ${c.length} cells, expected ${COLUMNS.length}`)
    const [target = '', mode = '', tps, p50, p99, avg, cpu, rss] = c
    if (!MODE_NAMES.includes(mode)) throw new Error(`unknown mode ${mode}`)
    const tpsValue = value(tps ?? '', 'tps')
    if (tpsValue === undefined) throw new Error(`row ${target} ${mode} has no tps`)
    rows.push({ target, mode, tps: tpsValue, latencyMs: value(avg ?? '', 'avg ms') ?? NaN, p50Ms: value(p50 ?? '', 'p50'), p99Ms: value(p99 ?? '', 'p99'), cpuUsPerTx: value(cpu ?? '', 'cpu'), rssMiB: value(rss ?? '', 'rss') })
  }
  /** @type {IdleRow[]} */
  const idle = []
  if (lines[0] === '') {
    lines.shift()
    expectColumns(cells(lines.shift()), IDLE_COLUMNS)
    lines.shift()
    while (lines.length > 0 && !(lines[0] ?? '').startsWith('ratio ')) {
      const [sessions = '', target = '', rss = '', per = ''] = cells(lines.shift())
      idle.push({ sessions: value(sessions, 'sessions') ?? NaN, target, rssMiB: value(rss, 'rss') ?? NaN, perSessionKiB: value(per, 'per session') ?? NaN })
    }
  }
  const last = lines.shift() ?? ''
  if (last !== ratioLine(rows)) throw new Error(`ratio line ${JSON.stringify(last)} does not follow from the table (${ratioLine(rows)})`)
  if (lines.length > 0) throw new Error(`text after the ratio line: ${lines[0]}`)
  /** @type {Record<string, string>} */
  const ratios = Object.fromEntries(MODE_NAMES.map((m) => [m, ratio(rows, m)]))
  return { header, rows, idle, ratios }
}
