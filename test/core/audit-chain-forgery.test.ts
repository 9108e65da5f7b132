/**
 * Forgeries of a hash-chained audit log with signed checkpoints, checked by `verifyChain` (what
 * `gatehouse audit verify` runs). The chain alone can be recomputed by anyone who can write the
 * file; only the Ed25519 checkpoint signatures vouch for it. Every forgery here re-seals the chain
 * so that the plain hash check passes, and then tries to make the checkpoints agree too.
 */
import { describe, expect, it } from 'vitest'
import { generateKeyPairSync, type KeyObject } from 'node:crypto'
import { checkpointJson, GENESIS_HASH, sealEvent, signingKeyId, verifyChain } from '@gatehouse/core'

const real = generateKeyPairSync('ed25519')
const attacker = generateKeyPairSync('ed25519')

type Entry = { kind: 'event'; obj: Record<string, unknown> } | { kind: 'checkpoint'; seq: number; key?: KeyObject; covers?: 'prev' | string; signature?: unknown; seqField?: unknown }

const event = (n: number, text = `SELECT ${n}`): Entry => ({ kind: 'event', obj: { id: `s.${n}:request`, time: '2026-12-01T00:00:00.000Z', session: 's', type: 'request', request: `s.${n}`, text, verdict: 'allow' } })
const checkpoint = (seq: number, extra: Partial<Extract<Entry, { kind: 'checkpoint' }>> = {}): Entry => ({ kind: 'checkpoint', seq, ...extra })

/** Seals entries into a log; checkpoints are signed by `key` (the real key unless given) over the line before them. */
function seal(entries: Entry[]): string {
  let prev = GENESIS_HASH
  const lines: string[] = []
  let events = 0
  for (const e of entries) {
    let json: string
    if (e.kind === 'event') {
      json = JSON.stringify(e.obj)
    } else {
      const key = e.key ?? real.privateKey
      const o = JSON.parse(checkpointJson(prev, events, key, signingKeyId(key), e.seq)) as Record<string, unknown>
      if (e.covers !== undefined && e.covers !== 'prev') o.covers = e.covers
      if ('signature' in e) o.signature = e.signature
      if ('seqField' in e) o.seq = e.seqField
      json = JSON.stringify(o)
    }
    const s = sealEvent(json, prev)
    lines.push(s.line)
    prev = s.hash
    events++
  }
  return `${lines.join('\n')}\n`
}

const check = (text: string, publicKey: KeyObject = real.publicKey) => verifyChain([{ name: 'audit.jsonl', text }], { publicKey })
/** The chain alone, as `audit verify` checks it without --public-key. */
const checkPlain = (text: string) => verifyChain([{ name: 'audit.jsonl', text }])

const genuine: Entry[] = [event(1), event(2), checkpoint(0), event(3), event(4), checkpoint(1), event(5)]

describe('signed checkpoints against a forger who can re-seal the chain', () => {
  it('the genuine log verifies: both checkpoints checked, one event after the last', () => {
    expect(check(seal(genuine))).toMatchObject({ ok: true, events: 7, checkpoints: 2, unsignedTail: 1 })
    // without the public key the chain is checked and no checkpoint is counted as verified
    expect(checkPlain(seal(genuine))).toMatchObject({ ok: true, events: 7, checkpoints: 0 })
  })

  it('an edited event, re-sealed, with each checkpoint’s covers rewritten to the new chain (old signatures kept) fails on the signature', () => {
    // The forger recomputes the chain and makes every checkpoint cover the line before it in the
    // forged chain: only the signature, made over the original hash, can tell.
    const original = seal(genuine).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
    const forgedEntries = genuine.map((e, i): Entry => {
      if (e.kind === 'event') return i === 0 ? event(1, 'SELECT pg_read_file($$/etc/passwd$$)') : e
      return checkpoint(e.seq, { signature: original[i]?.signature })
    })
    const report = check(seal(forgedEntries))
    expect(report.ok).toBe(false)
    expect(report.first).toMatchObject({ problem: 'bad-checkpoint', line: 3, detail: expect.stringContaining('signature does not verify') })
    // the plain chain, without the key, is fooled: that is why the key matters
    expect(checkPlain(seal(forgedEntries)).ok).toBe(true)
  })

  it('checkpoints re-signed with the forger’s own key fail under the real public key', () => {
    const forged = genuine.map((e, i): Entry => (e.kind === 'event' ? (i === 3 ? event(3, 'DROP TABLE audit') : e) : checkpoint(e.seq, { key: attacker.privateKey })))
    expect(check(seal(forged))).toMatchObject({ ok: false, first: { problem: 'bad-checkpoint', line: 3 } })
    // and they verify under the forger's key: the check is the key, not the format
    expect(check(seal(forged), attacker.publicKey)).toMatchObject({ ok: true, checkpoints: 2 })
  })

  it('a checkpoint whose covers is not the line before it is refused before its signature is looked at', () => {
    const r = check(seal([event(1), event(2), checkpoint(0, { covers: 'a'.repeat(64) })]))
    expect(r).toMatchObject({ ok: false, first: { problem: 'bad-checkpoint', line: 3, detail: expect.stringContaining('does not cover') } })
  })

  it('a checkpoint renumbered after signing fails (the sequence number is signed)', () => {
    const r = check(seal([event(1), checkpoint(0), event(2), checkpoint(1, { seqField: 5 })]))
    expect(r).toMatchObject({ ok: false, first: { problem: 'bad-checkpoint', line: 4, detail: expect.stringContaining('signature') } })
  })

  it('a removed checkpoint leaves a gap in the signed sequence', () => {
    // the forger drops checkpoint 1 and re-seals; checkpoint 2 still carries a valid signature
    const r = check(seal([event(1), checkpoint(0), event(2), event(3), checkpoint(2), event(4)]))
    expect(r).toMatchObject({ ok: false, checkpoints: 1, first: { problem: 'bad-checkpoint', line: 5, detail: 'checkpoint 2 follows checkpoint 0: checkpoints between them were removed' } })
  })

  it('checkpoints out of order fail the same way', () => {
    const r = check(seal([event(1), checkpoint(1), event(2), checkpoint(0)]))
    expect(r).toMatchObject({ ok: false, checkpoints: 1, first: { problem: 'bad-checkpoint', line: 4 } })
  })

  for (const [what, extra] of [
    ['no signature', { signature: undefined }],
    ['a signature that is not a string', { signature: 12345 }],
    ['an empty signature', { signature: '' }],
    ['a negative seq', { seqField: -1 }],
    ['a fractional seq', { seqField: 0.5 }],
    ['a seq given as text', { seqField: '0' }],
    ['an unsafe integer seq', { seqField: 2 ** 60 }],
  ] as const) {
    it(`a checkpoint with ${what} fails`, () => {
      const r = check(seal([event(1), checkpoint(0, extra as Partial<Extract<Entry, { kind: 'checkpoint' }>>), event(2)]))
      expect(r).toMatchObject({ ok: false, checkpoints: 0, first: { problem: 'bad-checkpoint', line: 2 } })
    })
  }

  it('an event that quotes a checkpoint in its text is an event, not a checkpoint', () => {
    const r = check(seal([event(1, 'SELECT \'{"type":"audit.checkpoint","seq":0}\''), event(2), checkpoint(0)]))
    expect(r).toMatchObject({ ok: true, events: 3, checkpoints: 1, unsignedTail: 0 })
  })
})

describe('the chain itself', () => {
  const lines = () => seal([event(1), event(2), event(3), event(4)]).trim().split('\n')
  const join = (l: string[]) => `${l.join('\n')}\n`

  it('reports an edited line, a removed line, a moved line and a missing head at the line where they show', () => {
    const edited = lines()
    edited[1] = (edited[1] as string).replace('SELECT 2', 'SELECT 9')
    expect(check(join(edited))).toMatchObject({ ok: false, events: 1, first: { problem: 'edited', line: 2 } })

    const removed = lines()
    removed.splice(1, 1)
    expect(check(join(removed))).toMatchObject({ ok: false, events: 1, first: { problem: 'removed', line: 2 } })

    const swapped = lines()
    ;[swapped[1], swapped[2]] = [swapped[2] as string, swapped[1] as string]
    expect(check(join(swapped))).toMatchObject({ ok: false, first: { problem: 'reordered', line: 2 } })

    const headless = lines().slice(2)
    expect(check(join(headless))).toMatchObject({ ok: false, events: 0, first: { problem: 'truncated-head', line: 1 } })
    // given the hash the head ended on, the rest verifies
    const full = check(join(lines().slice(0, 2)))
    expect(verifyChain([{ name: 'b', text: join(headless) }], { continuesFrom: full.last })).toMatchObject({ ok: true, events: 2 })
  })

  it('a line without the hash or prev field is unsealed; an empty log is an intact empty chain', () => {
    const l = lines()
    l[2] = JSON.stringify({ id: 'x', type: 'request' })
    expect(check(join(l))).toMatchObject({ ok: false, events: 2, first: { problem: 'unsealed', line: 3 } })
    expect(check('')).toMatchObject({ ok: true, events: 0, last: GENESIS_HASH })
  })

  it('the last hash is the one an auditor keeps: a cut tail verifies as a shorter chain with another last hash', () => {
    const whole = check(join(lines()))
    const cut = check(join(lines().slice(0, 3)))
    expect(cut.ok).toBe(true)
    expect(cut.last).not.toBe(whole.last)
    expect(cut.events).toBe(3)
  })
})
