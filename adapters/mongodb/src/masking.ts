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
/** Commands whose answers carry no documents of the collection. */
const NO_DOCUMENTS = new Set(['insert', 'update', 'delete', 'count', 'create', 'drop', 'createIndexes', 'dropIndexes', 'listIndexes', 'listCollections', 'listDatabases', 'dbStats', 'collStats', 'endSessions', 'commitTransaction', 'abortTransaction', 'buildInfo', 'connectionStatus', 'ping'])

/** Why the command cannot run under these masks, or undefined when the masks hold. */
export function maskRefusal(doc: Document, facts: MongoFacts, masks: readonly MaskPath[]): string | undefined {
  const tested = facts.filterFields.find((field) => masks.some((m) => covers(m.segments, field.split('.'))))
  if (tested !== undefined) return `the filter tests ${tested}, a masked field`
  const name = facts.command
  if (name === 'find') {
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
