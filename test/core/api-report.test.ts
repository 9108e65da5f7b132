/**
 * The plugin API is a published contract: core's public entry point (core/dist/index.d.ts) is
 * compared with the API report checked in at core/etc/core.api.md (API Extractor). A change to the
 * public surface fails here until the report is regenerated (`npm run api:report`) and committed,
 * so it shows up as a diff in review.
 */
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'

const core = join(import.meta.dirname, '../../core')

describe('the API report', () => {
  it('core/etc/core.api.md matches what @gatehouse/core exports', async () => {
    const result = await new Promise<{ code: number; out: string }>((resolve) =>
      execFile(join(core, '../node_modules/.bin/api-extractor'), ['run', '-c', 'api-extractor.json'], { cwd: core, timeout: 120_000 }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` })),
    )
    expect(result.out, 'the public API changed: run `npm run api:report` and commit core/etc/core.api.md').toMatch(/API Extractor completed successfully/)
    expect(result.code).toBe(0)
  })
})
