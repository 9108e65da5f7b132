/**
 * RESP, the Redis serialization protocol, as far as the adapter needs it.
 *
 * From clients the adapter takes what Redis clients send: an array of bulk strings per command.
 * The inline form (`PING\r\n`, what a person types into telnet) is refused: Redis splits it
 * with its own quoting rules, and a second reading of those is a second chance to disagree with
 * the server about what a command says.
 *
 * From the upstream it only needs to know where each reply ends (RESP2 and RESP3), to relay
 * replies one by one, and to read a few of them (the handshake, COMMAND, COMMAND GETKEYS).
 */

/** A value read from a reply (RESP2/RESP3), for the replies the adapter itself reads. */
export type RespValue = string | number | bigint | boolean | null | Buffer | RespError | RespValue[] | Map<RespValue, RespValue>

export class RespError {
  constructor(readonly message: string) {}
}

/** Input that cannot be a command: the connection cannot continue (framing is lost). */
export class RespProtocolError extends Error {}

/** A command over one of `limits.redis` (named as the limit metric names it): refused like bad framing, and counted as a limit. */
export class RespLimitError extends RespProtocolError {
  constructor(
    readonly limit: string,
    message: string,
  ) {
    super(message)
  }
}

export interface CommandLimits {
  /** Largest number of arguments in one command. */
  readonly maxArgs: number
  /** Largest bulk string. */
  readonly maxBulkBytes: number
  /** Largest command, all its arguments and framing together (what one connection may make the gateway hold). */
  readonly maxCommandBytes: number
}

const CRLF = 0x0a

/** Finds the `\r\n` that ends the line starting at `at`; -1 when it has not arrived. */
function lineEnd(buf: Buffer, at: number): number {
  const nl = buf.indexOf(CRLF, at)
  if (nl < 0) return -1
  if (nl === at || buf[nl - 1] !== 0x0d) throw new RespProtocolError('line not terminated by CRLF')
  return nl - 1
}

/**
 * A length as Redis writes and reads it: decimal, no sign but a leading `-`, no leading zeros (the
 * server refuses `$01` as well). So a command read here is, byte for byte, the one
 * `encodeCommand` would write from its arguments, and can be forwarded as it came.
 */
function integer(buf: Buffer, from: number, to: number, what: string): number {
  const text = buf.toString('latin1', from, to)
  if (!/^(?:0|-?[1-9]\d{0,17})$/.test(text)) throw new RespProtocolError(`invalid ${what} "${text.slice(0, 20)}"`)
  return Number(text)
}

/**
 * A command's arguments. An array of Buffers is one; a command read by `CommandReader` gives one
 * whose `at(i)` makes a view into the command's bytes when asked, so a command of a million
 * arguments costs a million views only if something walks all of them.
 */
export interface ArgList extends Iterable<Buffer> {
  readonly length: number
  at(index: number): Buffer | undefined
}

/** The arguments of a command read whole: where each lies in its bytes (from, len, from, len, …). */
class LazyArgs implements ArgList {
  constructor(
    private readonly raw: Buffer,
    private readonly offsets: readonly number[],
  ) {}

  get length(): number {
    return this.offsets.length / 2
  }

  at(index: number): Buffer | undefined {
    if (!Number.isInteger(index) || index < 0 || index >= this.length) return undefined
    const from = this.offsets[2 * index] as number
    return this.raw.subarray(from, from + (this.offsets[2 * index + 1] as number))
  }

  *[Symbol.iterator](): Iterator<Buffer> {
    for (let i = 0; i < this.length; i++) yield this.at(i) as Buffer
  }
}

/** A command read whole: its bytes as they came (one copy) and its arguments, read from them on demand. */
export interface Command {
  readonly raw: Buffer
  readonly argv: ArgList
}

/**
 * Reads commands from a client's bytes as they arrive, in time and memory linear in what was
 * sent: bytes go into one buffer that grows by doubling and is compacted once the commands before
 * them are read; a command that has not all arrived is resumed where its reading stopped (a
 * command of a million arguments arriving in a thousand pieces is read once, not a thousand
 * times). A command larger than `maxCommandBytes` in all is refused before more of it is held.
 * Throws RespProtocolError on anything but an array of bulk strings.
 */
export class CommandReader {
  private readonly bytes = new ByteQueue()
  /** The command being read: its argument count, its arguments so far (offsets from the unread start), where reading stopped. */
  private pending: { n: number; read: number; args: number[]; at: number } | undefined

  constructor(private readonly limits: () => CommandLimits) {}

  /** Bytes held that no command has taken yet. */
  get buffered(): number {
    return this.bytes.length
  }

  push(chunk: Buffer): void {
    this.bytes.push(chunk)
  }

  /** The next whole command (copied out of the reader's buffer), or undefined until more arrives. */
  next(): Command | undefined {
    const limits = this.limits()
    const buf = this.bytes.view()
    if (buf.length === 0) return undefined
    let state = this.pending
    if (!state) {
      if (buf[0] !== 0x2a /* * */) throw new RespProtocolError('expected a command as an array of bulk strings (the inline form is not accepted)')
      const head = lineEnd(buf, 0)
      if (head < 0) {
        if (buf.length > 32) throw new RespProtocolError('array length line too long')
        return undefined
      }
      const n = integer(buf, 1, head, 'array length')
      if (n < 1) throw new RespProtocolError('empty command')
      if (n > limits.maxArgs) throw new RespLimitError('redis.max-args', `more than ${limits.maxArgs} arguments`)
      state = this.pending = { n, read: 0, args: [], at: head + 2 }
    }
    while (state.read < state.n) {
      const p = state.at
      if (p > limits.maxCommandBytes) throw new RespLimitError('redis.max-command-bytes', `a command is larger than ${limits.maxCommandBytes} bytes`)
      if (p >= buf.length) return undefined
      if (buf[p] !== 0x24 /* $ */) throw new RespProtocolError('expected a bulk string argument')
      const e = lineEnd(buf, p)
      if (e < 0) {
        if (buf.length - p > 32) throw new RespProtocolError('bulk length line too long')
        return undefined
      }
      const len = integer(buf, p + 1, e, 'bulk length')
      if (len < 0) throw new RespProtocolError('null argument')
      if (len > limits.maxBulkBytes) throw new RespLimitError('redis.max-bulk-bytes', `an argument is larger than ${limits.maxBulkBytes} bytes`)
      const from = e + 2
      if (from + len + 2 > limits.maxCommandBytes) throw new RespLimitError('redis.max-command-bytes', `a command is larger than ${limits.maxCommandBytes} bytes`)
      if (from + len + 2 > buf.length) return undefined
      if (buf[from + len] !== 0x0d || buf[from + len + 1] !== 0x0a) throw new RespProtocolError('bulk string not terminated by CRLF')
      // where each argument lies, flat (from, len, from, len, …): one array, not one per argument
      state.args.push(from, len)
      state.read++
      state.at = from + len + 2
    }
    const raw = Buffer.from(buf.subarray(0, state.at))
    this.bytes.consume(state.at)
    this.pending = undefined
    return { raw, argv: new LazyArgs(raw, state.args) }
  }
}

/**
 * Bytes that arrive in pieces and are taken from the front: one buffer that grows by doubling
 * and is compacted when the taken part is at least half of it, so holding and taking n bytes
 * costs O(n) whatever the pieces. Views are valid until the next `push`.
 */
export class ByteQueue {
  private buf = Buffer.alloc(0)
  private start = 0
  private end = 0

  get length(): number {
    return this.end - this.start
  }

  push(chunk: Buffer): void {
    const need = this.end - this.start + chunk.length
    if (this.end + chunk.length > this.buf.length) {
      if (need <= this.buf.length && this.start >= this.buf.length / 2) {
        this.buf.copy(this.buf, 0, this.start, this.end)
      } else {
        const grown = Buffer.allocUnsafe(Math.max(need, this.buf.length * 2, 16 * 1024))
        this.buf.copy(grown, 0, this.start, this.end)
        this.buf = grown
      }
      this.end -= this.start
      this.start = 0
    }
    chunk.copy(this.buf, this.end)
    this.end += chunk.length
  }

  /** The bytes not yet taken. */
  view(): Buffer {
    return this.buf.subarray(this.start, this.end)
  }

  /** Takes `n` bytes from the front; a large buffer left empty is let go. */
  consume(n: number): void {
    this.start += n
    if (this.start === this.end) {
      this.start = this.end = 0
      if (this.buf.length > 64 * 1024) this.buf = Buffer.alloc(0)
    }
  }
}

/**
 * Finds where a reply ends (RESP2 and RESP3) as its bytes arrive, resuming where it stopped: the
 * open aggregates are a stack of the elements each still waits for, and a bulk string is skipped
 * by its length, so a reply of a million elements arriving in a thousand pieces is scanned once.
 */
export class ReplyScanner {
  /** How far the reply at the front has been scanned. */
  private at = 0
  /** Elements still to come in each open aggregate, innermost last (an attribute counts the value it describes). */
  private readonly open: number[] = []

  /** Where the reply at the start of `buf` ends, or -1 until it has all arrived; then starts over for the next one. */
  scan(buf: Buffer): number {
    for (;;) {
      if (this.at >= buf.length) return -1
      const type = buf[this.at] as number
      const e = lineEnd(buf, this.at)
      if (e < 0) return -1
      const next = e + 2
      switch (type) {
        case 0x2b: // + simple string
        case 0x2d: // - error
        case 0x3a: // : integer
        case 0x5f: // _ null
        case 0x2c: // , double
        case 0x23: // # boolean
        case 0x28: // ( big number
          this.at = next
          break
        case 0x24: // $ bulk string
        case 0x21: // ! bulk error
        case 0x3d: {
          // = verbatim string
          const len = integer(buf, this.at + 1, e, 'length')
          if (len >= 0 && next + len + 2 > buf.length) return -1
          this.at = len < 0 ? next : next + len + 2
          break
        }
        case 0x2a: // * array
        case 0x7e: // ~ set
        case 0x3e: // > push
        case 0x25: // % map
        case 0x7c: {
          // | attribute (precedes the value it describes)
          const n = integer(buf, this.at + 1, e, 'length')
          this.at = next
          if (n < 0) break
          const items = (type === 0x25 || type === 0x7c ? n * 2 : n) + (type === 0x7c ? 1 : 0)
          if (items === 0) break
          if (this.open.length >= 64) throw new RespProtocolError('reply nested too deeply')
          this.open.push(items)
          continue
        }
        default:
          throw new RespProtocolError(`unknown reply type 0x${type.toString(16)}`)
      }
      // an element ended: it may end the aggregates around it
      for (;;) {
        const last = this.open.length - 1
        if (last < 0) {
          const end = this.at
          this.at = 0
          return end
        }
        if (--(this.open[last] as number) > 0) break
        this.open.pop()
      }
    }
  }
}

/** Reads one whole reply (`buf` holds exactly it, or more). */
export function parseReply(buf: Buffer, at = 0): { value: RespValue; end: number } {
  const type = buf[at] as number
  const e = lineEnd(buf, at)
  const line = buf.toString('utf8', at + 1, e)
  const next = e + 2
  switch (type) {
    case 0x2b:
      return { value: line, end: next }
    case 0x2d:
      return { value: new RespError(line), end: next }
    case 0x3a:
      return { value: Number(line), end: next }
    case 0x5f:
      return { value: null, end: next }
    case 0x2c:
      return { value: Number(line), end: next }
    case 0x23:
      return { value: line === 't', end: next }
    case 0x28:
      return { value: BigInt(line), end: next }
    case 0x24:
    case 0x21:
    case 0x3d: {
      const len = Number(line)
      if (len < 0) return { value: null, end: next }
      const body = buf.subarray(next, next + len)
      return { value: type === 0x21 ? new RespError(body.toString('utf8')) : type === 0x3d ? body.subarray(4) : body, end: next + len + 2 }
    }
    case 0x2a:
    case 0x7e:
    case 0x3e: {
      const n = Number(line)
      if (n < 0) return { value: null, end: next }
      const out: RespValue[] = []
      let p = next
      for (let i = 0; i < n; i++) {
        const r = parseReply(buf, p)
        out.push(r.value)
        p = r.end
      }
      return { value: out, end: p }
    }
    case 0x25: {
      const n = Number(line)
      const out = new Map<RespValue, RespValue>()
      let p = next
      for (let i = 0; i < n; i++) {
        const k = parseReply(buf, p)
        const v = parseReply(buf, k.end)
        out.set(k.value, v.value)
        p = v.end
      }
      return { value: out, end: p }
    }
    case 0x7c: {
      // an attribute: skip it, read the value it describes
      let p = next
      for (let i = 0; i < Number(line) * 2; i++) p = parseReply(buf, p).end
      return parseReply(buf, p)
    }
    default:
      throw new RespProtocolError(`unknown reply type 0x${type.toString(16)}`)
  }
}

/** A command as RESP, to send upstream. */
export function encodeCommand(argv: readonly (Buffer | string)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${argv.length}\r\n`)]
  for (const a of argv) {
    const b = typeof a === 'string' ? Buffer.from(a) : a
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'))
  }
  return Buffer.concat(parts)
}

/** `words` followed by a command's arguments, encoded (`COMMAND GETKEYS …`): the command's bytes are reused, not encoded again. */
export function prefixed(words: readonly string[], command: Command): Buffer {
  const head = encodeCommand(words)
  const count = Buffer.from(`*${words.length + command.argv.length}\r\n`)
  const wordsAt = head.indexOf(0x0a) + 1
  const argsAt = command.raw.indexOf(0x0a) + 1
  return Buffer.concat([count, head.subarray(wordsAt), command.raw.subarray(argsAt)])
}

/** An error reply. Line breaks in the message would end the reply early: they become spaces. */
export function encodeError(message: string): Buffer {
  return Buffer.from(`-${message.replace(/[\r\n]+/g, ' ')}\r\n`)
}

export const OK = Buffer.from('+OK\r\n')

/** A reply value in RESP2 or RESP3 (maps become flat arrays in RESP2). */
export function encodeValue(v: RespValue, proto: 2 | 3): Buffer {
  if (v === null) return Buffer.from(proto === 3 ? '_\r\n' : '$-1\r\n')
  if (typeof v === 'number') return Buffer.from(`:${v}\r\n`)
  if (typeof v === 'string') return Buffer.concat([Buffer.from(`$${Buffer.byteLength(v)}\r\n`), Buffer.from(v), Buffer.from('\r\n')])
  if (Buffer.isBuffer(v)) return Buffer.concat([Buffer.from(`$${v.length}\r\n`), v, Buffer.from('\r\n')])
  if (v instanceof RespError) return encodeError(v.message)
  if (Array.isArray(v)) return Buffer.concat([Buffer.from(`*${v.length}\r\n`), ...v.map((x) => encodeValue(x, proto))])
  if (v instanceof Map) {
    const items = [...v.entries()].flatMap(([k, x]) => [encodeValue(k, proto), encodeValue(x, proto)])
    return Buffer.concat([Buffer.from(proto === 3 ? `%${v.size}\r\n` : `*${v.size * 2}\r\n`), ...items])
  }
  return Buffer.from(`:${String(v)}\r\n`)
}
