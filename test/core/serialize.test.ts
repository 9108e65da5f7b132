/**
 * The audit serializer writes exactly what JSON.stringify writes (the hash chain seals that text,
 * and verifiers outside the gateway parse it), for any event, whatever mix of frozen (cached) and
 * fresh objects it holds, and however often a frozen object repeats.
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { serializeAuditEvent, type AuditEvent } from '@gatehouse/core'

/** JSON-like values with undefined fields, functions, and frozen sub-objects mixed in. */
const value: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  leaf: fc.oneof(fc.string(), fc.integer(), fc.double({ noNaN: false }), fc.boolean(), fc.constant(null), fc.constant(undefined), fc.constant(() => 1)),
  node: fc.oneof({ depthSize: 'small' }, tie('leaf'), tie('array'), tie('object'), tie('frozen')),
  array: fc.array(tie('node'), { maxLength: 4 }),
  object: fc.dictionary(fc.string(), tie('node'), { maxKeys: 4 }),
  frozen: tie('object').map((o) => Object.freeze(o)),
})).node

const event = fc.record({ id: fc.string(), type: fc.constantFrom('request', 'outcome', 'protocol'), time: fc.string() }).chain((base) =>
  // an event's own keys are the gateway's identifiers (written unescaped); nested keys are anything
  fc.dictionary(fc.stringMatching(/^[a-zA-Z][a-zA-Z0-9]{0,8}$/).filter((k) => !['id', 'type', 'time'].includes(k)), value, { maxKeys: 6 }).map((rest) => ({ ...base, ...rest }) as unknown as AuditEvent),
)

describe('serializeAuditEvent', () => {
  it('writes the same text as JSON.stringify for any event (property, 2,000 runs)', () => {
    fc.assert(
      fc.property(event, (e) => {
        expect(serializeAuditEvent(e)).toBe(JSON.stringify(e))
        // a second time (frozen parts now come from the cache) the same
        expect(serializeAuditEvent(e)).toBe(JSON.stringify(e))
      }),
      { numRuns: 2000 },
    )
  })

  it('the cases by name: undefined and function fields left out (at the top too), undefined in arrays as null, non-finite numbers as null, odd nested keys escaped', () => {
    const frozen = Object.freeze({ a: 1, b: undefined, nested: { x: [1, undefined, () => 2] } })
    const e = { id: 'i', type: 'request', skip: undefined, fn: () => 1, n: Number.NaN, inf: -Infinity, odd: { '"quoted"\n': 'v' }, frozen, again: frozen, arr: [undefined, null, Number.POSITIVE_INFINITY], deep: { f: () => 1, u: undefined, k: 'v', empty: {} } } as unknown as AuditEvent
    expect(serializeAuditEvent(e)).toBe(JSON.stringify(e))
    expect(serializeAuditEvent({ id: 'x', type: 'request' } as unknown as AuditEvent)).toBe('{"id":"x","type":"request"}')
  })

  it('strings of any code units (controls, quotes, backslashes, DEL, non-ASCII, lone surrogates), short and long, as JSON.stringify writes them (property, 2,000 runs)', () => {
    const anyString = fc.oneof(fc.string({ unit: 'binary' }), fc.string({ unit: fc.integer({ min: 0, max: 0x7f }).map((c) => String.fromCharCode(c)) }), fc.string({ unit: 'grapheme-ascii', minLength: 250, maxLength: 300 }))
    fc.assert(
      fc.property(anyString, fc.array(anyString, { maxLength: 3 }), (text, more) => {
        const e = { id: text, type: 'request', text, attrs: { [text]: more } } as unknown as AuditEvent
        expect(serializeAuditEvent(e)).toBe(JSON.stringify(e))
      }),
      { numRuns: 2000 },
    )
    for (const s of ['a"b', 'a\\b', 'a\nb', '\u0000', '\u001f', '\u007f', 'é', '\ud800', '\udc00x', '😀', `${'x'.repeat(300)}"`, 'x'.repeat(256), 'x'.repeat(257)]) {
      const e = { id: s, type: 'request', text: s } as unknown as AuditEvent
      expect(serializeAuditEvent(e)).toBe(JSON.stringify(e))
    }
  })

  it('objects with their own JSON form are written as JSON.stringify writes them (a Date, a Buffer)', () => {
    const e = { id: 'i', type: 'request', at: new Date('2026-12-02T00:00:00Z'), bytes: Buffer.from('ab'), nested: { at: new Date(0) } } as unknown as AuditEvent
    expect(serializeAuditEvent(e)).toBe(JSON.stringify(e))
  })

  it('a frozen object that changes identity is not served from the cache of another', () => {
    const a = Object.freeze({ v: 1 })
    const b = Object.freeze({ v: 2 })
    expect(serializeAuditEvent({ id: 'i', type: 'request', x: a } as unknown as AuditEvent)).toBe('{"id":"i","type":"request","x":{"v":1}}')
    expect(serializeAuditEvent({ id: 'i', type: 'request', x: b } as unknown as AuditEvent)).toBe('{"id":"i","type":"request","x":{"v":2}}')
  })
})
