// Helpers the benches that start a real gateway share.
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { run } from '../test/fixtures/pg-cluster-impl.mjs'

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
export const CLI = path.join(REPO, 'core', 'dist', 'cli.js')

/** `gatehouse …` in the repository; resolves with its stdout. */
export async function cli(args) {
  const r = await run(process.execPath, [CLI, ...args], { cwd: REPO })
  return r.stdout
}

/** A fresh token for `identity`: `{token, hash, …}` from `gatehouse token issue --json`. */
export async function issueToken(identity) {
  const out = await cli(['token', 'issue', '--identity', identity, '--json'])
  for (const line of out.trim().split('\n').reverse()) {
    try {
      const j = JSON.parse(line)
      if (typeof j.token === 'string') return j
    } catch {
      /* not the JSON line */
    }
  }
  throw new Error(`token issue failed: ${out}`)
}

/** The p-th percentile of ascending `sorted`. */
export const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]

/** One line of a latency table: count, p50, p99 and max in ms. */
export const latencyRow = (label, sorted, width = 22) =>
  `${label.padEnd(width)} n=${String(sorted.length).padStart(6)}  p50=${percentile(sorted, 50).toFixed(2).padStart(7)} ms  p99=${percentile(sorted, 99).toFixed(2).padStart(7)} ms  max=${sorted[sorted.length - 1].toFixed(2).padStart(7)} ms`
