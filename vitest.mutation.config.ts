// Vitest config for mutation runs only (Stryker's vitest-runner; see stryker.config.mjs).
// The runner itself forces pool 'threads' with one worker and bail=1; this file only narrows the
// test set and adds the setup that hands the active mutant to worker threads and child processes.
import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Load tests are timing-based (no use as mutant killers, flaky when slowed down by
    // instrumentation); the fixtures' own tests exercise no gateway code.
    exclude: ['test/**/*.load.test.ts', 'test/fixtures/**', 'test/tmp/**', '**/node_modules/**'],
    setupFiles: ['test/mutation/propagate-mutant.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default', './test/mutation/suite-failure-reporter.ts'],
  },
})
