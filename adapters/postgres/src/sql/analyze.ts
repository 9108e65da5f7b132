/**
 * SQL analysis from PostgreSQL's own parser (libpg-query): splits a query string into statements
 * and describes each (facts.ts). Results are cached (bounded LRU) by the text with numeric
 * literals normalized, so a repeated query or a prepared statement costs a lookup, not a parse.
 * In the gateway every text not in the cache is parsed on the background parser's workers, never
 * on the event loop; refusals are cached too, so a costly text sent again costs a lookup.
 */
import { createHash } from 'node:crypto'
import { loadModule, parseSync } from 'libpg-query'
import type { BackgroundParser } from './background.js'
import { describeStatement, type SqlFacts } from './facts.js'
import { tooCostly } from './limits.js'
import { ambiguousLiteral } from './literals.js'
import { fromKeyOffset, normalizeSql, toKeyOffset, type NormalizedSql } from './normalize.js'

export type { SqlFacts } from './facts.js'

export interface AnalyzedStatement {
  readonly text: string
  readonly facts: SqlFacts
}

export type SqlAnalysis =
  | { readonly ok: true; readonly statements: readonly AnalyzedStatement[] }
  /** `rule`: the gateway's rule that refuses it, when it is not simply unparseable (gatehouse/parse). */
  /** `position`: where the parser stopped, as PostgreSQL reports it (1-based, in characters), for the client's caret. */
  | { readonly ok: false; readonly error: string; readonly rule?: string; readonly position?: number }

interface CachedAnalysis {
  /** Statement bounds as [start, end) offsets in the key the entry is stored under. */
  readonly bounds: readonly number[]
  readonly facts: readonly SqlFacts[]
  /** Some fact depends on a literal's value (SET, set_config): never shared across literals. */
  readonly literalSensitive?: boolean
}

/** Texts longer than this are not cached (a cache of big texts is a memory lever for clients). */
const MAX_CACHED_TEXT = 16 * 1024

/**
 * Kept for callers that parse without a background parser (explain, tests): the size above which
 * the gateway used to defer. With a background parser every miss is deferred, whatever its size.
 */
export const MAX_INLINE_TEXT = 8 * 1024

/** Refusals remembered, by text (or its hash when long), so a refused costly text is not parsed again. */
const MAX_REFUSALS = 1024

type Refusal = { readonly ok: false; readonly error: string; readonly rule?: string; readonly position?: number }

/** The statements of `text`, from bounds given as offsets in a key whose literal spans are `spans`. */
function materialize(text: string, bounds: readonly number[], facts: readonly SqlFacts[], spans: readonly number[]): SqlAnalysis {
  const statements: AnalyzedStatement[] = []
  for (let i = 0; i < facts.length; i++) {
    const start = fromKeyOffset(bounds[2 * i] as number, spans)
    const end = fromKeyOffset(bounds[2 * i + 1] as number, spans)
    statements.push({ text: text.slice(start, end), facts: facts[i] as SqlFacts })
  }
  return { ok: true, statements }
}

const NO_SPANS: readonly number[] = []
/** Stored under a normalized key whose texts must each be analysed on their own. */
const LITERAL_SENSITIVE: CachedAnalysis = Object.freeze({ bounds: [], facts: [], literalSensitive: true })

let loaded: Promise<void> | undefined
/** Loads the parser (WebAssembly). Call once before analysing; idempotent. */
export function loadSqlParser(): Promise<void> {
  loaded ??= loadModule()
  return loaded
}

export class SqlAnalyzer {
  private readonly cache = new Map<string, CachedAnalysis>()
  private readonly refusals = new Map<string, Refusal>()
  hits = 0
  misses = 0

  /**
   * @param maxEntries bound of the LRU cache of analyses
   * @param background where texts over MAX_INLINE_TEXT are parsed (`analyzeOrDefer`)
   */
  constructor(
    private readonly maxEntries = 4096,
    private readonly background?: BackgroundParser,
  ) {}

  /** Analyses `text` on the calling thread. */
  analyze(text: string): SqlAnalysis {
    const probe = this.probe(text)
    if (probe.hit) return probe.hit
    const refusedBefore = this.refusals.get(refusalKey(text))
    if (refusedBefore) return refusedBefore
    this.misses++
    const refused = tooCostly(text)
    if (refused) return { ok: false, error: refused }
    return this.parsed(text, probe, parseSql(text))
  }

  /**
   * Analyses `text`: a cached text (or a refused one) at once; any other on the background
   * parser, answering with a promise, so the event loop other sessions share is never held for
   * a parse. `owner` (the principal) gets its turn on the background parser in rotation with
   * others. Without a background parser, inline.
   */
  analyzeOrDefer(text: string, owner = ''): SqlAnalysis | Promise<SqlAnalysis> {
    if (!this.background) return this.analyze(text)
    const probe = this.probe(text)
    if (probe.hit) return probe.hit
    const key = refusalKey(text)
    const refusedBefore = this.refusals.get(key)
    if (refusedBefore) return refusedBefore
    this.misses++
    const refused = tooCostly(text)
    if (refused) return { ok: false, error: refused }
    return this.background.parse(text, owner).then((parsed) => this.parsed(text, probe, parsed, key))
  }

  /** A cache lookup: the analysis if `text` (or a text differing only in numbers) was seen, and the key to store it under. */
  private probe(text: string): { hit?: SqlAnalysis; key: string; norm: NormalizedSql | undefined } {
    if (text.length > MAX_CACHED_TEXT) return { key: text, norm: undefined }
    let norm = normalizeSql(text)
    let key = norm ? norm.key : text
    let entry = this.cache.get(key)
    if (entry?.literalSensitive && norm && norm.spans.length > 0) {
      // Its facts depend on literal values (SET x = 0 vs = 1): only the exact text may share it.
      norm = undefined
      key = text
      entry = this.cache.get(key)
    }
    if (!entry) return { key, norm }
    this.hits++
    // LRU: move to the back.
    this.cache.delete(key)
    this.cache.set(key, entry)
    return { hit: materialize(text, entry.bounds, entry.facts, norm?.spans ?? NO_SPANS), key, norm }
  }

  private parsed(text: string, probe: { key: string; norm: NormalizedSql | undefined }, parsed: ParsedSql | { error: string; rule?: string; position?: number }, key = refusalKey(text)): SqlAnalysis {
    if ('error' in parsed) {
      const refusal: Refusal = Object.freeze({ ok: false, error: parsed.error, ...(parsed.rule ? { rule: parsed.rule } : {}), ...(parsed.position ? { position: parsed.position } : {}) })
      // Not remembered: a refusal because the gateway is stopping says nothing about the text.
      if (!parsed.error.includes('shutting down')) {
        if (this.refusals.size >= MAX_REFUSALS) this.refusals.delete(this.refusals.keys().next().value as string)
        this.refusals.set(key, refusal)
      }
      return refusal
    }
    if (text.length <= MAX_CACHED_TEXT) this.rememberParsed(text, probe.key, probe.norm, parsed)
    return materialize(text, parsed.bounds, parsed.facts, NO_SPANS)
  }

  /** Caches a fresh analysis under the normalized key, or the exact text when literals matter. */
  private rememberParsed(text: string, key: string, norm: NormalizedSql | undefined, parsed: ParsedSql): void {
    const spans = norm?.spans ?? NO_SPANS
    if (spans.length === 0) {
      this.remember(key, parsed)
      return
    }
    if (parsed.literalSensitive) {
      this.remember(key, LITERAL_SENSITIVE)
      this.remember(text, parsed)
      return
    }
    const bounds: number[] = []
    for (const offset of parsed.bounds) {
      const k = toKeyOffset(offset, spans)
      // A bound inside a literal: the lexer and the parser disagree; do not share this analysis.
      if (k === undefined) return
      bounds.push(k)
    }
    this.remember(key, { bounds, facts: parsed.facts })
  }

  private remember(key: string, entry: CachedAnalysis): void {
    if (this.cache.size >= this.maxEntries) this.cache.delete(this.cache.keys().next().value as string)
    this.cache.set(key, entry)
  }

  get size(): number {
    return this.cache.size
  }
}

/** The key a refusal is remembered under: the text itself, or its hash when it is long. */
function refusalKey(text: string): string {
  return text.length <= MAX_CACHED_TEXT ? text : `sha256:${createHash('sha256').update(text).digest('base64')}`
}

interface RawStmt {
  stmt?: Record<string, unknown>
  stmt_location?: number
  stmt_len?: number
}

export interface ParsedSql {
  /** Statement bounds as [start, end) character offsets in the text. */
  readonly bounds: readonly number[]
  readonly facts: readonly SqlFacts[]
  readonly literalSensitive: boolean
}

/** Parses `text` and describes each statement; used inline and by the background parser's worker. */
export function parseSql(text: string): ParsedSql | { error: string; rule?: string; position?: number } {
  let stmts: RawStmt[]
  try {
    // libpg-query refuses an empty string, which PostgreSQL answers with EmptyQueryResponse
    stmts = text === '' ? [] : ((parseSync(text) as { stmts?: RawStmt[] }).stmts ?? [])
  } catch (err) {
    // the parser's cursor counts characters from 0; PostgreSQL reports them from 1
    const cursor = (err as { sqlDetails?: { cursorPosition?: unknown } }).sqlDetails?.cursorPosition
    const position = typeof cursor === 'number' && cursor >= 0 ? cursor + 1 : undefined
    return { error: (err as Error).message || 'syntax error', ...(position ? { position } : {}) }
  }
  const ambiguous = ambiguousLiteral(text)
  if (ambiguous) return { error: ambiguous, rule: 'gatehouse/ambiguous-literal' }
  const bytes = isAscii(text) ? undefined : Buffer.from(text, 'utf8')
  const charOffset = (byteOffset: number) => (bytes ? bytes.subarray(0, byteOffset).toString('utf8').length : byteOffset)
  const bounds: number[] = []
  const facts: SqlFacts[] = []
  for (const raw of stmts) {
    const loc = raw.stmt_location ?? 0
    const len = raw.stmt_len ?? 0
    let start = charOffset(loc)
    let end = len === 0 ? text.length : charOffset(loc + len)
    while (start < end && /\s/.test(text[start] as string)) start++
    while (end > start && /\s/.test(text[end - 1] as string)) end--
    bounds.push(start, end)
    try {
      facts.push(describeStatement(raw.stmt ?? {}, stmts.length))
    } catch (err) {
      // A tree deep enough to exhaust the stack: refused like text the parser rejects.
      if (err instanceof RangeError) return { error: 'the statement is nested too deeply for the gateway to analyse' }
      throw err
    }
  }
  const literalSensitive = facts.some((f) => f.settings.length > 0)
  return { bounds, facts, literalSensitive }
}

function isAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 127) return false
  return true
}

