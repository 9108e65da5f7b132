/**
 * What a MongoDB command does, for policy: its name, database, the collections it reads and
 * writes (including those reached from pipelines: $lookup, $graphLookup, $unionWith, $out,
 * $merge, views), whether it writes, runs JavaScript on the server, administers the server,
 * the filter's field names, and its options that matter (bypassDocumentValidation, allowDiskUse,
 * transactions).
 *
 * The command is read as the server reads it: its name is the body's first field (aliases
 * folded to one name), its database is `$db`, and a flag counts as set whenever the server's
 * `trueValue` would call it true (any number but 0, any string). Server-side JavaScript is looked
 * for everywhere in the document, not only where it can run today: a `$where` nested inside an
 * `$elemMatch`, a `$function` in an update pipeline, a JavaScript code value anywhere. A command
 * the gateway does not know is marked `unknown`: what it touches cannot be said.
 */
import { Code, type Document } from 'bson'

/** The attributes of one command (`request.attrs.mongo`). */
export interface MongoFacts {
  command: string
  database: string
  /** The collection the command names, when it names one. */
  collection?: string
  /** Namespaces (`db.collection`) read, the named one included. */
  reads: string[]
  /** Namespaces written. */
  writes: string[]
  /** Collection names touched (reads and writes, without the database). */
  collections: string[]
  write: boolean
  js: boolean
  /** The JavaScript operators found ($where, $function, $accumulator, mapReduce, code). */
  jsOperators: string[]
  admin: boolean
  unknown: boolean
  /** Reaches a collection other than the one it names (or another database). */
  crossCollection: boolean
  /** Aggregation stages used, in every pipeline of the command. */
  stages: string[]
  /** Field names the filter(s) test, dotted as written. */
  filterFields: string[]
  /** Query operators the filter(s) use ($gt, $in, $expr …). */
  filterOperators: string[]
  bypassDocumentValidation: boolean
  allowDiskUse: boolean
  /** `start` (startTransaction), `commit`, `abort`, `in` (a later command of a transaction). */
  transaction?: 'start' | 'commit' | 'abort' | 'in'
  /** For `explain`: the command explained (its facts are merged into these). */
  explains?: string
}

interface CommandInfo {
  /** The first field's value is a collection name. */
  readonly collection?: boolean
  readonly write?: boolean
  readonly admin?: boolean
  readonly js?: boolean
  /** Answers with a cursor the session may getMore. */
  readonly cursor?: boolean
}

const READ: CommandInfo = { collection: true }
const CURSOR_READ: CommandInfo = { collection: true, cursor: true }
const WRITE: CommandInfo = { collection: true, write: true }
const DB_WRITE: CommandInfo = { write: true }
const ADMIN: CommandInfo = { admin: true }
const ADMIN_WRITE: CommandInfo = { admin: true, write: true }
const PLAIN: CommandInfo = {}

/** Commands by their canonical name. */
const COMMANDS: ReadonlyMap<string, CommandInfo> = new Map<string, CommandInfo>([
  ['find', CURSOR_READ],
  ['aggregate', CURSOR_READ],
  ['count', READ],
  ['distinct', READ],
  ['listIndexes', CURSOR_READ],
  ['collStats', READ],
  ['validate', READ],
  ['listCollections', { cursor: true }],
  ['listDatabases', PLAIN],
  ['dbStats', PLAIN],
  ['buildInfo', PLAIN],
  ['connectionStatus', PLAIN],
  ['hostInfo', PLAIN],
  ['serverStatus', PLAIN],
  ['getLastError', PLAIN],
  ['endSessions', PLAIN],
  ['startSession', PLAIN],
  ['refreshSessions', PLAIN],
  ['killSessions', ADMIN_WRITE],
  ['commitTransaction', PLAIN],
  ['abortTransaction', PLAIN],
  ['whatsmyuri', PLAIN],
  ['getParameter', PLAIN],
  ['atlasVersion', PLAIN],
  ['features', PLAIN],
  ['lockInfo', PLAIN],
  ['explain', PLAIN],
  ['insert', WRITE],
  ['update', WRITE],
  ['delete', WRITE],
  ['findAndModify', WRITE],
  ['create', WRITE],
  ['drop', WRITE],
  ['createIndexes', WRITE],
  ['dropIndexes', WRITE],
  ['collMod', WRITE],
  ['compact', { collection: true, write: true, admin: true }],
  ['convertToCapped', WRITE],
  ['cloneCollectionAsCapped', WRITE],
  ['reIndex', WRITE],
  ['dropDatabase', DB_WRITE],
  ['bulkWrite', ADMIN_WRITE],
  ['mapReduce', { collection: true, js: true }],
  ['renameCollection', ADMIN_WRITE],
  ['applyOps', ADMIN_WRITE],
  ['createUser', ADMIN_WRITE],
  ['updateUser', ADMIN_WRITE],
  ['dropUser', ADMIN_WRITE],
  ['dropAllUsersFromDatabase', ADMIN_WRITE],
  ['grantRolesToUser', ADMIN_WRITE],
  ['revokeRolesFromUser', ADMIN_WRITE],
  ['createRole', ADMIN_WRITE],
  ['updateRole', ADMIN_WRITE],
  ['dropRole', ADMIN_WRITE],
  ['dropAllRolesFromDatabase', ADMIN_WRITE],
  ['grantPrivilegesToRole', ADMIN_WRITE],
  ['revokePrivilegesFromRole', ADMIN_WRITE],
  ['grantRolesToRole', ADMIN_WRITE],
  ['revokeRolesFromRole', ADMIN_WRITE],
  ['usersInfo', ADMIN],
  ['rolesInfo', ADMIN],
  ['setParameter', ADMIN_WRITE],
  ['setClusterParameter', ADMIN_WRITE],
  ['getClusterParameter', ADMIN],
  ['shutdown', ADMIN_WRITE],
  ['fsync', ADMIN_WRITE],
  ['fsyncUnlock', ADMIN_WRITE],
  ['eval', { admin: true, write: true, js: true }],
  ['$eval', { admin: true, write: true, js: true }],
  ['logRotate', ADMIN],
  ['killOp', ADMIN_WRITE],
  ['killAllSessions', ADMIN_WRITE],
  ['killAllSessionsByPattern', ADMIN_WRITE],
  ['currentOp', ADMIN],
  ['top', ADMIN],
  ['profile', ADMIN_WRITE],
  ['getLog', ADMIN],
  ['getCmdLineOpts', ADMIN],
  ['setFeatureCompatibilityVersion', ADMIN_WRITE],
  ['setDefaultRWConcern', ADMIN_WRITE],
  ['getDefaultRWConcern', ADMIN],
  ['configureFailPoint', ADMIN_WRITE],
  ['replSetGetStatus', ADMIN],
  ['replSetGetConfig', ADMIN],
  ['replSetReconfig', ADMIN_WRITE],
  ['replSetStepDown', ADMIN_WRITE],
  ['replSetFreeze', ADMIN_WRITE],
  ['replSetInitiate', ADMIN_WRITE],
  ['replSetResizeOplog', ADMIN_WRITE],
  ['replSetMaintenance', ADMIN_WRITE],
  ['addShard', ADMIN_WRITE],
  ['removeShard', ADMIN_WRITE],
  ['enableSharding', ADMIN_WRITE],
  ['shardCollection', ADMIN_WRITE],
  ['movePrimary', ADMIN_WRITE],
  ['moveChunk', ADMIN_WRITE],
  ['cloneCollection', ADMIN_WRITE],
  ['clone', ADMIN_WRITE],
  ['copydb', ADMIN_WRITE],
  ['repairDatabase', ADMIN_WRITE],
  ['createSearchIndexes', WRITE],
  ['dropSearchIndex', WRITE],
  ['updateSearchIndex', WRITE],
])

/** Names the server also accepts for a command (the server matches names exactly). */
const ALIASES: ReadonlyMap<string, string> = new Map([
  ['findandmodify', 'findAndModify'],
  ['mapreduce', 'mapReduce'],
  ['dropIndex', 'dropIndexes'],
  ['deleteIndexes', 'dropIndexes'],
  ['getlasterror', 'getLastError'],
  ['buildinfo', 'buildInfo'],
  ['isMaster', 'hello'],
  ['ismaster', 'hello'],
])

/** Operators whose argument is JavaScript the server runs. */
const JS_OPERATORS = new Set(['$where', '$function', '$accumulator', '$_internalJsEmit', '$_internalJsReduce'])
/** Aggregation stages that read or report beyond the collection and the caller's own work. */
const ADMIN_STAGES = new Set(['$currentOp', '$listLocalSessions', '$listSessions', '$listSampledQueries', '$shardedDataDistribution', '$querySettings', '$listClusterCatalog', '$listCatalog', '$queryStats', '$backupCursor', '$backupCursorExtend'])
/** Deepest nesting of pipelines and filters the analysis follows; deeper, the command is marked unknown (the server allows 20 sub-pipelines). */
const MAX_PIPELINE_DEPTH = 24
const MAX_FILTER_DEPTH = 64

/** The command name the server will run: the body's first field, aliases folded. */
export function commandName(doc: Document): string {
  for (const key in doc) return ALIASES.get(key) ?? key
  return ''
}

/** Whether the command answers with a cursor the session may continue with getMore. */
export const opensCursor = (name: string): boolean => COMMANDS.get(name)?.cursor === true

/** BSONElement::trueValue: false only for false, 0 (of any numeric type), null and absent values. */
export function trueValue(v: unknown): boolean {
  if (v === undefined || v === null || v === false) return false
  if (v === true) return true
  if (typeof v === 'number') return v !== 0
  if (typeof v === 'object') {
    const t = (v as { _bsontype?: string })._bsontype
    if (t === 'Int32' || t === 'Double') return (v as { value: number }).value !== 0
    if (t === 'Long') return !(v as { isZero(): boolean }).isZero()
    if (t === 'Decimal128') return !/^[-+]?0(\.0*)?(E[-+]?\d+)?$/i.test(String(v))
  }
  return true
}

const isPlain = (v: unknown): v is Document => v !== null && typeof v === 'object' && !Array.isArray(v) && (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null)

/** Reads one command document (sequences merged in) into facts. */
export function analyseCommand(doc: Document, database: string): MongoFacts {
  const name = commandName(doc)
  const f: MongoFacts = { command: name, database, reads: [], writes: [], collections: [], write: false, js: false, jsOperators: [], admin: false, unknown: false, crossCollection: false, stages: [], filterFields: [], filterOperators: [], bypassDocumentValidation: false, allowDiskUse: false }
  describe(doc, name, database, f)
  // what the gateway cannot say everything about is assumed to do everything
  if (f.unknown) {
    f.write = true
    f.admin = true
  }
  if (trueValue(doc.startTransaction)) f.transaction = 'start'
  else if (name === 'commitTransaction') f.transaction = 'commit'
  else if (name === 'abortTransaction') f.transaction = 'abort'
  else if (doc.autocommit !== undefined && doc.txnNumber !== undefined) f.transaction = 'in'
  scanForJavaScript(doc, f, 0)
  f.bypassDocumentValidation = trueValue(doc.bypassDocumentValidation)
  f.allowDiskUse = trueValue(doc.allowDiskUse)
  const named = f.collection === undefined ? undefined : `${database}.${f.collection}`
  const touched = new Set([...f.reads, ...f.writes])
  f.crossCollection = [...touched].some((ns) => ns !== named)
  f.collections = [...new Set([...touched].map((ns) => ns.slice(ns.indexOf('.') + 1)))]
  f.stages = [...new Set(f.stages)]
  f.filterFields = [...new Set(f.filterFields)]
  f.filterOperators = [...new Set(f.filterOperators)]
  f.jsOperators = [...new Set(f.jsOperators)]
  f.reads = [...new Set(f.reads)]
  f.writes = [...new Set(f.writes)]
  return f
}

function describe(doc: Document, name: string, database: string, f: MongoFacts): void {
  const info = COMMANDS.get(name)
  if (!info) f.unknown = true
  const first = doc[Object.keys(doc)[0] as string] as unknown
  // a collection named by UUID (find, count …) or anything but a name: what it reads cannot be said
  if (info?.collection && typeof first !== 'string' && !(name === 'aggregate' && isNumberLike(first))) f.unknown = true
  const coll = info?.collection && typeof first === 'string' ? (name === 'dataSize' ? first.slice(first.indexOf('.') + 1) : first) : undefined
  if (name === 'dataSize' && typeof first === 'string') database = first.slice(0, Math.max(0, first.indexOf('.')))
  if (coll !== undefined) f.collection = coll
  const ns = (c: string, db = database) => `${db}.${c}`
  if (info?.write) f.write = true
  if (info?.admin) f.admin = true
  if (info?.js) {
    f.js = true
    f.jsOperators.push(name)
  }
  if (coll !== undefined) (info?.write && name !== 'findAndModify' && name !== 'update' && name !== 'delete' ? f.writes : f.reads).push(ns(coll))
  switch (name) {
    case 'find':
    case 'count':
    case 'distinct':
      filter(doc.filter ?? doc.query, f)
      break
    case 'update':
      f.writes.push(ns(coll ?? ''))
      for (const u of Array.isArray(doc.updates) ? doc.updates : []) {
        if (!isPlain(u)) continue
        filter(u.q, f)
        if (Array.isArray(u.u)) pipeline(u.u, database, f)
      }
      break
    case 'delete':
      f.writes.push(ns(coll ?? ''))
      for (const d of Array.isArray(doc.deletes) ? doc.deletes : []) if (isPlain(d)) filter(d.q, f)
      break
    case 'findAndModify':
      f.writes.push(ns(coll ?? ''))
      filter(doc.query, f)
      if (Array.isArray(doc.update)) pipeline(doc.update, database, f)
      break
    case 'aggregate':
      pipeline(Array.isArray(doc.pipeline) ? doc.pipeline : [], database, f)
      break
    case 'create':
      if (typeof doc.viewOn === 'string') {
        f.reads.push(ns(doc.viewOn))
        if (Array.isArray(doc.pipeline)) pipeline(doc.pipeline, database, f)
      }
      break
    case 'collMod':
      if (typeof doc.viewOn === 'string') f.reads.push(ns(doc.viewOn))
      if (Array.isArray(doc.pipeline)) pipeline(doc.pipeline, database, f)
      break
    case 'mapReduce':
      filter(doc.query, f)
      outTarget(doc.out, database, f)
      break
    case 'dropDatabase':
      f.writes.push(ns('*'))
      break
    case 'cloneCollectionAsCapped':
      if (coll !== undefined) {
        f.writes.splice(f.writes.indexOf(ns(coll)), 1)
        f.reads.push(ns(coll))
      }
      if (typeof doc.toCollection === 'string') f.writes.push(ns(doc.toCollection))
      break
    case 'renameCollection':
      if (typeof doc.renameCollection === 'string') f.writes.push(doc.renameCollection)
      if (typeof doc.to === 'string') f.writes.push(doc.to)
      break
    case 'bulkWrite':
      for (const n of Array.isArray(doc.nsInfo) ? doc.nsInfo : []) if (isPlain(n) && typeof n.ns === 'string') f.writes.push(n.ns)
      for (const op of Array.isArray(doc.ops) ? doc.ops : []) if (isPlain(op)) filter(op.filter, f)
      break
    case 'explain':
      if (isPlain(doc.explain)) {
        const inner = commandName(doc.explain)
        f.explains = inner
        if (!COMMANDS.has(inner)) f.unknown = true
        describe(doc.explain, inner, database, f)
        // explain runs the command's plan, not its writes; what it reads and runs still counts
      }
      break
    case 'listCollections':
    case 'listDatabases':
      filter(doc.filter, f)
      break
  }
}

/** The field names a filter tests, and its operators, through $and/$or/$nor/$not/$elemMatch. */
function filter(q: unknown, f: MongoFacts, prefix = '', depth = 0): void {
  if (!isPlain(q)) return
  if (depth > MAX_FILTER_DEPTH) {
    f.unknown = true
    return
  }
  for (const key of Object.keys(q)) {
    const v = q[key] as unknown
    if (key.startsWith('$')) f.filterOperators.push(key)
    if (key === '$and' || key === '$or' || key === '$nor') {
      if (Array.isArray(v)) for (const c of v) filter(c, f, prefix, depth + 1)
    } else if (key.startsWith('$')) {
      if (key === '$elemMatch' || key === '$not') filter(v, f, prefix, depth + 1)
    } else {
      const path = prefix ? `${prefix}.${key}` : key
      f.filterFields.push(path)
      // operators on the field: { a: { $gt: 1, $elemMatch: {…} } }
      if (isPlain(v)) {
        for (const op of Object.keys(v)) if (op.startsWith('$')) f.filterOperators.push(op)
        if (typeof v.$elemMatch === 'object') filter(v.$elemMatch, f, path, depth + 1)
        if (isPlain(v.$not)) filter({ [key]: v.$not }, f, prefix, depth + 1)
      }
    }
  }
}

const isNumberLike = (v: unknown): boolean => typeof v === 'number' || ['Int32', 'Double', 'Long', 'Decimal128'].includes((v as { _bsontype?: string } | null)?._bsontype ?? '')

/** An aggregation pipeline: stages, the collections its stages reach, sub-pipelines. */
function pipeline(stages: readonly unknown[], database: string, f: MongoFacts, depth = 0): void {
  if (depth > MAX_PIPELINE_DEPTH) {
    f.unknown = true
    return
  }
  for (const stage of stages) {
    if (!isPlain(stage)) continue
    const name = Object.keys(stage)[0]
    if (name === undefined) continue
    f.stages.push(name)
    const spec = stage[name] as unknown
    if (ADMIN_STAGES.has(name)) f.admin = true
    switch (name) {
      case '$match':
        filter(spec, f)
        break
      case '$lookup':
      case '$graphLookup':
        if (isPlain(spec)) {
          const from = namespace(spec.from, database)
          if (from) f.reads.push(from)
          if (Array.isArray(spec.pipeline)) pipeline(spec.pipeline, from?.slice(0, from.indexOf('.')) ?? database, f, depth + 1)
        }
        break
      case '$unionWith': {
        const target = isPlain(spec) ? spec.coll : spec
        const from = namespace(target, database)
        if (from) f.reads.push(from)
        if (isPlain(spec) && Array.isArray(spec.pipeline)) pipeline(spec.pipeline, database, f, depth + 1)
        break
      }
      case '$facet':
        if (isPlain(spec)) for (const sub of Object.values(spec)) if (Array.isArray(sub)) pipeline(sub, database, f, depth + 1)
        break
      case '$out':
        f.write = true
        outTarget(spec, database, f)
        break
      case '$changeStream':
        // on a collection it reads that collection (named already); on a database every collection of it, or of every database
        if (f.collection === undefined) {
          const cluster = isPlain(spec) && trueValue(spec.allChangesForCluster)
          f.reads.push(cluster ? '*.*' : `${database}.*`)
          if (cluster) f.admin = true
        }
        break
      case '$merge':
        f.write = true
        outTarget(isPlain(spec) ? spec.into : spec, database, f)
        break
    }
  }
}

/** `coll` or `{ db, coll }` as a namespace. */
function namespace(v: unknown, database: string): string | undefined {
  if (typeof v === 'string') return `${database}.${v}`
  if (isPlain(v) && typeof v.coll === 'string') return `${typeof v.db === 'string' ? v.db : database}.${v.coll}`
  return undefined
}

/** `$out`/`$merge`/mapReduce `out`: a collection name, `{ db, coll }`, or mapReduce's `{ replace|merge|reduce: coll, db }`. */
function outTarget(v: unknown, database: string, f: MongoFacts): void {
  if (isPlain(v) && v.inline !== undefined) return
  const target = namespace(v, database) ?? (isPlain(v) ? namespace(v.replace ?? v.merge ?? v.reduce, typeof v.db === 'string' ? v.db : database) : undefined)
  if (target) {
    f.write = true
    f.writes.push(target)
  }
}

/** Every `$where`, `$function`, `$accumulator` and JavaScript code value, anywhere in the document. */
function scanForJavaScript(v: unknown, f: MongoFacts, depth: number): void {
  if (v === null || typeof v !== 'object') return
  if (depth > 200) {
    f.unknown = true
    return
  }
  if (v instanceof Code || (v as { _bsontype?: string })._bsontype === 'Code') {
    f.js = true
    f.jsOperators.push('code')
    return
  }
  if (Array.isArray(v)) {
    for (const el of v) scanForJavaScript(el, f, depth + 1)
    return
  }
  if (!isPlain(v)) {
    // BSON values (numbers, ids, binaries …) hold no documents; anything else is not understood
    if (typeof (v as { _bsontype?: unknown })._bsontype !== 'string') f.unknown = true
    return
  }
  for (const key of Object.keys(v)) {
    if (JS_OPERATORS.has(key)) {
      f.js = true
      f.jsOperators.push(key)
    } else if (key.startsWith('$_internal')) {
      // the server's internal operators and stages: not for clients, and not analysed here
      f.unknown = true
    }
    scanForJavaScript(v[key], f, depth + 1)
  }
}
