/**
 * Connection admission (connections still logging in) and session caps on their own, with the
 * clock in the test's hands. test/core/limits.test.ts and session-limits.test.ts drive them
 * through real gateways and clients.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { ConnectionAdmission, isRefused, SessionCaps, type ConnectionSlot, type RefusedConnection } from '../../core/dist/pipeline/admission.js'

const unauth = { total: 4, perSource: 2, loginTimeoutMs: 5000 }
const never = () => {
  throw new Error('no timeout expected')
}

beforeEach(() => {
  vi.useFakeTimers()
  vi.setSystemTime(new Date('2026-12-01T00:00:00Z'))
})
afterEach(() => {
  vi.useRealTimers()
})

describe('ConnectionAdmission', () => {
  it('admits up to perSource from one address and up to total in all, naming the limit it refuses by', () => {
    const a = new ConnectionAdmission(unauth)
    const slots = [a.admit('10.0.0.1', never), a.admit('10.0.0.1', never)]
    expect(slots.some(isRefused)).toBe(false)
    const third = a.admit('10.0.0.1', never)
    expect(third).toMatchObject({ limit: 'unauthenticated.per-source', source: '10.0.0.1', reason: '2 connections from 10.0.0.1 are already logging in (limits.unauthenticated.perSource)', firstOfBurst: true })
    expect(isRefused(a.admit('10.0.0.2', never))).toBe(false)
    expect(isRefused(a.admit('10.0.0.3', never))).toBe(false)
    expect(a.admit('10.0.0.4', never)).toMatchObject({ limit: 'unauthenticated.total', source: '10.0.0.4', reason: '4 connections are already logging in (limits.unauthenticated.total)' })
  })

  it('a slot is given back once, by logging in or by closing, whichever comes first', () => {
    const a = new ConnectionAdmission(unauth)
    const s1 = a.admit('10.0.0.1', never) as ConnectionSlot
    const s2 = a.admit('10.0.0.1', never) as ConnectionSlot
    expect(isRefused(a.admit('10.0.0.1', never))).toBe(true)
    s1.authenticated()
    s1.release()
    s1.authenticated()
    const s3 = a.admit('10.0.0.1', never)
    expect(isRefused(s3)).toBe(false)
    // the repeated calls above gave back one place, not three
    expect(isRefused(a.admit('10.0.0.1', never))).toBe(true)
    s2.release()
    ;(s3 as ConnectionSlot).release()
    // both places free again, and the total counts them back too
    for (const src of ['10.0.0.1', '10.0.0.1', '10.0.0.2', '10.0.0.2']) expect(isRefused(a.admit(src, never))).toBe(false)
    expect(a.admit('10.0.0.3', never)).toMatchObject({ limit: 'unauthenticated.total' })
  })

  it('a connection that has not logged in after loginTimeoutMs is refused with the reason and its slot freed', () => {
    const a = new ConnectionAdmission(unauth)
    const timedOut: RefusedConnection[] = []
    a.admit('10.0.0.1', (r) => timedOut.push(r))
    const loggedIn = a.admit('10.0.0.1', (r) => timedOut.push(r)) as ConnectionSlot
    loggedIn.authenticated()
    vi.advanceTimersByTime(4999)
    expect(timedOut).toEqual([])
    vi.advanceTimersByTime(1)
    expect(timedOut).toHaveLength(1)
    expect(timedOut[0]).toMatchObject({ limit: 'unauthenticated.login-timeout', source: '10.0.0.1', reason: 'the connection did not log in within 5000 ms (limits.unauthenticated.loginTimeoutMs)' })
    // both places are free: one logged in, one timed out; the logged-in one never times out
    const later: RefusedConnection[] = []
    expect(isRefused(a.admit('10.0.0.1', (r) => later.push(r)))).toBe(false)
    expect(isRefused(a.admit('10.0.0.1', (r) => later.push(r)))).toBe(false)
    vi.advanceTimersByTime(60_000)
    expect(timedOut).toHaveLength(1)
    expect(later).toHaveLength(2)
  })

  it('a burst of refusals from one source is logged once: the first, and the first after 10 quiet seconds', () => {
    const a = new ConnectionAdmission({ ...unauth, perSource: 0 })
    const first = (src: string) => (a.admit(src, never) as RefusedConnection).firstOfBurst
    expect(first('10.0.0.1')).toBe(true)
    vi.advanceTimersByTime(9_000)
    expect(first('10.0.0.1')).toBe(false)
    expect(first('10.0.0.2')).toBe(true)
    vi.advanceTimersByTime(10_000)
    expect(first('10.0.0.1')).toBe(false)
    vi.advanceTimersByTime(10_001)
    expect(first('10.0.0.1')).toBe(true)
    // each refusal has its own id
    const ids = new Set(Array.from({ length: 5 }, () => (a.admit('10.0.0.1', never) as RefusedConnection).id))
    expect(ids.size).toBe(5)
  })

  it('a burst is per limit: a per-source refusal does not swallow the first total refusal', () => {
    const a = new ConnectionAdmission({ total: 1, perSource: 1, loginTimeoutMs: 5000 })
    a.admit('10.0.0.1', never)
    expect(a.admit('10.0.0.1', never)).toMatchObject({ limit: 'unauthenticated.per-source', firstOfBurst: true })
    expect(a.admit('10.0.0.1', never)).toMatchObject({ limit: 'unauthenticated.per-source', firstOfBurst: false })
    expect(a.admit('10.0.0.2', never)).toMatchObject({ limit: 'unauthenticated.total', firstOfBurst: true })
  })

  it('forgets old bursts when it remembers more than 10,000 sources', () => {
    const a = new ConnectionAdmission({ ...unauth, perSource: 0 })
    a.admit('old', never)
    vi.advanceTimersByTime(10_001)
    for (let i = 0; i < 10_001; i++) a.admit(`s${i}`, never)
    // 'old' was forgotten: its next refusal starts a burst; a recent source's does not
    expect((a.admit('old', never) as RefusedConnection).firstOfBurst).toBe(true)
    expect((a.admit('s5', never) as RefusedConnection).firstOfBurst).toBe(false)
  })

  it('new limits apply to the next connection (reload), counts carry over', () => {
    const a = new ConnectionAdmission(unauth)
    a.admit('10.0.0.1', never)
    a.limits = { ...unauth, perSource: 1 }
    expect(a.admit('10.0.0.1', never)).toMatchObject({ limit: 'unauthenticated.per-source', reason: expect.stringContaining('1 connections from 10.0.0.1') })
  })
})

describe('SessionCaps', () => {
  const limits = { perIdentity: 2, perToken: 1, total: 3, idleMs: 0, maxAgeMs: 0 }

  it('caps sessions per credential, per identity and in all, naming the cap', () => {
    const c = new SessionCaps(limits)
    expect(c.take({}, 'a', 'token:a1')).toBeUndefined()
    expect(c.take({}, 'a', 'token:a1')).toEqual({ limit: 'sessions.per-token', reason: '1 sessions are open with this credential on this connection (limits.sessions.perToken)' })
    expect(c.take({}, 'a', 'token:a2')).toBeUndefined()
    expect(c.take({}, 'a', 'token:a3')).toEqual({ limit: 'sessions.per-identity', reason: 'identity "a" has 2 sessions open on this connection (limits.sessions.perIdentity)' })
    expect(c.take({}, 'b', 'token:b1')).toBeUndefined()
    expect(c.take({}, 'c', 'token:c1')).toEqual({ limit: 'sessions.total', reason: '3 sessions are open on this connection (limits.sessions.total)' })
  })

  it('an identity’s own limits replace the connection’s for it alone; the total stays the connection’s', () => {
    const c = new SessionCaps(limits)
    const own = { ...limits, perIdentity: 1, perToken: 5 }
    expect(c.take({}, 'a', 't1', own)).toBeUndefined()
    expect(c.take({}, 'a', 't2', own)).toMatchObject({ limit: 'sessions.per-identity' })
    const generous = { ...limits, perIdentity: 10, perToken: 10, total: 100 }
    expect(c.take({}, 'b', 't3', generous)).toBeUndefined()
    expect(c.take({}, 'b', 't3', generous)).toBeUndefined()
    expect(c.take({}, 'b', 't3', generous)).toMatchObject({ limit: 'sessions.total' })
  })

  it('gives a session’s place back once; a session that took none gives nothing back', () => {
    const c = new SessionCaps(limits)
    const s1 = {}
    const s2 = {}
    c.take(s1, 'a', 't1')
    c.take(s2, 'a', 't2')
    c.release({})
    c.release(s1)
    c.release(s1)
    expect(c.take({}, 'a', 't1')).toBeUndefined()
    // s1's double release did not free s2's place
    expect(c.take({}, 'a', 't3')).toMatchObject({ limit: 'sessions.per-identity' })
    c.release(s2)
    expect(c.take({}, 'a', 't2')).toBeUndefined()
  })
})
