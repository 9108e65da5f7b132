/**
 * Held SSH commands with OpenSSH: an exec a rule sends to review waits, the client reading on
 * stderr which review it waits for; approved through the admin API it runs on the target and its
 * exit status comes back; denied, the client gets the reason and exit status 126 and the command
 * never ran. An approval with a grant lets the same program through next time, and not another.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateToken, hashToken } from '@gatehouse/core'
import { generateHostKey } from '@gatehouse/adapter-ssh'
import { startGateway, type TestGateway } from '../../fixtures/gateway.js'
import { writeFileSync } from 'node:fs'
import { generateKeyPair, sftpArgs, sshArgs, startSshd, type KeyPair, type Sshd } from '../../fixtures/sshd.js'

let sshd: Sshd
let gw: TestGateway
let dir: string
let agentKey: KeyPair
let admin: string
const approver = generateToken()

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-ssh-review-'))
  sshd = await startSshd()
  agentKey = await generateKeyPair(dir, 'agent')
  gw = await startGateway({
    upstream: {},
    identities: [{ id: 'agent-1', groups: ['agents'], sshKeys: [agentKey.publicKey] }],
    connection: {
      name: 'web',
      adapter: 'ssh',
      upstream: { host: sshd.host, port: sshd.port, user: sshd.user, privateKey: sshd.clientPrivateKey, hostKey: sshd.hostKeyFingerprint },
      options: { hostKeys: [generateHostKey().privateKey] },
    },
    admin: { listen: '127.0.0.1:0', tokens: [{ id: 'alice', role: 'approver', hash: hashToken(approver, 'alice') }] },
    policies: [
      {
        id: 'ops',
        principals: { groups: ['agents'] },
        rules: [
          { id: 'touch-needs-review', effect: 'review', actions: ['ssh.exec'], match: { 'ssh.programs': ['touch'] }, reason: 'writes on the host need a person', review: { timeoutSeconds: 60 } },
          { id: 'reads', effect: 'allow', actions: ['ssh.exec'], match: { 'ssh.programs': ['echo', 'cat', 'true'] } },
          { id: 'sftp-remove', effect: 'review', actions: ['ssh.sftp'], match: { 'ssh.op': ['remove'] }, reason: 'removing files needs a person', review: { timeoutSeconds: 60 } },
          { id: 'sftp', effect: 'allow', actions: ['ssh.sftp'] },
        ],
      },
    ],
  })
  admin = `http://127.0.0.1:${gw.gateway.adminPort}`
}, 60_000)

afterAll(async () => {
  await gw?.stop()
  await sshd?.stop()
  rmSync(dir, { recursive: true, force: true })
})

function sshLive(command: string): { held: Promise<string>; done: Promise<{ code: number | null; stdout: string; stderr: string }> } {
  const child = spawn('ssh', [...sshArgs({ port: gw.port, user: 'agent-1', identityFile: agentKey.privateKeyPath }), command], { stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  let onHeld: (id: string) => void = () => undefined
  const held = new Promise<string>((resolve) => (onHeld = resolve))
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString()
    const m = /held for review (rev_[0-9a-f-]+)/.exec(stderr)
    if (m) onHeld(m[1] as string)
  })
  child.stdin.end()
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    }),
  )
  return { held, done }
}

const vote = (id: string, what: 'approve' | 'deny', body: unknown = {}) =>
  fetch(`${admin}/reviews/${id}/${what}`, { method: 'POST', headers: { authorization: `Bearer ${approver}`, 'content-type': 'application/json' }, body: JSON.stringify(body) }).then(async (r) => ({ status: r.status, json: (await r.json()) as Record<string, unknown> }))

describe('held SSH commands', () => {
  it('an exec waits with a line on stderr; approved, it runs on the target and its exit status comes back', async () => {
    const file = join(dir, 'approved')
    const run = sshLive(`touch ${file} && echo made`)
    const id = await run.held
    expect(existsSync(file)).toBe(false)
    expect((await vote(id, 'approve', { reason: 'fine' })).json).toMatchObject({ result: 'approved' })
    const r = await run.done
    expect(r.code).toBe(0)
    expect(r.stdout).toBe('made\n')
    expect(r.stderr).toMatch(/gatehouse: held for review rev_.*: writes on the host need a person/)
    expect(existsSync(file)).toBe(true)
    const events = await gw.audit()
    expect(events.find((e) => e.type === 'review' && (e as { review?: string }).review === id)).toMatchObject({ decision: 'approved', by: 'alice' })
  })

  it('denied: exit status 126, the reason on stderr, and the command never ran', async () => {
    const file = join(dir, 'denied')
    const run = sshLive(`touch ${file}`)
    const id = await run.held
    await vote(id, 'deny', { reason: 'not this host' })
    const r = await run.done
    expect(r.code).toBe(126)
    expect(r.stderr).toMatch(/gatehouse: review denied: denied by alice: not this host/)
    expect(existsSync(file)).toBe(false)
  })

  it('a grant lets the same program through without a review, but not a command line with another program in it', async () => {
    const run = sshLive(`touch ${join(dir, 'g1')}`)
    const id = await run.held
    const approved = await vote(id, 'approve', { grant: { minutes: 5 } })
    expect(approved.json).toMatchObject({ grant: { match: { action: ['ssh.exec'], 'ssh.programs': ['touch'], 'ssh.dynamic': false } } })
    const first = await run.done
    expect(first.code, first.stderr).toBe(0)
    const next = await sshLive(`touch ${join(dir, 'g2')}`).done
    expect(next.code, next.stderr).toBe(0)
    expect(next.stderr).not.toMatch(/held for review/)
    expect(existsSync(join(dir, 'g2'))).toBe(true)
    // touch and cat: the grant covers touch only, so the line is held again
    const mixed = sshLive(`touch ${join(dir, 'g3')}; cat /etc/hostname`)
    const again = await mixed.held
    await vote(again, 'deny')
    expect((await mixed.done).code).toBe(126)
    expect(existsSync(join(dir, 'g3'))).toBe(false)
  })

  it('an sftp remove waits for its review (the client is told nothing: SFTP has no channel for it); approved it runs, denied the client gets a permission error', async () => {
    const reviews = () => fetch(`${admin}/reviews`, { headers: { authorization: `Bearer ${approver}` } }).then(async (r) => ((await r.json()) as { reviews: { id: string; text: string }[] }).reviews)
    for (const approve of [true, false]) {
      const file = join(dir, approve ? 'sftp-approved' : 'sftp-denied')
      writeFileSync(file, 'x')
      const batch = join(dir, `batch-${approve}`)
      writeFileSync(batch, `rm ${file}\n`)
      const child = spawn('sftp', sftpArgs({ port: gw.port, user: 'agent-1', identityFile: agentKey.privateKeyPath, extra: ['-b', batch] }), { stdio: ['ignore', 'pipe', 'pipe'] })
      let stderr = ''
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
      const done = new Promise<number | null>((resolve) => child.on('close', resolve))
      let held: { id: string; text: string } | undefined
      for (let i = 0; i < 200 && !held; i++) {
        held = (await reviews()).find((r) => r.text.includes(file))
        if (!held) await new Promise((r) => setTimeout(r, 50))
      }
      expect(held, 'the remove is held for review').toBeDefined()
      expect(existsSync(file)).toBe(true)
      await vote(held?.id as string, approve ? 'approve' : 'deny')
      const code = await done
      if (approve) {
        expect(code, stderr).toBe(0)
        expect(existsSync(file)).toBe(false)
      } else {
        expect(code).not.toBe(0)
        expect(stderr).toMatch(/Permission denied|Couldn't delete/i)
        expect(existsSync(file)).toBe(true)
      }
    }
  })
})
