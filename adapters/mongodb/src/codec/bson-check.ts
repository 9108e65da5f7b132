/**
 * Checks a BSON document before anything reads it, so the document the gateway judges (decoded by
 * the `bson` library into JavaScript objects) is the one the server will execute.
 *
 * BSON can say things a JavaScript object cannot, and the two readings would differ:
 * - the same field name twice: the server takes the first (for a command's options) or both (in
 *   a filter); an object keeps one. Refused, at every level.
 * - array elements named other than "0", "1", …: the server reads elements in order; an object
 *   would fill gaps or overwrite. Refused.
 * - field names that are array indexes ("2024") after other names: a JavaScript object puts them
 *   first, so the document sent on would have its fields in another order. Refused.
 * - field names that are not UTF-8, or `__proto__`: decoded, they could become another name.
 * - deprecated types the library does not give back as they came (undefined, DBPointer).
 * - a document shaped like a DBRef (`$ref`, `$id`, optionally `$db`, no other `$` names) whose
 *   fields are not in the order the library writes a DBRef back ($ref, $id, $db, the rest): the
 *   library decodes it into a DBRef and would send it on reordered. In order, it is accepted and
 *   reported (`facts.dbRef`), so the session can read it as the plain document it is.
 * - nesting deeper than `maxDepth` (a depth bomb would take the decoder's stack).
 * Lengths, terminators and every value's size are checked too, so a truncated or lying document
 * is refused here, not half-read later.
 */
import { isUtf8 } from 'node:buffer'

export interface BsonProblem {
  readonly problem: string
}

const FIXED_SIZE: Readonly<Record<number, number>> = {
  0x01: 8, // double
  0x07: 12, // ObjectId
  0x08: 1, // boolean
  0x09: 8, // UTC datetime
  0x0a: 0, // null
  0x10: 4, // int32
  0x11: 8, // timestamp
  0x12: 8, // int64
  0x13: 16, // decimal128
  0xff: 0, // min key
  0x7f: 0, // max key
}

const INDEX_NAME = /^(?:0|[1-9]\d{0,8})$/

/** What the check saw that the reader of the decoded document must know. */
export interface BsonFacts {
  /** Some document is shaped like a DBRef: the decoder made it a DBRef object. */
  dbRef: boolean
}

/** Undefined when `doc` (exactly one document) is well-formed and unambiguous; otherwise why not. */
export function checkBson(doc: Buffer, maxDepth: number, facts?: BsonFacts): BsonProblem | undefined {
  try {
    const end = walk(doc, 0, false, 1, maxDepth, facts)
    if (end !== doc.length) return { problem: 'document length does not match its content' }
    return undefined
  } catch (err) {
    if (err instanceof Malformed) return { problem: err.message }
    throw err
  }
}

class Malformed extends Error {}

function int32(buf: Buffer, at: number, limit: number): number {
  if (at + 4 > limit) throw new Malformed('value truncated')
  return buf.readInt32LE(at)
}

/** Walks the document at `at`; returns the offset after it. */
function walk(buf: Buffer, at: number, isArray: boolean, depth: number, maxDepth: number, facts: BsonFacts | undefined): number {
  if (depth > maxDepth) throw new Malformed(`documents nested deeper than ${maxDepth} levels`)
  const len = int32(buf, at, buf.length)
  const end = at + len
  if (len < 5 || end > buf.length) throw new Malformed(`embedded document length ${len} does not fit`)
  if (buf[end - 1] !== 0) throw new Malformed('document is not terminated')
  let p = at + 4
  let index = 0
  let names: Set<string> | undefined
  let sawName = false
  let lastIndex = -1
  // DBRef shape, as the bson library decides it: $-names only $ref/$id/$db, $ref a string, $id not null, $db a string if present
  let dollarNames: string[] | undefined
  let possibleRef = !isArray
  let refString = false
  let idPresent = false
  let dbOk = true
  while (p < end - 1) {
    const type = buf[p] as number
    const nameEnd = buf.indexOf(0, p + 1)
    if (nameEnd < 0 || nameEnd >= end) throw new Malformed('field name is not terminated')
    const raw = buf.subarray(p + 1, nameEnd)
    if (!isUtf8(raw)) throw new Malformed('a field name is not valid UTF-8')
    const name = raw.toString('utf8')
    if (isArray) {
      if (name !== String(index)) throw new Malformed(`array element named "${name.slice(0, 40)}" where "${index}" was expected`)
      index++
    } else {
      if (name === '__proto__') throw new Malformed('field name __proto__ is not accepted')
      names ??= new Set()
      if (names.has(name)) throw new Malformed(`field "${name.slice(0, 80)}" appears twice in one document`)
      names.add(name)
      if (INDEX_NAME.test(name)) {
        const n = Number(name)
        if (sawName || n < lastIndex) throw new Malformed(`field "${name}" is a number after other fields: its place in the document would change on the way`)
        lastIndex = n
      } else {
        sawName = true
      }
    }
    if (possibleRef && name.startsWith('$')) {
      if (name === '$ref' || name === '$id' || name === '$db') {
        ;(dollarNames ??= []).push(name)
        if (name === '$ref') refString = type === 0x02
        else if (name === '$id') idPresent = type !== 0x0a
        else dbOk = type === 0x02
      } else {
        possibleRef = false
      }
    }
    p = value(buf, type, nameEnd + 1, end - 1, depth, maxDepth, facts)
  }
  if (p !== end - 1) throw new Malformed('element runs past the end of its document')
  if (possibleRef && refString && idPresent && dbOk && dollarNames) {
    // the library writes a DBRef back as $ref, $id, $db, then the other fields in their order
    const first = names ? [...names].slice(0, dollarNames.length) : []
    const canonical = ['$ref', '$id', '$db'].filter((n) => dollarNames?.includes(n))
    if (first.join() !== canonical.join()) throw new Malformed('a document shaped like a DBRef must start with $ref, $id (and $db): its fields would be reordered on the way')
    if (facts) facts.dbRef = true
  }
  return end
}

function string(buf: Buffer, at: number, limit: number): number {
  const n = int32(buf, at, limit)
  if (n < 1 || at + 4 + n > limit) throw new Malformed('string length does not fit')
  if (buf[at + 4 + n - 1] !== 0) throw new Malformed('string is not terminated')
  return at + 4 + n
}

function cstring(buf: Buffer, at: number, limit: number): number {
  const nul = buf.indexOf(0, at)
  if (nul < 0 || nul >= limit) throw new Malformed('regular expression is not terminated')
  return nul + 1
}

/** Checks one value of `type` at `at`; returns the offset after it. */
function value(buf: Buffer, type: number, at: number, limit: number, depth: number, maxDepth: number, facts: BsonFacts | undefined): number {
  const fixed = FIXED_SIZE[type]
  if (fixed !== undefined) {
    if (at + fixed > limit) throw new Malformed('value truncated')
    if (type === 0x08 && (buf[at] as number) > 1) throw new Malformed('boolean is neither 0 nor 1')
    return at + fixed
  }
  switch (type) {
    case 0x02: // string
    case 0x0d: // JavaScript code
    case 0x0e: // symbol
      return string(buf, at, limit)
    case 0x03:
    case 0x04: {
      const end = walk(buf, at, type === 0x04, depth + 1, maxDepth, facts)
      if (end > limit) throw new Malformed('embedded document runs past its parent')
      return end
    }
    case 0x05: {
      const n = int32(buf, at, limit)
      if (n < 0 || at + 5 + n > limit) throw new Malformed('binary length does not fit')
      if (buf[at + 4] === 0x02 && (n < 4 || buf.readInt32LE(at + 5) !== n - 4)) throw new Malformed('old binary subtype 2 length is inconsistent')
      return at + 5 + n
    }
    case 0x0b:
      return cstring(buf, cstring(buf, at, limit), limit)
    case 0x0f: {
      const total = int32(buf, at, limit)
      const end = at + total
      if (total < 14 || end > limit) throw new Malformed('code with scope length does not fit')
      const afterCode = string(buf, at + 4, end)
      const afterScope = walk(buf, afterCode, false, depth + 1, maxDepth, facts)
      if (afterScope !== end) throw new Malformed('code with scope length does not match its content')
      return end
    }
    case 0x06:
      throw new Malformed('the deprecated undefined type is not accepted')
    case 0x0c:
      throw new Malformed('the deprecated DBPointer type is not accepted')
    default:
      throw new Malformed(`unknown BSON type 0x${type.toString(16)}`)
  }
}
