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

  it('by default an approval grants the same action, statement kind and tables (SQL), or the same programs in a line without unknown ones (SSH)', () => {
    const plain = { 'sql.functions': false, 'sql.sideEffects': false, 'sql.opaque': false, 'sql.dynamic': false }
    expect(defaultGrantMatch({ action: 'sql.query', attrs: { sql: { statement: 'DELETE', tables: ['t'], functions: [], sideEffects: false } } })).toEqual({ action: ['sql.query'], 'sql.statement': ['DELETE'], 'sql.tables': ['t'], ...plain })
    expect(defaultGrantMatch({ action: 'sql.query', attrs: { sql: { statement: 'SELECT', tables: [] } } })).toEqual({ action: ['sql.query'], 'sql.statement': ['SELECT'], ...plain })
    // a statement that called a function: later ones may call that one, no other
    const withFn = defaultGrantMatch({ action: 'sql.query', attrs: { sql: { statement: 'DELETE', tables: ['t'], functions: ['public.audit_me'], sideEffects: true } } })
    expect(withFn).toEqual({ action: ['sql.query'], 'sql.statement': ['DELETE'], 'sql.tables': ['t'], 'sql.functions': ['public.audit_me'], 'sql.opaque': false, 'sql.dynamic': false })
    expect(grantMatches(defaultGrantMatch({ action: 'sql.query', attrs: { sql: { statement: 'DELETE', tables: ['t'], functions: [] } } }), req({ sql: { statement: 'DELETE', tables: ['t'], functions: ['public.evil'] } }))).toBe(false)
    expect(defaultGrantMatch({ action: 'ssh.exec', attrs: { ssh: { programs: ['touch'] } } })).toEqual({ action: ['ssh.exec'], 'ssh.programs': ['touch'], 'ssh.dynamic': false })
    expect(defaultGrantMatch({ action: 'ssh.shell', attrs: { ssh: {} } })).toEqual({ action: ['ssh.shell'] })
  })
})
