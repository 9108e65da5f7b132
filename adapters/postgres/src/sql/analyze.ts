/**
 * SQL analysis from PostgreSQL's own parser (libpg-query): splits a query string into statements
 * and reports, per statement, its type and command tag, every statement kind nested inside it,
 * the relations it names and the functions it calls. Results are cached (bounded LRU) by the
 * text with numeric literals normalized, so a repeated query or a prepared statement costs a
 * lookup, not a parse.
 */
import { loadModule, parseSync } from 'libpg-query'
import { fromKeyOffset, normalizeSql, toKeyOffset, type NormalizedSql } from './normalize.js'

export interface SqlFacts {
  /** Top-level statement type: SELECT, INSERT, DROP, CREATE, SET, BEGIN, … */
  readonly statement: string
  /** Command tag PostgreSQL would report, e.g. `DROP TABLE`, `CREATE INDEX`. */
  readonly tag: string
  /** Every statement type in the tree, including nested ones (CTEs, EXPLAIN, PREPARE, CREATE … AS). */
  readonly kinds: readonly string[]
  /** Relations named anywhere in the statement (`schema.name` when qualified). */
  readonly tables: readonly string[]
  /** Functions called anywhere in the statement (`schema.name` when qualified). */
  readonly functions: readonly string[]
  /** Number of statements in the query string this statement came from. */
  readonly statements: number
  /**
   * Set when the statement could switch the session to settings under which the gateway's
   * parse would no longer match the server's (standard_conforming_strings off, a client
   * encoding that can hide quotes in multibyte characters, or set_config with a computed name).
   */
  readonly settingRisk?: string
}

export interface AnalyzedStatement {
  readonly text: string
  readonly facts: SqlFacts
}

export type SqlAnalysis = { readonly ok: true; readonly statements: readonly AnalyzedStatement[] } | { readonly ok: false; readonly error: string }

interface CachedAnalysis {
  /** Statement bounds as [start, end) offsets in the key the entry is stored under. */
  readonly bounds: readonly number[]
  readonly facts: readonly SqlFacts[]
  /** Some fact depends on a literal's value (SET, set_config): never shared across literals. */
  readonly literalSensitive?: boolean
}

/** Texts longer than this are not cached (a cache of big texts is a memory lever for clients). */
const MAX_CACHED_TEXT = 16 * 1024

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
  hits = 0
  misses = 0

  constructor(private readonly maxEntries = 4096) {}

  analyze(text: string): SqlAnalysis {
    let norm = text.length > MAX_CACHED_TEXT ? undefined : normalizeSql(text)
    let key = norm ? norm.key : text
    let entry = text.length > MAX_CACHED_TEXT ? undefined : this.cache.get(key)
    if (entry?.literalSensitive && norm && norm.spans.length > 0) {
      // Its facts depend on literal values (SET x = 0 vs = 1): only the exact text may share it.
      norm = undefined
      key = text
      entry = this.cache.get(key)
    }
    if (entry) {
      this.hits++
      // LRU: move to the back.
      this.cache.delete(key)
      this.cache.set(key, entry)
      return materialize(text, entry.bounds, entry.facts, norm?.spans ?? NO_SPANS)
    }
    this.misses++
    const parsed = parseSql(text)
    if ('error' in parsed) return { ok: false, error: parsed.error }
    if (text.length <= MAX_CACHED_TEXT) this.rememberParsed(text, key, norm, parsed)
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

interface RawStmt {
  stmt?: Record<string, unknown>
  stmt_location?: number
  stmt_len?: number
}

interface ParsedSql {
  /** Statement bounds as [start, end) character offsets in the text. */
  readonly bounds: readonly number[]
  readonly facts: readonly SqlFacts[]
  readonly literalSensitive: boolean
}

function parseSql(text: string): ParsedSql | { error: string } {
  let stmts: RawStmt[]
  try {
    stmts = (parseSync(text) as { stmts?: RawStmt[] }).stmts ?? []
  } catch (err) {
    return { error: (err as Error).message || 'syntax error' }
  }
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
    facts.push(describe(raw.stmt ?? {}, stmts.length))
  }
  const literalSensitive = facts.some((f) => f.kinds.includes('SET') || f.kinds.includes('RESET') || f.functions.some((fn) => fn === 'set_config' || fn.endsWith('.set_config')))
  return { bounds, facts, literalSensitive }
}

function isAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 127) return false
  return true
}

const TRANSACTION_KINDS: Record<string, string> = {
  TRANS_STMT_BEGIN: 'BEGIN',
  TRANS_STMT_START: 'BEGIN',
  TRANS_STMT_COMMIT: 'COMMIT',
  TRANS_STMT_ROLLBACK: 'ROLLBACK',
  TRANS_STMT_SAVEPOINT: 'SAVEPOINT',
  TRANS_STMT_RELEASE: 'RELEASE',
  TRANS_STMT_ROLLBACK_TO: 'ROLLBACK',
  TRANS_STMT_PREPARE: 'PREPARE TRANSACTION',
  TRANS_STMT_COMMIT_PREPARED: 'COMMIT PREPARED',
  TRANS_STMT_ROLLBACK_PREPARED: 'ROLLBACK PREPARED',
}

const SIMPLE: Record<string, string> = {
  SelectStmt: 'SELECT',
  InsertStmt: 'INSERT',
  UpdateStmt: 'UPDATE',
  DeleteStmt: 'DELETE',
  MergeStmt: 'MERGE',
  TruncateStmt: 'TRUNCATE',
  VariableShowStmt: 'SHOW',
  CopyStmt: 'COPY',
  ExplainStmt: 'EXPLAIN',
  PrepareStmt: 'PREPARE',
  ExecuteStmt: 'EXECUTE',
  DeallocateStmt: 'DEALLOCATE',
  DoStmt: 'DO',
  CallStmt: 'CALL',
  ClusterStmt: 'CLUSTER',
  ReindexStmt: 'REINDEX',
  LockStmt: 'LOCK',
  ListenStmt: 'LISTEN',
  NotifyStmt: 'NOTIFY',
  UnlistenStmt: 'UNLISTEN',
  DeclareCursorStmt: 'DECLARE',
  ClosePortalStmt: 'CLOSE',
  DiscardStmt: 'DISCARD',
  CheckPointStmt: 'CHECKPOINT',
  LoadStmt: 'LOAD',
  CommentStmt: 'COMMENT',
  SecLabelStmt: 'SECURITY LABEL',
  ReassignOwnedStmt: 'REASSIGN',
  RefreshMatViewStmt: 'REFRESH',
  ConstraintsSetStmt: 'SET',
  RenameStmt: 'ALTER',
  AlterSystemStmt: 'ALTER',
  DefineStmt: 'CREATE',
  IndexStmt: 'CREATE',
  ViewStmt: 'CREATE',
  RuleStmt: 'CREATE',
  CreatedbStmt: 'CREATE',
  DropdbStmt: 'DROP',
  DropRoleStmt: 'DROP',
  DropOwnedStmt: 'DROP',
  ImportForeignSchemaStmt: 'IMPORT',
  CreateTableAsStmt: 'CREATE',
}

function objectType(t: unknown): string {
  return typeof t === 'string' ? t.replace(/^OBJECT_/, '').replace(/_/g, ' ') : ''
}

/** The statement type and command tag of one parse-tree statement node. */
export function statementType(node: Record<string, unknown>): { statement: string; tag: string } {
  const name = Object.keys(node)[0] ?? 'Unknown'
  const body = (node[name] ?? {}) as Record<string, unknown>
  switch (name) {
    case 'TransactionStmt': {
      const s = TRANSACTION_KINDS[String(body.kind)] ?? 'TRANSACTION'
      return { statement: s.split(' ')[0] as string, tag: s }
    }
    case 'VariableSetStmt': {
      const reset = String(body.kind).startsWith('VAR_RESET')
      return { statement: reset ? 'RESET' : 'SET', tag: reset ? 'RESET' : 'SET' }
    }
    case 'GrantStmt':
    case 'GrantRoleStmt':
      return body.is_grant ? { statement: 'GRANT', tag: 'GRANT' } : { statement: 'REVOKE', tag: 'REVOKE' }
    case 'VacuumStmt':
      return body.is_vacuumcmd ? { statement: 'VACUUM', tag: 'VACUUM' } : { statement: 'ANALYZE', tag: 'ANALYZE' }
    case 'FetchStmt':
      return body.ismove ? { statement: 'MOVE', tag: 'MOVE' } : { statement: 'FETCH', tag: 'FETCH' }
    case 'DropStmt':
      return { statement: 'DROP', tag: `DROP ${objectType(body.removeType)}`.trim() }
    case 'AlterSystemStmt':
      return { statement: 'ALTER', tag: 'ALTER SYSTEM' }
    case 'CreateTableAsStmt':
      return { statement: 'CREATE', tag: objectType(body.objtype) === 'MATVIEW' ? 'CREATE MATERIALIZED VIEW' : 'CREATE TABLE AS' }
    case 'SelectStmt':
      return { statement: 'SELECT', tag: body.intoClause ? 'SELECT INTO' : 'SELECT' }
  }
  const simple = SIMPLE[name]
  if (simple) return { statement: simple, tag: simple === 'CREATE' || simple === 'ALTER' || simple === 'DROP' ? `${simple} ${humanize(name.replace(/^(Create|Alter|Drop)/, ''))}`.trim() : simple }
  const m = /^(Create|Alter|Drop)(.*?)Stmt$/.exec(name)
  if (m) {
    const verb = (m[1] as string).toUpperCase()
    return { statement: verb, tag: `${verb} ${humanize(m[2] as string)}`.trim() }
  }
  const plain = humanize(name.replace(/Stmt$/, ''))
  return { statement: plain, tag: plain }
}

function humanize(camel: string): string {
  return camel
    .replace(/Stmt$/, '')
    .replace(/([a-z])([A-Z])/g, '$1 $2')
    .toUpperCase()
}

function nameOf(list: unknown): string {
  if (!Array.isArray(list)) return ''
  return list.map((x) => ((x as { String?: { sval?: string } }).String?.sval ?? '')).join('.')
}

function describe(stmt: Record<string, unknown>, count: number): SqlFacts {
  const { statement, tag } = statementType(stmt)
  const kinds = new Set<string>()
  const tables = new Set<string>()
  const functions = new Set<string>()
  let settingRisk: string | undefined
  const walk = (value: unknown): void => {
    if (Array.isArray(value)) {
      for (const v of value) walk(v)
      return
    }
    if (value === null || typeof value !== 'object') return
    const relname = (value as { relname?: unknown }).relname
    if (typeof relname === 'string' && 'relpersistence' in value) {
      const schema = (value as { schemaname?: string }).schemaname
      tables.add(schema ? `${schema}.${relname}` : relname)
    }
    for (const [key, child] of Object.entries(value as Record<string, unknown>)) {
      if (key.endsWith('Stmt') && child !== null && typeof child === 'object') {
        kinds.add(statementType({ [key]: child }).statement)
        if (key === 'VariableSetStmt') settingRisk ??= variableSetRisk(child as VariableSet)
      } else if (key === 'FuncCall') {
        const call = child as { funcname?: unknown; args?: unknown[] }
        const name = nameOf(call.funcname)
        if (name) functions.add(name)
        if (name === 'set_config' || name === 'pg_catalog.set_config') settingRisk ??= setConfigRisk(call.args ?? [])
      }
      walk(child)
    }
  }
  walk(stmt)
  return Object.freeze({
    statement,
    tag,
    kinds: Object.freeze([...kinds]),
    tables: Object.freeze([...tables]),
    functions: Object.freeze([...functions]),
    statements: count,
    ...(settingRisk === undefined ? {} : { settingRisk }),
  })
}

interface VariableSet {
  kind?: string
  name?: string
  args?: unknown[]
}

/** The literal value of an A_Const node as text, or undefined if it is not a constant. */
function constText(node: unknown): string | undefined {
  const c = (node as { A_Const?: Record<string, unknown> } | undefined)?.A_Const
  if (!c) return undefined
  const sval = (c.sval as { sval?: string } | undefined)?.sval
  if (sval !== undefined) return sval
  const ival = (c.ival as { ival?: number } | undefined)?.ival
  if (c.ival !== undefined) return String(ival ?? 0)
  const boolval = (c.boolval as { boolval?: boolean } | undefined)?.boolval
  if (c.boolval !== undefined) return boolval ? 'on' : 'off'
  return undefined
}

export const UNSAFE_CLIENT_ENCODINGS: ReadonlySet<string> = new Set(['SJIS', 'SHIFT_JIS_2004', 'BIG5', 'GBK', 'UHC', 'GB18030', 'JOHAB', 'MSKANJI', 'SHIFTJIS', 'WIN932', 'WIN936', 'WIN949', 'WIN950', 'TCVN', 'CP932', 'CP936', 'CP949', 'CP950'])
const SAFE_ON = new Set(['on', 'true', 'yes', '1', 't', 'y'])

function settingValueRisk(name: string, value: string | undefined): string | undefined {
  const n = name.toLowerCase()
  if (n === 'standard_conforming_strings') {
    return value !== undefined && SAFE_ON.has(value.toLowerCase()) ? undefined : 'turns standard_conforming_strings off'
  }
  if (n === 'client_encoding') {
    if (value === undefined) return 'sets client_encoding to a computed value'
    return UNSAFE_CLIENT_ENCODINGS.has(value.toUpperCase().replace(/[-_]/g, (m) => (m === '-' ? '_' : m))) ? `sets client_encoding to ${value}` : undefined
  }
  return undefined
}

function variableSetRisk(v: VariableSet): string | undefined {
  if (!v.name || v.kind !== 'VAR_SET_VALUE') return undefined
  const args = v.args ?? []
  if (args.length !== 1) return settingValueRisk(v.name, undefined)
  return settingValueRisk(v.name, constText(args[0]))
}

function setConfigRisk(args: unknown[]): string | undefined {
  const name = constText(args[0])
  if (name === undefined) return 'calls set_config with a computed parameter name'
  return settingValueRisk(name, constText(args[1]))
}
