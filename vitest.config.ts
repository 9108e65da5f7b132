import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
    // Load tests (`*.load.test.ts`) run after every other file, alone: their bursts would starve
    // the timing-sensitive tests that run beside them on a 2-core machine.
    projects: [
      { extends: true, test: { name: 'suite', include: ['test/**/*.test.ts'], exclude: ['test/**/*.load.test.ts', 'test/tmp/**', '**/node_modules/**'], sequence: { groupOrder: 0 } } },
      { extends: true, test: { name: 'load', include: ['test/**/*.load.test.ts'], sequence: { groupOrder: 1 } } },
    ],
  },
})
