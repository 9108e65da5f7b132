/**
 * What a grant covers (`grantMatches`) and what an approval's grant covers by default
 * (`defaultGrantMatch`): every key must match; a list covers a value, or a list value whose
 * every element it holds (case-insensitively); a flag is itself; a request missing an attribute
 * the grant names is not covered.
 */
import { describe, expect, it } from 'vitest'
import { defaultGrantMatch, grantMatches } from '@gatehouse/core'

const req = (attrs: Record<string, unknown>, action = 'sql.query') => ({ action, target: 'orders', attrs })

describe('grants', () => {
  it('cover a request only when every key matches', () => {
    const match = { action: ['sql.query'], 'sql.statement': ['DELETE'], 'sql.tables': ['t'] }
    expect(grantMatches(match, req({ sql: { statement: 'DELETE', tables: ['t'] } }))).toBe(true)
    expect(grantMatches(match, req({ sql: { statement: 'delete', tables: ['T'] } }))).toBe(true)
    expect(grantMatches(match, req({ sql: { statement: 'DELETE', tables: ['t', 'other'] } }))).toBe(false)
    expect(grantMatches(match, req({ sql: { statement: 'DELETE', tables: [] } }))).toBe(false)
    expect(grantMatches(match, req({ sql: { statement: 'UPDATE', tables: ['t'] } }))).toBe(false)
    expect(grantMatches(match, req({ sql: { statement: 'DELETE' } }))).toBe(false)
    expect(grantMatches(match, req({ sql: { statement: 'DELETE', tables: ['t'] } }, 'ssh.exec'))).toBe(false)
    expect(grantMatches(match, req({}))).toBe(false)
    // a value that is an object is never covered by a list
    expect(grantMatches({ 'sql.statement': ['DELETE'] }, req({ sql: { statement: { toString: () => 'DELETE' } } }))).toBe(false)
    expect(grantMatches({ 'sql.statement': 'DELETE' }, req({ sql: { statement: 'DELETE' } }))).toBe(false)
  })

  it('flags: a boolean attribute is itself; anything else is true when present and non-empty', () => {
    expect(grantMatches({ 'ssh.dynamic': false }, req({ ssh: { dynamic: false } }))).toBe(true)
    expect(grantMatches({ 'ssh.dynamic': false }, req({ ssh: { dynamic: true } }))).toBe(false)
    expect(grantMatches({ 'ssh.dynamic': false }, req({ ssh: {} }))).toBe(true)
    expect(grantMatches({ 'ssh.network': true }, req({ ssh: { network: ['127.0.0.1:80'] } }))).toBe(true)
    expect(grantMatches({ 'ssh.network': true }, req({ ssh: { network: [] } }))).toBe(false)
    expect(grantMatches({ 'ssh.network': false }, req({ ssh: { network: '' } }))).toBe(true)
  })

  it('by default an approval grants no more than the reviewed request did: same action, statement, kinds, tables, writes, functions; nothing it did not have (SQL); the same known programs (SSH)', () => {
    const none = { 'sql.kinds': false, 'sql.tables': false, 'sql.writes': false, 'sql.functions': false, 'sql.settings': false, 'sql.executes': false, 'sql.code': false }
    const flags = { 'sql.ddl': false, 'sql.locking': false, 'sql.readWrite': false, 'sql.write': false, 'sql.sideEffects': false, 'sql.opaque': false, 'sql.dynamic': false, 'sql.securityDefiner': false }
    const del = { statement: 'DELETE', kinds: ['DELETE'], tables: ['t'], writes: ['t'], functions: [], write: true, readWrite: false }
    expect(defaultGrantMatch({ action: 'sql.query', attrs: { sql: del } })).toEqual({ action: ['sql.query'], 'sql.statement': ['DELETE'], ...none, 'sql.kinds': ['DELETE'], 'sql.tables': ['t'], 'sql.writes': ['t'], ...flags, 'sql.write': undefined })
    expect(defaultGrantMatch({ action: 'sql.query', attrs: { sql: { statement: 'SELECT', kinds: ['SELECT'], tables: [] } } })).toEqual({ action: ['sql.query'], 'sql.statement': ['SELECT'], ...none, 'sql.kinds': ['SELECT'], ...flags })
    // a SELECT approved does not cover a DELETE hidden in a WITH, a locking read, or a read of another table
    const select = defaultGrantMatch({ action: 'sql.query', attrs: { sql: { statement: 'SELECT', kinds: ['SELECT'], tables: ['users'], functions: [], locking: false } } })
    expect(grantMatches(select, req({ sql: { statement: 'SELECT', kinds: ['SELECT'], tables: ['users'], functions: [] } }))).toBe(true)
    expect(grantMatches(select, req({ sql: { statement: 'SELECT', kinds: ['SELECT', 'DELETE'], tables: ['users'], writes: ['users'], functions: [], write: true } }))).toBe(false)
    expect(grantMatches(select, req({ sql: { statement: 'SELECT', kinds: ['SELECT'], tables: ['users'], functions: [], locking: true } }))).toBe(false)
    expect(grantMatches(select, req({ sql: { statement: 'SELECT', kinds: ['SELECT'], tables: ['users', 'secrets'], functions: [] } }))).toBe(false)
    // a statement on no table covers no table
    const one = defaultGrantMatch({ action: 'sql.query', attrs: { sql: { statement: 'SELECT', kinds: ['SELECT'], tables: [] } } })
    expect(grantMatches(one, req({ sql: { statement: 'SELECT', kinds: ['SELECT'], tables: ['users'] } }))).toBe(false)
    // a statement that called a function: later ones may call that one, no other
    const withFn = defaultGrantMatch({ action: 'sql.query', attrs: { sql: { ...del, functions: ['public.audit_me'], sideEffects: true } } })
    expect(withFn['sql.functions']).toEqual(['public.audit_me'])
    expect(withFn['sql.sideEffects']).toBeUndefined()
    expect(grantMatches(defaultGrantMatch({ action: 'sql.query', attrs: { sql: del } }), req({ sql: { ...del, functions: ['public.evil'] } }))).toBe(false)
    // SSH: the same programs; a line with no program covers no program; never a dynamic line
    expect(defaultGrantMatch({ action: 'ssh.exec', attrs: { ssh: { programs: ['touch'] } } })).toEqual({ action: ['ssh.exec'], 'ssh.programs': ['touch'], 'ssh.dynamic': false })
    expect(defaultGrantMatch({ action: 'ssh.exec', attrs: { ssh: { programs: [] } } })).toEqual({ action: ['ssh.exec'], 'ssh.programs': false, 'ssh.dynamic': false })
    expect(grantMatches(defaultGrantMatch({ action: 'ssh.exec', attrs: { ssh: { programs: [] } } }), req({ ssh: { programs: ['rm'] } }, 'ssh.exec'))).toBe(false)
    expect(defaultGrantMatch({ action: 'ssh.shell', attrs: { ssh: {} } })).toEqual({ action: ['ssh.shell'], 'ssh.programs': false, 'ssh.dynamic': false })
  })
})
