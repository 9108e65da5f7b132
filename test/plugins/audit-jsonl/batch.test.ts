/**
 * audit-jsonl's write batching, in process: the events written in one tick go to the file in one
 * write(2) and share its outcome. A batch the disk refuses (here /dev/full: every write is ENOSPC)
 * fails every event in it, leaves no line behind, and the next batch goes on with the chain.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AuditRecorder, createLogger, GENESIS_HASH, isoNow, verifyChain, type AuditEvent, type GatewayConfig } from '@gatehouse/core'
import { JsonlSink } from '@gatehouse/plugin-audit-jsonl'

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

function sink(path?: string): { sink: JsonlSink; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-jsonl-batch-'))
  dirs.push(dir)
  const ctx = { gateway: {} as GatewayConfig, instance: 'audit-jsonl', logger: createLogger('silent'), dataDir: dir }
  return { sink: new JsonlSink({ path: path ?? 'audit.jsonl', required: true, fsync: 'never', maxBatchBytes: 1 << 20 } as never, ctx), dir }
}

const event = (n: number, type: 'request' | 'outcome' = 'request') =>
  ({ id: `s.${n}:${type}`, time: isoNow(), session: 's', connection: 'c', protocol: 'postgres', type, request: `s.${n}` }) as unknown as AuditEvent

describe('audit-jsonl batches', () => {
  it('events written in one tick settle together, each on its own sealed line, in order', async () => {
    const { sink: s, dir } = sink()
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

  it('an intent record written by a caller of the last batch (the Execute after its Parse) is written in the same event-loop turn', async () => {
    const { sink: s, dir } = sink()
    await s.start()
    const order: string[] = []
    await s.write(event(1))
    // we run in the callbacks of the first batch: the next turn of the loop comes after this
    setImmediate(() => order.push('next turn'))
    await s.write(event(2))
    order.push('second written')
    await new Promise((r) => setImmediate(r))
    expect(order).toEqual(['second written', 'next turn'])
    expect(readFileSync(join(dir, 'audit.jsonl'), 'utf8').trim().split('\n')).toHaveLength(2)
    await s.close()
  })

  it('a batch the disk refuses fails every event in it, and a required sink refuses through the recorder', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-jsonl-full-'))
    dirs.push(dir)
    symlinkSync('/dev/full', join(dir, 'full.jsonl'))
    const { sink: s } = sink(join(dir, 'full.jsonl'))
    await s.start()
    const results = await Promise.allSettled([s.write(event(1)), s.write(event(2))])
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected'])
    expect(String((results[0] as PromiseRejectedResult).reason)).toMatch(/ENOSPC/)

    // recordLater: nobody awaits an outcome, but its failure is reported, as the recorder's error
    const recorder = new AuditRecorder([{ name: 'audit-jsonl', sink: s }], createLogger('silent'))
    const failed = await new Promise<{ err: unknown; event: AuditEvent }>((resolve) => recorder.recordLater(event(3, 'outcome'), (err, e) => resolve({ err, event: e })))
    expect(failed.event.id).toBe('s.3:outcome')
    expect(failed.err).toMatchObject({ code: 'GH_ERR_AUDIT_UNAVAILABLE' })
    // and an intent record through the recorder is refused
    await expect(recorder.record(event(4))).rejects.toThrow(/ENOSPC/)
    await s.close().catch(() => undefined)
  })

  it('a failed batch leaves no line: the next batch continues the chain from the last line written', async () => {
    const { sink: s, dir } = sink()
    await s.start()
    await s.write(event(1))
    // the next write(2) fails once, as on a full disk
    const inner = s as unknown as { fd: number }
    const file = inner.fd
    inner.fd = openSync('/dev/full', 'a')
    await expect(s.write(event(2))).rejects.toThrow(/ENOSPC/)
    closeSync(inner.fd)
    inner.fd = file
    await s.write(event(3))
    const lines = readFileSync(join(dir, 'audit.jsonl'), 'utf8').trim().split('\n')
    expect(lines.map((l) => (JSON.parse(l) as { id: string }).id)).toEqual(['s.1:request', 's.3:request'])
    expect(verifyChain([{ name: 'audit.jsonl', text: `${lines.join('\n')}\n` }]).ok).toBe(true)
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
