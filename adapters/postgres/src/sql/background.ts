/**
 * Parses SQL texts on a pool of worker threads, each text with a time budget.
 *
 * Why: the cost of parsing is not its length. An 8 KB expression of 4,000 terms takes about
 * 100 ms, a megabyte of text a few hundred; on the event loop every session shares, that is
 * every other session waiting. So every text the analysis cache has not seen is parsed here, off
 * the loop. A parse that runs past the budget gets its worker terminated, a fresh one takes the
 * next text, and the statement is refused as unjudgeable (fail closed).
 *
 * Fairness: texts are taken in rotation by owner (the principal), and one owner has at most one
 * worker at a time. With two or more workers, one principal sending costly texts from any number
 * of sessions cannot make another principal's statements wait for a worker.
 */
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import type { ParsedSql } from './analyze.js'

type Result = ParsedSql | { readonly error: string; readonly rule?: string }

interface Task {
  readonly id: number
  readonly text: string
  readonly owner: string
  readonly resolve: (r: Result) => void
}

/** One worker thread and the task it runs. */
interface Slot {
  worker: Worker | undefined
  running: (Task & { timer: NodeJS.Timeout }) | undefined
}

export class BackgroundParser {
  private readonly slots: Slot[]
  /** Waiting texts by owner; the map's order is the rotation (an owner that had its turn goes to the back). */
  private readonly queues = new Map<string, Task[]>()
  /** Owners with a text on a worker now. */
  private readonly running = new Set<string>()
  private nextId = 1
  private closed = false

  /**
   * @param budgetMs longest a parse may run before it is refused
   * @param size workers in the pool; at least two, so one principal never holds them all
   */
  constructor(
    private readonly budgetMs = 2000,
    size = Math.max(2, Math.min(4, availableParallelism())),
  ) {
    this.slots = Array.from({ length: size }, () => ({ worker: undefined, running: undefined }))
  }

  /** Starts the workers now, so the first statements do not wait for them to load the parser. */
  warm(): void {
    for (const slot of this.slots) this.ensureWorker(slot)
  }

  parse(text: string, owner = ''): Promise<Result> {
    if (this.closed) return Promise.resolve({ error: 'the gateway is shutting down' })
    return new Promise((resolve) => {
      const queue = this.queues.get(owner)
      const task = { id: this.nextId++, text, owner, resolve }
      if (queue) queue.push(task)
      else this.queues.set(owner, [task])
      this.startNext()
    })
  }

  /** The next owner's oldest text, among owners without a text running; that owner goes to the back. */
  private take(): Task | undefined {
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
      const timer = setTimeout(() => this.timedOut(slot), this.budgetMs)
      timer.unref()
      slot.running = { ...task, timer }
      this.running.add(task.owner)
      worker.postMessage({ id: task.id, text: task.text })
    }
  }

  private ensureWorker(slot: Slot): Worker {
    if (slot.worker) return slot.worker
    const worker = new Worker(new URL('./parse-worker.js', import.meta.url))
    worker.unref()
    worker.on('message', (m: { id: number; result: Result }) => this.settle(slot, m.id, m.result))
    worker.on('error', (err) => this.crashed(slot, worker, `the parser failed: ${err.message}`))
    worker.on('exit', () => this.crashed(slot, worker, 'the parser stopped'))
    slot.worker = worker
    return worker
  }

  /** Ends the slot's task with `result` and gives the slot its next text. */
  private finish(slot: Slot, result: Result): void {
    const t = slot.running
    if (!t) return
    clearTimeout(t.timer)
    slot.running = undefined
    this.running.delete(t.owner)
    t.resolve(result)
    this.startNext()
  }

  private settle(slot: Slot, id: number, result: Result): void {
    if (slot.running?.id !== id) return
    this.finish(slot, 'error' in result ? result : freezeParsed(result))
  }

  private timedOut(slot: Slot): void {
    const worker = slot.worker
    slot.worker = undefined
    void worker?.terminate()
    this.finish(slot, { error: `the statement took longer than ${this.budgetMs} ms to analyse` })
  }

  private crashed(slot: Slot, worker: Worker, reason: string): void {
    if (slot.worker !== worker) return
    slot.worker = undefined
    this.finish(slot, { error: reason })
  }

  /** Stops the workers; texts still queued or running are refused. */
  async close(): Promise<void> {
    this.closed = true
    for (const queue of this.queues.values()) for (const t of queue) t.resolve({ error: 'the gateway is shutting down' })
    this.queues.clear()
    const workers: Worker[] = []
    for (const slot of this.slots) {
      if (slot.worker) workers.push(slot.worker)
      slot.worker = undefined
      this.finish(slot, { error: 'the gateway is shutting down' })
    }
    await Promise.all(workers.map((w) => w.terminate()))
  }
}

/**
 * Facts arrive from the worker as structured clones, no longer frozen; frozen again they are
 * shared read-only like facts parsed inline, and the audit serializer caches their JSON.
 */
function freezeParsed(parsed: ParsedSql): ParsedSql {
  for (const f of parsed.facts) deepFreeze(f)
  return parsed
}

function deepFreeze(v: unknown): void {
  if (v === null || typeof v !== 'object' || Object.isFrozen(v)) return
  for (const k of Object.keys(v)) deepFreeze((v as Record<string, unknown>)[k])
  Object.freeze(v)
}
