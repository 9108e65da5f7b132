/**
 * The login throttle on its own, with the clock in the test's hands: free failures, lockouts that
 * double up to their cap, per source and per identity, forgetting after the window, clearing on
 * success, and a bounded number of keys. (test/core/limits.test.ts and session-limits.test.ts
 * drive the same throttle through real gateways and clients.)
 */
import { describe, expect, it } from 'vitest'
import { LoginThrottle, sourceOf } from '../../core/dist/pipeline/throttle.js'

const limits = { perSource: 3, perIdentity: 5, baseDelayMs: 1000, perConnection: 6 }
const T0 = 1_000_000_000

describe('LoginThrottle', () => {
  it('lets the free failures through, then locks the source for baseDelayMs, doubling with each failure', () => {
    const t = new LoginThrottle(limits)
    for (let i = 0; i < 3; i++) {
      expect(t.check('10.0.0.1', 'agent', T0)).toBeUndefined()
      t.failed('10.0.0.1', undefined, T0)
    }
    expect(t.check('10.0.0.1', 'agent', T0)).toBeUndefined()
    t.failed('10.0.0.1', undefined, T0)
    expect(t.check('10.0.0.1', 'agent', T0)).toEqual({ key: 'source', retryAfterMs: 1000 })
    expect(t.check('10.0.0.1', 'agent', T0 + 999)).toEqual({ key: 'source', retryAfterMs: 1 })
    // at the end of the lockout exactly, the next attempt goes through
    expect(t.check('10.0.0.1', 'agent', T0 + 1000)).toBeUndefined()
    t.failed('10.0.0.1', undefined, T0 + 1000)
    expect(t.check('10.0.0.1', undefined, T0 + 1000)).toEqual({ key: 'source', retryAfterMs: 2000 })
    t.failed('10.0.0.1', undefined, T0 + 3000)
    expect(t.check('10.0.0.1', undefined, T0 + 3000)).toEqual({ key: 'source', retryAfterMs: 4000 })
    // another source is not affected
    expect(t.check('10.0.0.2', undefined, T0 + 3000)).toBeUndefined()
  })

  it('caps a source lockout at 5 minutes and an identity lockout at 1 minute', () => {
    const t = new LoginThrottle(limits)
    let now = T0
    for (let i = 0; i < 40; i++) {
      t.failed('10.0.0.1', 'agent', now)
      now += 1
    }
    expect(t.check('10.0.0.1', undefined, now)).toEqual({ key: 'source', retryAfterMs: 300_000 - 1 })
    expect(t.check('10.0.0.9', 'agent', now)).toEqual({ key: 'identity', retryAfterMs: 60_000 - 1 })
  })

  it('counts an identity across sources: many sources cannot guess at one identity', () => {
    const t = new LoginThrottle(limits)
    for (let i = 0; i < 6; i++) t.failed(`10.0.1.${i}`, 'agent', T0)
    expect(t.check('10.0.2.1', 'agent', T0)).toEqual({ key: 'identity', retryAfterMs: 1000 })
    expect(t.check('10.0.2.1', 'agent', T0 + 1000)).toBeUndefined()
    expect(t.check('10.0.2.1', 'other', T0)).toBeUndefined()
    expect(t.check('10.0.2.1', undefined, T0)).toBeUndefined()
    // the source's own lock is reported first when both apply
    for (let i = 0; i < 4; i++) t.failed('10.0.1.0', 'agent', T0)
    expect(t.check('10.0.1.0', 'agent', T0)?.key).toBe('source')
  })

  it('a success clears the source and the identity', () => {
    const t = new LoginThrottle(limits)
    for (let i = 0; i < 6; i++) t.failed('10.0.0.1', 'agent', T0)
    expect(t.check('10.0.0.1', 'agent', T0)).toBeDefined()
    t.succeeded('10.0.0.1', 'agent')
    expect(t.check('10.0.0.1', 'agent', T0)).toBeUndefined()
    // and counting starts again from zero
    t.failed('10.0.0.1', 'agent', T0)
    expect(t.check('10.0.0.1', 'agent', T0)).toBeUndefined()
  })

  it('forgets failures older than 15 minutes', () => {
    const t = new LoginThrottle(limits)
    for (let i = 0; i < 3; i++) t.failed('10.0.0.1', undefined, T0)
    // 15 minutes and 1 ms later the three failures are gone: three more are free again
    const later = T0 + 900_001
    for (let i = 0; i < 3; i++) t.failed('10.0.0.1', undefined, later)
    expect(t.check('10.0.0.1', undefined, later)).toBeUndefined()
    // exactly 15 minutes is still remembered
    const u = new LoginThrottle(limits)
    for (let i = 0; i < 3; i++) u.failed('10.0.0.1', undefined, T0)
    u.failed('10.0.0.1', undefined, T0 + 900_000)
    expect(u.check('10.0.0.1', undefined, T0 + 900_000)).toEqual({ key: 'source', retryAfterMs: 1000 })
    // a lockout is capped at 5 minutes, well inside the window: it always ends before it is forgotten
  })

  it('a new limit applies to the next failure (reload), counts carry over', () => {
    const t = new LoginThrottle(limits)
    for (let i = 0; i < 3; i++) t.failed('10.0.0.1', undefined, T0)
    t.limits = { ...limits, perSource: 1, baseDelayMs: 50 }
    t.failed('10.0.0.1', undefined, T0)
    // 4 failures, 1 free: the third past the free ones: 50 ms × 2²
    expect(t.check('10.0.0.1', undefined, T0)).toEqual({ key: 'source', retryAfterMs: 200 })
  })

  it('keeps at most 50,000 sources, dropping the oldest first', () => {
    const t = new LoginThrottle({ ...limits, perSource: 0 })
    t.failed('first', undefined, T0)
    expect(t.check('first', undefined, T0)).toBeDefined()
    for (let i = 0; i < 50_000; i++) t.failed(`s${i}`, undefined, T0)
    expect(t.check('first', undefined, T0)).toBeUndefined()
    expect(t.check('s0', undefined, T0)).toBeDefined()
    expect(t.check('s49999', undefined, T0)).toBeDefined()
  })
})

describe('sourceOf', () => {
  it('takes the address of host:port in its three spellings', () => {
    expect(sourceOf('127.0.0.1:5555')).toBe('127.0.0.1')
    expect(sourceOf('[::1]:5555')).toBe('::1')
    expect(sourceOf('::1:5555')).toBe('::1')
    expect(sourceOf('[fe80::1%eth0]:22')).toBe('fe80::1%eth0')
    expect(sourceOf('explain')).toBe('explain')
    // only a whole bracketed host loses its brackets
    expect(sourceOf(':5555')).toBe('')
    expect(sourceOf('a[b]:1')).toBe('a[b]')
    expect(sourceOf('[::1]x:1')).toBe('[::1]x')
  })
})
