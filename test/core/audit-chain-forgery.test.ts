/**
 * Forgeries of a hash-chained audit log with signed checkpoints, checked by `verifyChain` (what
 * `gatehouse audit verify` runs). The chain alone can be recomputed by anyone who can write the
 * file; only the Ed25519 checkpoint signatures vouch for it. Every forgery here re-seals the chain
 * so that the plain hash check passes, and then tries to make the checkpoints agree too.
 */
import { describe, expect, it } from 'vitest'
import { createHash, createPublicKey, generateKeyPairSync, verify as verifySignature, type KeyObject } from 'node:crypto'
import { checkpointJson, fileLines, GENESIS_HASH, sealEvent, signingKeyId, storesHash, verifyChain, verifyLines } from '@gatehouse/core'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

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

describe('the checkpoint format, as an outside verifier reads it', () => {
  it('signs the covered hash (as bytes) followed by the sequence number as a 64-bit big-endian integer', () => {
    const covers = createHash('sha256').update('x').digest('hex')
    const cp = JSON.parse(checkpointJson(covers, 12, real.privateKey, signingKeyId(real.privateKey), 7)) as Record<string, unknown>
    expect(cp).toMatchObject({ id: `checkpoint:7:${covers.slice(0, 16)}`, type: 'audit.checkpoint', seq: 7, covers, events: 12, keyId: signingKeyId(real.publicKey) })
    const seq = Buffer.alloc(8)
    seq.writeBigUInt64BE(7n)
    const message = Buffer.concat([Buffer.from(covers, 'hex'), seq])
    expect(verifySignature(null, message, real.publicKey, Buffer.from(cp.signature as string, 'base64'))).toBe(true)
  })

  it('names a key by the first 16 hex digits of the SHA-256 of its public key (DER), from either half', () => {
    const der = real.publicKey.export({ type: 'spki', format: 'der' })
    const id = createHash('sha256').update(der).digest('hex').slice(0, 16)
    expect(signingKeyId(real.privateKey)).toBe(id)
    expect(signingKeyId(createPublicKey(real.privateKey))).toBe(id)
    expect(signingKeyId(attacker.publicKey)).not.toBe(id)
  })
})

describe('what verify says, word for word', () => {
  const sealed = (n: number) => seal(Array.from({ length: n }, (_, i) => event(i + 1))).trim().split('\n')
  const hashOf = (line: string) => (/"hash":"([0-9a-f]{64})"\}$/.exec(line) as RegExpExecArray)[1] as string
  const prevOf = (line: string) => (/"prev":"([0-9a-f]{64})"/.exec(line) as RegExpExecArray)[1] as string
  const text = (l: string[]) => `${l.join('\n')}\n`

  it('a log without a final newline is read whole', () => {
    const l = sealed(3)
    expect(checkPlain(l.join('\n'))).toMatchObject({ ok: true, events: 3, last: hashOf(l[2] as string) })
  })

  it('names the problem of each line with the hashes it saw', () => {
    const l = sealed(4)
    const edited = [...l]
    edited[1] = (edited[1] as string).replace('SELECT 2', 'SELECT 9')
    expect(checkPlain(text(edited)).first).toEqual({ problem: 'edited', line: 2, file: 'audit.jsonl', detail: `the line's content does not match its hash ${hashOf(l[1] as string).slice(0, 12)}…` })

    const removed = [l[0], l[2], l[3]] as string[]
    expect(checkPlain(text(removed)).first).toEqual({ problem: 'removed', line: 2, file: 'audit.jsonl', detail: `the event it follows (${hashOf(l[1] as string).slice(0, 12)}…) is missing: events were removed before this line` })

    const headless = l.slice(1)
    expect(checkPlain(text(headless)).first).toEqual({ problem: 'truncated-head', line: 1, file: 'audit.jsonl', detail: `the first event continues from ${hashOf(l[0] as string).slice(0, 12)}…, not from the start of a chain: earlier events are missing (pass the rotated files before it)` })

    // swapped 2 and 3: line 2 (event 3) follows event 2, stored later
    const swapped = [l[0], l[2], l[1], l[3]] as string[]
    expect(checkPlain(text(swapped)).first).toEqual({ problem: 'reordered', line: 2, file: 'audit.jsonl', detail: 'the event follows one that is stored later (line 3)' })

    // event 2 repeated after event 3: it follows event 1, stored earlier than the line before it
    const moved = [l[0], l[1], l[2], l[1]] as string[]
    expect(checkPlain(text(moved)).first).toEqual({ problem: 'reordered', line: 4, file: 'audit.jsonl', detail: 'the event follows one stored earlier (line 1), not the line before it: events were moved' })

    const unsealed = [...l]
    unsealed[2] = '{"id":"x"}'
    expect(checkPlain(text(unsealed)).first).toEqual({ problem: 'unsealed', line: 3, file: 'audit.jsonl', detail: 'the line carries no hash: it was not written by a chaining sink, or its end was cut off' })

    const noPrev = [...l]
    noPrev[2] = `{"id":"x","hash":"${'a'.repeat(64)}"}`
    expect(checkPlain(text(noPrev)).first).toEqual({ problem: 'unsealed', line: 3, file: 'audit.jsonl', detail: 'the line carries no prev field' })
  })

  it('across rotated files, a line that follows one stored later names that file', () => {
    const l = sealed(4)
    const r = verifyChain([{ name: 'audit.1.jsonl', text: text([l[0], l[2]] as string[]) }, { name: 'audit.jsonl', text: text([l[1], l[3]] as string[]) }])
    expect(r.first).toEqual({ problem: 'reordered', line: 2, file: 'audit.1.jsonl', detail: 'the event follows one that is stored later (line 1 of audit.jsonl)' })
  })

  /** Lines a writer appends after `prev`, each sealed after the one before, as audit-jsonl does. */
  const branch = (prev: string, writer: string, n: number): string[] => {
    const out: string[] = []
    for (let i = 1; i <= n; i++) {
      const s = sealEvent(JSON.stringify({ id: `${writer}.${i}`, type: 'request', text: `SELECT ${i}` }), prev)
      out.push(s.line)
      prev = s.hash
    }
    return out
  }
  const forkText = (point: string, writers: number) => `from ${point} on, ${writers} writers appended to this log at once (each line is intact and continues an earlier one): two gateways shared the file, not an edit; if only one gateway writes here, treat it as tampering`

  it('two writers that continued the same last line (two gateways on one file) are a fork, told apart from an edit', () => {
    const l = sealed(2)
    const a = branch(hashOf(l[1] as string), 'a', 3)
    const b = branch(hashOf(l[1] as string), 'b', 2)
    const interleaved = [l[0], l[1], a[0], b[0], a[1], b[1], a[2]] as string[]
    expect(checkPlain(text(interleaved))).toEqual({ ok: false, events: 3, checkpoints: 0, unsignedTail: 3, last: hashOf(a[0] as string), first: { problem: 'forked', line: 4, file: 'audit.jsonl', detail: forkText('line 2', 2) } })
    // one writer's lines all first, then the other's: the same fork
    expect(checkPlain(text([l[0], l[1], ...a, ...b] as string[])).first).toMatchObject({ problem: 'forked', line: 6, detail: forkText('line 2', 2) })
    // three writers
    const c = branch(hashOf(l[1] as string), 'c', 1)
    expect(checkPlain(text([...interleaved, ...c])).first).toMatchObject({ problem: 'forked', detail: forkText('line 2', 3) })
    // both started on an empty file
    const x = branch(GENESIS_HASH, 'x', 2)
    const y = branch(GENESIS_HASH, 'y', 2)
    expect(checkPlain(text([x[0], y[0], x[1], y[1]] as string[])).first).toEqual({ problem: 'forked', line: 2, file: 'audit.jsonl', detail: forkText('the start of the chain', 2) })
    // a log that continues a kept hash, forked right there
    const p = branch(hashOf(l[1] as string), 'p', 2)
    const q = branch(hashOf(l[1] as string), 'q', 1)
    expect(verifyChain([{ name: 'b', text: text([p[0], q[0], p[1]] as string[]) }], { continuesFrom: hashOf(l[1] as string) }).first).toMatchObject({ problem: 'forked', line: 2, detail: forkText('the start of the chain', 2) })
  })

  it('a fork is named only when every line after it is intact and follows an earlier one: an edit, a removal, a copied line or a forward pointer in it is not a fork', () => {
    const l = sealed(2)
    const a = branch(hashOf(l[1] as string), 'a', 3)
    const b = branch(hashOf(l[1] as string), 'b', 3)
    const forked = () => [l[0], l[1], a[0], b[0], a[1], b[1], a[2], b[2]] as string[]
    const moved = 'the event follows one stored earlier (line 2), not the line before it: events were moved'

    const edited = forked()
    edited[6] = (edited[6] as string).replace('SELECT 3', 'SELECT 9')
    expect(checkPlain(text(edited)).first).toEqual({ problem: 'reordered', line: 4, file: 'audit.jsonl', detail: moved })

    const removed = forked()
    removed.splice(4, 1) // a's second line: a's third follows a line no longer there
    expect(checkPlain(text(removed)).first).toMatchObject({ problem: 'reordered', line: 4, detail: moved })

    const copied = [...forked(), a[1] as string]
    expect(checkPlain(text(copied)).first).toMatchObject({ problem: 'reordered', line: 4, detail: moved })

    const forward = forked()
    ;[forward[4], forward[6]] = [forward[6] as string, forward[4] as string] // a's third stored before a's second
    expect(checkPlain(text(forward)).first).toMatchObject({ problem: 'reordered', line: 4, detail: moved })

    const unsealed = [...forked(), '{"id":"z"}']
    expect(checkPlain(text(unsealed)).first).toMatchObject({ problem: 'reordered', line: 4 })
    const noPrev = [...forked(), `{"id":"z","hash":"${'a'.repeat(64)}"}`]
    expect(checkPlain(text(noPrev)).first).toMatchObject({ problem: 'reordered', line: 4 })

    // a line that restarts the chain, followed by an edited one: no fork from the start either
    const restarted = [l[0], l[1], ...branch(GENESIS_HASH, 'r', 1), ...branch(hashOf(l[0] as string), 's', 1)]
    expect(checkPlain(text(restarted)).first).toMatchObject({ problem: 'forked', line: 3, detail: forkText('the start of the chain', 3) })
    restarted[3] = (restarted[3] as string).replace('SELECT 1', 'SELECT 2')
    expect(checkPlain(text(restarted)).first).toMatchObject({ problem: 'removed', line: 3 })
  })

  it('a line that follows one stored later is a move even when that later line has successors of its own', () => {
    const l = sealed(3)
    // event 3 first (it follows event 2), then event 2, then a line that also continues event 2
    const other = branch(hashOf(l[1] as string), 'o', 1)
    const r = checkPlain(text([l[0], l[2], l[1], ...other] as string[]))
    expect(r.first).toEqual({ problem: 'reordered', line: 2, file: 'audit.jsonl', detail: 'the event follows one that is stored later (line 3)' })
  })

  it('a fork from a line is not widened to a second start of the chain', () => {
    const l = sealed(2)
    const a = branch(hashOf(l[0] as string), 'a', 1)
    const restart = branch(GENESIS_HASH, 'r', 1)
    expect(checkPlain(text([l[0], l[1], ...a, ...restart] as string[])).first).toMatchObject({ problem: 'reordered', line: 3 })
  })

  it('a line repeated later is reported where the copy stands, from the first place its hash was seen', () => {
    const l = sealed(3)
    const r = checkPlain(text([l[0], l[1], l[2], l[1]] as string[]))
    expect(r).toMatchObject({ ok: false, events: 3, first: { problem: 'reordered', line: 4, detail: 'the event follows one stored earlier (line 1), not the line before it: events were moved' } })
  })

  it('a hash stored twice is placed where it was first stored', () => {
    const l = sealed(3)
    // event 3 follows event 2, which is stored at line 3 and again at line 4
    const r = checkPlain(text([l[0], l[2], l[1], l[1]] as string[]))
    expect(r.first).toEqual({ problem: 'reordered', line: 2, file: 'audit.jsonl', detail: 'the event follows one that is stored later (line 3)' })
  })

  it('given the hash a log continues from, a wrong first line is a removal, not a cut head', () => {
    const l = sealed(3)
    const r = verifyChain([{ name: 'b', text: text(l.slice(2)) }], { continuesFrom: hashOf(l[0] as string) })
    expect(r.first).toMatchObject({ problem: 'removed', line: 1 })
    expect(prevOf(l[2] as string)).toBe(hashOf(l[1] as string))
  })

  it('a sealed line that is not JSON is checked by its hash and never crashes the verifier, with or without a key', () => {
    const first = sealEvent(JSON.stringify({ id: 'a', type: 'request' }), GENESIS_HASH)
    const odd = sealEvent('not json, "type":"audit.checkpoint" }', first.hash)
    const after = sealEvent(JSON.stringify({ id: 'b', type: 'request' }), odd.hash)
    const log = text([first.line, odd.line, after.line])
    expect(checkPlain(log)).toMatchObject({ ok: true, events: 3 })
    expect(check(log)).toMatchObject({ ok: true, events: 3, checkpoints: 0 })
  })

  it('a checkpoint whose seq is text is refused even when the signature was made for that number', () => {
    const r = check(seal([event(1), checkpoint(0), event(2), checkpoint(1, { seqField: '1' }), event(3)]))
    expect(r).toMatchObject({ ok: false, checkpoints: 1, first: { problem: 'bad-checkpoint', line: 4 } })
  })

  it('counts the events after the last checkpoint, and vouches for none when there is none', () => {
    expect(check(seal([event(1), event(2), checkpoint(0)]))).toMatchObject({ ok: true, checkpoints: 1, unsignedTail: 0 })
    expect(check(seal([event(1), checkpoint(0), event(2), event(3), event(4)]))).toMatchObject({ ok: true, checkpoints: 1, unsignedTail: 3 })
    expect(check(seal([event(1), event(2)]))).toMatchObject({ ok: true, checkpoints: 0, unsignedTail: 2 })
    // a failure reports how far it got
    const l = seal([event(1), checkpoint(0), event(2), event(3)]).trim().split('\n')
    l[3] = (l[3] as string).replace('SELECT 3', 'SELECT 8')
    expect(check(text(l))).toMatchObject({ ok: false, events: 3, checkpoints: 1, unsignedTail: 1, last: hashOf(l[2] as string) })
  })
})


describe('reading logs from disk a chunk at a time (what audit verify runs on files)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-lines-'))
  const file = (name: string, content: string | Buffer) => {
    const p = join(dir, name)
    writeFileSync(p, content)
    return p
  }
  const read = (paths: string[], max?: number) => [...fileLines(paths, undefined, max)()]

  it('yields each line with its file and number, across files, without the newline; a last line without one; nothing for an empty file', () => {
    const a = file('a', 'one\ntwo\n')
    const b = file('b', '')
    const c = file('c', 'three\nfour')
    expect(read([a, b, c])).toEqual([
      { file: a, line: 1, text: 'one' },
      { file: a, line: 2, text: 'two' },
      { file: c, line: 1, text: 'three' },
      { file: c, line: 2, text: 'four' },
    ])
    expect(read([file('blank', '\n\nx\n')])).toEqual([{ file: join(dir, 'blank'), line: 1, text: '' }, { file: join(dir, 'blank'), line: 2, text: '' }, { file: join(dir, 'blank'), line: 3, text: 'x' }])
  })

  it('joins a line cut by the 1 MiB read boundary, multi-byte characters included; reads the files again on each call; counts the bytes', () => {
    const long = `${'é'.repeat(700_000)}ü` // 1.4 MB: crosses one read boundary, in the middle of a character
    const p = file('long', `short\n${long}\nend\n`)
    expect(read([p]).map((l) => l.text)).toEqual(['short', long, 'end'])
    const seen: number[] = []
    const source = fileLines([p], (n) => seen.push(n))
    expect([...source()].length).toBe(3)
    expect([...source()].length).toBe(3)
    expect(seen.at(-1)).toBe(Buffer.byteLength(`short\n${long}\nend\n`))
    expect(seen.filter((n) => n === seen.at(-1)).length).toBe(2)
  })

  it('a short line across the read boundary is whole under a limit near the read size; a line exactly at the limit is whole, one byte over is not', () => {
    const first = 'a'.repeat(1024 * 1024 - 6) // with its newline, the next line starts 5 bytes before the first read ends
    const p = file('boundary', `${first}\nshort line across\n`)
    expect(read([p], 1024 * 1024).map((l) => l.text)).toEqual([first, 'short line across'])
    const exact = 'b'.repeat(1024 * 1024 + 100) // across the boundary
    const q = file('exact', `x\n${exact}\ny\n`)
    expect(read([q], exact.length).map((l) => l.text)).toEqual(['x', exact, 'y'])
    expect(read([q], exact.length - 1).map((l) => l.text)).toEqual(['x', `(a line of more than ${exact.length - 1} bytes)`, 'y'])
  })

  it('a line longer than the limit is not held: it comes back as a placeholder that fails as unsealed, the lines around it intact', () => {
    const big = 'y'.repeat(3 * 1024 * 1024)
    const p = file('huge', `before\n${big}\nafter\n${'z'.repeat(20)}\n`)
    expect(read([p], 1024 * 1024).map((l) => l.text)).toEqual(['before', `(a line of more than ${1024 * 1024} bytes)`, 'after', 'z'.repeat(20)])
    expect(read([p], 10).map((l) => l.text)).toEqual(['before', '(a line of more than 10 bytes)', 'after', '(a line of more than 10 bytes)'])
    expect(read([p], 5).map((l) => l.text)).toEqual(['(a line of more than 5 bytes)', '(a line of more than 5 bytes)', 'after', '(a line of more than 5 bytes)'])
  })

  it('verifyLines over files gives what verifyChain gives over their text, problems and all; storesHash finds stored hashes only', () => {
    const l = seal([event(1), event(2), event(3), event(4)]).trim().split('\n')
    const cases = [l, [l[0], l[2], l[3]], [l[0], l[2], l[1], l[3]], l.slice(1), [l[0], (l[1] as string).replace('SELECT 2', 'SELECT 7'), l[2]]] as string[][]
    for (const [i, lines] of cases.entries()) {
      const p = file(`case-${i}`, `${lines.join('\n')}\n`)
      expect(verifyLines(fileLines([p]))).toEqual(verifyChain([{ name: p, text: readFileSync(p, 'utf8') }]))
    }
    const p = join(dir, 'case-0')
    const last = (/"hash":"([0-9a-f]{64})"\}$/.exec(l[3] as string) as RegExpExecArray)[1] as string
    expect(storesHash(fileLines([p]), last)).toBe(true)
    // a prev is not a stored hash, and neither is a hash that only appears inside a line's text
    const prevOfFirst = (/"prev":"([0-9a-f]{64})"/.exec(l[0] as string) as RegExpExecArray)[1] as string
    expect(storesHash(fileLines([p]), prevOfFirst)).toBe(false)
    const quoting = file('quoting', `${sealEvent(JSON.stringify({ id: 'q', text: `"hash":"${'b'.repeat(64)}"` }), GENESIS_HASH).line}\n`)
    expect(storesHash(fileLines([quoting]), 'b'.repeat(64))).toBe(false)
    // unsealed lines on the way are passed over, not fatal
    const mixed = file('mixed', `not sealed\n{"id":"x"}\n${l[3]}\n`)
    expect(storesHash(fileLines([mixed]), last)).toBe(true)
    expect(storesHash(fileLines([mixed]), 'c'.repeat(64))).toBe(false)
  })
})
