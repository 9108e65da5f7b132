/**
 * The Redis example's command reader (examples/redis-adapter/src/resp.ts) on its own: however a
 * client's bytes are cut into pieces, it reads the same commands as from the whole, and it
 * refuses what is not a command with a protocol error, never another exception.
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { CommandReader, encodeCommand, RespProtocolError } from '../../examples/redis-adapter/dist/index.js'

const LIMITS = { maxArgs: 64, maxBulkBytes: 4096, maxCommandBytes: 64 * 1024 }
const command = fc.array(fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)), { minLength: 1, maxLength: 12 })

/** Feeds `bytes` in pieces cut at `cuts`, reading after each piece; the commands read, or the error thrown. */
function readInPieces(bytes: Buffer, cuts: number[]): { commands: Buffer[][]; error?: unknown; left?: number } {
  const reader = new CommandReader(() => LIMITS)
  const commands: Buffer[][] = []
  let from = 0
  try {
    for (const to of [...cuts.filter((c) => c > 0 && c < bytes.length).sort((a, b) => a - b), bytes.length]) {
      reader.push(bytes.subarray(from, to))
      from = to
      for (let argv = reader.next(); argv; argv = reader.next()) commands.push(argv)
    }
  } catch (error) {
    return { commands, error }
  }
  return { commands, left: reader.buffered }
}

describe('the Redis command reader', () => {
  it('reads the same commands however the bytes are cut, and holds nothing after them', () => {
    fc.assert(
      fc.property(fc.array(command, { minLength: 1, maxLength: 8 }), fc.array(fc.nat(4000), { maxLength: 30 }), (commands, cuts) => {
        const bytes = Buffer.concat(commands.map((c) => encodeCommand(c)))
        const r = readInPieces(bytes, cuts)
        expect(r.error).toBeUndefined()
        expect(r.commands).toEqual(commands)
        expect(r.left).toBe(0)
      }),
      { numRuns: 2000 },
    )
  })

  it('arguments are copies: bytes pushed later never change a command already read', () => {
    const reader = new CommandReader(() => LIMITS)
    reader.push(encodeCommand(['SET', 'k', 'v1']))
    const first = reader.next()
    for (let i = 0; i < 200; i++) reader.push(encodeCommand(['SET', 'k', `v${i}`.repeat(10)]))
    while (reader.next());
    expect(first?.map(String)).toEqual(['SET', 'k', 'v1'])
  })

  it('anything else is a protocol error, never another exception, whatever the pieces', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.array(fc.nat(300), { maxLength: 10 }), (junk, cuts) => {
        const r = readInPieces(Buffer.from(junk), cuts)
        if (r.error !== undefined) expect(r.error).toBeInstanceOf(RespProtocolError)
      }),
      { numRuns: 3000 },
    )
  })

  it('the limits: too many arguments, too large an argument, too large a command', () => {
    const over = (argv: string[]) => {
      const reader = new CommandReader(() => LIMITS)
      reader.push(encodeCommand(argv))
      return () => reader.next()
    }
    expect(over(Array.from({ length: 65 }, () => 'x'))).toThrow('more than 64 arguments')
    expect(over(['SET', 'k', 'v'.repeat(4097)])).toThrow('an argument is larger than 4096 bytes')
    expect(over(['RPUSH', 'k', ...Array.from({ length: 20 }, () => 'v'.repeat(4000))])).toThrow('a command is larger than 65536 bytes')
    expect(over(['SET', 'k', 'v'.repeat(4096)])()).toHaveLength(3)
  })
})
