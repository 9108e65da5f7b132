/**
 * audit-jsonl's writes, in process. Without fsync an intent record is written when `write` is
 * called, with the outcome records that waited for it; with `fsync: always`, the events of one
 * tick go to the file in one write(2) and one fsync and share its outcome. A write the disk
 * refuses (here /dev/full: every write is ENOSPC) fails every event in it, leaves no line
 * behind, and the next write goes on with the chain.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AuditRecorder, createLogger, GENESIS_HASH, isoNow, verifyChain, type AuditEvent, type GatewayConfig } from '@gatehouse/core'
import { JsonlSink } from '@gatehouse/plugin-audit-jsonl'

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

function sink(path?: string, fsync: 'never' | 'always' = 'never'): { sink: JsonlSink; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-jsonl-batch-'))
  dirs.push(dir)
  const ctx = { gateway: {} as GatewayConfig, instance: 'audit-jsonl', logger: createLogger('silent'), dataDir: dir }
  return { sink: new JsonlSink({ path: path ?? 'audit.jsonl', required: true, fsync, maxBatchBytes: 1 << 20 } as never, ctx), dir }
}

const event = (n: number, type: 'request' | 'outcome' = 'request') =>
  ({ id: `s.${n}:${type}`, time: isoNow(), session: 's', connection: 'c', protocol: 'postgres', type, request: `s.${n}` }) as unknown as AuditEvent

describe('audit-jsonl batches', () => {
  it('without fsync, an intent record is in the file when write returns; outcome records wait and ride along with it', async () => {
    const { sink: s, dir } = sink()
    await s.start()
    const file = () => readFileSync(join(dir, 'audit.jsonl'), 'utf8')
    // nothing waits on an outcome record: it is held for company (or a few ms)
    const outcome = s.write(event(1, 'outcome'))
    expect(outcome).toBeInstanceOf(Promise)
    expect(file()).toBe('')
    // the intent record goes out at once, with the outcome before it, in one sealed write
    expect(s.write(event(2))).toBeUndefined()
    const lines = file().trim().split('\n')
    expect(lines.map((l) => (JSON.parse(l) as { id: string }).id)).toEqual(['s.1:outcome', 's.2:request'])
    expect(JSON.parse(lines[0] as string).prev).toBe(GENESIS_HASH)
    await expect(outcome).resolves.toBeUndefined()
    // an outcome alone is written within a few ms
    const alone = s.write(event(3, 'outcome'))
    await alone
    expect(file().trim().split('\n')).toHaveLength(3)
    expect(verifyChain([{ name: 'audit.jsonl', text: file() }]).ok).toBe(true)
    await s.close()
  })

  it('with fsync: always, events written in one tick settle together, each on its own sealed line, in order', async () => {
    const { sink: s, dir } = sink(undefined, 'always')
    await s.start()
    const written = [s.write(event(1)), s.write(event(2, 'outcome')), s.write(event(3))]
    // nothing is in the file before the batch is written (the caller waits for it)
    expect(readFileSync(join(dir, 'audit.jsonl'), 'utf8')).toBe('')
    await Promise.all(written)
    const lines = readFileSync(join(dir, 'audit.jsonl'), 'utf8').trim().split('\n')
    expect(lines.map((l) => (JSON.parse(l) as { id: string }).id)).toEqual(['s.1:request', 's.2:outcome', 's.3:request'])
    expect(JSON.parse(lines[0] as string).prev).toBe(GENESIS_HASH)
    expect(verifyChain([{ name: 'audit.jsonl', text: `${lines.join('\n')}\n` }]).ok).toBe(true)
    await s.close()
  })

  it('with fsync: always, an intent record written by a caller of the last batch (the Execute after its Parse) is written in the same event-loop turn', async () => {
    const { sink: s, dir } = sink(undefined, 'always')
    await s.start()
    const order: string[] = []
    await s.write(event(1))
    // we run in the callbacks of the first batch: the next turn of the loop comes after this
    setImmediate(() => order.push('next turn'))
    const second = s.write(event(2))
    // written at the end of this cascade of callbacks, before the next turn; fsync'd after
    await new Promise<void>((r) => process.nextTick(r))
    order.push('second written')
    expect(readFileSync(join(dir, 'audit.jsonl'), 'utf8').trim().split('\n')).toHaveLength(2)
    await second
    await new Promise((r) => setImmediate(r))
    expect(order).toEqual(['second written', 'next turn'])
    await s.close()
  })

  it('a write the disk refuses fails the intent record at once, and a required sink refuses through the recorder', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-jsonl-full-'))
    dirs.push(dir)
    symlinkSync('/dev/full', join(dir, 'full.jsonl'))
    const { sink: s } = sink(join(dir, 'full.jsonl'))
    await s.start()
    expect(() => s.write(event(1))).toThrow(/ENOSPC/)

    // recordLater: nobody awaits an outcome, but its failure is reported, as the recorder's error
    const recorder = new AuditRecorder([{ name: 'audit-jsonl', sink: s }], createLogger('silent'))
    const failed = await new Promise<{ err: unknown; event: AuditEvent }>((resolve) => recorder.recordLater(event(3, 'outcome'), (err, e) => resolve({ err, event: e })))
    expect(failed.event.id).toBe('s.3:outcome')
    expect(failed.err).toMatchObject({ code: 'GH_ERR_AUDIT_UNAVAILABLE' })
    // and an intent record through the recorder is refused, synchronously: nothing is forwarded
    expect(() => recorder.record(event(4))).toThrow(expect.objectContaining({ code: 'GH_ERR_AUDIT_UNAVAILABLE' }))
    await s.close().catch(() => undefined)
  })

  it('an outcome record waiting for company fails with the intent record the disk refused', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-jsonl-full-'))
    dirs.push(dir)
    symlinkSync('/dev/full', join(dir, 'full.jsonl'))
    const { sink: s } = sink(join(dir, 'full.jsonl'))
    await s.start()
    const outcome = s.write(event(1, 'outcome'))
    expect(() => s.write(event(2))).toThrow(/ENOSPC/)
    await expect(outcome).rejects.toThrow(/ENOSPC/)
    await s.close().catch(() => undefined)
  })

  it('writeLater: an event nobody waits for rides along without a promise; a failed write reaches every caller that gave one', async () => {
    const { sink: s, dir } = sink()
    await s.start()
    const failures: string[] = []
    const failed = (err: Error, e: AuditEvent) => failures.push(`${e.id}: ${(err as NodeJS.ErrnoException).code}`)
    expect(s.writeLater(event(1, 'outcome'), failed)).toBeUndefined()
    s.write(event(2))
    expect(readFileSync(join(dir, 'audit.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { id: string }).id)).toEqual(['s.1:outcome', 's.2:request'])
    // the next write(2) fails: both outcomes waiting for it hear of it, with their own event
    s.writeLater(event(3, 'outcome'), failed)
    s.writeLater(event(4, 'outcome'), () => {
      throw new Error('a handler that throws')
    })
    s.writeLater(event(5, 'outcome'), failed)
    const inner = s as unknown as { fd: number }
    const file = inner.fd
    inner.fd = openSync('/dev/full', 'a')
    expect(() => s.write(event(6))).toThrow(/ENOSPC/)
    closeSync(inner.fd)
    inner.fd = file
    expect(failures).toEqual(['s.3:outcome: ENOSPC', 's.5:outcome: ENOSPC'])
    // written ones are not reported later, and the chain goes on
    s.writeLater(event(7, 'outcome'), failed)
    await new Promise((r) => setTimeout(r, 20))
    expect(failures).toHaveLength(2)
    const text = readFileSync(join(dir, 'audit.jsonl'), 'utf8')
    expect(text.trim().split('\n').map((l) => (JSON.parse(l) as { id: string }).id)).toEqual(['s.1:outcome', 's.2:request', 's.7:outcome'])
    expect(verifyChain([{ name: 'audit.jsonl', text }]).ok).toBe(true)
    await s.close()
  })

  it('a failed write leaves no line: the next one continues the chain from the last line written', async () => {
    const { sink: s, dir } = sink()
    await s.start()
    s.write(event(1))
    // the next write(2) fails once, as on a full disk
    const inner = s as unknown as { fd: number }
    const file = inner.fd
    inner.fd = openSync('/dev/full', 'a')
    expect(() => s.write(event(2))).toThrow(/ENOSPC/)
    closeSync(inner.fd)
    inner.fd = file
    s.write(event(3))
    const lines = readFileSync(join(dir, 'audit.jsonl'), 'utf8').trim().split('\n')
    expect(lines.map((l) => (JSON.parse(l) as { id: string }).id)).toEqual(['s.1:request', 's.3:request'])
    expect(verifyChain([{ name: 'audit.jsonl', text: `${lines.join('\n')}\n` }]).ok).toBe(true)
    await s.close()
  })

  it('query reads the file and the files rotated from it, newest first, keeping only the last matches', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-jsonl-query-'))
    dirs.push(dir)
    const ctx = { gateway: {} as GatewayConfig, instance: 'audit-jsonl', logger: createLogger('silent'), dataDir: dir }
    const s = new JsonlSink({ path: 'audit.jsonl', required: true, fsync: 'never', maxBatchBytes: 1 << 20, rotate: { maxBytes: 4096 } } as never, ctx)
    await s.start()
    for (let n = 0; n < 60; n++) {
      s.write({ ...event(n), principal: { id: n % 2 === 0 ? 'even' : 'odd', kind: 'agent', groups: [], credential: 'c' }, verdict: n % 10 === 0 ? 'deny' : 'allow' } as unknown as AuditEvent)
      s.writeLater(event(n, 'outcome'), () => undefined)
    }
    expect(readdirSync(dir).filter((f) => f.startsWith('audit.jsonl.')).length).toBeGreaterThan(3)
    const ids = async (q: Parameters<JsonlSink['query']>[0]) => (await s.query(q)).map((e) => e.id)
    expect(await ids({ type: 'request', principal: 'even', limit: 3 })).toEqual(['s.58:request', 's.56:request', 's.54:request'])
    expect(await ids({ verdict: 'deny', limit: 100 })).toEqual(['s.50:request', 's.40:request', 's.30:request', 's.20:request', 's.10:request', 's.0:request'])
    // the outcome still waiting for company is read too: the sink writes what it holds first
    expect(await ids({ request: 's.59', limit: 10 })).toEqual(['s.59:outcome', 's.59:request'])
    expect(await ids({ session: 'nobody', limit: 10 })).toEqual([])
    await s.close()
  })

  it('isoNow is the time as toISOString writes it', () => {
    const before = Date.now()
    const t = isoNow()
    const after = Date.now()
    expect(t).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/)
    expect(Date.parse(t)).toBeGreaterThanOrEqual(before)
    expect(Date.parse(t)).toBeLessThanOrEqual(after)
    expect(new Date(Date.parse(t)).toISOString()).toBe(t)
  })
})
