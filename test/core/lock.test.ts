/**
 * The lock that keeps two gateways off one data directory or audit file (core/src/lock.ts), in
 * process. test/core/cli.test.ts checks it between real gateway processes, and after kill -9.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { lockExclusive } from '@gatehouse/core'

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-lock-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe.runIf(process.platform === 'linux')('lockExclusive', () => {
  it('a second lock on the same path is refused naming this pid; after release it is free; another path is another lock', async () => {
    const key = join(dir, 'a.key')
    const held = await lockExclusive(dir, 'data directory', key)
    await expect(lockExclusive(dir, 'data directory', key)).rejects.toMatchObject({ code: 'GH_ERR_LOCKED', message: expect.stringContaining(`data directory ${dir} is in use by another gateway (pid ${process.pid}, running since `) })
    const other = await lockExclusive(join(dir, 'audit.jsonl'), 'audit file', key)
    await other.release()
    await held.release()
    const again = await lockExclusive(dir, 'data directory', key)
    await again.release()
  })

  it('keeps its key in a file of 32 random bytes only its owner can read, made once and reused', async () => {
    const key = join(dir, 'b.key')
    const l = await lockExclusive(dir, 'data directory', key)
    await l.release()
    const first = readFileSync(key)
    expect(first.length).toBe(32)
    expect(statSync(key).mode & 0o777).toBe(0o600)
    await (await lockExclusive(dir, 'data directory', key)).release()
    expect(readFileSync(key)).toEqual(first)
  })

  it('a local process that takes the name it could compute without the key does not keep the gateway from locking', async () => {
    const key = join(dir, 'c.key')
    const guessable = `\0gatehouse-lock:${createHash('sha256').update(`data directory\0${dir}`).digest('hex')}`
    const squatter = createServer(() => {})
    await new Promise<void>((res) => squatter.listen(guessable, () => res()))
    try {
      const l = await lockExclusive(dir, 'data directory', key)
      await l.release()
    } finally {
      squatter.close()
    }
  })

  it('two locks with different keys on one path do not see each other (the key is part of the name), and a damaged key file is named', async () => {
    const a = await lockExclusive(dir, 'data directory', join(dir, 'd1.key'))
    const b = await lockExclusive(dir, 'data directory', join(dir, 'd2.key'))
    await a.release()
    await b.release()
    writeFileSync(join(dir, 'bad.key'), 'short')
    await expect(lockExclusive(dir, 'data directory', join(dir, 'bad.key'))).rejects.toMatchObject({ message: `${join(dir, 'bad.key')} is not a lock key (32 bytes); remove it while no gateway runs` })
  })
})
