/**
 * `gatehouse audit verify` on over 1 GiB of audit files: it streams (a 96 MiB heap), and finds a
 * removal past the first GiB. A `.load` test: in the suite, but not in mutation runs (each mutant
 * covered by it would take a minute).
 */
import { describe, expect, it } from 'vitest'
import { execFile } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { GENESIS_HASH, sealEvent } from '@gatehouse/core'

const CLI = join(fileURLToPath(new URL('../../..', import.meta.url)), 'core/dist/cli.js')

describe('audit verify of a log of any size', () => {
  it('verifies over 1 GiB of rotated files with a heap of 96 MiB (it streams), and finds an event removed after the first GiB', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-big-'))
    const head = join(dir, 'audit.jsonl.1')
    const tail = join(dir, 'audit.jsonl')
    // ~16 KiB events (a long statement text): 1 GiB of them in the rotated file, 100 in the current one
    const filler = 'x'.repeat(16 * 1024)
    let prev = GENESIS_HASH
    let count = 0
    const write = (path: string, until: (bytes: number, lines: number) => boolean): string[] => {
      const fd = openSync(path, 'w')
      const kept: string[] = []
      let bytes = 0
      let lines = 0
      const batch: string[] = []
      while (!until(bytes, lines)) {
        const s = sealEvent(JSON.stringify({ id: `s.${count}:request`, time: '2026-12-02T00:00:00.000Z', session: 's', type: 'request', text: `SELECT '${filler}'`, verdict: 'allow' }), prev)
        batch.push(s.line)
        if (path === tail) kept.push(s.line)
        prev = s.hash
        bytes += s.line.length + 1
        lines++
        count++
        if (batch.length === 256) writeSync(fd, `${batch.splice(0).join('\n')}\n`)
      }
      if (batch.length) writeSync(fd, `${batch.splice(0).join('\n')}\n`)
      closeSync(fd)
      return kept
    }
    const run = (...args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
        execFile(process.execPath, ['--max-old-space-size=96', CLI, 'audit', 'verify', ...args], (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr })),
      )
    try {
      write(head, (bytes) => bytes > 1024 * 1024 * 1024)
      const recent = write(tail, (_b, lines) => lines === 100)
      expect(statSync(head).size).toBeGreaterThan(1024 * 1024 * 1024)
      const whole = await run(head, tail, '--expect', prev)
      expect(whole.stderr).toBe('')
      expect(whole.stdout).toBe(`ok: ${count} events, chain intact; last hash ${prev}\n`)
      expect(whole.code).toBe(0)

      // the 50th recent event removed: its successor follows a hash stored nowhere (two more passes over the GiB)
      writeFileSync(tail, `${[...recent.slice(0, 49), ...recent.slice(50)].join('\n')}\n`)
      const cut = await run(head, tail)
      expect(cut.stdout).toBe(`${tail}:50: removed: the event it follows (${(/"hash":"([0-9a-f]{64})"/.exec(recent[49] as string)?.[1] as string).slice(0, 12)}…) is missing: events were removed before this line\n${count - 51} events verified before it\n`)
      expect(cut.code).toBe(1)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 300_000)
})
