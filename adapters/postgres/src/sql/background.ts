/**
 * Parses SQL texts on core's pool of worker threads (BackgroundPool), each text with a time
 * budget: an 8 KB expression of 4,000 terms takes about 100 ms to parse, a megabyte of text a few
 * hundred, and on the event loop every session shares that is every other session waiting. A
 * text that runs past the budget is refused as unjudgeable (fail closed).
 */
import { BackgroundPool } from '@gatehouse/core'
import type { ParsedSql } from './analyze.js'

type Result = ParsedSql | { readonly error: string; readonly rule?: string }

export class BackgroundParser {
  private readonly pool: BackgroundPool<string, Result>

  /**
   * @param budgetMs longest a parse may run before it is refused
   * @param size workers in the pool; at least two, so one principal never holds them all
   */
  constructor(budgetMs = 2000, size?: number) {
    this.pool = new BackgroundPool<string, Result>(new URL('./parse-worker.js', import.meta.url), {
      budgetMs,
      ...(size === undefined ? {} : { size }),
      failed: (kind, detail) => ({ error: kind === 'timeout' ? `the statement ${detail} to analyse` : kind === 'crashed' ? `the parser ${detail}` : detail }),
    })
  }

  /** Starts the workers now, so the first statements do not wait for them to load the parser. */
  warm(): void {
    this.pool.warm()
  }

  async parse(text: string, owner = ''): Promise<Result> {
    const result = await this.pool.run(text, owner)
    return 'error' in result ? result : freezeParsed(result)
  }

  /** Stops the workers; texts still queued or running are refused. */
  close(): Promise<void> {
    return this.pool.close()
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
