/**
 * Splits the client's byte stream into whole frontend messages without copying: each message is
 * a view into the received chunk. A message larger than the configured maximum (or with a
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

const EMPTY = Buffer.alloc(0)

export class MessageReader {
  private buf: Buffer = EMPTY
  private off = 0

  constructor(private readonly maxMessageBytes: number) {}

  push(chunk: Buffer): void {
    if (this.off >= this.buf.length) {
      this.buf = chunk
      this.off = 0
    } else {
      this.buf = Buffer.concat([this.buf.subarray(this.off), chunk])
      this.off = 0
    }
  }

  /** Bytes received but not yet returned as a message. */
  get buffered(): number {
    return this.buf.length - this.off
  }

  /** The next whole message, or undefined when more bytes are needed. */
  next(): FrontendMessage | undefined {
    const avail = this.buf.length - this.off
    if (avail < 5) return undefined
    const start = this.off
    const type = this.buf[start] as number
    const len = this.buf.readInt32BE(start + 1)
    if (len < 4) throw new ProtocolViolation(`invalid message length ${len}`)
    if (len - 4 > this.maxMessageBytes) throw new MessageTooLarge(`message of ${len} bytes exceeds the gateway's limit of ${this.maxMessageBytes} (limits.postgres.messageBytes)`)
    if (avail < len + 1) return undefined
    this.off = start + 1 + len
    return { type, body: this.buf.subarray(start + 5, start + 1 + len), raw: this.buf.subarray(start, start + 1 + len) }
  }

  /**
   * Untyped startup-phase packet (length word first). Returns undefined when more bytes are needed.
   */
  nextStartup(maxLength = 10_000): { code: number; body: Buffer } | undefined {
    const avail = this.buf.length - this.off
    if (avail < 8) {
      if (avail >= 4) this.checkStartupLength(this.buf.readInt32BE(this.off), maxLength)
      return undefined
    }
    const len = this.buf.readInt32BE(this.off)
    this.checkStartupLength(len, maxLength)
    if (avail < len) return undefined
    const code = this.buf.readInt32BE(this.off + 4)
    const body = this.buf.subarray(this.off + 8, this.off + len)
    this.off += len
    return { code, body }
  }

  private checkStartupLength(len: number, max: number): void {
    if (len < 8 || len > max) throw new InvalidStartupPacket(`invalid startup packet length ${len}`)
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
