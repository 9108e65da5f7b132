// @ts-check
// Mutation testing of Gatehouse's security core (StrykerJS 9.6, Node 20).
//
//   npm run test:mutation      full run over the security core (hours on 2 cores; not in CI)
//   npm run test:mutation:ci   focused run (stryker.ci.config.mjs), in CI, fails below its threshold
//
// Why it is shaped this way:
// - Tests import the packages by name (@gatehouse/*), which resolve through node_modules
//   workspace symlinks to each package's dist/. So Stryker mutates src/*.ts IN PLACE and
//   `tsc -b` compiles the instrumented sources (every mutant behind a runtime switch) into dist/.
//   A sandbox copy would not work: the symlinks in node_modules/@gatehouse point (relatively, via
//   the symlinked node_modules) back to the original package folders, so tests would run the
//   un-mutated dist of the checkout.
// - In-place mode restores src/ when Stryker ends, but NOT dist/, and the restored files keep
//   their old mtimes, so a plain `tsc -b` thinks dist is current: the npm scripts run
//   `tsc -b --force` afterwards, whatever Stryker's exit code.
// - A mutant that breaks a test file's beforeAll would be reported "Survived" with no test run
//   (vitest marks the tests skipped): test/mutation/suite-failure-reporter.ts fails them instead.
// - vitest.related is off: the tests' module graph holds dist/*.js, never the mutated src/*.ts.
/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
const config = {
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.mutation.config.ts', related: false },
  plugins: ['@stryker-mutator/vitest-runner'],
  inPlace: true,
  buildCommand: 'npx tsc -b',
  // Instrumented sources do not type-check; mark every mutated file @ts-nocheck so tsc emits them.
  disableTypeChecks: '{core,adapters/*,plugins/*}/src/**/*.ts',
  checkers: [],
  mutate: [
    'core/src/pipeline/**/*.ts',
    'core/src/auth/**/*.ts',
    'core/src/audit/**/*.ts',
    'plugins/policy/src/**/*.ts',
    'plugins/auth-*/src/**/*.ts',
    'adapters/postgres/src/upstream.ts',
    'adapters/postgres/src/session-model.ts',
    'adapters/ssh/src/upstream.ts',
    'adapters/ssh/src/sftp.ts',
    'adapters/ssh/src/shell/**/*.ts',
    // thin entry points / worker glue: nothing a test could pin down
    '!**/index.ts',
    '!adapters/ssh/src/shell/analyze-worker.ts',
    // ...except the auth plugins, whose whole code is their index.ts
    'plugins/auth-*/src/index.ts',
  ],
  // Only what the run reads: keeps Stryker from scanning reports, benches, temp dirs.
  ignorePatterns: ['reports', 'bench', 'examples', '.gatehouse', 'test/tmp', 'coverage', '**/dist/**', '*.tsbuildinfo'],
  coverageAnalysis: 'perTest',
  // Mutants reached only while a test file's beforeAll starts the gateway/cluster would need a
  // full-suite run each; ignore them (reported as "Ignored"). Mutants reached both there and
  // inside a test ("hybrid") still run, against the tests that cover them.
  ignoreStatic: true,
  concurrency: 2,
  // Instrumented code is slower, tests start PostgreSQL clusters and sshd: generous timeouts.
  timeoutMS: 30_000,
  timeoutFactor: 2,
  dryRunTimeoutMinutes: 60,
  reporters: ['html', 'json', 'clear-text', 'progress'],
  htmlReporter: { fileName: 'reports/mutation/mutation.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  clearTextReporter: { allowColor: false, logTests: false, maxTestsToLog: 0, reportScoreTable: true },
  thresholds: { high: 80, low: 60, break: null },
  tempDirName: '.stryker-tmp',
  cleanTempDir: true,
}
export default config
