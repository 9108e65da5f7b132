/**
 * When a mask can be kept. Core masks fields by their path in each returned document; a command
 * that reshapes documents on the server would carry a masked value out under another name
 * (`$project: { x: "$ssn" }`, a `$lookup` that nests a masked collection's documents, a
 * `distinct` on the field), and a filter on a masked field answers questions about its value
 * (which documents have `ssn` starting with 1). So a command whose decision masks fields runs
 * only when its answer keeps the documents' shape: `find` with a plain inclusion or exclusion
 * projection, `aggregate` of stages that only select and order ($match, $sort, $limit, $skip,
 * $sample) or count ($count, countDocuments' `$group`), `count`, and commands that return no documents (writes); and only when no filter
 * tests a masked field. Anything else is refused, naming why.
 */
import type { Document } from 'bson'
import type { MaskPath } from '@gatehouse/core'
import type { MongoFacts } from './command.js'

const SHAPE_KEEPING_STAGES = new Set(['$match', '$sort', '$limit', '$skip', '$sample'])
/**
 * Commands whose answers carry no documents of the collection and that cannot copy a value
 * elsewhere (an update can, through a pipeline or $rename: it is checked on its own; a view or an
 * index cannot be made under a mask).
 */
const NO_DOCUMENTS = new Set(['insert', 'delete', 'count', 'drop', 'dropIndexes', 'listIndexes', 'listCollections', 'listDatabases', 'dbStats', 'collStats', 'endSessions', 'commitTransaction', 'abortTransaction', 'buildInfo', 'ping'])
/** Query operators that test the field they sit under (and only it); any other ($expr, $jsonSchema, $text, $where …) can reach any field. */
const FIELD_OPERATORS = new Set(['$and', '$or', '$nor', '$not', '$eq', '$ne', '$gt', '$gte', '$lt', '$lte', '$in', '$nin', '$exists', '$type', '$elemMatch', '$size', '$all', '$regex', '$options', '$mod', '$comment'])
/** find options that read an index (a range on a masked field is an oracle) or return keys under other names. */
const INDEX_OPTIONS = ['hint', 'min', 'max', 'returnKey', 'showRecordId']
/** Update operators that change only the fields they name, with values given. */
const PLAIN_UPDATES = new Set(['$set', '$unset', '$inc', '$mul', '$min', '$max', '$currentDate', '$setOnInsert', '$push', '$addToSet', '$pull', '$pullAll', '$pop'])

/** Why the command cannot run under these masks, or undefined when the masks hold. */
export function maskRefusal(doc: Document, facts: MongoFacts, masks: readonly MaskPath[]): string | undefined {
  if (facts.unknown) return 'the gateway cannot say what this command reads'
  const tested = facts.filterFields.find((field) => masked(field, masks))
  if (tested !== undefined) return `the filter tests ${tested}, a masked field`
  const operator = facts.filterOperators.find((op) => !FIELD_OPERATORS.has(op))
  if (operator !== undefined) return `the filter uses ${operator}, which can read any field`
  const name = facts.command
  if (name === 'update') return updateRefusal(doc, masks)
  if (name === 'find') {
    const option = INDEX_OPTIONS.find((o) => doc[o] !== undefined)
    if (option !== undefined) return `a find that masks fields takes no ${option}`
    const projection = doc.projection as Document | undefined
    if (projection && Object.values(projection).some((v) => !isPlainFlag(v))) return 'a find that masks fields takes only an inclusion or exclusion projection (no expressions)'
    if (sortsByMasked(doc.sort, masks)) return 'a find that masks fields cannot sort by a masked field'
    return undefined
  }
  if (name === 'aggregate') {
    const pipeline = Array.isArray(doc.pipeline) ? (doc.pipeline as unknown[]) : []
    const other = pipeline.map(stageName).find((s, i) => !SHAPE_KEEPING_STAGES.has(s) && !isCounting(pipeline[i] as Document, s))
    if (other !== undefined) return `an aggregation that masks fields may only select and order documents ($match, $sort, $limit, $skip, $sample), not ${other}`
    for (const stage of pipeline) if (stageName(stage) === '$sort' && sortsByMasked((stage as Document).$sort, masks)) return 'an aggregation that masks fields cannot sort by a masked field'
    return undefined
  }
  if (NO_DOCUMENTS.has(name)) return undefined
  return `${name} returns values the gateway cannot mask field by field`
}

const masked = (field: string, masks: readonly MaskPath[]): boolean => masks.some((m) => covers(m.segments, field.split('.')))

/** An update under a mask: plain operators on fields that are not masked, no pipeline, no arrayFilters. */
function updateRefusal(doc: Document, masks: readonly MaskPath[]): string | undefined {
  for (const u of Array.isArray(doc.updates) ? (doc.updates as unknown[]) : []) {
    const spec = (u as Document | null)?.u as unknown
    if (!spec || typeof spec !== 'object' || Array.isArray(spec)) return 'an update that masks fields takes no pipeline'
    if ((u as Document).arrayFilters !== undefined) return 'an update that masks fields takes no arrayFilters'
    for (const [op, fields] of Object.entries(spec as Document)) {
      if (!op.startsWith('$')) return 'an update that masks fields cannot replace whole documents'
      if (!PLAIN_UPDATES.has(op)) return `an update that masks fields cannot use ${op}`
      const hit = Object.keys((fields as Document | null) ?? {}).find((f) => masked(f, masks))
      if (hit !== undefined) return `the update changes ${hit}, a masked field`
    }
  }
  return undefined
}

/** Whether a mask path names `field` or one of its parents or children (`*` matches any one name). */
function covers(mask: readonly string[], field: readonly string[]): boolean {
  const n = Math.min(mask.length, field.length)
  for (let i = 0; i < n; i++) if (mask[i] !== '*' && mask[i] !== field[i] && !/^\d+$/.test(field[i] as string)) return false
  return true
}

const sortsByMasked = (sort: unknown, masks: readonly MaskPath[]): boolean => sort !== null && typeof sort === 'object' && Object.keys(sort).some((k) => masks.some((m) => covers(m.segments, k.split('.'))))

const stageName = (stage: unknown): string => (stage !== null && typeof stage === 'object' ? (Object.keys(stage)[0] ?? '') : '')

/** `$count`, or a `$group` on a constant whose accumulators all sum constants (countDocuments): only a number comes back. */
function isCounting(stage: Document, name: string): boolean {
  if (name === '$count') return true
  if (name !== '$group') return false
  const spec = stage.$group as Document
  if (spec === null || typeof spec !== 'object') return false
  for (const [k, v] of Object.entries(spec)) {
    if (k === '_id') {
      if (!isConstant(v)) return false
      continue
    }
    const acc = v as Document | null
    if (acc === null || typeof acc !== 'object' || Object.keys(acc).length !== 1 || !('$sum' in acc) || !isPlainFlag(acc.$sum)) return false
  }
  return true
}

const isConstant = (v: unknown): boolean => v === null || isPlainFlag(v) || (typeof v === 'string' && !v.startsWith('$'))

function isPlainFlag(v: unknown): boolean {
  if (typeof v === 'number' || typeof v === 'boolean') return true
  const t = (v as { _bsontype?: string } | null)?._bsontype
  return t === 'Int32' || t === 'Double' || t === 'Long'
}
