/**
 * What one parsed statement does, read from PostgreSQL's own parse tree (libpg-query): its type,
 * every statement nested in it, the tables it reads and writes, every function it calls, COPY's
 * direction and target, the code it carries (DO blocks, function bodies) and the settings it
 * changes.
 *
 * Why it is shaped this way: an attacker holding a read-only token hides what a statement does
 * from anything that looks at its surface — a DELETE inside a CTE under a SELECT, a function
 * called in an ORDER BY or a column default, a name written in Unicode escapes, a file read
 * inside a DO block. So the walk visits every node of the tree and reports what it finds
 * wherever it is; code it cannot see through is reported as opaque, never as harmless.
 */
import { parsePlPgSQLSync, parseSync } from 'libpg-query'
import { tooCostly } from './limits.js'
import { classifyFunction } from './functions.js'
import { ambiguousLiteral } from './literals.js'

/** COPY's direction and where its data comes from or goes to. */
export interface CopyFacts {
  /** `from`: into a table; `to`: out of a table or query. */
  readonly direction: 'from' | 'to'
  /** `client`: STDIN/STDOUT over the connection; `file`: a file on the server; `program`: a program the server runs. */
  readonly target: 'client' | 'file' | 'program'
  /** The file name or program command line, for `file` and `program`. */
  readonly source?: string
}

/** A SQL-level PREPARE: the name it defines and the statement it holds (whose facts are merged in). */
export interface PreparedFacts {
  readonly name: string
  readonly statement: string
  readonly tag: string
}

/** Code carried by a statement: a DO block or a function body. */
export interface CodeFacts {
  readonly language: string
  /** True when the gateway parsed the code and merged what it does into these facts. */
  readonly analysed: boolean
  /** Why the code could not be analysed, when it could not. */
  readonly why?: string
}

export interface SqlFacts {
  /** Top-level statement type: SELECT, INSERT, DROP, CREATE, SET, BEGIN, … */
  readonly statement: string
  /** Command tag PostgreSQL would report, e.g. `DROP TABLE`, `CREATE INDEX`, `ALTER SYSTEM`. */
  readonly tag: string
  /** Every statement type in the tree, including nested ones (CTEs, EXPLAIN, PREPARE, DO bodies). */
  readonly kinds: readonly string[]
  /** Command tags of every statement in the tree (`CREATE EXTENSION`, `CREATE SERVER`, …). */
  readonly tags: readonly string[]
  /** Number of statements in the query string this statement came from. */
  readonly statements: number
  /** Tables, views and sequences read (`schema.name` when qualified). */
  readonly reads: readonly string[]
  /** Relations whose data or definition the statement changes: DML targets, SELECT INTO, CREATE TABLE AS, COPY FROM, TRUNCATE, DDL targets. */
  readonly writes: readonly string[]
  /** `reads` ∪ `writes`. */
  readonly tables: readonly string[]
  /** Functions called anywhere, as the server resolves the name: `schema.name` when qualified. */
  readonly functions: readonly string[]
  /** The same functions without their schema, lower-cased: what rules match against. */
  readonly functionNames: readonly string[]
  /**
   * Names used in attribute notation, `x.name` or `(expr).name`, lower-cased. PostgreSQL resolves
   * such a name as a call `name(x)` when `x` has no field of that name, so `('/etc/passwd'::text).pg_read_file`
   * reads a file without a function-call node in the tree. Rules that deny a function by name
   * match here too (the built-in sets do).
   */
  readonly attributeNames: readonly string[]
  /**
   * The statement turns off read-only mode for a transaction or the session: BEGIN/START/SET
   * TRANSACTION … READ WRITE, SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE, or setting
   * `transaction_read_only`/`default_transaction_read_only` to anything but on.
   */
  readonly readWrite: boolean
  /** The statement takes row locks (`FOR UPDATE`, `FOR SHARE`, …). */
  readonly locking: boolean
  /** The statement changes data or state: writes is not empty, or it calls a function with side effects. */
  readonly write: boolean
  /**
   * It calls a function that changes state beyond its result (sequences, large objects,
   * advisory locks, notifications, settings, other sessions, the server: sql/functions.ts).
   */
  readonly sideEffects: boolean
  /** The statement defines, changes or removes schema objects. */
  readonly ddl: boolean
  /** COPY's direction and target, when the statement is or contains a COPY (with several, the one reaching furthest: program, then file). */
  readonly copy?: CopyFacts
  /** Code the statement carries (DO blocks, CREATE FUNCTION bodies). */
  readonly code: readonly CodeFacts[]
  /** Some of that code could not be analysed (another language, dynamic SQL, a parse error). */
  readonly opaque: boolean
  /** PL/pgSQL in the statement runs SQL built at run time (EXECUTE, FOR … IN EXECUTE, OPEN … FOR EXECUTE). */
  readonly dynamic: boolean
  /** Run-time parameters the statement sets or resets (`role`, `session_authorization`, …); `*` for RESET ALL or a computed name. */
  readonly settings: readonly string[]
  /** A function created with SECURITY DEFINER. */
  readonly securityDefiner: boolean
  /** What a SQL-level PREPARE defines: the name, and the type and tag of the statement it holds. */
  readonly prepare?: PreparedFacts
  /** Names of prepared statements a SQL-level EXECUTE runs; the adapter resolves them. */
  readonly executes: readonly string[]
  /** Every prepared-statement and cursor name the statement names at SQL level (PREPARE, EXECUTE, DEALLOCATE, DECLARE, FETCH, MOVE, CLOSE). */
  readonly names: readonly string[]
  /** Prepared statements the statement may deallocate: names, or `*` for all (DEALLOCATE ALL, DISCARD ALL). */
  readonly deallocates: readonly string[]
  /**
   * Set when the statement could switch the session to settings under which the gateway's
   * parse would no longer match the server's (standard_conforming_strings off, a client
   * encoding that can hide quotes in multibyte characters, or set_config with a computed name).
   */
  readonly settingRisk?: string
}

/** How deep DO blocks and function bodies may nest before the rest is treated as opaque. */
const MAX_CODE_DEPTH = 4

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
  ImportForeignSchemaStmt: 'IMPORT',
}

/** Statement types that define, change or remove schema objects. */
const DDL_STATEMENTS: ReadonlySet<string> = new Set(['CREATE', 'ALTER', 'DROP', 'COMMENT', 'SECURITY LABEL', 'IMPORT', 'REASSIGN'])

/** Tags for node names the generic Create/Alter/Drop rule would spell badly. */
const TAGS: Record<string, string> = {
  CreateStmt: 'CREATE TABLE',
  CreateFunctionStmt: 'CREATE FUNCTION',
  CreateExtensionStmt: 'CREATE EXTENSION',
  AlterExtensionStmt: 'ALTER EXTENSION',
  CreateForeignServerStmt: 'CREATE SERVER',
  AlterForeignServerStmt: 'ALTER SERVER',
  CreateFdwStmt: 'CREATE FOREIGN DATA WRAPPER',
  AlterFdwStmt: 'ALTER FOREIGN DATA WRAPPER',
  CreateUserMappingStmt: 'CREATE USER MAPPING',
  AlterUserMappingStmt: 'ALTER USER MAPPING',
  DropUserMappingStmt: 'DROP USER MAPPING',
  CreateForeignTableStmt: 'CREATE FOREIGN TABLE',
  ImportForeignSchemaStmt: 'IMPORT FOREIGN SCHEMA',
  CreateSubscriptionStmt: 'CREATE SUBSCRIPTION',
  AlterSubscriptionStmt: 'ALTER SUBSCRIPTION',
  DropSubscriptionStmt: 'DROP SUBSCRIPTION',
  CreatePLangStmt: 'CREATE LANGUAGE',
  CreateRoleStmt: 'CREATE ROLE',
  AlterRoleStmt: 'ALTER ROLE',
  AlterRoleSetStmt: 'ALTER ROLE',
  DropRoleStmt: 'DROP ROLE',
  AlterSystemStmt: 'ALTER SYSTEM',
  AlterOwnerStmt: 'ALTER OWNER',
  AlterDefaultPrivilegesStmt: 'ALTER DEFAULT PRIVILEGES',
  IndexStmt: 'CREATE INDEX',
  ViewStmt: 'CREATE VIEW',
  RuleStmt: 'CREATE RULE',
  CreateTrigStmt: 'CREATE TRIGGER',
  CreateEventTrigStmt: 'CREATE EVENT TRIGGER',
  CreatedbStmt: 'CREATE DATABASE',
  DropdbStmt: 'DROP DATABASE',
  DropOwnedStmt: 'DROP OWNED',
  ReassignOwnedStmt: 'REASSIGN OWNED',
  DefineStmt: 'CREATE',
  RenameStmt: 'ALTER',
  CreateSchemaStmt: 'CREATE SCHEMA',
  CreateSeqStmt: 'CREATE SEQUENCE',
  AlterSeqStmt: 'ALTER SEQUENCE',
  AlterTableStmt: 'ALTER TABLE',
  CreatePolicyStmt: 'CREATE POLICY',
  AlterPolicyStmt: 'ALTER POLICY',
  CreatePublicationStmt: 'CREATE PUBLICATION',
  AlterPublicationStmt: 'ALTER PUBLICATION',
}

function objectType(t: unknown): string {
  return typeof t === 'string' ? t.replace(/^OBJECT_/, '').replace(/_/g, ' ') : ''
}

function humanize(camel: string): string {
  return camel.replace(/([a-z])([A-Z])/g, '$1 $2').toUpperCase()
}

/** The statement type and command tag of one parse-tree statement node. */
export function statementType(node: Record<string, unknown>): { statement: string; tag: string } {
  const name = Object.keys(node)[0] ?? 'Unknown'
  const body = (node[name] ?? {}) as Record<string, unknown>
  switch (name) {
    case 'TransactionStmt': {
      const s = TRANSACTION_KINDS[String(body.kind)] ?? 'TRANSACTION'
      // Two-phase commands act on other sessions' transactions: their type is the whole tag, so
      // an allow list with COMMIT or ROLLBACK does not admit COMMIT PREPARED.
      if (body.kind === 'TRANS_STMT_ROLLBACK_TO') return { statement: s, tag: 'ROLLBACK TO SAVEPOINT' }
      return { statement: s, tag: s }
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
    case 'CreateTableAsStmt':
      return { statement: 'CREATE', tag: objectType(body.objtype) === 'MATVIEW' ? 'CREATE MATERIALIZED VIEW' : 'CREATE TABLE AS' }
    case 'SelectStmt':
      return { statement: 'SELECT', tag: body.intoClause ? 'SELECT INTO' : 'SELECT' }
    case 'CreateFunctionStmt':
      return { statement: 'CREATE', tag: body.is_procedure ? 'CREATE PROCEDURE' : 'CREATE FUNCTION' }
  }
  const tag = TAGS[name]
  const simple = SIMPLE[name]
  if (simple) return { statement: simple, tag: tag ?? simple }
  const m = /^(Create|Alter|Drop)(.*?)Stmt$/.exec(name)
  if (m) {
    const verb = (m[1] as string).toUpperCase()
    return { statement: verb, tag: tag ?? `${verb} ${humanize(m[2] as string)}`.trim() }
  }
  if (tag) return { statement: tag.split(' ')[0] as string, tag }
  const plain = humanize(name.replace(/Stmt$/, ''))
  return { statement: plain, tag: plain }
}

function stringsOf(list: unknown): string[] {
  if (!Array.isArray(list)) return []
  return list.map((x) => (x as { String?: { sval?: string } }).String?.sval ?? '')
}

function nameOf(list: unknown): string {
  return stringsOf(list).join('.')
}

interface RangeVarNode {
  relname: string
  schemaname?: string
  catalogname?: string
}

function relationName(rv: RangeVarNode): string {
  return rv.schemaname ? `${rv.schemaname}.${rv.relname}` : rv.relname
}

/** DROP object types whose objects are relations. */
const RELATION_DROPS: ReadonlySet<string> = new Set(['OBJECT_TABLE', 'OBJECT_VIEW', 'OBJECT_MATVIEW', 'OBJECT_SEQUENCE', 'OBJECT_INDEX', 'OBJECT_FOREIGN_TABLE'])

const COPY_REACH = { client: 0, file: 1, program: 2 } as const

/** Mutable accumulator of one statement's facts while its tree is walked. */
class Collector {
  readonly kinds = new Set<string>()
  readonly tags = new Set<string>()
  readonly reads = new Set<string>()
  readonly writes = new Set<string>()
  readonly functions = new Set<string>()
  readonly functionNames = new Set<string>()
  readonly attributeNames = new Set<string>()
  readonly settings = new Set<string>()
  readonly code: CodeFacts[] = []
  readonly executes = new Set<string>()
  readonly names = new Set<string>()
  readonly deallocates = new Set<string>()
  copy: CopyFacts | undefined
  opaque = false
  dynamic = false
  ddl = false
  securityDefiner = false
  sideEffects = false
  locking = false
  readWrite = false
  prepare: PreparedFacts | undefined
  settingRisk: string | undefined
  /** RangeVar nodes that are write targets, marked by their parent before the walk reaches them. */
  private readonly writeTargets = new WeakSet<object>()

  constructor(private readonly depth: number) {}

  /** Several COPYs (in a DO block): the one that reaches furthest is reported. */
  noteCopy(copy: CopyFacts): void {
    if (!this.copy || COPY_REACH[copy.target] > COPY_REACH[this.copy.target]) this.copy = copy
  }

  addFunction(qualified: string): void {
    if (!qualified) return
    this.functions.add(qualified)
    const dot = qualified.lastIndexOf('.')
    const name = (dot < 0 ? qualified : qualified.slice(dot + 1)).toLowerCase()
    this.functionNames.add(name)
    this.classify(name)
  }

  /** What calling `name` does beyond its result (a call or, for one argument, attribute notation). */
  private classify(name: string): void {
    const c = classifyFunction(name)
    if (!c) return
    this.sideEffects ||= c.sideEffects
    if (c.runsSql && !this.code.some((x) => x.why?.endsWith(`(${name})`))) {
      this.dynamic = true
      this.opaqueCode('sql', `runs SQL or reads relations named at run time (${name})`)
    }
  }

  /** Walks any node; `scope` holds the CTE names visible here (a bare name in it is not a table). */
  walk(value: unknown, scope: ReadonlySet<string>): void {
    if (Array.isArray(value)) {
      for (const v of value) this.walk(v, scope)
      return
    }
    if (value === null || typeof value !== 'object') return
    const node = value as Record<string, unknown>
    if (typeof node.relname === 'string' && 'relpersistence' in node) this.relation(node as unknown as RangeVarNode, scope)
    let inner = scope
    const withClause = node.withClause as { ctes?: unknown[]; recursive?: boolean } | undefined
    if (withClause && Array.isArray(withClause.ctes)) inner = this.withClause(withClause, scope)
    for (const key in node) {
      if (key === 'withClause') continue
      const child = node[key]
      if (child === null || typeof child !== 'object') continue
      if (key.endsWith('Stmt') && !Array.isArray(child)) this.statement(key, child as Record<string, unknown>)
      else if (key === 'FuncCall') this.funcCall(child as { funcname?: unknown; args?: unknown[] })
      else if (key === 'ColumnRef') this.attributes(stringsOf((child as { fields?: unknown }).fields).slice(1))
      else if (key === 'A_Indirection') this.attributes(stringsOf((child as { indirection?: unknown }).indirection))
      else if (key === 'lockingClause') this.locking = true
      this.walk(child, inner)
    }
  }

  private relation(rv: RangeVarNode, scope: ReadonlySet<string>): void {
    if (this.writeTargets.has(rv)) {
      this.writes.add(relationName(rv))
      return
    }
    if (!rv.schemaname && scope.has(rv.relname)) return
    this.reads.add(relationName(rv))
  }

  private withClause(w: { ctes?: unknown[]; recursive?: boolean }, scope: ReadonlySet<string>): ReadonlySet<string> {
    const ctes = (w.ctes ?? []).map((c) => (c as { CommonTableExpr?: { ctename?: string; ctequery?: unknown } }).CommonTableExpr ?? {})
    const all = new Set(scope)
    for (const c of ctes) if (c.ctename) all.add(c.ctename)
    // A non-recursive CTE sees only the CTEs before it; a bare name of a later one is a table.
    const seen = new Set(scope)
    for (const c of ctes) {
      this.walk(c.ctequery, w.recursive ? all : seen)
      if (c.ctename) seen.add(c.ctename)
    }
    return all
  }

  private markWrite(rv: unknown): void {
    if (rv !== null && typeof rv === 'object') this.writeTargets.add(rv)
  }

  private attributes(names: readonly string[]): void {
    for (const n of names) {
      if (!n) continue
      this.attributeNames.add(n.toLowerCase())
      this.classify(n.toLowerCase())
    }
  }

  private funcCall(call: { funcname?: unknown; args?: unknown[] }): void {
    const parts = stringsOf(call.funcname)
    this.addFunction(parts.join('.'))
    // Whatever qualifies it (`pg_catalog.`, `db.pg_catalog.`), the server may resolve it to the real one.
    if (parts[parts.length - 1]?.toLowerCase() === 'set_config') {
      const param = constText(call.args?.[0])
      this.settings.add(param === undefined ? '*' : param.toLowerCase())
      if (param === undefined || (READ_ONLY_SETTINGS.has(param.toLowerCase()) && !isOn(constText(call.args?.[1])))) this.readWrite = true
      this.settingRisk ??= setConfigRisk(call.args ?? [])
    }
  }

  /** Called for every statement node, top-level or nested, before its children are walked. */
  statement(key: string, body: Record<string, unknown>): void {
    const { statement, tag } = statementType({ [key]: body })
    this.kinds.add(statement)
    this.tags.add(tag)
    if (DDL_STATEMENTS.has(statement)) this.ddl = true
    switch (key) {
      case 'InsertStmt':
      case 'UpdateStmt':
      case 'DeleteStmt':
      case 'MergeStmt':
      case 'CreateStmt':
      case 'AlterTableStmt':
      case 'RenameStmt':
      case 'IndexStmt':
      case 'RefreshMatViewStmt':
      case 'CreateTrigStmt':
      case 'RuleStmt':
      case 'ClusterStmt':
        this.markWrite(body.relation)
        break
      case 'CreateForeignTableStmt':
        this.markWrite((body.base as { relation?: unknown } | undefined)?.relation)
        break
      case 'ViewStmt':
        this.markWrite(body.view)
        break
      case 'CreatePolicyStmt':
      case 'AlterPolicyStmt':
        this.markWrite(body.table)
        break
      case 'TruncateStmt':
        for (const r of (body.relations as unknown[]) ?? []) this.markWrite((r as { RangeVar?: unknown }).RangeVar)
        break
      case 'SelectStmt':
        this.markWrite((body.intoClause as { rel?: unknown } | undefined)?.rel)
        break
      case 'CreateTableAsStmt':
        this.markWrite((body.into as { IntoClause?: { rel?: unknown } } | undefined)?.IntoClause?.rel ?? (body.into as { rel?: unknown } | undefined)?.rel)
        break
      case 'DropStmt':
        if (RELATION_DROPS.has(String(body.removeType))) for (const o of (body.objects as unknown[]) ?? []) this.writes.add(nameOf((o as { List?: { items?: unknown } }).List?.items))
        break
      case 'CopyStmt': {
        const from = body.is_from === true
        if (from) this.markWrite(body.relation)
        const target = body.is_program ? 'program' : typeof body.filename === 'string' ? 'file' : 'client'
        this.noteCopy({ direction: from ? 'from' : 'to', target, ...(target === 'client' ? {} : { source: String(body.filename) }) })
        break
      }
      case 'VariableSetStmt': {
        const v = body as VariableSet
        if (v.kind === 'VAR_SET_MULTI') {
          // SET TRANSACTION … / SET SESSION CHARACTERISTICS AS TRANSACTION …: name what it changes.
          const session = v.name === 'SESSION CHARACTERISTICS'
          for (const o of transactionOptions(v.args)) this.settings.add(session ? `default_${o}` : o)
          this.readWrite ||= setsReadWrite(v.args)
        } else {
          this.settings.add(v.kind === 'VAR_RESET_ALL' || !v.name ? '*' : v.name.toLowerCase())
          if (v.name && READ_ONLY_SETTINGS.has(v.name.toLowerCase()) && (v.kind !== 'VAR_SET_VALUE' || !isOn(constText(v.args?.[0])))) this.readWrite = true
        }
        this.settingRisk ??= variableSetRisk(v)
        break
      }
      case 'TransactionStmt':
        for (const o of transactionOptions(body.options as unknown[] | undefined)) this.settings.add(o)
        this.readWrite ||= setsReadWrite(body.options as unknown[] | undefined)
        break
      case 'PrepareStmt':
        if (typeof body.name === 'string' && body.query) this.prepare ??= Object.freeze({ name: body.name, ...statementType(body.query as Record<string, unknown>) })
        if (typeof body.name === 'string') this.names.add(body.name)
        break
      case 'ExecuteStmt':
        if (typeof body.name === 'string') {
          this.executes.add(body.name)
          this.names.add(body.name)
        }
        break
      case 'DeallocateStmt':
        if (typeof body.name === 'string') {
          this.names.add(body.name)
          this.deallocates.add(body.name)
        } else this.deallocates.add('*')
        break
      case 'DiscardStmt':
        if (body.target === 'DISCARD_ALL') this.deallocates.add('*')
        break
      case 'DeclareCursorStmt':
      case 'FetchStmt':
      case 'ClosePortalStmt':
        if (typeof body.portalname === 'string') this.names.add(body.portalname)
        break
      case 'DoStmt':
        this.doBlock(body)
        break
      case 'CallStmt':
        // The procedure's FuncCall sits under `funccall`, not under a `FuncCall` key.
        if (body.funccall) this.funcCall(body.funccall as { funcname?: unknown; args?: unknown[] })
        break
      case 'CreateFunctionStmt':
        this.functionBody(body)
        break
    }
    if (key === 'CreateTrigStmt' || key === 'CreateEventTrigStmt') this.addFunction(nameOf(body.funcname))
  }

  private doBlock(body: Record<string, unknown>): void {
    let language = 'plpgsql'
    let source: string | undefined
    for (const o of (body.args as unknown[]) ?? []) {
      const d = (o as { DefElem?: { defname?: string; arg?: { String?: { sval?: string } } } }).DefElem
      if (d?.defname === 'language') language = (d.arg?.String?.sval ?? '').toLowerCase()
      if (d?.defname === 'as') source = d.arg?.String?.sval
    }
    if (source === undefined) return this.opaqueCode(language, 'no body')
    if (language !== 'plpgsql') return this.opaqueCode(language, `the gateway cannot analyse ${language} code`)
    const ambiguous = ambiguousLiteral(source)
    if (ambiguous) return this.opaqueCode(language, ambiguous)
    const tag = dollarTag(source)
    this.plpgsql(`CREATE FUNCTION gatehouse_do() RETURNS void LANGUAGE plpgsql AS ${tag}${source}${tag}`, language)
  }

  private functionBody(body: Record<string, unknown>): void {
    let language = 'sql'
    let source: string[] = []
    for (const o of (body.options as unknown[]) ?? []) {
      const d = (o as { DefElem?: { defname?: string; arg?: Record<string, unknown> } }).DefElem
      if (d?.defname === 'language') language = ((d.arg?.String as { sval?: string } | undefined)?.sval ?? '').toLowerCase()
      if (d?.defname === 'as') source = stringsOf((d.arg?.List as { items?: unknown } | undefined)?.items)
      if (d?.defname === 'security' && (d.arg?.Boolean as { boolval?: boolean } | undefined)?.boolval) this.securityDefiner = true
    }
    // BEGIN ATOMIC bodies are part of the tree (sql_body) and are walked like any other node.
    if (body.sql_body !== undefined && source.length === 0) return
    if (source.length === 0) return this.opaqueCode(language, 'no body')
    // The body is read when it runs, under whatever standard_conforming_strings is then.
    const ambiguous = ambiguousLiteral(source.join('\n'))
    if (ambiguous && (language === 'sql' || language === 'plpgsql')) return this.opaqueCode(language, ambiguous)
    if (language === 'sql') {
      const merged = this.nested(source[0] as string)
      if (!merged) this.opaqueCode(language, 'the function body could not be parsed')
      else this.code.push({ language, analysed: true })
      return
    }
    if (language !== 'plpgsql') return this.opaqueCode(language, `the gateway cannot analyse ${language} code`)
    const tag = dollarTag(source[0] as string)
    this.plpgsql(`CREATE FUNCTION gatehouse_fn() RETURNS SETOF record LANGUAGE plpgsql AS ${tag}${source[0] as string}${tag}`, language)
  }

  opaqueCode(language: string, why: string): void {
    this.opaque = true
    this.code.push({ language, analysed: false, why })
  }

  /** Parses PL/pgSQL and merges the facts of every SQL statement and expression inside it. */
  private plpgsql(createText: string, language: string): void {
    if (this.depth >= MAX_CODE_DEPTH) return this.opaqueCode(language, 'code nested too deeply')
    // The body was unescaped by the parser (E'\x2f\x2a…'): check it again before parsing it.
    const costly = tooCostly(createText)
    if (costly) return this.opaqueCode(language, costly)
    let tree: unknown
    try {
      tree = parsePlPgSQLSync(createText)
    } catch (err) {
      return this.opaqueCode(language, `PL/pgSQL parse error: ${(err as Error).message}`)
    }
    let ok = true
    const visit = (value: unknown): void => {
      if (Array.isArray(value)) {
        for (const v of value) visit(v)
        return
      }
      if (value === null || typeof value !== 'object') return
      for (const [key, child] of Object.entries(value as Record<string, unknown>)) {
        if (key === 'PLpgSQL_stmt_dynexecute' || key === 'PLpgSQL_stmt_dynfors' || ((key === 'PLpgSQL_stmt_open' || key === 'PLpgSQL_stmt_return_query') && (child as { dynquery?: unknown }).dynquery)) {
          this.dynamic = true
        }
        if (key === 'PLpgSQL_expr') {
          const e = child as { query?: string; parseMode?: number }
          if (typeof e.query === 'string' && !this.embedded(e.query, e.parseMode ?? 0)) ok = false
          continue
        }
        visit(child)
      }
    }
    visit(tree)
    if (this.dynamic) this.opaqueCode(language, 'runs SQL built at run time (EXECUTE)')
    else if (!ok) this.opaqueCode(language, 'an embedded statement could not be parsed')
    else this.code.push({ language, analysed: true })
  }

  /**
   * One SQL text embedded in PL/pgSQL. parseMode 0 is a whole statement, 2 an expression, 3–5 an
   * assignment `target := expr` (or `=`), whose target may hold subscript expressions.
   */
  private embedded(query: string, parseMode: number): boolean {
    if (parseMode === 0) return this.nested(query)
    if (parseMode >= 3 && parseMode <= 5) {
      const at = assignmentOperator(query)
      if (!at) return false
      return this.nested(`SELECT ${query.slice(0, at.start)}, ${query.slice(at.end)}`)
    }
    return this.nested(`SELECT ${query}`)
  }

  /** Parses `text` and merges the facts of its statements into this one. */
  private nested(text: string): boolean {
    if (tooCostly(text)) return false
    let stmts: { stmt?: Record<string, unknown> }[]
    try {
      stmts = (parseSync(text) as { stmts?: { stmt?: Record<string, unknown> }[] }).stmts ?? []
    } catch {
      return false
    }
    for (const raw of stmts) this.mergeFrom(describeStatement(raw.stmt ?? {}, 1, this.depth + 1))
    return true
  }

  mergeFrom(f: SqlFacts): void {
    for (const k of f.kinds) this.kinds.add(k)
    for (const t of f.tags) this.tags.add(t)
    for (const t of f.reads) this.reads.add(t)
    for (const t of f.writes) this.writes.add(t)
    for (const fn of f.functions) this.addFunction(fn)
    for (const a of f.attributeNames) this.attributeNames.add(a)
    this.locking ||= f.locking
    this.readWrite ||= f.readWrite
    for (const s of f.settings) this.settings.add(s)
    for (const e of f.executes) this.executes.add(e)
    for (const n of f.names) this.names.add(n)
    for (const d of f.deallocates) this.deallocates.add(d)
    this.code.push(...f.code)
    if (f.copy) this.noteCopy(f.copy)
    this.opaque ||= f.opaque
    this.dynamic ||= f.dynamic
    this.ddl ||= f.ddl
    this.securityDefiner ||= f.securityDefiner
    this.sideEffects ||= f.sideEffects
    this.settingRisk ??= f.settingRisk
  }
}

/** `transaction_isolation`, `transaction_read_only`, … set by BEGIN/SET TRANSACTION options. */
function transactionOptions(options: unknown[] | undefined): string[] {
  const out: string[] = []
  for (const o of options ?? []) {
    const name = (o as { DefElem?: { defname?: string } }).DefElem?.defname
    if (name) out.push(name.toLowerCase())
  }
  return out
}

const READ_ONLY_SETTINGS: ReadonlySet<string> = new Set(['transaction_read_only', 'default_transaction_read_only'])

/** A BEGIN/SET TRANSACTION option list that says READ WRITE. */
function setsReadWrite(options: unknown[] | undefined): boolean {
  for (const o of options ?? []) {
    const d = (o as { DefElem?: { defname?: string; arg?: unknown } }).DefElem
    if (d?.defname === 'transaction_read_only' && constText(d.arg) !== '1') return true
  }
  return false
}

function isOn(value: string | undefined): boolean {
  return value !== undefined && SAFE_ON.has(value.toLowerCase())
}

/** A dollar-quote tag that does not occur in `body`. */
function dollarTag(body: string): string {
  let tag = '$gh$'
  for (let i = 0; body.includes(tag); i++) tag = `$gh${i}$`
  return tag
}

/** The first `:=` or `=` outside brackets, parentheses and quotes. */
function assignmentOperator(text: string): { start: number; end: number } | undefined {
  let depth = 0
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (c === "'" || c === '"') {
      const close = text.indexOf(c, i + 1)
      if (close < 0) return undefined
      i = close
    } else if (c === '[' || c === '(') depth++
    else if (c === ']' || c === ')') depth--
    else if (depth === 0 && c === ':' && text[i + 1] === '=') return { start: i, end: i + 2 }
    else if (depth === 0 && c === '=') return { start: i, end: i + 1 }
  }
  return undefined
}

/** The facts of one statement node of a parse tree. */
export function describeStatement(stmt: Record<string, unknown>, count: number, depth = 0): SqlFacts {
  const { statement, tag } = statementType(stmt)
  const c = new Collector(depth)
  // The walk meets the top-level node's key (`SelectStmt`, …) like any nested statement's.
  c.walk(stmt, new Set())
  return freezeFacts(c, statement, tag, count)
}

function freezeFacts(c: Collector, statement: string, tag: string, count: number): SqlFacts {
  const reads = [...c.reads]
  const writes = [...c.writes].filter((w) => w !== '')
  return Object.freeze({
    statement,
    tag,
    kinds: Object.freeze([...c.kinds]),
    tags: Object.freeze([...c.tags]),
    statements: count,
    reads: Object.freeze(reads),
    writes: Object.freeze(writes),
    tables: Object.freeze([...new Set([...reads, ...writes])]),
    functions: Object.freeze([...c.functions]),
    functionNames: Object.freeze([...c.functionNames]),
    attributeNames: Object.freeze([...c.attributeNames]),
    locking: c.locking,
    readWrite: c.readWrite,
    write: writes.length > 0 || c.sideEffects,
    sideEffects: c.sideEffects,
    ddl: c.ddl,
    ...(c.copy ? { copy: Object.freeze(c.copy) } : {}),
    code: Object.freeze(c.code.map((x) => Object.freeze(x))),
    opaque: c.opaque,
    dynamic: c.dynamic,
    settings: Object.freeze([...c.settings]),
    securityDefiner: c.securityDefiner,
    ...(c.prepare === undefined ? {} : { prepare: c.prepare }),
    executes: Object.freeze([...c.executes]),
    names: Object.freeze([...c.names]),
    deallocates: Object.freeze([...c.deallocates]),
    ...(c.settingRisk === undefined ? {} : { settingRisk: c.settingRisk }),
  })
}

/**
 * The facts of `outer` with those of the statements it executes merged in: a SQL-level EXECUTE
 * (or an EXPLAIN ANALYZE EXECUTE, a CREATE TABLE … AS EXECUTE) is judged by what it runs.
 */
export function mergeExecuted(outer: SqlFacts, executed: readonly SqlFacts[]): SqlFacts {
  if (executed.length === 0) return outer
  const c = new Collector(0)
  c.mergeFrom(outer)
  for (const f of executed) c.mergeFrom(f)
  const top = executed.length === 1 && outer.statement === 'EXECUTE' ? (executed[0] as SqlFacts) : outer
  return freezeFacts(c, top.statement, outer.tag, outer.statements)
}

/**
 * The facts a later EXECUTE of a PREPARE'd name runs: the PREPARE's facts (which merged those of
 * the statement it holds) under the held statement's type and tag.
 */
export function preparedFacts(prepare: SqlFacts): SqlFacts | undefined {
  const p = prepare.prepare
  if (!p) return undefined
  const c = new Collector(0)
  c.mergeFrom(prepare)
  c.kinds.delete('PREPARE')
  c.tags.delete('PREPARE')
  return freezeFacts(c, p.statement, p.tag, 1)
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

/**
 * The client encodings the gateway reads SQL text in: UTF-8, by every name PostgreSQL accepts for
 * it once it has dropped punctuation and case (`utf8`, `UTF-8`, `unicode`). Any other encoding
 * would have the server read bytes the gateway decoded as UTF-8 as other characters (and some,
 * like SJIS or BIG5, can hide a quote or backslash inside a multibyte character).
 */
export function isAcceptedClientEncoding(name: string): boolean {
  const n = name.toUpperCase().replace(/[^A-Z0-9]/g, '')
  return n === 'UTF8' || n === 'UNICODE'
}
const SAFE_ON = new Set(['on', 'true', 'yes', '1', 't', 'y'])

function settingValueRisk(name: string, value: string | undefined): string | undefined {
  const n = name.toLowerCase()
  if (n === 'standard_conforming_strings') {
    return value !== undefined && SAFE_ON.has(value.toLowerCase()) ? undefined : 'turns standard_conforming_strings off'
  }
  if (n === 'client_encoding') {
    if (value === undefined) return 'sets client_encoding to a computed value'
    return isAcceptedClientEncoding(value) ? undefined : `sets client_encoding to ${value}`
  }
  return undefined
}

function variableSetRisk(v: VariableSet): string | undefined {
  if (!v.name || v.kind !== 'VAR_SET_VALUE') return undefined
  const args = v.args ?? []
  if (args.length !== 1) return settingValueRisk(v.name, undefined)
  return settingValueRisk(v.name, constText(args[0]))
}

/**
 * set_config with a computed name (pg_dump's `set_config(name, 'view, foreign-table', false) FROM
 * pg_settings WHERE name = …`) can only hurt when its value could turn one of the settings the
 * gateway reads text under to something it cannot read: a spelling of boolean false
 * (standard_conforming_strings) or an encoding name other than UTF-8 (client_encoding). Any
 * other constant value is harmless to the gateway, and the call is judged by policy as usual.
 */
function setConfigRisk(args: unknown[]): string | undefined {
  const name = constText(args[0])
  const value = constText(args[1])
  if (name !== undefined) return settingValueRisk(name, value)
  if (value === undefined) return 'calls set_config with a computed parameter name and value'
  if (couldBeFalse(value) || couldBeEncoding(value)) return `calls set_config with a computed parameter name and the value '${value}', which could turn standard_conforming_strings off or change client_encoding`
  return undefined
}

/** Every spelling PostgreSQL's parse_bool reads as false: a prefix of false, no, off (at least "of"), or 0. */
function couldBeFalse(value: string): boolean {
  const v = value.trim().toLowerCase()
  if (v === '') return false
  return 'false'.startsWith(v) || 'no'.startsWith(v) || (v.length >= 2 && 'off'.startsWith(v)) || v === '0'
}

/** A value shaped like an encoding name (letters, digits, '-' and '_') that is not UTF-8. */
function couldBeEncoding(value: string): boolean {
  const v = value.trim()
  return /^[A-Za-z0-9_-]+$/.test(v) && !isAcceptedClientEncoding(v)
}
