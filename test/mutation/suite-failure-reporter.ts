// When a mutant breaks a test file's beforeAll or import, Vitest 4 fails the file or suite and
// marks every test "skip", exactly like the tests Stryker's name filter left out. The vitest-runner
// (9.6) then reports the mutant "Survived" having run nothing (stryker-js #5492, #6150). This
// reporter runs before the runner reads the results: in a failed file or suite it gives every test
// the current name filter selected (all, when there is none) a failed result with the suite's error.
import type { Reporter, TestModule, Vitest } from 'vitest/node'

interface Task {
  type: string
  mode: string
  name: string
  tasks?: Task[]
  result?: { state?: string; errors?: unknown[]; duration?: number }
}

export default class SuiteFailureReporter implements Reporter {
  private ctx: Vitest | undefined

  onInit(ctx: Vitest): void {
    this.ctx = ctx
  }

  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    for (const m of modules) {
      const pattern = m.project.config.testNamePattern ?? this.ctx?.config.testNamePattern
      const marked = this.mark((m as unknown as { task: Task }).task, undefined, [], pattern)
      if (marked > 0) process.stderr.write(`[mutation] ${m.moduleId}: the file or a suite failed before its tests ran; ${marked} selected test(s) marked failed\n`)
    }
  }

  private mark(task: Task, inherited: unknown[] | undefined, names: string[], pattern: RegExp | string | undefined): number {
    const own = task.result?.state === 'fail' ? (task.result.errors?.length ? task.result.errors : [{ message: `suite "${task.name}" failed` }]) : undefined
    const errors = own ?? inherited
    let marked = 0
    for (const child of task.tasks ?? []) {
      const path = [...names, child.name]
      if (child.type === 'suite') marked += this.mark(child, errors, path, pattern)
      else if (child.type === 'test' && errors && child.result?.state !== 'pass' && child.result?.state !== 'fail') {
        const full = path.join(' ').trim()
        const selected = pattern === undefined || (typeof pattern === 'string' ? full.includes(pattern) : new RegExp(pattern.source, pattern.flags.replace('g', '')).test(full))
        if (selected) {
          child.mode = 'run'
          child.result = { ...child.result, state: 'fail', errors }
          marked++
        }
      }
    }
    return marked
  }
}
