/**
 * The pure parts of the SFTP proxy in process: open flags as the words rules match, and the
 * split of a path into the directory a name-level operation is canonicalised in and the name it
 * keeps. ssh.test.ts and ssh-attacks.test.ts drive the proxy itself with OpenSSH's sftp.
 */
import { describe, expect, it } from 'vitest'
import { openModes, splitLast } from '../../../adapters/ssh/dist/sftp.js'

/** SSH_FXF_* of the SFTP v3 draft (draft-ietf-secsh-filexfer-02, 6.3): what clients send. */
const OPEN_MODE = { READ: 0x01, WRITE: 0x02, APPEND: 0x04, CREAT: 0x08, TRUNC: 0x10, EXCL: 0x20 }

describe('openModes', () => {
  it('names each flag, in a fixed order, and nothing for no flags', () => {
    expect(openModes(0)).toEqual([])
    expect(openModes(OPEN_MODE.READ)).toEqual(['read'])
    expect(openModes(OPEN_MODE.WRITE | OPEN_MODE.CREAT | OPEN_MODE.TRUNC)).toEqual(['write', 'create', 'truncate'])
    expect(openModes(OPEN_MODE.APPEND | OPEN_MODE.EXCL | OPEN_MODE.READ)).toEqual(['read', 'append', 'exclusive'])
    expect(openModes(0xffffffff)).toEqual(['read', 'write', 'append', 'create', 'truncate', 'exclusive'])
  })
})

describe('splitLast', () => {
  it.each([
    ['/etc/passwd', ['/etc', 'passwd']],
    ['/etc/ssh/', ['/etc', 'ssh']],
    ['/etc//ssh//', ['/etc/', 'ssh']],
    ['/passwd', ['/', 'passwd']],
    ['file', ['.', 'file']],
    ['dir/file', ['dir', 'file']],
    ['/', ['/', '']],
    ['///', ['/', '']],
    ['', ['.', '']],
    ['.', ['.', '']],
    ['..', ['..', '']],
    ['/a/..', ['/a/..', '']],
    ['a/./', ['a/./', '']],
    ['/a/...', ['/a', '...']],
    ['.hidden', ['.', '.hidden']],
  ])('%j → %j', (path, expected) => {
    expect(splitLast(path)).toEqual(expected)
  })
})
