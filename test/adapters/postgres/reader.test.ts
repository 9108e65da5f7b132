/**
 * The PostgreSQL adapter's frontend message reader (adapters/postgres/src/codec/reader.ts) on its
 * own: however the client's bytes are cut, it returns the same messages as from the whole; a
 * message larger than the limit is refused from its length word; and a large message sent in
 * small pieces is gathered once, not re-joined with every piece (64 MiB in 16 KiB pieces had
 * taken 80 s of one core, stalling every session on the gateway).
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { MessageReader, MessageTooLarge, ProtocolViolation } from '../../../adapters/postgres/dist/codec/reader.js'

const message = fc.tuple(fc.integer({ min: 0x41, max: 0x7a }), fc.uint8Array({ maxLength: 200 })).map(([type, body]) => {
  const raw = Buffer.alloc(5 + body.length)
  raw[0] = type
  raw.writeInt32BE(4 + body.length, 1)
  Buffer.from(body).copy(raw, 5)
  return raw
})

function cutInto(bytes: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.filter((c) => c > 0 && c < bytes.length))].sort((a, b) => a - b)
  return [0, ...at].map((from, i) => bytes.subarray(from, at[i] ?? bytes.length))
}

describe('the PostgreSQL frontend message reader', () => {
  it('a startup packet and the messages after it are read the same however the bytes are cut', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 60 }), fc.array(message, { maxLength: 10 }), fc.array(fc.nat(3000), { maxLength: 25 }), (params, messages, cuts) => {
        const startup = Buffer.alloc(8 + params.length)
        startup.writeInt32BE(startup.length, 0)
        startup.writeInt32BE(196608, 4)
        Buffer.from(params).copy(startup, 8)
        const reader = new MessageReader(1024)
        let seenStartup: { code: number; body: Buffer } | undefined
        const got: Buffer[] = []
        for (const piece of cutInto(Buffer.concat([startup, ...messages]), cuts)) {
          reader.push(piece)
          if (!seenStartup) seenStartup = reader.nextStartup()
          if (seenStartup) for (let m = reader.next(); m; m = reader.next()) got.push(Buffer.from(m.raw))
        }
        expect(seenStartup?.code).toBe(196608)
        expect(seenStartup?.body).toEqual(Buffer.from(params))
        expect(got).toEqual(messages)
        expect(reader.buffered).toBe(0)
      }),
      { numRuns: 2000 },
    )
  })

  it('a message over the limit is refused from its length word, before its body arrives; a length below 4 is a violation', () => {
    const big = new MessageReader(1024)
    big.push(Buffer.from([0x51, 0, 0, 0x10, 0]))
    expect(() => big.next()).toThrow(MessageTooLarge)
    const short = new MessageReader(1024)
    short.push(Buffer.from([0x51, 0, 0]))
    expect(short.next()).toBeUndefined()
    short.push(Buffer.from([0, 3]))
    expect(() => short.next()).toThrow(ProtocolViolation)
  })

  it('a 64 MiB message in 16 KiB pieces is gathered once (it had been re-joined with every piece)', () => {
    const total = 64 * 1024 * 1024
    const raw = Buffer.alloc(total + 1, 0x61)
    raw[0] = 0x51
    raw.writeInt32BE(total, 1)
    const reader = new MessageReader(total)
    const t = performance.now()
    let got: Buffer | undefined
    for (let i = 0; i < raw.length; i += 16 * 1024) {
      reader.push(raw.subarray(i, i + 16 * 1024))
      got = reader.next()?.body ?? got
    }
    const ms = performance.now() - t
    expect(got?.length).toBe(total - 4)
    // linear: well under a second here; re-joining had taken ~80 s
    expect(ms, `${ms.toFixed(0)} ms`).toBeLessThan(5000)
  })
})
