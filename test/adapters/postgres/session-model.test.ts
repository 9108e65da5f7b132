/**
 * SessionModel, the gateway's picture of the upstream session's prepared statements and portals,
 * in process: every rule of its header comment (server names used once; '' resolved only when
 * settled; bindings rolled back as PostgreSQL would; drops by transactions and DEALLOCATE/DISCARD
 * ALL), step by step. session-attacks.test.ts and interleavings.test.ts drive the same rules
 * through a real server.
 */
import { describe, expect, it } from 'vitest'
import { SessionModel, RESERVED_PREFIX } from '@gatehouse/adapter-postgres'

const I = 0x49
const T = 0x54
const a = {} as never
const model = () => new SessionModel({ parameters: [['server_version', '15.0'], ['client_encoding', 'UTF8']], status: I })

describe('SessionModel', () => {
  it('starts from what the server reported', () => {
    const m = model()
    expect([...m.settings]).toEqual([['server_version', '15.0'], ['client_encoding', 'UTF8']])
    expect(m.txStatus).toBe(I)
    expect(m.held).toEqual({ statements: 0, portals: 0 })
    expect(RESERVED_PREFIX).toBe('_gh_')
  })

  it('gives named statements and portals server names of its own, never reused; the unnamed ones keep the empty name', () => {
    const m = model()
    const s1 = m.parse('x', 'SELECT 1', a).statement
    const s2 = m.parse('x', 'SELECT 2', a).statement
    expect([s1.serverName, s2.serverName]).toEqual(['_gh_s1', '_gh_s2'])
    m.close('S', 'x')
    expect(m.parse('x', 'SELECT 3', a).statement.serverName).toBe('_gh_s3')
    expect(m.parse('', 'SELECT 4', a).statement).toEqual({ serverName: '', text: 'SELECT 4', analysis: a })
    const p1 = m.bindPortal('c', s1, ['1', null]).portal
    expect(p1).toEqual({ serverName: '_gh_p1', statement: s1, params: ['1', null] })
    expect(m.bindPortal('c', s1, []).portal.serverName).toBe('_gh_p2')
    expect(m.bindPortal('', s1, []).portal.serverName).toBe('')
    expect(m.statement('x')?.text).toBe('SELECT 3')
    expect(m.portal('c')?.serverName).toBe('_gh_p2')
    expect(m.held).toEqual({ statements: 2, portals: 2 })
  })

  it('close unbinds and names the server object to close: its own name for a name it bound, the client name otherwise', () => {
    const m = model()
    m.parse('x', 'SELECT 1', a)
    expect(m.close('S', 'x')).toMatchObject({ serverName: '_gh_s1', change: { kind: 'S', name: 'x', block: 0, next: undefined } })
    expect(m.statement('x')).toBeUndefined()
    expect(m.close('P', 'sqlcursor')).toMatchObject({ serverName: 'sqlcursor', change: { prev: undefined } })
    // closing a name that was never bound leaves nothing to settle
    m.endBlock()
    expect(m.resolvable('P', 'sqlcursor')).toBe(true)
    expect(m.conflict('P', 'sqlcursor')).toBe('free')
  })

  it('conflict: the unnamed never conflicts; a name bound is taken; changed in a block the server has not finished it is unsettled, until it has', () => {
    const m = model()
    m.parse('x', 'SELECT 1', a)
    expect(m.conflict('S', 'x')).toBe('taken')
    expect(m.conflict('S', '')).toBe('free')
    expect(m.conflict('P', 'x')).toBe('free')
    m.endBlock()
    expect(m.conflict('S', 'x')).toBe('unsettled')
    m.readyForQuery(I)
    expect(m.conflict('S', 'x')).toBe('taken')
    m.close('S', 'x')
    expect(m.conflict('S', 'x')).toBe('free') // same block as the close
    m.endBlock()
    expect(m.conflict('S', 'x')).toBe('unsettled')
    m.readyForQuery(I)
    expect(m.conflict('S', 'x')).toBe('free')
  })

  it('resolvable: a named binding always; the unnamed only in the block that changed it or once the server finished that block; a Close of a name, once settled', () => {
    const m = model()
    expect(m.resolvable('S', '')).toBe(true)
    m.parse('', 'SELECT 1', a)
    expect(m.resolvable('S', '')).toBe(true)
    m.parse('n', 'SELECT 2', a)
    m.endBlock()
    expect(m.resolvable('S', '')).toBe(false)
    expect(m.resolvable('S', 'n')).toBe(true)
    m.readyForQuery(I)
    expect(m.resolvable('S', '')).toBe(true)
    m.close('S', 'n')
    m.endBlock()
    expect(m.resolvable('S', 'n')).toBe(false)
    m.readyForQuery(I)
    expect(m.resolvable('S', 'n')).toBe(true)
    // a Parse of a closed name makes it a plain binding again
    m.close('S', 'n')
    m.parse('n', 'SELECT 3', a)
    m.endBlock()
    expect(m.resolvable('S', 'n')).toBe(true)
  })

  it('a simple Query drops the unnamed statement at once, and nothing about it is left to settle', () => {
    const m = model()
    m.parse('', 'SELECT 1', a)
    m.endBlock()
    expect(m.resolvable('S', '')).toBe(false)
    m.simpleQuery()
    expect(m.statement('')).toBeUndefined()
    expect(m.resolvable('S', '')).toBe(true)
  })

  it('rollback of a skipped or failed named Parse: the name means what it meant before, or nothing', () => {
    const m = model()
    const first = m.parse('x', 'SELECT 1', a)
    const second = m.parse('x', 'SELECT 2', a)
    m.rollback(second.change, undefined)
    expect(m.statement('x')?.text).toBe('SELECT 1')
    m.rollback(first.change, '42601')
    expect(m.statement('x')).toBeUndefined()
  })

  it('a failed Parse of the unnamed statement drops the old one too (PostgreSQL drops it first); a skipped one leaves it', () => {
    const m = model()
    m.parse('', 'SELECT 1', a)
    const skipped = m.parse('', 'SELECT 2', a)
    m.rollback(skipped.change, undefined)
    expect(m.statement('')?.text).toBe('SELECT 1')
    const failed = m.parse('', 'SELEC 3', a)
    m.rollback(failed.change, '42601')
    expect(m.statement('')).toBeUndefined()
  })

  it('a failed Bind of the unnamed portal keeps the old one only for the errors PostgreSQL raises before replacing it', () => {
    for (const [state, kept] of [['26000', true], ['08P01', true], ['25P02', true], ['42P18', true], ['22P03', true], ['0A000', true], ['22P02', false], ['42883', false], [undefined, true]] as const) {
      const m = model()
      const s = m.parse('s', 'SELECT $1', a).statement
      m.bindPortal('', s, ['old'])
      const change = m.bindPortal('', s, ['new']).change
      m.rollback(change, state)
      expect(m.portal('')?.params, String(state)).toEqual(kept ? ['old'] : undefined)
    }
  })

  it('a rollback does not touch a name a later message rebound, and a voided binding is never brought back', () => {
    const m = model()
    const one = m.parse('x', 'SELECT 1', a)
    const two = m.parse('x', 'SELECT 2', a)
    m.rollback(one.change, '42601') // the first Parse failed after the second was sent
    expect(m.statement('x')?.text).toBe('SELECT 2')
    // the second one fails too: the first never existed, so the name is free
    m.rollback(two.change, '42601')
    expect(m.statement('x')).toBeUndefined()
    // a Close whose prev was voided, rolled back, does not resurrect it
    const three = m.parse('y', 'SELECT 3', a)
    const closed = m.close('S', 'y')
    m.rollback(three.change, '42601')
    m.rollback(closed.change, undefined)
    expect(m.statement('y')).toBeUndefined()
  })

  it('a transaction end drops the portals bound before its message, not those bound after', () => {
    const m = model()
    const s = m.parse('s', 'SELECT 1', a).statement
    m.bindPortal('before', s, [])
    const at = m.position
    m.bindPortal('after', s, [])
    m.transactionEnded(at)
    expect(m.portal('before')).toBeUndefined()
    expect(m.portal('after')).toBeDefined()
    // a rollback can not bring back a portal the server dropped
    const m2 = model()
    const s2 = m2.parse('s', 'SELECT 1', a).statement
    m2.bindPortal('p', s2, ['1'])
    const rebind = m2.bindPortal('p', s2, ['2']).change
    m2.transactionEnded(m2.position)
    m2.rollback(rebind, undefined)
    expect(m2.portal('p')).toBeUndefined()
  })

  it('ReadyForQuery: idle ends the block with its portals (not those of later blocks); in a transaction they stay; the status is the server\'s', () => {
    const m = model()
    const s = m.parse('s', 'SELECT 1', a).statement
    m.bindPortal('p1', s, [])
    m.endBlock()
    m.bindPortal('p2', s, [])
    m.endBlock()
    m.readyForQuery(T)
    expect(m.txStatus).toBe(T)
    expect(m.portal('p1')).toBeDefined()
    m.readyForQuery(I)
    expect(m.txStatus).toBe(I)
    expect(m.portal('p1')).toBeUndefined()
    expect(m.portal('p2')).toBeUndefined()
    const m2 = model()
    const s2 = m2.parse('s', 'SELECT 1', a).statement
    m2.bindPortal('first', s2, [])
    m2.endBlock()
    m2.bindPortal('second', s2, [])
    m2.endBlock()
    m2.readyForQuery(I)
    expect(m2.portal('first')).toBeUndefined()
    expect(m2.portal('second')).toBeDefined()
  })

  it('SQL-level names: learned when the server completes PREPARE, forgotten when something may deallocate them, * for all', () => {
    const m = model()
    const st = { serverName: 'q', text: 'SELECT 1', analysis: a }
    expect(m.mayHoldSqlStatement('q')).toBe(false)
    m.learnSqlStatement('q', st)
    expect(m.sqlStatement('q')).toBe(st)
    expect(m.held.statements).toBe(1)
    expect(m.mayHoldSqlStatement('q')).toBe(true)
    m.forgetSqlStatement('q')
    expect(m.sqlStatement('q')).toBeUndefined()
    expect(m.mayHoldSqlStatement('q')).toBe(true) // the server may still hold it
    m.learnSqlStatement('q', st)
    m.forgetSqlStatement('*')
    expect(m.sqlStatement('q')).toBeUndefined()
    expect(m.mayHoldSqlStatement('anything')).toBe(true)
  })

  it('DEALLOCATE ALL drops every named statement bound before it (not the unnamed, not later ones); DISCARD ALL the portals too; rollbacks do not bring them back', () => {
    const m = model()
    m.parse('', 'SELECT 0', a)
    const old = m.parse('old', 'SELECT 1', a)
    const s = old.statement
    m.bindPortal('p', s, [])
    m.learnSqlStatement('sql', { serverName: 'sql', text: 'SELECT 9', analysis: a })
    const at = m.position
    m.parse('new', 'SELECT 2', a)
    const rebind = m.parse('old', 'SELECT 3', a)
    m.serverDroppedAll(at, false)
    expect(m.statement('')?.text).toBe('SELECT 0')
    expect(m.statement('new')).toBeDefined()
    expect(m.statement('old')?.text).toBe('SELECT 3')
    expect(m.sqlStatement('sql')).toBeUndefined()
    expect(m.portal('p')).toBeDefined()
    m.rollback(rebind.change, '42601')
    expect(m.statement('old')).toBeUndefined()
    m.serverDroppedAll(m.position, true)
    expect(m.portal('p')).toBeUndefined()
    expect(m.statement('new')).toBeUndefined()
    expect(m.statement('')?.text).toBe('SELECT 0')
  })

  describe('edges mutation testing found (test/mutation/SURVIVORS.md)', () => {
    it('the unnamed statement and portal never conflict, even while bound', () => {
      const m = model()
      const s = m.parse('', 'SELECT 1', a).statement
      m.bindPortal('', s, [])
      expect([m.conflict('S', ''), m.conflict('P', '')]).toEqual(['free', 'free'])
    })

    it('a named portal bound in an earlier block is unsettled until the server finishes that block', () => {
      const m = model()
      const s = m.parse('s', 'SELECT 1', a).statement
      m.bindPortal('p', s, [])
      m.endBlock()
      expect([m.conflict('S', 's'), m.conflict('P', 'p')]).toEqual(['unsettled', 'unsettled'])
      m.readyForQuery(T)
      expect([m.conflict('S', 's'), m.conflict('P', 'p')]).toEqual(['taken', 'taken'])
    })

    it('closing a portal unbinds the portal, not a statement of the same name', () => {
      const m = model()
      const s = m.parse('x', 'SELECT 1', a).statement
      const p = m.bindPortal('x', s, []).portal
      expect(m.close('P', 'x').serverName).toBe(p.serverName)
      expect(m.portal('x')).toBeUndefined()
      expect(m.statement('x')).toBe(s)
    })

    it('a failed Parse of the unnamed statement drops the old one whatever the SQLSTATE; a failed Bind of the unnamed portal keeps the old one when it failed before replacing it', () => {
      const m = model()
      m.parse('', 'SELECT 1', a)
      const { change } = m.parse('', 'SELECT 2', a)
      // 25P02 (transaction aborted) is among the codes a Bind fails with before replacing its portal
      m.rollback(change, '25P02')
      expect(m.statement('')).toBeUndefined()

      const n = model()
      const s = n.parse('s', 'SELECT 1', a).statement
      const old = n.bindPortal('', s, []).portal
      const bind = n.bindPortal('', s, ['x']).change
      n.rollback(bind, '25P02')
      expect(n.portal('')).toBe(old)
    })

    it('a rolled-back Bind does not bring back a portal the transaction already dropped, up to and including the message that ended it', () => {
      const m = model()
      const s = m.parse('s', 'COMMIT', a).statement
      m.bindPortal('', s, [])
      const commitAt = m.position
      const next = m.bindPortal('', m.parse('t', 'SELECT 1', a).statement, []).change
      m.transactionEnded(commitAt)
      m.rollback(next, undefined)
      expect(m.portal('')).toBeUndefined()
    })

    it('a drop horizon never moves back: a later, earlier-positioned transaction end does not revive portals', () => {
      const m = model()
      const s = m.parse('s', 'SELECT 1', a).statement
      m.bindPortal('', s, [])
      const early = m.position
      m.bindPortal('', s, [])
      const late = m.position
      const next = m.bindPortal('', s, []).change
      m.transactionEnded(late)
      m.transactionEnded(early)
      m.rollback(next, undefined)
      expect(m.portal('')).toBeUndefined()
    })

    it('DEALLOCATE ALL drops named statements bound up to its message (that one included) but never the unnamed one, which a rollback brings back', () => {
      const m = model()
      m.parse('', 'SELECT 1', a)
      const kept = m.statement('')
      m.parse('n', 'SELECT 2', a)
      const at = m.position
      const later = m.parse('', 'SELECT 3', a).change
      m.serverDroppedAll(at, false)
      expect(m.statement('n')).toBeUndefined()
      m.rollback(later, undefined)
      expect(m.statement('')).toBe(kept)
    })

    it('a named statement bound exactly at the DEALLOCATE ALL position is gone when a rollback would bring it back', () => {
      const m = model()
      m.parse('x', 'SELECT 1', a)
      const at = m.position
      const reparse = m.parse('x', 'SELECT 2', a).change
      m.serverDroppedAll(at, false)
      m.rollback(reparse, undefined)
      expect(m.statement('x')).toBeUndefined()
    })

    it('DEALLOCATE of one SQL-level name forgets only that name; DEALLOCATE ALL every name', () => {
      const m = model()
      const st = { serverName: 'a', text: 'SELECT 1', analysis: a }
      m.learnSqlStatement('a', st)
      m.learnSqlStatement('b', { ...st, serverName: 'b' })
      m.forgetSqlStatement('a')
      expect([m.sqlStatement('a'), m.sqlStatement('b')?.serverName]).toEqual([undefined, 'b'])
      expect([m.mayHoldSqlStatement('a'), m.mayHoldSqlStatement('c')]).toEqual([true, false])
      m.forgetSqlStatement('*')
      expect([m.sqlStatement('b'), m.mayHoldSqlStatement('c')]).toEqual([undefined, true])
    })

    it('the notes of unsettled names are bounded: past 20,000 in one pipeline, the oldest is forgotten (a conflict then reads as taken, never as free)', () => {
      const m = model()
      const s = m.parse('first', 'SELECT 1', a).statement
      for (let i = 0; i < 20_000; i++) m.bindPortal(`p${i}`, s, [])
      m.endBlock()
      expect(m.conflict('S', 'first')).toBe('taken')
      expect(m.conflict('P', 'p19999')).toBe('unsettled')
    })
  })
})
