// @ts-check
// Focused mutation run for CI (minutes on 2 cores): the audit hash chain and its checkpoint
// signatures, the policy engine, the login throttle and connection admission, against the tests
// that exercise them in process. Same mechanics as
// stryker.config.mjs; `break` fails the run (and CI) below the threshold.
import base from './stryker.config.mjs'

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
const config = {
  ...base,
  mutate: ['core/src/audit/chain.ts', 'plugins/policy/src/engine.ts', 'core/src/pipeline/throttle.ts', 'core/src/pipeline/admission.ts'],
  testFiles: [
    'test/core/audit-chain-forgery.test.ts',
    'test/plugins/policy/rule-language.test.ts',
    'test/plugins/policy/readme-policies.test.ts',
    'test/core/policy.test.ts',
    'test/core/throttle.test.ts',
    'test/core/admission.test.ts',
    'test/core/masking.test.ts',
  ],
  htmlReporter: { fileName: 'reports/mutation/ci.html' },
  jsonReporter: { fileName: 'reports/mutation/ci.json' },
  thresholds: { high: 90, low: 85, break: 85 },
}
export default config
