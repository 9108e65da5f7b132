/**
 * DiskSpool, the on-disk queue audit-postgres and audit-webhook keep events in while their store
 * is down, in process: order, bounds, torn lines after a crash, replay and consume with appends in
 * between, and what it reports as metrics.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DiskSpool, MetricsRegistry } from '@gatehouse/core'

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-spool-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
let n = 0
const fresh = () => join(dir, `s${++n}`, 'spool.jsonl')

describe('DiskSpool', () => {
  it('appends whole lines in order, durably and owner-only; reads them back with the byte count to consume', () => {
    const s = new DiskSpool(fresh(), 1024)
    expect(s.size).toBe(0)
    expect(s.read()).toEqual({ lines: [], bytes: 0 })
    expect(s.append(['{"a":1}', '{"b":"é"}'])).toBe(true)
    expect(s.append(['{"c":3}'])).toBe(true)
    const bytes = Buffer.byteLength('{"a":1}\n{"b":"é"}\n{"c":3}\n')
    expect(s.size).toBe(bytes)
    expect(s.read()).toEqual({ lines: ['{"a":1}', '{"b":"é"}', '{"c":3}'], bytes })
    expect(readFileSync(s.path, 'utf8')).toBe('{"a":1}\n{"b":"é"}\n{"c":3}\n')
    expect(statSync(s.path).mode & 0o777).toBe(0o600)
  })

  it('refuses (writes nothing, returns false) what does not fit in maxBytes, counting the events; 0 disables it; exactly full fits', async () => {
    const metrics = new MetricsRegistry()
    const s = new DiskSpool(fresh(), 16, { metrics, sink: 'test:one' })
    expect(s.append(['x'.repeat(15)])).toBe(true) // 16 bytes with its newline: exactly full
    expect(s.append(['y'])).toBe(false)
    expect(s.append(['y', 'z'])).toBe(false)
    expect(s.size).toBe(16)
    expect(readFileSync(s.path, 'utf8')).toBe(`${'x'.repeat(15)}\n`)
    const text = await metrics.text()
    expect(text).toContain('gatehouse_audit_spool_full_events_total{sink="test:one"} 3')
    expect(text).toContain('gatehouse_audit_spool_bytes{sink="test:one"} 16')
    const off = new DiskSpool(fresh(), 0)
    expect(off.append(['a'])).toBe(false)
    expect(existsSync(off.path)).toBe(false)
  })

  it('after a crash mid-append, cuts the torn last line and goes on from the last whole one; a spool left whole is kept as it is', () => {
    const path = fresh()
    new DiskSpool(path, 1024).append(['{"a":1}', '{"b":2}'])
    appendFileSync(path, '{"c":')
    const reopened = new DiskSpool(path, 1024)
    expect(reopened.size).toBe(16)
    expect(reopened.read().lines).toEqual(['{"a":1}', '{"b":2}'])
    reopened.append(['{"d":4}'])
    expect(readFileSync(path, 'utf8')).toBe('{"a":1}\n{"b":2}\n{"d":4}\n')
    const whole = new DiskSpool(path, 1024)
    expect(whole.size).toBe(24)
    // a file holding only a torn line: nothing whole is left
    const torn = fresh()
    new DiskSpool(torn, 1024)
    writeFileSync(torn, '{"half":')
    expect(new DiskSpool(torn, 1024).size).toBe(0)
    expect(readFileSync(torn, 'utf8')).toBe('')
  })

  it('consume drops what a replay stored and keeps what was appended since it read; consuming all empties it; a missing file is empty', async () => {
    const metrics = new MetricsRegistry()
    const s = new DiskSpool(fresh(), 1024, { metrics, sink: 'test:two' })
    s.append(['1', '2'])
    const snapshot = s.read()
    s.append(['3'])
    s.consume(snapshot.bytes)
    expect(s.read()).toEqual({ lines: ['3'], bytes: 2 })
    expect(s.size).toBe(2)
    expect(existsSync(`${s.path}.tmp`)).toBe(false)
    expect(statSync(s.path).mode & 0o777).toBe(0o600)
    s.consume(2)
    expect(s.size).toBe(0)
    expect(readFileSync(s.path, 'utf8')).toBe('')
    expect(await metrics.text()).toContain('gatehouse_audit_spool_bytes{sink="test:two"} 0')
    s.append(['4'])
    s.consume(100) // more than there is: empty, never negative
    expect(s.size).toBe(0)
    rmSync(s.path)
    s.consume(5)
    expect(s.size).toBe(0)
    expect(s.read()).toEqual({ lines: [], bytes: 0 })
    // the same without metrics
    const plain = new DiskSpool(fresh(), 64)
    plain.append(['a', 'b'])
    plain.consume(2)
    expect(plain.read().lines).toEqual(['b'])
    rmSync(plain.path)
    plain.consume(1)
    expect(plain.size).toBe(0)
  })
})
