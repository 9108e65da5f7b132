/**
 * The MongoDB wire protocol, as far as the gateway speaks it: message framing, OP_MSG (body and
 * document sequences) both ways, and the legacy OP_QUERY handshake (`hello`/`isMaster` on
 * `*.$cmd`) answered with OP_REPLY. Every other opcode is named so the session can refuse it.
 *
 * A message is read whole before anything looks at it; its length is checked against the
 * connection's limit before a byte of it is buffered beyond the header.
 */
import { checkBson, type BsonFacts, type BsonProblem } from './bson-check.js'

export const OP = {
  REPLY: 1,
  UPDATE: 2001,
  INSERT: 2002,
  QUERY: 2004,
  GET_MORE: 2005,
  DELETE: 2006,
  KILL_CURSORS: 2007,
  COMPRESSED: 2012,
  MSG: 2013,
} as const

export const OP_NAMES: Readonly<Record<number, string>> = { 1: 'OP_REPLY', 2001: 'OP_UPDATE', 2002: 'OP_INSERT', 2004: 'OP_QUERY', 2005: 'OP_GET_MORE', 2006: 'OP_DELETE', 2007: 'OP_KILL_CURSORS', 2012: 'OP_COMPRESSED', 2013: 'OP_MSG' }

/** OP_MSG flag bits (the low 16 are "required": a receiver must refuse ones it does not know). */
export const MSG_FLAGS = { checksumPresent: 1 << 0, moreToCome: 1 << 1, exhaustAllowed: 1 << 16 } as const

export const HEADER_BYTES = 16

export interface Frame {
  readonly length: number
  readonly requestId: number
  readonly responseTo: number
  readonly opCode: number
  /** The message after its header. */
  readonly body: Buffer
}

/** A message the gateway cannot read: the connection cannot continue (framing is lost). */
export class WireError extends Error {}

/** Splits a byte stream into messages. */
export class FrameReader {
  private chunks: Buffer[] = []
  private buffered = 0

  constructor(private readonly maxMessageBytes: () => number) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk)
    this.buffered += chunk.length
  }

  /** Bytes waiting to be read as messages. */
  get pending(): number {
    return this.buffered
  }

  /** The next whole message, undefined until it has arrived; throws WireError on a length no message can have. */
  next(): Frame | undefined {
    if (this.buffered < 4) return undefined
    const length = this.peek(4).readInt32LE(0)
    const max = this.maxMessageBytes()
    if (length < HEADER_BYTES) throw new WireError(`message length ${length} is shorter than a message header`)
    if (length > max) throw new WireError(`message of ${length} bytes is larger than this connection takes (${max}, limits.mongodb.maxMessageBytes)`)
    if (this.buffered < length) return undefined
    const whole = this.take(length)
    return { length, requestId: whole.readInt32LE(4), responseTo: whole.readInt32LE(8), opCode: whole.readInt32LE(12), body: whole.subarray(HEADER_BYTES) }
  }

  /** The first `n` buffered bytes (at least; `n` must be buffered) in one buffer. */
  private peek(n: number): Buffer {
    const first = this.chunks[0] as Buffer
    if (first.length >= n) return first
    const joined = Buffer.concat(this.chunks)
    this.chunks = [joined]
    return joined
  }

  private take(n: number): Buffer {
    const first = this.chunks[0] as Buffer
    if (first.length === n) {
      this.chunks.shift()
    } else if (first.length > n) {
      this.chunks[0] = first.subarray(n)
      this.buffered -= n
      return first.subarray(0, n)
    } else {
      const joined = Buffer.concat(this.chunks)
      this.chunks = joined.length > n ? [joined.subarray(n)] : []
      this.buffered -= n
      return joined.subarray(0, n)
    }
    this.buffered -= n
    return first
  }
}

/** One OP_MSG as the server reads it: the body document and the document sequences, checked. */
export interface OpMsg {
  readonly flags: number
  /** The kind-0 section's bytes. */
  readonly body: Buffer
  /** Kind-1 sections: identifier → the documents' bytes, in order. */
  readonly sequences: ReadonlyMap<string, readonly Buffer[]>
  /** Some document is shaped like a DBRef (bson-check.ts): read the decoded one as a plain document. */
  readonly dbRef: boolean
}

/** Why a message cannot be judged, in terms the client is told. */
export interface MessageProblem {
  readonly problem: string
}

const REQUIRED_FLAG_BITS = 0xffff

/**
 * Reads an OP_MSG body (after the header). Every document is checked (bson-check.ts) before it is
 * returned: a problem here is answered with an error, and the connection stays usable (the
 * message's length was sound).
 */
export function readOpMsg(body: Buffer, maxDepth: number): OpMsg | MessageProblem {
  if (body.length < 5) return { problem: 'OP_MSG shorter than its flags and one section' }
  const flags = body.readUInt32LE(0)
  const unknown = flags & REQUIRED_FLAG_BITS & ~(MSG_FLAGS.checksumPresent | MSG_FLAGS.moreToCome)
  if (unknown !== 0) return { problem: `OP_MSG has required flag bits the gateway does not know (0x${unknown.toString(16)})` }
  if (flags & MSG_FLAGS.checksumPresent) return { problem: 'OP_MSG checksums are not supported by the gateway: send messages without one' }
  let at = 4
  let doc: Buffer | undefined
  const sequences = new Map<string, Buffer[]>()
  const facts = { dbRef: false }
  while (at < body.length) {
    const kind = body[at] as number
    at++
    if (kind === 0) {
      if (doc) return { problem: 'OP_MSG has more than one body section' }
      const one = documentAt(body, at, body.length, maxDepth, facts)
      if ('problem' in one) return one
      doc = one.doc
      at += one.doc.length
    } else if (kind === 1) {
      if (at + 4 > body.length) return { problem: 'OP_MSG document sequence truncated' }
      const size = body.readInt32LE(at)
      const end = at + size
      if (size < 5 || end > body.length) return { problem: 'OP_MSG document sequence length does not fit the message' }
      const nul = body.indexOf(0, at + 4)
      if (nul < 0 || nul >= end) return { problem: 'OP_MSG document sequence identifier is not terminated' }
      const id = body.toString('utf8', at + 4, nul)
      // the server's sequence names are field names of the command (documents, updates, deletes, ops, nsInfo)
      if (!/^[A-Za-z][A-Za-z0-9_]{0,63}$/.test(id)) return { problem: `OP_MSG document sequence name "${id.slice(0, 40)}" is not a command field name` }
      if (sequences.has(id)) return { problem: `OP_MSG has two document sequences named "${id}"` }
      const docs: Buffer[] = []
      let p = nul + 1
      while (p < end) {
        const one = documentAt(body, p, end, maxDepth, facts)
        if ('problem' in one) return { problem: `document ${docs.length} of sequence "${id}": ${one.problem}` }
        docs.push(one.doc)
        p += one.doc.length
      }
      sequences.set(id, docs)
      at = end
    } else {
      return { problem: `OP_MSG section kind ${kind} is not supported` }
    }
  }
  if (!doc) return { problem: 'OP_MSG has no body section' }
  return { flags, body: doc, sequences, dbRef: facts.dbRef }
}

function documentAt(buf: Buffer, at: number, end: number, maxDepth: number, facts?: BsonFacts): { doc: Buffer } | MessageProblem {
  if (at + 5 > end) return { problem: 'BSON document truncated' }
  const len = buf.readInt32LE(at)
  if (len < 5 || at + len > end) return { problem: `BSON document length ${len} does not fit the message` }
  const doc = buf.subarray(at, at + len)
  const bad: BsonProblem | undefined = checkBson(doc, maxDepth, facts)
  if (bad) return { problem: `invalid BSON: ${bad.problem}` }
  return { doc }
}

/** The legacy OP_QUERY, read only as far as the handshake needs. */
export interface OpQuery {
  readonly flags: number
  readonly collection: string
  readonly query: Buffer
}

export function readOpQuery(body: Buffer, maxDepth: number): OpQuery | MessageProblem {
  if (body.length < 4 + 1 + 8 + 5) return { problem: 'OP_QUERY truncated' }
  const flags = body.readInt32LE(0)
  const nul = body.indexOf(0, 4)
  if (nul < 0) return { problem: 'OP_QUERY collection name is not terminated' }
  const collection = body.toString('utf8', 4, nul)
  const at = nul + 1 + 8
  const one = documentAt(body, at, body.length, maxDepth)
  if ('problem' in one) return one
  return { flags, collection, query: one.doc }
}

let nextRequestId = 1
const newRequestId = () => {
  nextRequestId = (nextRequestId + 1) & 0x7fffffff
  return nextRequestId
}

function header(length: number, responseTo: number, opCode: number): Buffer {
  const h = Buffer.allocUnsafe(HEADER_BYTES)
  h.writeInt32LE(length, 0)
  h.writeInt32LE(newRequestId(), 4)
  h.writeInt32LE(responseTo, 8)
  h.writeInt32LE(opCode, 12)
  return h
}

/** An OP_MSG answer with one body document. */
export function encodeOpMsg(responseTo: number, doc: Uint8Array, flags = 0): Buffer[] {
  const pre = Buffer.allocUnsafe(5)
  pre.writeUInt32LE(flags >>> 0, 0)
  pre[4] = 0
  return [header(HEADER_BYTES + 5 + doc.length, responseTo, OP.MSG), pre, Buffer.from(doc.buffer, doc.byteOffset, doc.byteLength)]
}

/** An OP_REPLY with one document (the answer to a legacy OP_QUERY handshake). */
export function encodeOpReply(responseTo: number, doc: Uint8Array): Buffer[] {
  const pre = Buffer.alloc(20)
  pre.writeInt32LE(8, 0) // AwaitCapable, as servers answer
  // cursorID 0, startingFrom 0
  pre.writeInt32LE(1, 16) // numberReturned
  return [header(HEADER_BYTES + 20 + doc.length, responseTo, OP.REPLY), pre, Buffer.from(doc.buffer, doc.byteOffset, doc.byteLength)]
}
