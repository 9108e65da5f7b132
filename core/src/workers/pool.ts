/**
 * A pool of worker threads that run one costly, untrusted-input job each (parsing a statement or
 * a command line), each job with a time budget. Adapters use it so that no input can hold the
 * event loop every session shares.
 *
 * Why it is shaped this way:
 * - The cost of parsing is not its length: an 8 KB SQL expression of 4,000 terms takes about
 *   100 ms, 16 KB of `a|` in a shell line takes tree-sitter seconds and then aborts its
 *   WebAssembly module. So jobs run off the loop, and a job that runs past the budget gets its
 *   worker terminated; a fresh worker takes the next job, and the job is refused (fail closed).
 *   A worker that dies (a WebAssembly abort) is replaced the same way.
 * - Fairness: jobs are taken in rotation by owner (the principal), and one owner has at most one
 *   worker at a time. With two or more workers, one principal sending costly inputs from any
 *   number of sessions cannot make another principal's jobs wait for a worker.
 *
 * - A job's budget runs from the moment its worker is ready (the script has loaded its parser):
 *   starting a worker and loading WebAssembly take long on a loaded machine, and counting that
 *   against the first jobs would refuse innocent statements right after a start. Loading has its
 *   own, longer budget (`loadBudgetMs`); a worker that does not get ready in it is replaced and
 *   its job refused.
 *
 * The worker script posts `{ready: true}` once it can take jobs, and answers `{id, input}`
 * messages with `{id, result}` (it may receive jobs before it is ready, and answers them after).
 */
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'

interface Task<I, R> {
  readonly id: number
  readonly input: I
  readonly owner: string
  readonly resolve: (r: R) => void
}

/** One worker thread and the job it runs. */
interface Slot<I, R> {
  worker: Worker | undefined
  /** The worker posted `{ready: true}`: its jobs' budgets run. */
  ready: boolean
  running: (Task<I, R> & { timer: NodeJS.Timeout }) | undefined
}

export interface BackgroundPoolOptions<R> {
  /** Longest a job may run before its worker is terminated and the job refused. */
  readonly budgetMs: number
  /** Longest a new worker may take to get ready (default 30 s). */
  readonly loadBudgetMs?: number
  /** Workers in the pool (default: two to four). Keep at least two, so one principal never holds them all. */
  readonly size?: number
  /**
   * The result of a job that failed: it ran past the budget (`timeout`), its worker died
   * (`crashed`, with `detail` such as "stopped" or "failed: <error>"), or the pool closed.
   */
  readonly failed: (kind: 'timeout' | 'crashed' | 'closed', detail: string) => R
}

export class BackgroundPool<I, R> {
  private readonly slots: Slot<I, R>[]
  /** Waiting jobs by owner; the map's order is the rotation (an owner that had its turn goes to the back). */
  private readonly queues = new Map<string, Task<I, R>[]>()
  /** Owners with a job on a worker now. */
  private readonly running = new Set<string>()
  private nextId = 1
  private closed = false

  constructor(
    private readonly script: URL,
    private readonly options: BackgroundPoolOptions<R>,
  ) {
    const size = options.size ?? Math.max(2, Math.min(4, availableParallelism()))
    this.slots = Array.from({ length: size }, () => ({ worker: undefined, ready: false, running: undefined }))
  }

  /** Starts the workers now, so the first jobs do not wait for them to load. */
  warm(): void {
    for (const slot of this.slots) this.ensureWorker(slot)
  }

  run(input: I, owner = ''): Promise<R> {
    if (this.closed) return Promise.resolve(this.options.failed('closed', 'the gateway is shutting down'))
    return new Promise((resolve) => {
      const queue = this.queues.get(owner)
      const task = { id: this.nextId++, input, owner, resolve }
      if (queue) queue.push(task)
      else this.queues.set(owner, [task])
      this.startNext()
    })
  }

  /** The next owner's oldest job, among owners without a job running; that owner goes to the back. */
  private take(): Task<I, R> | undefined {
    for (const [owner, queue] of this.queues) {
      if (this.running.has(owner)) continue
      const task = queue.shift()
      this.queues.delete(owner)
      if (queue.length > 0) this.queues.set(owner, queue)
      if (task) return task
    }
    return undefined
  }

  private startNext(): void {
    for (const slot of this.slots) {
      if (slot.running) continue
      const task = this.take()
      if (!task) return
      const worker = this.ensureWorker(slot)
      slot.running = { ...task, timer: this.budget(slot) }
      this.running.add(task.owner)
      worker.postMessage({ id: task.id, input: task.input })
    }
  }

  /** The timer of the slot's job: its budget once the worker is ready, the load budget until then. */
  private budget(slot: Slot<I, R>): NodeJS.Timeout {
    const timer = slot.ready
      ? setTimeout(() => this.timedOut(slot, 'timeout', `took longer than ${this.options.budgetMs} ms`), this.options.budgetMs)
      : setTimeout(() => this.timedOut(slot, 'crashed', `did not load in ${this.loadBudgetMs} ms`), this.loadBudgetMs)
    timer.unref()
    return timer
  }

  private get loadBudgetMs(): number {
    return this.options.loadBudgetMs ?? 30_000
  }

  private ensureWorker(slot: Slot<I, R>): Worker {
    if (slot.worker) return slot.worker
    const worker = new Worker(this.script)
    worker.unref()
    slot.ready = false
    worker.on('message', (m: { id: number; result: R } | { ready: true }) => {
      if (!('ready' in m)) return this.settle(slot, m.id, m.result)
      if (slot.worker !== worker) return
      slot.ready = true
      // The job waiting for this worker gets its budget from now.
      if (slot.running) {
        clearTimeout(slot.running.timer)
        slot.running.timer = this.budget(slot)
      }
    })
    worker.on('error', (err) => this.crashed(slot, worker, `failed: ${err.message}`))
    worker.on('exit', () => this.crashed(slot, worker, 'stopped'))
    slot.worker = worker
    return worker
  }

  /** Ends the slot's job with `result` and gives the slot its next job. */
  private finish(slot: Slot<I, R>, result: R): void {
    const t = slot.running
    if (!t) return
    clearTimeout(t.timer)
    slot.running = undefined
    this.running.delete(t.owner)
    t.resolve(result)
    this.startNext()
  }

  private settle(slot: Slot<I, R>, id: number, result: R): void {
    if (slot.running?.id !== id) return
    this.finish(slot, result)
  }

  private timedOut(slot: Slot<I, R>, kind: 'timeout' | 'crashed', detail: string): void {
    const worker = slot.worker
    slot.worker = undefined
    void worker?.terminate()
    this.finish(slot, this.options.failed(kind, detail))
  }

  private crashed(slot: Slot<I, R>, worker: Worker, reason: string): void {
    if (slot.worker !== worker) return
    slot.worker = undefined
    this.finish(slot, this.options.failed('crashed', reason))
  }

  /** Stops the workers; jobs still queued or running are refused. */
  async close(): Promise<void> {
    this.closed = true
    for (const queue of this.queues.values()) for (const t of queue) t.resolve(this.options.failed('closed', 'the gateway is shutting down'))
    this.queues.clear()
    const workers: Worker[] = []
    for (const slot of this.slots) {
      if (slot.worker) workers.push(slot.worker)
      slot.worker = undefined
      this.finish(slot, this.options.failed('closed', 'the gateway is shutting down'))
    }
    await Promise.all(workers.map((w) => w.terminate()))
  }
}
