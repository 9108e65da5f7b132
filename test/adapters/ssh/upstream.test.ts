/**
 * The gateway's own SSH connection to the target (connectUpstream), in process against a real
 * sshd: the pinned host key is the only one accepted, before any credential is sent; each failure
 * says which it is, without a secret.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connectUpstream, fingerprint } from '@gatehouse/adapter-ssh'
import ssh2 from 'ssh2'
import { generateKeyPair, hostKeyFingerprint, startSshd, type KeyPair, type Sshd } from '../../fixtures/sshd.js'
import { freePort } from '../../fixtures/net.js'

let sshd: Sshd
let dir: string
let stranger: KeyPair
beforeAll(async () => {
  sshd = await startSshd()
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-upstream-'))
  stranger = await generateKeyPair(dir, 'stranger')
})
afterAll(async () => {
  await sshd?.stop()
  rmSync(dir, { recursive: true, force: true })
})

const config = (o: Record<string, unknown> = {}) => ({ host: sshd.host, port: sshd.port, user: sshd.user, privateKey: sshd.clientPrivateKey, hostKey: sshd.hostKeyFingerprint, readyTimeoutMs: 10_000, ...o }) as never

describe('connectUpstream', () => {
  it('fingerprints a key blob as ssh-keygen -lf does', () => {
    const pub = execFileSync('ssh-keygen', ['-lf', `${sshd.hostKeyPath}.pub`], { encoding: 'utf8' })
    expect(pub).toContain(fingerprint(Buffer.from(sshd.hostPublicKey.split(' ')[1] as string, 'base64')))
    expect(fingerprint(Buffer.from(sshd.hostPublicKey.split(' ')[1] as string, 'base64'))).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/)
  })

  it('logs in with the brokered key when the target shows the pinned host key', async () => {
    const client = await connectUpstream(config(), new AbortController().signal)
    const out = await new Promise<string>((resolve, reject) =>
      client.exec('echo upstream-ok', (err, stream) => {
        if (err) return reject(err)
        let s = ''
        stream.on('data', (d: Buffer) => (s += d.toString())).on('close', () => resolve(s))
      }),
    )
    client.end()
    expect(out.trim()).toBe('upstream-ok')
  })

  it('refuses another host key before authenticating, naming both fingerprints', async () => {
    const pinned = 'SHA256:' + 'A'.repeat(43)
    await expect(connectUpstream(config({ hostKey: pinned }), new AbortController().signal)).rejects.toMatchObject({
      reason: 'host-key',
      message: `target host key ${sshd.hostKeyFingerprint} does not match the configured ${pinned}`,
    })
  })

  it('a credential the target refuses is an auth failure that names the account, not the key', async () => {
    const err = await connectUpstream(config({ privateKey: stranger.privateKey }), new AbortController().signal).catch((e: unknown) => e as Error & { reason: string })
    expect(err).toMatchObject({ reason: 'auth', message: `the target refused the gateway's credential for ${sshd.user}` })
    expect(err.message).not.toContain('PRIVATE KEY')
  })

  it('a target that offers keyboard-interactive after refusing the key: refused at once, not left waiting for answers nobody gives', async () => {
    // sshd with PAM offers keyboard-interactive once the key is refused. The gateway must not try
    // it: ssh2 would wait for prompt answers until readyTimeout and call the target unreachable.
    const kbd = await startSshd({ config: { UsePAM: 'yes', KbdInteractiveAuthentication: 'yes' } })
    try {
      const started = Date.now()
      const err = await connectUpstream({ ...config({ privateKey: stranger.privateKey, readyTimeoutMs: 8_000 }), port: kbd.port, hostKey: kbd.hostKeyFingerprint } as never, new AbortController().signal).catch((e: unknown) => e as Error & { reason: string })
      expect(err).toMatchObject({ reason: 'auth', message: `the target refused the gateway's credential for ${kbd.user}` })
      expect(Date.now() - started).toBeLessThan(6_000)
    } finally {
      await kbd.stop()
    }
  })

  it('an unreachable target, and a session that ended while connecting, are unreachable', async () => {
    const port = await freePort()
    await expect(connectUpstream(config({ port }), new AbortController().signal)).rejects.toMatchObject({ reason: 'unreachable', message: expect.stringMatching(new RegExp(`^cannot reach 127\\.0\\.0\\.1:${port}: `)) })
    const ac = new AbortController()
    const pending = connectUpstream(config(), ac.signal)
    ac.abort()
    await expect(pending).rejects.toMatchObject({ reason: 'unreachable', message: 'the session ended before the target was reached' })
  })

  it('logs in with a passphrase-protected key, given its passphrase', async () => {
    const locked = join(dir, 'locked')
    copyFileSync(sshd.clientKeyPath, locked)
    execFileSync('ssh-keygen', ['-q', '-p', '-P', '', '-N', 'correct horse', '-f', locked])
    const privateKey = readFileSync(locked, 'utf8')
    expect(privateKey).not.toBe(sshd.clientPrivateKey)
    const client = await connectUpstream(config({ privateKey, passphrase: 'correct horse' }), new AbortController().signal)
    client.end()
    await expect(connectUpstream(config({ privateKey }), new AbortController().signal)).rejects.toThrow(/passphrase/)
  })

  it('logs in with the configured password (an ssh2 server stub: the fixture sshd has no password account)', async () => {
    const server = await generateKeyPair(dir, 'stub-host')
    const offered: string[] = []
    const stub = new ssh2.Server({ hostKeys: [server.privateKey] }, (conn) => {
      conn.on('error', () => {})
      conn.on('authentication', (ctx) => {
        offered.push(ctx.method === 'password' ? `password:${ctx.password}` : ctx.method)
        if (ctx.method === 'password' && ctx.username === 'deploy' && ctx.password === 'hunter2') ctx.accept()
        else ctx.reject(['password'])
      })
    })
    await new Promise<void>((resolve) => stub.listen(0, '127.0.0.1', resolve))
    try {
      const port = (stub.address() as { port: number }).port
      const client = await connectUpstream({ host: '127.0.0.1', port, user: 'deploy', password: 'hunter2', hostKey: hostKeyFingerprint(server.publicKey), readyTimeoutMs: 5_000 } as never, new AbortController().signal)
      client.end()
      expect(offered).toEqual(['none', 'password:hunter2'])
    } finally {
      await new Promise((resolve) => stub.close(resolve))
    }
  })
})
