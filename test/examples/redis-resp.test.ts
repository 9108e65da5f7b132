/**
 * The Redis example's RESP readers (examples/redis-adapter/src/resp.ts) on their own: however a
 * client's bytes are cut into pieces, the command reader reads the same commands as from the
 * whole, and refuses what is not a command with a protocol error, never another exception; the
 * reply scanner finds where each server reply ends (RESP2 and RESP3, nested, with attributes)
 * however the replies are cut. A command is read only in the form `encodeCommand` writes (no
 * leading zeros or signs in lengths, as the server itself requires), so the bytes it came in are
 * forwarded as they are: they are exactly its arguments, encoded.
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { CommandReader, encodeCommand, prefixed, ReplyScanner, RespProtocolError } from '../../examples/redis-adapter/dist/index.js'

const LIMITS = { maxArgs: 64, maxBulkBytes: 4096, maxCommandBytes: 64 * 1024 }
const command = fc.array(fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)), { minLength: 1, maxLength: 12 })

/** Feeds `bytes` in pieces cut at `cuts`, reading after each piece; the commands read, or the error thrown. */
function readInPieces(bytes: Buffer, cuts: number[]): { commands: Buffer[][]; raws: Buffer[]; error?: unknown; left?: number } {
  const reader = new CommandReader(() => LIMITS)
  const commands: Buffer[][] = []
  const raws: Buffer[] = []
  let from = 0
  try {
    for (const to of [...cuts.filter((c) => c > 0 && c < bytes.length).sort((a, b) => a - b), bytes.length]) {
      reader.push(bytes.subarray(from, to))
      from = to
      for (let c = reader.next(); c; c = reader.next()) {
        commands.push([...c.argv])
        raws.push(c.raw)
      }
    }
  } catch (error) {
    return { commands, raws, error }
  }
  return { commands, raws, left: reader.buffered }
}

describe('the Redis command reader', () => {
  it('reads the same commands however the bytes are cut, and holds nothing after them', () => {
    fc.assert(
      fc.property(fc.array(command, { minLength: 1, maxLength: 8 }), fc.array(fc.nat(4000), { maxLength: 30 }), (commands, cuts) => {
        const bytes = Buffer.concat(commands.map((c) => encodeCommand(c)))
        const r = readInPieces(bytes, cuts)
        expect(r.error).toBeUndefined()
        expect(r.commands).toEqual(commands)
        // what is forwarded is the command as it came, and that is its arguments encoded
        expect(r.raws).toEqual(commands.map((c) => encodeCommand(c)))
        expect(r.left).toBe(0)
      }),
      { numRuns: 2000 },
    )
  })

  it('whatever it reads, the bytes it came in are its arguments encoded: anything else is refused', () => {
    // arbitrary bytes after a valid prefix, so that lengths and counts of every shape are tried
    const piece = fc.oneof(fc.constantFrom('*', '$', '\r\n', '0', '1', '2', '-', '+', ' ', 'a', '00', '01', '-0'), fc.string({ maxLength: 3 }))
    fc.assert(
      fc.property(fc.array(piece, { minLength: 1, maxLength: 40 }), (pieces) => {
        const r = readInPieces(Buffer.from(pieces.join(''), 'latin1'), [])
        expect(r.raws).toEqual(r.commands.map((c) => encodeCommand(c)))
        if (r.error !== undefined) expect(r.error).toBeInstanceOf(RespProtocolError)
      }),
      { numRuns: 5000 },
    )
    for (const form of ['*01\r\n$1\r\na\r\n', '*1\r\n$01\r\na\r\n', '*+1\r\n$1\r\na\r\n', '*1\r\n$-0\r\n\r\n', '*1\r\n$ 1\r\na\r\n']) {
      expect(readInPieces(Buffer.from(form), []).error, form).toBeInstanceOf(RespProtocolError)
    }
  })

  it('COMMAND GETKEYS is asked with the command\'s own bytes after it', () => {
    const reader = new CommandReader(() => LIMITS)
    reader.push(encodeCommand(['EVAL', 'return 1', '2', 'k1', 'k2']))
    const c = reader.next()
    expect(c && prefixed(['COMMAND', 'GETKEYS'], c)).toEqual(encodeCommand(['COMMAND', 'GETKEYS', 'EVAL', 'return 1', '2', 'k1', 'k2']))
  })

  it('arguments are copies: bytes pushed later never change a command already read', () => {
    const reader = new CommandReader(() => LIMITS)
    reader.push(encodeCommand(['SET', 'k', 'v1']))
    const first = reader.next()
    for (let i = 0; i < 200; i++) reader.push(encodeCommand(['SET', 'k', `v${i}`.repeat(10)]))
    while (reader.next());
    expect([...(first?.argv ?? [])].map(String)).toEqual(['SET', 'k', 'v1'])
    // read on demand: in range only (no counting from the end, as an array's at() would)
    expect(first?.argv.length).toBe(3)
    expect(String(first?.argv.at(2))).toBe('v1')
    expect([first?.argv.at(3), first?.argv.at(-1), first?.argv.at(1.5)]).toEqual([undefined, undefined, undefined])
    expect(first?.raw).toEqual(encodeCommand(['SET', 'k', 'v1']))
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
    expect(over(['SET', 'k', 'v'.repeat(4096)])()?.argv).toHaveLength(3)
  })
})

/** A RESP2/RESP3 reply as the server writes it, built from the leaves up (nested at most `depth`). */
const reply: fc.Memo<string> = fc.memo((depth) => {
  const leaf = fc.oneof(
    fc.constantFrom('+OK\r\n', '-ERR no\r\n', ':42\r\n', '_\r\n', ',3.5\r\n', '#t\r\n', '(123456789012345678901\r\n', '$-1\r\n', '*-1\r\n'),
    fc.string({ maxLength: 30 }).map((t) => `$${Buffer.byteLength(t)}\r\n${t}\r\n`),
    fc.string({ maxLength: 30 }).map((t) => `=${Buffer.byteLength(t) + 4}\r\ntxt:${t}\r\n`),
  )
  if (depth <= 1) return leaf
  const items = fc.array(reply(depth - 1), { maxLength: 5 })
  return fc.oneof(
    leaf,
    items.map((xs) => `*${xs.length}\r\n${xs.join('')}`),
    items.map((xs) => `~${xs.length}\r\n${xs.join('')}`),
    fc.array(fc.tuple(reply(depth - 1), reply(depth - 1)), { maxLength: 3 }).map((kv) => `%${kv.length}\r\n${kv.map(([k, v]) => k + v).join('')}`),
    fc.tuple(fc.array(fc.tuple(reply(1), reply(1)), { maxLength: 2 }), reply(depth - 1)).map(([kv, v]) => `|${kv.length}\r\n${kv.map(([a, b]) => a + b).join('')}${v}`),
  )
})

describe('the Redis reply scanner', () => {
  it('finds where each reply ends however the bytes are cut', () => {
    fc.assert(
      fc.property(fc.array(reply(4), { minLength: 1, maxLength: 6 }), fc.array(fc.nat(2000), { maxLength: 30 }), (replies, cuts) => {
        const bytes = Buffer.from(replies.join(''))
        const scanner = new ReplyScanner()
        const found: string[] = []
        let held = Buffer.alloc(0)
        let from = 0
        for (const to of [...cuts.filter((c) => c > 0 && c < bytes.length).sort((a, b) => a - b), bytes.length]) {
          held = Buffer.concat([held, bytes.subarray(from, to)])
          from = to
          for (let end = scanner.scan(held); end >= 0; end = scanner.scan(held)) {
            found.push(held.subarray(0, end).toString())
            held = held.subarray(end)
          }
        }
        expect(found).toEqual(replies)
        expect(held.length).toBe(0)
      }),
      { numRuns: 2000 },
    )
  })

  it('refuses an unknown type and nesting past 64 levels', () => {
    expect(() => new ReplyScanner().scan(Buffer.from('?x\r\n'))).toThrow(RespProtocolError)
    expect(() => new ReplyScanner().scan(Buffer.from('*1\r\n'.repeat(65)))).toThrow('reply nested too deeply')
    expect(new ReplyScanner().scan(Buffer.from(`${'*1\r\n'.repeat(63)}:1\r\n`))).toBe(63 * 4 + 4)
  })
})
