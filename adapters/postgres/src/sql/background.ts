/**
 * Parses large SQL texts on a worker thread, with a time budget.
 *
 * Why: parsing costs about 0.2 ms per KB and runs synchronously, so on the event loop a client
 * sending megabyte-sized statements would stall every other session; and a text that makes the
 * parser slow (nested comments are quadratic) must not stall anything at all. Small texts are
 * parsed inline (a few µs, and usually cached); larger ones go to one worker, one at a time. A
 * parse that runs past the budget gets its worker terminated, a fresh one takes the next text,
 * and the statement is refused as unjudgeable (fail closed).
 *
 * Texts are taken in rotation by owner (the principal): one token opening many sessions, each
 * sending slow texts, delays another principal's text by at most one budget, not one per session.
 */
import { Worker } from 'node:worker_threads'
import type { ParsedSql } from './analyze.js'

type Result = ParsedSql | { readonly error: string; readonly rule?: string }

interface Task {
  readonly id: number
  readonly text: string
  readonly owner: string
  readonly resolve: (r: Result) => void
}

export class BackgroundParser {
  private worker: Worker | undefined
  /** Waiting texts by owner; the map's order is the rotation (an owner that had its turn goes to the back). */
  private readonly queues = new Map<string, Task[]>()
  private running: (Task & { timer: NodeJS.Timeout }) | undefined
  private nextId = 1

  constructor(private readonly budgetMs = 2000) {}

  parse(text: string, owner = ''): Promise<Result> {
    return new Promise((resolve) => {
      const queue = this.queues.get(owner)
      const task = { id: this.nextId++, text, owner, resolve }
      if (queue) queue.push(task)
      else this.queues.set(owner, [task])
      this.startNext()
    })
  }

  /** The next owner's oldest text; that owner goes to the back of the rotation. */
  private take(): Task | undefined {
    for (const [owner, queue] of this.queues) {
      const task = queue.shift()
      this.queues.delete(owner)
      if (queue.length > 0) this.queues.set(owner, queue)
      if (task) return task
    }
    return undefined
  }

  private startNext(): void {
    if (this.running) return
    const task = this.take()
    if (!task) return
    const worker = this.ensureWorker()
    const timer = setTimeout(() => this.timedOut(), this.budgetMs)
    timer.unref()
    this.running = { ...task, timer }
    worker.postMessage({ id: task.id, text: task.text })
  }

  private ensureWorker(): Worker {
    if (this.worker) return this.worker
    const worker = new Worker(new URL('./parse-worker.js', import.meta.url))
    worker.unref()
    worker.on('message', (m: { id: number; result: Result }) => this.settle(m.id, m.result))
    worker.on('error', (err) => this.crashed(worker, `the parser failed: ${err.message}`))
    worker.on('exit', () => this.crashed(worker, 'the parser stopped'))
    this.worker = worker
    return worker
  }

  private settle(id: number, result: Result): void {
    const t = this.running
    if (!t || t.id !== id) return
    clearTimeout(t.timer)
    this.running = undefined
    t.resolve(result)
    this.startNext()
  }

  private timedOut(): void {
    const worker = this.worker
    this.worker = undefined
    const t = this.running
    this.running = undefined
    void worker?.terminate()
    t?.resolve({ error: `the statement took longer than ${this.budgetMs} ms to analyse` })
    this.startNext()
  }

  private crashed(worker: Worker, reason: string): void {
    if (this.worker !== worker) return
    this.worker = undefined
    const t = this.running
    this.running = undefined
    if (t) {
      clearTimeout(t.timer)
      t.resolve({ error: reason })
    }
    this.startNext()
  }

  /** Stops the worker; texts still queued are refused. */
  async close(): Promise<void> {
    for (const queue of this.queues.values()) for (const t of queue) t.resolve({ error: 'the gateway is shutting down' })
    this.queues.clear()
    const w = this.worker
    this.worker = undefined
    await w?.terminate()
  }
}
