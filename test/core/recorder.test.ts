/**
 * AuditRecorder, which fans each event out to a connection's sinks, in process: required sinks
 * decide whether the caller may go on; best-effort sinks never hold it up or fail it.
 */
import { describe, expect, it } from 'vitest'
import { AuditRecorder, createLogger, GatewayError, MetricsRegistry, type AuditEvent, type AuditSink } from '@gatehouse/core'

const event = { id: 'e1', type: 'request', time: 't', session: 's', connection: 'c', protocol: 'postgres' } as unknown as AuditEvent
const sink = (mode: 'required' | 'best-effort', write: AuditSink['write']): AuditSink => ({ mode, write, flush: async () => {}, close: async () => {} })
const recorder = (...sinks: AuditSink[]) => new AuditRecorder(sinks.map((s, i) => ({ name: `s${i}`, sink: s })), createLogger('silent'))

describe('AuditRecorder', () => {
  it('writes every event to every sink; answers synchronously when the required sinks took it synchronously', () => {
    const seen: string[] = []
    const r = recorder(sink('required', () => void seen.push('r1')), sink('best-effort', () => void seen.push('b1')), sink('required', () => void seen.push('r2')))
    expect(r.hasSinks).toBe(true)
    expect(r.record(event)).toBeUndefined()
    expect(seen.sort()).toEqual(['b1', 'r1', 'r2'])
    expect(recorder().hasSinks).toBe(false)
    expect(recorder(sink('best-effort', () => undefined)).hasSinks).toBe(true)
    expect(recorder().record(event)).toBeUndefined()
  })

  it('a best-effort sink that throws or rejects neither fails nor holds up the record', async () => {
    let release: () => void = () => {}
    const r = recorder(
      sink('best-effort', () => { throw new Error('down') }),
      sink('best-effort', () => Promise.reject(new Error('down'))),
      sink('best-effort', () => new Promise<void>((res) => (release = res))),
    )
    expect(r.record(event)).toBeUndefined()
    await expect(r.recordAsync(event)).resolves.toBeUndefined()
    release()
  })

  it('one required sink: its own promise (its error as it gave it); a throw is GH_ERR_AUDIT_UNAVAILABLE at once', async () => {
    const own = new GatewayError('GH_ERR_AUDIT_UNAVAILABLE', 'sink says no')
    const p = recorder(sink('required', () => Promise.reject(own))).record(event)
    await expect(p).rejects.toBe(own)
    const ok = recorder(sink('required', () => Promise.resolve())).record(event)
    expect(ok).toBeInstanceOf(Promise)
    await expect(ok).resolves.toBeUndefined()
    expect(() => recorder(sink('required', () => { throw new Error('disk') })).record(event)).toThrow(expect.objectContaining({ code: 'GH_ERR_AUDIT_UNAVAILABLE', message: 'audit is unavailable; request refused' }))
  })

  it('several required sinks: waits for all; any one failing is GH_ERR_AUDIT_UNAVAILABLE, with the cause kept', async () => {
    const cause = new Error('webhook down')
    const p = recorder(sink('required', () => Promise.resolve()), sink('required', () => Promise.reject(cause))).record(event)
    await expect(p).rejects.toMatchObject({ code: 'GH_ERR_AUDIT_UNAVAILABLE', cause })
    let release: () => void = () => {}
    const slow = recorder(sink('required', () => undefined), sink('required', () => new Promise<void>((res) => (release = res)))).record(event)
    let done = false
    void slow?.then(() => (done = true))
    await new Promise((res) => setTimeout(res, 10))
    expect(done).toBe(false)
    release()
    await expect(slow).resolves.toBeUndefined()
  })

  it('recordAsync always answers with a promise: resolved, or rejected with GH_ERR_AUDIT_UNAVAILABLE whether the sink threw or rejected', async () => {
    await expect(recorder(sink('required', () => undefined)).recordAsync(event)).resolves.toBeUndefined()
    await expect(recorder(sink('required', () => { throw new Error('x') })).recordAsync(event)).rejects.toMatchObject({ code: 'GH_ERR_AUDIT_UNAVAILABLE' })
    await expect(recorder(sink('required', () => Promise.reject(new Error('y')))).recordAsync(event)).rejects.toMatchObject({ code: 'GH_ERR_AUDIT_UNAVAILABLE', cause: expect.objectContaining({ message: 'y' }) })
  })

  it('counts every failed write by sink: thrown, rejected, and reported later through writeLater', async () => {
    const metrics = new MetricsRegistry()
    const errors = metrics.counter('gatehouse_audit_sink_errors_total', 'test', ['sink'])
    let laterFailed: ((err: Error, e: AuditEvent) => void) | undefined
    const later: AuditSink = { mode: 'required', write: () => undefined, writeLater: (_e, failed) => void (laterFailed = failed), flush: async () => {}, close: async () => {} }
    const r = new AuditRecorder(
      [
        { name: 'thrower', sink: sink('best-effort', () => { throw new Error('down') }) },
        { name: 'rejecter', sink: sink('best-effort', () => Promise.reject(new Error('down'))) },
        { name: 'jsonl', sink: later },
      ],
      createLogger('silent'),
      errors,
    )
    const outcomes: unknown[] = []
    r.recordLater(event, (err) => outcomes.push(err))
    laterFailed?.(new Error('ENOSPC'), event)
    await new Promise((res) => setImmediate(res))
    expect(outcomes).toEqual([expect.objectContaining({ code: 'GH_ERR_AUDIT_UNAVAILABLE' })])
    const text = await metrics.text()
    expect(text).toContain('gatehouse_audit_sink_errors_total{sink="thrower"} 1')
    expect(text).toContain('gatehouse_audit_sink_errors_total{sink="rejecter"} 1')
    expect(text).toContain('gatehouse_audit_sink_errors_total{sink="jsonl"} 1')
    // a required sink whose promise rejects is counted too, and the record refused
    const rejecting = new AuditRecorder([{ name: 'slow', sink: sink('required', () => Promise.reject(new Error('gone'))) }], createLogger('silent'), errors)
    await expect(rejecting.record(event)).rejects.toThrow()
    expect(await metrics.text()).toContain('gatehouse_audit_sink_errors_total{sink="slow"} 1')
  })
})
