/**
 * Host keys the gateway generates (`gatehouse ssh keygen`, and every test gateway) always load:
 * ssh2's own generator writes a malformed key about once in 300.
 */
import { describe, expect, it } from 'vitest'
import ssh2 from 'ssh2'
import { generateHostKey } from '@gatehouse/adapter-ssh'

describe('generated host keys', () => {
  it('parse, every one of 3000', () => {
    let bad = 0
    for (let i = 0; i < 3000; i++) if (ssh2.utils.parseKey(generateHostKey().privateKey) instanceof Error) bad++
    expect(bad).toBe(0)
  })
})
