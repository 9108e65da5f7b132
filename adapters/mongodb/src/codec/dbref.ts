/**
 * The bson library decodes a document shaped like a DBRef ({ $ref, $id, $db?, … }) into a DBRef
 * object, whose fields the analysis and the masker would not look into. bson-check.ts has made
 * sure such a document is in the order the library writes a DBRef back, so reading it as the plain
 * document it is changes nothing on the wire: this puts plain documents in its place, in place.
 */
import type { Document } from 'bson'

interface DbRefLike {
  readonly _bsontype: 'DBRef'
  readonly collection: string
  readonly oid: unknown
  readonly db?: string
  readonly fields: Document
}

const isDbRef = (v: unknown): v is DbRefLike => v !== null && typeof v === 'object' && (v as { _bsontype?: unknown })._bsontype === 'DBRef'

function plain(ref: DbRefLike): Document {
  const out: Document = { $ref: ref.collection, $id: ref.oid }
  if (ref.db !== undefined) out.$db = ref.db
  for (const k of Object.keys(ref.fields)) out[k] = ref.fields[k]
  return out
}

/** Replaces every DBRef object in `value` (documents and arrays, at any depth) with a plain document. */
export function plainDbRefs<T>(value: T, depth = 0): T {
  if (value === null || typeof value !== 'object' || depth > 256) return value
  if (isDbRef(value)) return plainDbRefs(plain(value), depth + 1) as unknown as T
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = plainDbRefs(value[i], depth + 1)
    return value
  }
  const proto = Object.getPrototypeOf(value) as unknown
  if (proto !== Object.prototype && proto !== null) return value
  const doc = value as Document
  for (const k of Object.keys(doc)) doc[k] = plainDbRefs(doc[k], depth + 1)
  return value
}
