// Setup file for mutation runs (vitest.mutation.config.ts). Stryker's vitest-runner activates a
// mutant only in the test's own worker (globalThis.__stryker__.activeMutant). Code the tests run
// elsewhere (the gateway's BackgroundPool worker threads, `node core/dist/cli.js ...` children)
// reads the instrumented code's fallback, the __STRYKER_ACTIVE_MUTANT__ environment variable,
// when it loads. Worker threads and child processes copy process.env when they start, so setting
// it here, before the test file's own hooks, reaches them.
import { beforeAll } from 'vitest'

const ENV = '__STRYKER_ACTIVE_MUTANT__'

beforeAll(() => {
  const active = (globalThis as { __stryker__?: { activeMutant?: string | number } }).__stryker__?.activeMutant
  if (active === undefined) delete process.env[ENV]
  else process.env[ENV] = String(active)
})
