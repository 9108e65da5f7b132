/**
 * Splits the client's byte stream into whole frontend messages: each message is a view into the
 * received chunk when it lies in one (it is copied once when it spans chunks). A message larger than the configured maximum (or with a
 * length below 4) is a protocol violation raised before anything is allocated for it, so a
 * 1 GiB length prefix costs nothing.
 */
export class ProtocolViolation extends Error {
  override readonly name = 'ProtocolViolation'
}

/** Bytes before the startup packet that are not one (an HTTP request, a Terminate): PostgreSQL closes without a word. */
export class InvalidStartupPacket extends ProtocolViolation {}

/** A message longer than `limits.postgres.messageBytes`: a limit, counted as one. */
export class MessageTooLarge extends ProtocolViolation {}

export interface FrontendMessage {
  readonly type: number
  /** The message body (after the length word). */
  readonly body: Buffer
  /** The whole message as received (type, length, body), for forwarding as is. */
  readonly raw: Buffer
}

export class MessageReader {
  /**
   * The chunks received and not yet returned, in order. A message is a view into its chunk when
   * it lies in one, and is gathered into one buffer once, when all of it has arrived, when it
   * spans several: never re-joined as pieces arrive, which for a large message sent in small
   * pieces would copy it again with every piece (64 MiB in 16 KiB pieces: 80 s of one core).
   */
  private chunks: Buffer[] = []
  private avail = 0

  constructor(private readonly maxMessageBytes: number) {}

  push(chunk: Buffer): void {
    if (chunk.length === 0) return
    this.chunks.push(chunk)
    this.avail += chunk.length
  }

  /** Bytes received but not yet returned as a message. */
  get buffered(): number {
    return this.avail
  }

  /** The next whole message, or undefined when more bytes are needed. */
  next(): FrontendMessage | undefined {
    if (this.avail < 5) return undefined
    const head = this.head(5)
    const type = head[0] as number
    const len = head.readInt32BE(1)
    if (len < 4) throw new ProtocolViolation(`invalid message length ${len}`)
    if (len - 4 > this.maxMessageBytes) throw new MessageTooLarge(`message of ${len} bytes exceeds the gateway's limit of ${this.maxMessageBytes} (limits.postgres.messageBytes)`)
    if (this.avail < len + 1) return undefined
    const raw = this.take(len + 1)
    return { type, body: raw.subarray(5), raw }
  }

  /**
   * Untyped startup-phase packet (length word first). Returns undefined when more bytes are needed.
   */
  nextStartup(maxLength = 10_000): { code: number; body: Buffer } | undefined {
    if (this.avail < 8) {
      if (this.avail >= 4) this.checkStartupLength(this.head(4).readInt32BE(0), maxLength)
      return undefined
    }
    const len = this.head(8).readInt32BE(0)
    this.checkStartupLength(len, maxLength)
    if (this.avail < len) return undefined
    const packet = this.take(len)
    return { code: packet.readInt32BE(4), body: packet.subarray(8) }
  }

  private checkStartupLength(len: number, max: number): void {
    if (len < 8 || len > max) throw new InvalidStartupPacket(`invalid startup packet length ${len}`)
  }

  /** The first `n` bytes (n ≤ buffered) in one buffer, joining only the leading chunks that takes. */
  private head(n: number): Buffer {
    let first = this.chunks[0] as Buffer
    while (first.length < n) {
      first = Buffer.concat([first, this.chunks[1] as Buffer])
      this.chunks.splice(0, 2, first)
    }
    return first
  }

  /** Takes the first `n` bytes (n ≤ buffered): a view when they lie in one chunk, else gathered once. */
  private take(n: number): Buffer {
    this.avail -= n
    const first = this.chunks[0] as Buffer
    if (first.length >= n) {
      if (first.length === n) this.chunks.shift()
      else this.chunks[0] = first.subarray(n)
      return first.subarray(0, n)
    }
    const out = Buffer.allocUnsafe(n)
    let filled = 0
    while (filled < n) {
      const c = this.chunks[0] as Buffer
      const k = Math.min(c.length, n - filled)
      c.copy(out, filled, 0, k)
      filled += k
      if (k === c.length) this.chunks.shift()
      else this.chunks[0] = c.subarray(k)
    }
    return out
  }
}

/** Reads NUL-terminated strings and integers from a message body. */
export class BodyReader {
  off = 0
  constructor(private readonly buf: Buffer) {}

  cstring(): string {
    const end = this.buf.indexOf(0, this.off)
    if (end < 0) throw new ProtocolViolation('unterminated string in message')
    const s = this.buf.toString('utf8', this.off, end)
    this.off = end + 1
    return s
  }

  int16(): number {
    if (this.off + 2 > this.buf.length) throw new ProtocolViolation('message too short')
    const v = this.buf.readInt16BE(this.off)
    this.off += 2
    return v
  }

  int32(): number {
    if (this.off + 4 > this.buf.length) throw new ProtocolViolation('message too short')
    const v = this.buf.readInt32BE(this.off)
    this.off += 4
    return v
  }

  bytes(n: number): Buffer {
    if (n < 0 || this.off + n > this.buf.length) throw new ProtocolViolation('message too short')
    const b = this.buf.subarray(this.off, this.off + n)
    this.off += n
    return b
  }

  get remaining(): number {
    return this.buf.length - this.off
  }
}
