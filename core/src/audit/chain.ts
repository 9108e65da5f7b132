/**
 * Tamper evidence for audit records: a hash chain over the lines a sink stores.
 *
 * Each stored event carries `prev`, the hash of the event stored before it (64 zeros for the
 * first), and `hash`, the SHA-256 of its own serialization up to and including `prev`. The
 * serialization is the exact text stored (the gateway's canonical JSON of the event), so any edit
 * changes the hash; a removed event leaves its successor pointing at a hash that is not its
 * predecessor's; events moved out of order point forward.
 *
 * Why over the stored text rather than a re-serialization: verification then needs no knowledge
 * of the event schema, works on files written by any version, and cannot be fooled by a
 * serializer that normalizes away a change.
 */
import * as crypto from 'node:crypto'
import { createHash, createPublicKey, sign, verify, type KeyObject } from 'node:crypto'
import { closeSync, openSync, readSync } from 'node:fs'

/** The `prev` of the first event of a chain. */
export const GENESIS_HASH = '0'.repeat(64)

const HASH_SUFFIX = /,"hash":"([0-9a-f]{64})"\}$/
const PREV_FIELD = /,"prev":"([0-9a-f]{64})"$/

// One call per line: crypto.hash (Node >= 20.12) hashes without a Hash object; the fallback is
// the same digest.
const oneShot = (crypto as { hash?: (algorithm: string, data: string | Uint8Array, encoding: 'hex') => string }).hash
const sha256Hex: (data: string | Uint8Array) => string = oneShot ? (data) => oneShot('sha256', data, 'hex') : (data) => createHash('sha256').update(data).digest('hex')

/** Seals one serialized event (a JSON object text) into the chain after `prev`. */
export function sealEvent(json: string, prev: string): { line: string; hash: string } {
  const body = `${json.slice(0, -1)},"prev":"${prev}"`
  const hash = sha256Hex(body)
  return { line: `${body},"hash":"${hash}"}`, hash }
}

/**
 * The most bytes `sealInto` writes for `json` (UTF-16 code units): each one is at most 3 bytes of
 * UTF-8, and the seal adds `prev`, `hash` and a newline.
 */
export function sealedBytesAtMost(json: string): number {
  return 3 * json.length + SEAL_BYTES
}
const SEAL_BYTES = `,"prev":"${GENESIS_HASH}","hash":"${GENESIS_HASH}"}\n`.length

/**
 * `sealEvent`'s line and a newline, written as UTF-8 into `buf` at `offset` (which must have
 * `sealedBytesAtMost(json)` bytes free): the text is encoded once and hashed as those bytes, the
 * same digest as the string's. Returns where the line ends and its hash.
 */
export function sealInto(buf: Buffer, offset: number, json: string, prev: string): { end: number; hash: string } {
  // the JSON object's closing brace is one byte; the seal's fields go before it
  let end = offset + buf.write(json, offset, 'utf8') - 1
  end += buf.write(`,"prev":"${prev}"`, end, 'latin1')
  const hash = sha256Hex(buf.subarray(offset, end))
  end += buf.write(`,"hash":"${hash}"}\n`, end, 'latin1')
  return { end, hash }
}

/** The stored hash of a sealed line, or undefined if the line is not sealed. */
export function lineHash(line: string): string | undefined {
  return HASH_SUFFIX.exec(line)?.[1]
}

export type ChainProblem = 'edited' | 'removed' | 'reordered' | 'forked' | 'unsealed' | 'truncated-head' | 'bad-checkpoint'

/**
 * A signed checkpoint: a line of type `audit.checkpoint` whose `covers` is the hash of the line
 * before it, signed with the gateway's Ed25519 key. Without the key, nobody can re-seal an
 * edited log and keep its checkpoints valid (a plain hash chain alone can be recomputed).
 */
export function checkpointJson(covers: string, events: number, key: KeyObject, keyId: string, seq: number): string {
  // The signature covers the sequence number too, so checkpoints cannot be dropped or renumbered unseen.
  const signature = sign(null, checkpointMessage(covers, seq), key).toString('base64')
  return JSON.stringify({ id: `checkpoint:${seq}:${covers.slice(0, 16)}`, time: new Date().toISOString(), type: 'audit.checkpoint', seq, covers, events, keyId, signature })
}

function checkpointMessage(covers: string, seq: number): Buffer {
  const n = Buffer.alloc(8)
  n.writeBigUInt64BE(BigInt(seq))
  return Buffer.concat([Buffer.from(covers, 'hex'), n])
}

/** A short id of an Ed25519 public key: the first 16 hex digits of the SHA-256 of its DER. */
export function signingKeyId(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key
  return createHash('sha256').update(pub.export({ type: 'spki', format: 'der' })).digest('hex').slice(0, 16)
}

export interface ChainFinding {
  readonly problem: ChainProblem
  /** 1-based line number within `file`. */
  readonly line: number
  readonly file: string
  readonly detail: string
}

export interface ChainReport {
  readonly ok: boolean
  readonly events: number
  /** Checkpoints whose signature was checked (with `publicKey`). */
  readonly checkpoints: number
  /** Events after the last verified checkpoint: only the chain vouches for them. */
  readonly unsignedTail: number
  /** The hash of the last event, to compare with a checkpoint kept elsewhere. */
  readonly last: string
  /** The first problem found, in file order. */
  readonly first?: ChainFinding
}

/** One stored line of a log: its file, its 1-based number there, its text. */
export interface ChainLine {
  readonly file: string
  readonly line: number
  readonly text: string
}

export interface VerifyOptions {
  /** The hash the first line continues from (a checkpoint kept elsewhere); default: the start of a chain. */
  readonly continuesFrom?: string
  /** The Ed25519 public key to check the signed checkpoints with. */
  readonly publicKey?: KeyObject
}

/**
 * Verifies the chain across `files` given in order (a rotated log: oldest first). Reports the
 * first edited, removed, reordered or forked event. The first file must start the chain (`prev`
 * of 64 zeros) unless `opts.continuesFrom` gives the hash it continues from.
 */
export function verifyChain(files: readonly { name: string; text: string }[], opts: VerifyOptions = {}): ChainReport {
  return verifyLines(() => chainTextLines(files), opts)
}

export function* chainTextLines(files: readonly { name: string; text: string }[]): Generator<ChainLine> {
  for (const f of files) {
    const split = f.text.split('\n')
    if (split[split.length - 1] === '') split.pop()
    for (let i = 0; i < split.length; i++) yield { file: f.name, line: i + 1, text: split[i] as string }
  }
}

/**
 * `verifyChain` over lines read from `source()`, which may be called more than once (each call
 * reads the log from its start): the first pass checks the chain holding only the last hash, so a
 * log of any size verifies in constant memory; only when a line does not follow the one before it
 * do further passes look for where its predecessor is stored, to tell a removal from a move or a fork.
 */
export function verifyLines(source: () => Iterable<ChainLine>, opts: VerifyOptions = {}): ChainReport {
  let expected = opts.continuesFrom ?? GENESIS_HASH
  let events = 0
  let checkpoints = 0
  let sinceCheckpoint = 0
  let lastSeq: number | undefined
  let index = 0
  for (const l of source()) {
    const at = (problem: ChainProblem, detail: string): ChainReport => ({ ok: false, events, checkpoints, unsignedTail: sinceCheckpoint, last: expected, first: { problem, line: l.line, file: l.file, detail } })
    const stored = HASH_SUFFIX.exec(l.text)
    if (!stored) return at('unsealed', 'the line carries no hash: it was not written by a chaining sink, or its end was cut off')
    const body = l.text.slice(0, stored.index)
    const prev = PREV_FIELD.exec(body)?.[1]
    if (prev === undefined) return at('unsealed', 'the line carries no prev field')
    const actual = createHash('sha256').update(body).digest('hex')
    if (actual !== stored[1]) return at('edited', `the line's content does not match its hash ${(stored[1] as string).slice(0, 12)}…`)
    if (prev !== expected) {
      if (index === 0 && opts.continuesFrom === undefined) return at('truncated-head', `the first event continues from ${prev.slice(0, 12)}…, not from the start of a chain: earlier events are missing (pass the rotated files before it)`)
      const start = opts.continuesFrom ?? GENESIS_HASH
      const pointsTo = firstStored(source, prev)
      const forkPoint = prev === start ? -1 : pointsTo?.index
      const fork = forkPoint !== undefined && forkPoint < index ? forkFrom(source, forkPoint, start) : undefined
      if (fork) return at('forked', fork)
      if (pointsTo !== undefined && pointsTo.index > index) return at('reordered', `the event follows one that is stored later (line ${pointsTo.line}${pointsTo.file === l.file ? '' : ` of ${pointsTo.file}`})`)
      if (pointsTo !== undefined && pointsTo.index < index) return at('reordered', `the event follows one stored earlier (line ${pointsTo.line}), not the line before it: events were moved`)
      return at('removed', `the event it follows (${prev.slice(0, 12)}…) is missing: events were removed before this line`)
    }
    const c = opts.publicKey && l.text.includes('"type":"audit.checkpoint"') ? parseCheckpoint(l.text) : undefined
    // Only a line whose own type is audit.checkpoint is one (not an event quoting that text).
    if (opts.publicKey && c?.type === 'audit.checkpoint') {
      if (c.covers !== prev) return at('bad-checkpoint', 'the checkpoint does not cover the event before it')
      const seq = typeof c.seq === 'number' && Number.isSafeInteger(c.seq) && c.seq >= 0 ? c.seq : -1
      const good = seq >= 0 && typeof c.signature === 'string' && verify(null, checkpointMessage(prev, seq), opts.publicKey, Buffer.from(c.signature, 'base64'))
      if (!good) return at('bad-checkpoint', 'the checkpoint signature does not verify with the given public key: the log was re-sealed, or signed with another key')
      if (lastSeq !== undefined && seq !== lastSeq + 1) return at('bad-checkpoint', `checkpoint ${seq} follows checkpoint ${lastSeq}: checkpoints between them were removed`)
      lastSeq = seq
      checkpoints++
      sinceCheckpoint = -1
    }
    expected = stored[1] as string
    events++
    sinceCheckpoint++
    index++
  }
  return { ok: true, events, checkpoints, unsignedTail: sinceCheckpoint, last: expected }
}

/** Whether a line of the log stores `hash` as its own. */
export function storesHash(source: () => Iterable<ChainLine>, hash: string): boolean {
  for (const l of source()) if (lineHash(l.text) === hash) return true
  return false
}

/** Where a line whose stored hash is `hash` first stands, if one does. */
function firstStored(source: () => Iterable<ChainLine>, hash: string): { index: number; file: string; line: number } | undefined {
  let index = 0
  for (const l of source()) {
    if (lineHash(l.text) === hash) return { index, file: l.file, line: l.line }
    index++
  }
  return undefined
}

/**
 * Whether the lines from index `from` on (the line two lines continue; -1: the chain's start) are
 * two or more writers appending to one file, each from the same last line (a second gateway on the
 * same file): then every line is intact, no line appears twice, and every line follows a line
 * stored before it. An edit, a removal or a move breaks one of those. Returns the description, or
 * undefined when the evidence does not show a fork. Holds the hashes from the fork point on.
 */
function forkFrom(source: () => Iterable<ChainLine>, from: number, start: string): string | undefined {
  const seen = new Set<string>(from < 0 ? [start] : [])
  const successors = new Map<string, number>()
  let point = 'the start of the chain'
  let index = -1
  for (const l of source()) {
    index++
    if (index < from) continue
    const stored = HASH_SUFFIX.exec(l.text)
    const prev = stored ? PREV_FIELD.exec(l.text.slice(0, stored.index))?.[1] : undefined
    if (!stored || prev === undefined || createHash('sha256').update(l.text.slice(0, stored.index)).digest('hex') !== stored[1]) return undefined
    const hash = stored[1] as string
    if (seen.has(hash)) return undefined
    if (index === from) point = `line ${l.line}`
    else {
      if (!seen.has(prev)) return undefined
      successors.set(prev, (successors.get(prev) ?? 0) + 1)
    }
    seen.add(hash)
  }
  const branches = [...successors.values()].reduce((n, k) => n + k - 1, 1)
  return `from ${point} on, ${branches} writers appended to this log at once (each line is intact and continues an earlier one): two gateways shared the file, not an edit; if only one gateway writes here, treat it as tampering`
}

/** A line's fields if it is JSON; a sealed line that is not (no sink writes one) is an event like any other. */
function parseCheckpoint(text: string): { type?: string; seq?: number; covers?: string; signature?: string } | undefined {
  try {
    return JSON.parse(text) as { type?: string; seq?: number; covers?: string; signature?: string }
  } catch {
    return undefined
  }
}

/** Longer than this, a line is not an audit event: it is reported unsealed instead of read whole. */
const MAX_LINE_BYTES = 256 * 1024 * 1024

/**
 * The lines of audit files read from disk a chunk at a time (for `verifyLines`: each call reads
 * the files again from the start). `onBytes` is told the bytes read so far in this pass.
 */
export function fileLines(paths: readonly string[], onBytes?: (bytes: number) => void, maxLineBytes = MAX_LINE_BYTES): () => Iterable<ChainLine> {
  return function* lines(): Generator<ChainLine> {
    const chunk = Buffer.allocUnsafe(1024 * 1024)
    let total = 0
    for (const path of paths) {
      const fd = openSync(path, 'r')
      try {
        let parts: Buffer[] = []
        let partBytes = 0
        let tooLong = false
        let line = 0
        const emit = (tail: Buffer): ChainLine => {
          const text = tooLong || partBytes + tail.length > maxLineBytes ? `(a line of more than ${maxLineBytes} bytes)` : Buffer.concat([...parts, tail]).toString('utf8')
          parts = []
          partBytes = 0
          tooLong = false
          return { file: path, line: ++line, text }
        }
        for (;;) {
          const n = readSync(fd, chunk, 0, chunk.length, null)
          if (n === 0) break
          total += n
          onBytes?.(total)
          let from = 0
          for (let nl = chunk.indexOf(10, from); nl !== -1 && nl < n; nl = chunk.indexOf(10, from)) {
            yield emit(Buffer.from(chunk.subarray(from, nl)))
            from = nl + 1
          }
          if (from < n && !tooLong) {
            if (partBytes + (n - from) > maxLineBytes) {
              // Past the limit: the rest of the line is skipped, not held.
              tooLong = true
              parts = []
              partBytes = 0
            } else {
              parts.push(Buffer.from(chunk.subarray(from, n)))
              partBytes += n - from
            }
          }
        }
        if (partBytes > 0 || tooLong) yield emit(Buffer.alloc(0))
      } finally {
        closeSync(fd)
      }
    }
  }
}
