/**
 * The audit file is a hash chain: `gatehouse audit verify` accepts the file a real gateway wrote
 * (across a restart), and finds an edited, a removed and a reordered line, naming the line.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { execFile } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { generateKeyPairSync } from 'node:crypto'
import { createLogger, GENESIS_HASH, sealEvent, sealedBytesAtMost, sealInto, serializeAuditEvent, verifyChain } from '@gatehouse/core'
import { JsonlSink } from '@gatehouse/plugin-audit-jsonl'
import { startPgCluster, type PgCluster } from '../../fixtures/pg-cluster.js'
import { pgUpstream, startGateway, type TestGateway } from '../../fixtures/gateway.js'
import { psql } from '../../fixtures/clients.js'

const CLI = join(fileURLToPath(new URL('../../..', import.meta.url)), 'core/dist/cli.js')
let cluster: PgCluster
let gw: TestGateway
let lines: string[]

function verify(...args: string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => execFile(process.execPath, [CLI, 'audit', 'verify', ...args], (err, stdout) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout })))
}

beforeAll(async () => {
  cluster = await startPgCluster()
  gw = await startGateway({ upstream: pgUpstream(cluster) })
  const target = { port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] as string }
  await psql(target, 'SELECT 1;\nSELECT 2;\nDROP TABLE nothing;\nSELECT 3;\n')
  await gw.audit()
  lines = readFileSync(gw.auditPath, 'utf8').trim().split('\n')
})

afterAll(async () => {
  await gw?.stop()
  await cluster?.stop()
})

describe('the audit hash chain', () => {
  it('seals every line: prev points at the line before, the first at the start of the chain', () => {
    expect(lines.length).toBeGreaterThan(6)
    const parsed = lines.map((l) => JSON.parse(l) as { prev: string; hash: string })
    expect(parsed[0]?.prev).toBe('0'.repeat(64))
    for (let i = 1; i < parsed.length; i++) expect(parsed[i]?.prev).toBe(parsed[i - 1]?.hash)
  })

  it('audit verify accepts the untouched file', async () => {
    const r = await verify(gw.auditPath)
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(new RegExp(`^ok: ${lines.length} events, chain intact; last hash [0-9a-f]{64}`))
  })

  const tampered = (name: string, edit: (l: string[]) => string[]) => {
    const file = join(gw.dir, name)
    writeFileSync(file, `${edit([...lines]).join('\n')}\n`)
    return file
  }

  it('finds an edited event, even one whose JSON stays valid', async () => {
    const file = tampered('edited.jsonl', (l) => {
      l[3] = (l[3] as string).replace('"verdict":"deny"', '"verdict":"allow"').replace('SELECT 2', 'SELECT 9')
      return l
    })
    const r = await verify(file)
    expect(r.code).toBe(1)
    expect(r.stdout).toMatch(new RegExp(`^${file}:4: edited:`))
  })

  it('finds a removed event', async () => {
    const file = tampered('removed.jsonl', (l) => [...l.slice(0, 4), ...l.slice(5)])
    const r = await verify(file)
    expect(r.code).toBe(1)
    expect(r.stdout).toMatch(new RegExp(`^${file}:5: removed:`))
  })

  it('finds swapped events', async () => {
    const file = tampered('swapped.jsonl', (l) => {
      ;[l[2], l[3]] = [l[3] as string, l[2] as string]
      return l
    })
    const r = await verify(file, '--json')
    expect(r.code).toBe(1)
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, events: 2, first: { problem: 'reordered', line: 3 } })
  })

  it('finds a cut tail when given a hash printed by an earlier verify', async () => {
    const full = await verify(gw.auditPath)
    const head = /last hash ([0-9a-f]{64})/.exec(full.stdout)?.[1] as string
    expect((await verify(gw.auditPath, '--expect', head)).code).toBe(0)
    const file = tampered('cut.jsonl', (l) => l.slice(0, -2))
    const r = await verify(file, '--expect', head)
    expect(r.code).toBe(1)
    expect(r.stdout).toMatch(/truncated-tail/)
  })

  it('finds a removed head, unless the hash it continues from is given', () => {
    const text = `${lines.slice(2).join('\n')}\n`
    expect(verifyChain([{ name: 'tail.jsonl', text }]).first?.problem).toBe('truncated-head')
    const from = (JSON.parse(lines[1] as string) as { hash: string }).hash
    expect(verifyChain([{ name: 'tail.jsonl', text }], { continuesFrom: from }).ok).toBe(true)
  })

  it('rotates by size, and the chain runs on across the rotated files', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-rotate-'))
    const path = join(dir, 'audit.jsonl')
    const rotating = await startGateway({ upstream: pgUpstream(cluster), audit: { path, rotate: { maxBytes: 8192 } } })
    try {
      const statements = Array.from({ length: 40 }, (_, i) => `SELECT ${i} AS n;`).join('\n')
      await psql({ port: rotating.port, user: 'agent-1', password: rotating.tokens['agent-1'] as string }, `${statements}\n`)
      await rotating.audit()
    } finally {
      await rotating.stop()
    }
    const rotated = readdirSync(dir).filter((f) => f.startsWith('audit.jsonl.')).sort().map((f) => join(dir, f))
    expect(rotated.length).toBeGreaterThan(1)
    for (const f of rotated) expect(statSync(f).size).toBeLessThanOrEqual(8192)
    const all = await verify(...rotated, path)
    expect(all.code, all.stdout).toBe(0)
    // the newest file alone starts mid-chain
    const alone = await verify(path)
    expect(alone.stdout).toMatch(/truncated-head/)
  })

  it('signs checkpoints: a log re-sealed without the key fails, the real one verifies with the public key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-sign-'))
    const keyFile = join(dir, 'signing.pem')
    const keygen = await new Promise<number>((resolve) => execFile(process.execPath, [CLI, 'audit', 'keygen', '--output', keyFile], (err) => resolve(err ? 1 : 0)))
    expect(keygen).toBe(0)
    const path = join(dir, 'audit.jsonl')
    const signed = await startGateway({ upstream: pgUpstream(cluster), audit: { path, checkpoint: { key: readFileSync(keyFile, 'utf8'), everyEvents: 5 } } })
    try {
      await psql({ port: signed.port, user: 'agent-1', password: signed.tokens['agent-1'] as string }, Array.from({ length: 8 }, (_, i) => `SELECT ${i};`).join('\n') + '\n')
      await signed.audit()
    } finally {
      await signed.stop()
    }
    const good = await verify(path, '--public-key', `${keyFile}.pub`)
    expect(good.code, good.stdout).toBe(0)
    expect(good.stdout).toMatch(/ok: \d+ events, chain intact; [2-9]\d* signed checkpoints verified, 0 events after the last one/)
    // An attacker edits an event and re-seals the whole chain (no key needed for that)...
    const text = readFileSync(path, 'utf8').trim().split('\n')
    let prev = '0'.repeat(64)
    const resealed = text.map((line, i) => {
      const obj = JSON.parse(line) as Record<string, unknown>
      delete obj.prev
      delete obj.hash
      if (i === 2) obj.text = 'SELECT 42'
      const { line: sealedLine, hash } = sealEvent(JSON.stringify(obj), prev)
      prev = hash
      return sealedLine
    })
    const forged = join(dir, 'forged.jsonl')
    writeFileSync(forged, `${resealed.join('\n')}\n`)
    // ...which passes a plain chain check, but not the checkpoint signatures
    expect((await verify(forged)).code).toBe(0)
    const caught = await verify(forged, '--public-key', `${keyFile}.pub`)
    expect(caught.code).toBe(1)
    expect(caught.stdout).toMatch(/bad-checkpoint/)
    // and dropping the checkpoints instead leaves nothing the key vouches for
    const stripped = join(dir, 'stripped.jsonl')
    let p2 = '0'.repeat(64)
    const noCheckpoints = text
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((o) => o.type !== 'audit.checkpoint')
      .map((o) => {
        delete o.prev
        delete o.hash
        const s2 = sealEvent(JSON.stringify(o), p2)
        p2 = s2.hash
        return s2.line
      })
    writeFileSync(stripped, `${noCheckpoints.join('\n')}\n`)
    const none = await verify(stripped, '--public-key', `${keyFile}.pub`)
    expect(none.code).toBe(1)
    expect(none.stdout).toMatch(/no signed checkpoint/)
    const noneJson = await verify(stripped, '--public-key', `${keyFile}.pub`, '--json')
    expect(noneJson.code).toBe(1)
    expect(JSON.parse(noneJson.stdout)).toMatchObject({ ok: false, checkpoints: 0, first: { problem: 'no-checkpoint' } })
  })

  it('signs what was still pending at close: the closing checkpoint comes after the last event', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-close-'))
    const { privateKey, publicKey } = generateKeyPairSync('ed25519')
    const sink = new JsonlSink(
      { path: join(dir, 'audit.jsonl'), required: true, fsync: 'never', maxBatchBytes: 1 << 20, checkpoint: { key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, everyEvents: 1000, everySeconds: 3600 } },
      { dataDir: dir, logger: createLogger('silent'), gateway: {} as never, instance: 'audit-jsonl' },
    )
    await sink.start()
    const event = (n: number) => ({ id: `s.${n}:outcome`, time: new Date().toISOString(), session: 's', connection: 'c', protocol: 'postgres', type: 'outcome', request: `s.${n}`, verdict: 'allow' }) as never
    void sink.write(event(1))
    void sink.write(event(2))
    await sink.close()
    const report = verifyChain([{ name: 'audit.jsonl', text: readFileSync(join(dir, 'audit.jsonl'), 'utf8') }], { publicKey })
    expect(report).toMatchObject({ ok: true, events: 3, checkpoints: 1, unsignedTail: 0 })
  })

  it('sealInto writes the bytes of sealEvent\'s line and a newline, for any text, within sealedBytesAtMost', () => {
    const texts = ['SELECT 1', 'SELECT \'é\', \'日本\'', 'emoji 😀 pair', 'lone \ud800 high', 'lone \udc00 low', '\u0000\u001f"\\', 'x'.repeat(70_000)]
    let prev = GENESIS_HASH
    for (const text of texts) {
      const json = serializeAuditEvent({ id: 'e', time: 't', session: 's', connection: 'c', protocol: 'postgres', type: 'request', text } as never)
      const expected = sealEvent(json, prev)
      // garbage around the slot: only the line's bytes are written
      const buf = Buffer.alloc(sealedBytesAtMost(json) + 20, 0x7a)
      const { end, hash } = sealInto(buf, 10, json, prev)
      expect(hash).toBe(expected.hash)
      expect(buf.subarray(10, end).toString('utf8')).toBe(`${expected.line}\n`)
      expect(end).toBeLessThanOrEqual(10 + sealedBytesAtMost(json))
      expect(buf.subarray(end).every((b) => b === 0x7a)).toBe(true)
      prev = hash
    }
  })

  it('writes batches of any size and alphabet, with a checkpoint inside one, as one chain that verifies', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-batches-'))
    const { privateKey, publicKey } = generateKeyPairSync('ed25519')
    const sink = new JsonlSink(
      // fsync: always batches what one tick writes (without it, each intent record is its own write)
      { path: join(dir, 'audit.jsonl'), required: true, fsync: 'always', maxBatchBytes: 8 << 20, checkpoint: { key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, everyEvents: 7, everySeconds: 3600 } },
      { dataDir: dir, logger: createLogger('silent'), gateway: {} as never, instance: 'audit-jsonl' },
    )
    await sink.start()
    const event = (n: number, text: string) => ({ id: `s.${n}:request`, time: new Date().toISOString(), session: 's', connection: 'c', protocol: 'postgres', type: 'request', request: `s.${n}`, text, verdict: 'allow' }) as never
    const sizes = [1, 3, 40, 2, 600]
    const texts: string[] = []
    let n = 0
    for (const size of sizes) {
      const pending: Array<Promise<void> | void> = []
      for (let i = 0; i < size; i++) {
        // some batches pass the buffer the sink keeps (256 KiB): it grows for them and is let go after
        const text = `${'é日😀'.repeat(n % 5)} ${n} ${n % 97 === 0 ? 'y'.repeat(300_000) : ''}`
        texts.push(text)
        pending.push(sink.write(event(n++, text)))
      }
      await Promise.all(pending)
    }
    await sink.close()
    const file = readFileSync(join(dir, 'audit.jsonl'), 'utf8')
    const report = verifyChain([{ name: 'audit.jsonl', text: file }], { publicKey })
    // one checkpoint in the batch that passed 7 events since the last (the 40), one in the 600
    expect(report).toMatchObject({ ok: true, events: n + 2, checkpoints: 2, unsignedTail: 0 })
    const stored = file.split('\n').filter((l) => l.includes('"type":"request"')).map((l) => (JSON.parse(l) as { text: string }).text)
    expect(stored).toEqual(texts)
  })

  it('continues the chain when a gateway starts on an existing file', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'gatehouse-chain-')), 'audit.jsonl')
    writeFileSync(path, `${lines.join('\n')}\n`)
    const second = await startGateway({ upstream: pgUpstream(cluster), audit: { path } })
    try {
      await psql({ port: second.port, user: 'agent-1', password: second.tokens['agent-1'] as string }, 'SELECT 4;\n')
      await second.audit()
    } finally {
      await second.stop()
    }
    const r = await verify(path)
    expect(r.code, r.stdout).toBe(0)
    expect(Number(/ok: (\d+) events/.exec(r.stdout)?.[1])).toBeGreaterThan(lines.length)
  })
})

