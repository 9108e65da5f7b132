/**
 * The mask obligation (core/src/pipeline/masking.ts and the policy's `mask:`): which values a path
 * replaces, how every allow rule that applies adds its fields, and that only allow rules mask.
 */
import { describe, expect, it } from 'vitest'
import { GatewayConfig, MASKED, maskDocument, maskPathsOf, validate, type GatewayRequest, type Principal, type SessionInfo } from '@gatehouse/core'
import { RuleEngine } from '@gatehouse/plugin-policy'

const paths = (...p: string[]) => p.map((text) => ({ text, segments: text.split('.') }))

describe('maskDocument', () => {
  it('replaces top-level, nested and array-element fields in place and names the paths that hit', () => {
    const doc = { ssn: '1', card: { number: '4111', brand: 'visa' }, items: [{ price: 1, sku: 'a' }, { price: 2 }, 'loose'], tags: ['x', 'y'] }
    expect(maskDocument(doc, paths('ssn', 'card.number', 'items.price', 'tags.1', 'absent', 'card.number.deeper'))).toEqual(['ssn', 'card.number', 'items.price', 'tags.1'])
    expect(doc).toEqual({ ssn: MASKED, card: { number: MASKED, brand: 'visa' }, items: [{ price: MASKED, sku: 'a' }, { price: MASKED }, 'loose'], tags: ['x', MASKED] })
  })

  it('* stands for any one field name or array index, and only one level', () => {
    const doc = { contacts: [{ phone: '1', address: { phone: 'deep' } }, { phone: '2' }], profile: { home: { phone: '3' }, work: { phone: '4' } } }
    expect(maskDocument(doc, paths('contacts.*.phone', 'profile.*.phone')).sort()).toEqual(['contacts.*.phone', 'profile.*.phone'])
    expect(doc.contacts).toEqual([{ phone: MASKED, address: { phone: 'deep' } }, { phone: MASKED }])
    expect(doc.profile).toEqual({ home: { phone: MASKED }, work: { phone: MASKED } })
  })

  it('a whole sub-document is replaced when the path names it; values that are not plain objects are left alone', () => {
    const doc = { card: { number: '1' }, when: new Date(0) }
    expect(maskDocument(doc, paths('card', 'when.getTime'))).toEqual(['card'])
    expect(doc.card).toBe(MASKED)
    expect(doc.when).toBeInstanceOf(Date)
    expect(maskDocument('not a document', paths('x'))).toEqual([])
    expect(maskDocument(null, paths('x'))).toEqual([])
  })
})

describe('the policy mask', () => {
  const agent: Principal = { id: 'a', kind: 'agent', groups: ['g'], claims: {}, credential: 'token:t' }
  const session: SessionInfo = { id: 's', connection: 'docs', protocol: 'mongodb', clientAddress: '127.0.0.1:1', startedAt: 0, tls: false, signal: new AbortController().signal }
  const request = (collections: string[]): GatewayRequest => ({ id: 'r', session, protocol: 'mongodb', action: 'mongo.command', target: 'app', attrs: { mongo: { collections } }, receivedAt: 0 })
  const engine = (rules: unknown[]) => new RuleEngine(validate(GatewayConfig, { connections: [{ name: 'docs', adapter: 'mongodb', listen: '127.0.0.1:0', upstream: {} }], policies: [{ id: 'p', rules }] }).policies)

  it('every allow rule that applies adds its fields, whichever allows', () => {
    const e = engine([
      { id: 'all', effect: 'allow' },
      { id: 'users', effect: 'allow', match: { 'mongo.collections': ['users'] }, mask: ['ssn'] },
      { id: 'cards', effect: 'allow', match: { 'mongo.collections': ['cards'] }, mask: ['number', 'ssn'] },
    ])
    const d = e.decide(request(['users', 'cards']), agent)
    expect(d).toMatchObject({ verdict: 'allow', rule: 'p/all' })
    expect(maskPathsOf(d)?.map((m) => m.text)).toEqual(['ssn', 'number'])
    expect(maskPathsOf(e.decide(request(['orders']), agent))).toBeUndefined()
  })

  it('the allowing rule keeps its own fields and takes those of later rules', () => {
    const e = engine([
      { id: 'users', effect: 'allow', match: { 'mongo.collections': ['users'] }, mask: ['ssn', 'ssn'] },
      { id: 'cards', effect: 'allow', match: { 'mongo.collections': ['cards'] }, mask: ['number'] },
      { id: 'plain', effect: 'allow', match: { 'mongo.collections': ['orders'] } },
    ])
    const own = e.decide(request(['users']), agent)
    expect(own).toMatchObject({ verdict: 'allow', rule: 'p/users', obligations: [{ kind: 'mask', fields: ['ssn'] }] })
    const both = e.decide(request(['users', 'cards']), agent)
    expect(both).toMatchObject({ verdict: 'allow', rule: 'p/users' })
    expect((both as { obligations: unknown[] }).obligations).toEqual([{ kind: 'mask', fields: ['ssn', 'number'] }])
    expect(maskPathsOf(e.decide(request(['orders']), agent))).toBeUndefined()
    expect((e.decide(request(['orders']), agent) as { obligations?: unknown }).obligations).toBeUndefined()
    // a review that applies wins over the masked allow, and carries its mask for when it is approved
    const r = engine([
      { id: 'users', effect: 'allow', mask: ['ssn'] },
      { id: 'hold', effect: 'review', match: { 'mongo.collections': ['users'] } },
    ]).decide(request(['users']), agent)
    expect(r).toMatchObject({ verdict: 'review', rule: 'p/hold', obligations: [{ kind: 'mask', fields: ['ssn'] }] })
    expect(maskPathsOf(r)).toBeUndefined()
  })

  it('a deny still wins over a masked allow', () => {
    const e = engine([
      { id: 'users', effect: 'allow', mask: ['ssn'] },
      { id: 'no', effect: 'deny', match: { 'mongo.collections': ['secrets'] } },
    ])
    expect(e.decide(request(['secrets']), agent)).toMatchObject({ verdict: 'deny', rule: 'p/no' })
  })

  it('only an allow rule takes mask, and paths are dotted names', () => {
    expect(() => engine([{ id: 'x', effect: 'deny', mask: ['ssn'] }])).toThrow(/mask: only a rule with effect allow masks fields/)
    expect(() => engine([{ id: 'x', effect: 'allow', mask: ['a..b'] }])).toThrow(/mask/)
    expect(() => engine([{ id: 'x', effect: 'allow', mask: [] }])).toThrow(/mask/)
  })
})
