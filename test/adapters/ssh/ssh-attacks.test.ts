/**
 * The SSH adapter against a hostile caller, with the real OpenSSH clients (and ssh2's client
 * where a message must be crafted) through a real gateway in front of a real sshd:
 * - sftp paths judged as the target resolves them (`..`, symlinks), not as spelled;
 * - fsetstat and metadata reads judged like the operations they are;
 * - attempts that used to leave no trace (refused env, tunnel channels, a second exec on a
 *   channel, oversized commands, bad signals and subsystem names) recorded as refused;
 * - messages a caller can act on (sftp against a target with the wrong host key);
 * - the target reached only when an admitted request needs it;
 * - a failure inside any session handler ends that session only, never the process.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { createServer, connect, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createRequire } from 'node:module'
import ssh2 from 'ssh2'
import type { AuditEvent, RequestEvent } from '@gatehouse/core'
import { generateHostKey } from '@gatehouse/adapter-ssh'
import { runClient } from '../../fixtures/clients.js'
import { startGateway, type TestGateway } from '../../fixtures/gateway.js'
import { generateKeyPair, sftpArgs, sshArgs, startSshd, type KeyPair, type Sshd } from '../../fixtures/sshd.js'

let sshd: Sshd
let gw: TestGateway
let dir: string
let art: string
let secret: string
let agentKey: KeyPair
/** Connections the gateway made to the target (through a counting TCP relay in front of sshd). */
let targetConnections = 0
let relay: Server
const relaySockets = new Set<Socket>()

const run = runClient

const asAgent = (extra: string[] = [], port = gw.port) => sshArgs({ port, user: 'agent-1', identityFile: agentKey.privateKeyPath, extra })
const ssh = (command: string, extra: string[] = []) => run('ssh', [...asAgent(extra), command])
const sftpBatch = (lines: string[], port = gw.port) => {
  const batch = join(dir, `batch-${Math.random().toString(36).slice(2)}`)
  writeFileSync(batch, `${lines.join('\n')}\n`)
  return run('sftp', sftpArgs({ port, user: 'agent-1', identityFile: agentKey.privateKeyPath, extra: ['-b', batch] }))
}

async function requests(action?: string): Promise<RequestEvent[]> {
  return (await gw.audit()).filter((e): e is RequestEvent => e.type === 'request' && (action === undefined || e.action === action))
}

const sshAttrs = (e: RequestEvent) => (e.attrs as { ssh: Record<string, unknown> }).ssh

/** An ssh2 client logged into the gateway as agent-1. */
async function client(port = gw.port): Promise<ssh2.Client> {
  const c = new ssh2.Client()
  await new Promise<void>((resolve, reject) => {
    c.once('ready', () => resolve())
    c.once('error', reject)
    c.connect({ host: '127.0.0.1', port, username: 'agent-1', privateKey: readFileSync(agentKey.privateKeyPath), readyTimeout: 10_000 })
  })
  c.on('error', () => undefined)
  return c
}

function execOn(c: ssh2.Client, command: string): Promise<{ code: number | undefined; stdout: string; stderr: string; channel: ssh2.ClientChannel }> {
  return new Promise((resolve, reject) => {
    c.exec(command, (err, ch) => {
      if (err) return reject(err)
      let stdout = ''
      let stderr = ''
      let code: number | undefined
      ch.on('data', (d: Buffer) => (stdout += d.toString()))
      ch.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
      ch.on('exit', (c2: number) => (code = c2))
      ch.on('close', () => resolve({ code, stdout, stderr, channel: ch }))
    })
  })
}

function sftpOf(c: ssh2.Client): Promise<ssh2.SFTPWrapper> {
  return new Promise((resolve, reject) => c.sftp((err, s) => (err ? reject(err) : resolve(s))))
}

const closed = (c: ssh2.Client) => new Promise<void>((resolve) => c.once('close', () => resolve()))

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-ssh-attacks-'))
  chmodSync(dir, 0o755)
  art = join(dir, 'artifacts')
  secret = join(dir, 'home', '.ssh')
  mkdirSync(join(art, 'sub'), { recursive: true })
  mkdirSync(secret, { recursive: true })
  writeFileSync(join(art, 'build.txt'), 'artifact\n')
  writeFileSync(join(dir, 'Makefile'), 'build:\n\t@echo built\n')
  writeFileSync(join(secret, 'id_ed25519'), 'PRIVATE KEY\n')
  chmodSync(join(art, 'build.txt'), 0o644)
  symlinkSync(join(secret, 'id_ed25519'), join(art, 'leak'))
  symlinkSync(join(secret, 'planted'), join(art, 'dangling'))
  sshd = await startSshd()
  agentKey = await generateKeyPair(dir, 'agent')
  relay = createServer((down) => {
    targetConnections++
    const up = connect(sshd.port, sshd.host)
    relaySockets.add(down)
    relaySockets.add(up)
    down.pipe(up).pipe(down)
    const end = () => {
      down.destroy()
      up.destroy()
      relaySockets.delete(down)
      relaySockets.delete(up)
    }
    down.on('error', end)
    up.on('error', end)
    down.on('close', end)
    up.on('close', end)
  })
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', () => r()))
  const relayPort = (relay.address() as { port: number }).port
  const hostKey = generateHostKey()
  const underArt = `request.ssh.path.startsWith("${art}/")`
  gw = await startGateway({
    upstream: {},
    identities: [{ id: 'agent-1', groups: ['agents'], sshKeys: [agentKey.publicKey] }],
    connection: {
      name: 'target',
      adapter: 'ssh',
      upstream: { host: '127.0.0.1', port: relayPort, user: sshd.user, privateKey: sshd.clientPrivateKey, hostKey: sshd.hostKeyFingerprint },
      options: { hostKeys: [hostKey.privateKey] },
    },
    extraConnections: [
      {
        name: 'build',
        adapter: 'ssh',
        upstream: { host: sshd.host, port: sshd.port, user: sshd.user, privateKey: sshd.clientPrivateKey, hostKey: sshd.hostKeyFingerprint },
        options: { hostKeys: [hostKey.privateKey] },
      },
      {
        name: 'by-program',
        adapter: 'ssh',
        upstream: { host: sshd.host, port: sshd.port, user: sshd.user, privateKey: sshd.clientPrivateKey, hostKey: sshd.hostKeyFingerprint },
        options: { hostKeys: [hostKey.privateKey] },
      },
      {
        name: 'wrong-key',
        adapter: 'ssh',
        upstream: { host: sshd.host, port: sshd.port, user: sshd.user, privateKey: sshd.clientPrivateKey, hostKey: `SHA256:${'A'.repeat(43)}` },
        options: { hostKeys: [hostKey.privateKey] },
      },
    ],
    policies: [
      // docs/ssh.md's lead pattern: exactly these commands
      {
        id: 'build',
        connections: ['build'],
        principals: { groups: ['agents'] },
        rules: [{ id: 'exact', effect: 'allow', actions: ['ssh.exec'], match: { 'ssh.argv': [['make', 'build'], ['make', 'test'], ['make', '-f', join(dir, 'Makefile'), 'build']] } }],
      },
      // docs/ssh.md's second pattern: by program (as the caller wrote it), nothing dynamic
      {
        id: 'by-program',
        connections: ['by-program'],
        principals: { groups: ['agents'] },
        rules: [{ id: 'make-only', effect: 'allow', actions: ['ssh.exec'], when: 'request.ssh.programs.all(p, p in ["make"]) && !request.ssh.dynamic' }],
      },
      {
        id: 'artifacts',
        connections: ['target', 'wrong-key'],
        principals: { groups: ['agents'] },
        rules: [
          { id: 'sftp-session', effect: 'allow', actions: ['ssh.sftp'], match: { 'ssh.op': ['session'] } },
          // sftp asks where it starts (REALPATH ".") before anything else
          { id: 'where-am-i', effect: 'allow', actions: ['ssh.sftp'], match: { 'ssh.op': ['realpath'] } },
          { id: 'read-artifacts', effect: 'allow', actions: ['ssh.sftp'], when: `request.ssh.op in ["opendir", "stat", "lstat", "readlink"] && ${underArt} || request.ssh.op == "open" && request.ssh.mode == ["read"] && ${underArt}` },
          // every path the operation touches (both ends of a rename) must be in scratch
          { id: 'scratch', effect: 'allow', actions: ['ssh.sftp'], when: `has(request.ssh.paths) && request.ssh.paths.all(p, p.startsWith("${art}/scratch/"))` },
          { id: 'commands', effect: 'allow', actions: ['ssh.exec', 'ssh.subsystem'] },
          { id: 'remote-forward', effect: 'allow', actions: ['ssh.forward'], match: { 'ssh.kind': ['remote'] } },
        ],
      },
    ],
  })
}, 60_000)

afterAll(async () => {
  await gw?.stop()
  for (const s of relaySockets) s.destroy()
  relay?.close()
  await sshd?.stop()
  rmSync(dir, { recursive: true, force: true })
})

describe('sftp paths are judged as the target resolves them', () => {
  it('refuses a `..` path out of the granted directory, and judges the canonical path', async () => {
    const back = join(dir, 'stolen-1')
    const spelled = `${art}/../home/.ssh/id_ed25519`
    const r = await sftpBatch([`get ${spelled} ${back}`])
    expect(r.code).not.toBe(0)
    expect(() => readFileSync(back)).toThrow()
    const open = (await requests('ssh.sftp')).find((e) => sshAttrs(e).requestedPath === spelled)
    expect(open).toBeDefined()
    expect(sshAttrs(open as RequestEvent).path).toBe(join(secret, 'id_ed25519'))
    expect((open as RequestEvent).verdict).toBe('deny')
  })

  it('refuses a symlink inside the granted directory that points out of it', async () => {
    const back = join(dir, 'stolen-2')
    const r = await sftpBatch([`get ${art}/leak ${back}`])
    expect(r.code).not.toBe(0)
    expect(r.stderr).toContain('Permission denied')
    expect(() => readFileSync(back)).toThrow()
    const judged = (await requests('ssh.sftp')).filter((e) => sshAttrs(e).requestedPath === `${art}/leak`)
    expect(judged.length).toBeGreaterThan(0)
    for (const e of judged) expect(sshAttrs(e).path === `${art}/leak` ? sshAttrs(e).op : e.verdict).toMatch(/^(lstat|readlink|deny)$/)
    expect(judged.some((e) => sshAttrs(e).path === join(secret, 'id_ed25519') && e.verdict === 'deny')).toBe(true)
  })

  it('still serves what the grant allows, by its canonical path, with the spelling kept', async () => {
    const back = join(dir, 'build-copy')
    const r = await sftpBatch([`get ${art}/./sub/../build.txt ${back}`])
    expect(r.code, r.stderr).toBe(0)
    expect(readFileSync(back, 'utf8')).toBe('artifact\n')
    const open = (await requests('ssh.sftp')).find((e) => sshAttrs(e).op === 'open' && sshAttrs(e).requestedPath === `${art}/./sub/../build.txt`)
    expect(open).toMatchObject({ verdict: 'allow' })
    expect(sshAttrs(open as RequestEvent).path).toBe(`${art}/build.txt`)
  })

  it('judges mkdir through a dangling symlink where it would create, and forwards the canonical path', async () => {
    mkdirSync(join(art, 'scratch'), { recursive: true })
    const c = await client()
    try {
      const s = await sftpOf(c)
      // a symlink in the writable scratch directory pointing outside: writing through it is judged outside
      symlinkSync(join(secret, 'authorized_keys'), join(art, 'scratch', 'ak'))
      const write = await new Promise<string>((resolve) => s.open(`${art}/scratch/ak`, 'w', (err) => resolve(err ? err.message : 'opened')))
      expect(write).toContain('denied')
      expect(() => statSync(join(secret, 'authorized_keys'))).toThrow()
      // mkdir does not follow the last name: judged (and made) in scratch
      const made = await new Promise<string>((resolve) => s.mkdir(`${art}/scratch/../scratch/newdir`, (err) => resolve(err ? err.message : 'ok')))
      expect(made).toBe('ok')
      expect(statSync(join(art, 'scratch', 'newdir')).isDirectory()).toBe(true)
      const mkdir = (await requests('ssh.sftp')).find((e) => sshAttrs(e).op === 'mkdir')
      expect(sshAttrs(mkdir as RequestEvent)).toMatchObject({ path: `${art}/scratch/newdir`, requestedPath: `${art}/scratch/../scratch/newdir` })
    } finally {
      c.end()
    }
  })

  it('a path the target cannot resolve goes nowhere; its existence is revealed only where policy lets the caller look', async () => {
    const c = await client()
    try {
      const s = await sftpOf(c)
      // inside the grant: the target's own answer
      const inside = await new Promise<Error & { code?: number }>((resolve) => s.open(`${art}/missing/deeper`, 'r', (e) => resolve(e as Error)))
      expect(inside.code).toBe(ssh2.utils.sftp.STATUS_CODE.NO_SUCH_FILE)
      // outside: the same refusal whether or not the file exists (no oracle)
      const missing = await new Promise<Error & { code?: number }>((resolve) => s.stat(`${secret}/nope/..`, (e) => resolve(e as Error)))
      const present = await new Promise<Error & { code?: number }>((resolve) => s.stat(`${secret}/id_ed25519/..`, (e) => resolve(e as Error)))
      expect(missing.code).toBe(ssh2.utils.sftp.STATUS_CODE.PERMISSION_DENIED)
      expect(present.code).toBe(ssh2.utils.sftp.STATUS_CODE.PERMISSION_DENIED)
      const judged = (await requests('ssh.sftp')).find((e) => sshAttrs(e).requestedPath === `${art}/missing/deeper`)
      expect(judged).toMatchObject({ verdict: 'allow' })
      expect(sshAttrs(judged as RequestEvent)).toMatchObject({ path: `${art}/missing/deeper`, resolved: false })
    } finally {
      c.end()
    }
  })

  it('reports an open that can change a file without WRITE (READ|TRUNC, READ|CREAT) as writes, and refuses it under a read grant', async () => {
    const c = await client()
    try {
      const s = await sftpOf(c)
      const { OPEN_MODE } = ssh2.utils.sftp
      const raw = s as unknown as { open(path: string, flags: number, cb: (err: Error | undefined) => void): void }
      const flagsOf = (...f: number[]) => f.reduce((a, b) => a | b, 0)
      // ssh2's open takes a flags string; a number is sent as is
      const err = await new Promise<Error | undefined>((resolve) => raw.open(`${art}/build.txt`, flagsOf(OPEN_MODE.READ, OPEN_MODE.TRUNC), (e) => resolve(e)))
      expect(err?.message).toContain('denied')
      expect(readFileSync(join(art, 'build.txt'), 'utf8')).toBe('artifact\n')
      const open = (await requests('ssh.sftp')).filter((e) => sshAttrs(e).op === 'open' && (sshAttrs(e).mode as string[]).includes('truncate')).at(-1)
      expect(sshAttrs(open as RequestEvent)).toMatchObject({ mode: ['read', 'truncate'], writes: true })
      // a plain read is not a write
      const read = await new Promise<Error | undefined>((resolve) => raw.open(`${art}/build.txt`, OPEN_MODE.READ, (e) => resolve(e)))
      expect(read).toBeUndefined()
      const plain = (await requests('ssh.sftp')).filter((e) => sshAttrs(e).op === 'open' && JSON.stringify(sshAttrs(e).mode) === '["read"]').at(-1)
      expect(sshAttrs(plain as RequestEvent)).toMatchObject({ mode: ['read'], writes: false })
    } finally {
      c.end()
    }
  })

  it('judges a rename by both ends: paths lists the destination too', async () => {
    const c = await client()
    try {
      const s = await sftpOf(c)
      writeFileSync(join(art, 'scratch', 'movable'), 'x')
      const err = await new Promise<Error | undefined>((resolve) => s.rename(`${art}/scratch/movable`, `${secret}/planted`, (e) => resolve(e ?? undefined)))
      const rename = (await requests('ssh.sftp')).filter((e) => sshAttrs(e).op === 'rename').at(-1) as RequestEvent
      expect(sshAttrs(rename).paths).toEqual([`${art}/scratch/movable`, `${secret}/planted`])
      expect(rename.verdict).toBe('deny')
      expect(err?.message).toContain('denied')
      expect(existsSync(join(art, 'scratch', 'movable'))).toBe(true)
      expect(existsSync(join(secret, 'planted'))).toBe(false)
      // within scratch, allowed
      const inside = await new Promise<Error | undefined>((resolve) => s.rename(`${art}/scratch/movable`, `${art}/scratch/moved`, (e) => resolve(e ?? undefined)))
      expect(inside).toBeUndefined()
      expect(existsSync(join(art, 'scratch', 'moved'))).toBe(true)
    } finally {
      c.end()
    }
  })

})

describe('sftp limits (limits.ssh)', () => {
  it('answers reads past sftpInFlight with a failure naming the limit, records it once, and the session goes on', async () => {
    const running = structuredClone(gw.gateway.config)
    await gw.gateway.reload({ ...structuredClone(running), limits: { ...running.limits, ssh: { sftpInFlight: 4 } } })
    const c = await client()
    try {
      const s = await sftpOf(c)
      const handle = await new Promise<Buffer>((resolve, reject) => s.open(`${art}/build.txt`, 'r', (err, h) => (err ? reject(err) : resolve(h))))
      const read = () => new Promise<string>((resolve) => s.read(handle, Buffer.alloc(9), 0, 9, 0, (err, n, buf) => resolve(err ? `error: ${err.message}` : buf.subarray(0, n).toString())))
      const results = await Promise.all(Array.from({ length: 40 }, read))
      expect(results.filter((r) => r === 'artifact\n').length).toBeGreaterThanOrEqual(4)
      const refused = results.filter((r) => r.startsWith('error'))
      expect(refused.length).toBeGreaterThan(0)
      expect(refused[0]).toContain('more than 4 reads and writes in flight (limits.ssh.sftpInFlight)')
      expect(await read()).toBe('artifact\n')
      const events = (await gw.audit()).filter((e) => e.type === 'protocol' && (e as { event?: string }).event === 'limit.ssh.sftp-in-flight')
      expect(events).toHaveLength(1)
      expect(events[0]).toMatchObject({ reason: 'the sftp client had more than 4 reads and writes in flight (limits.ssh.sftpInFlight); the excess is answered with a failure' })
    } finally {
      c.end()
      await gw.gateway.reload(running)
    }
  })
  it('counts writes against sftpInFlight too: pipelined writes past it fail, naming the limit, and the file holds only what was admitted', async () => {
    const running = structuredClone(gw.gateway.config)
    await gw.gateway.reload({ ...structuredClone(running), limits: { ...running.limits, ssh: { sftpInFlight: 4 } } })
    const target = join(art, 'scratch', 'inflight-writes')
    rmSync(target, { force: true })
    mkdirSync(join(art, 'scratch'), { recursive: true })
    const c = await client()
    try {
      const s = await sftpOf(c)
      const handle = await new Promise<Buffer>((resolve, reject) => s.open(target, 'w', (err, h) => (err ? reject(err) : resolve(h))))
      // 40 one-byte writes at offsets 0..39, sent without waiting for answers
      const write = (i: number) => new Promise<string>((resolve) => s.write(handle, Buffer.from('x'), 0, 1, i, (err) => resolve(err ? `error: ${err.message}` : 'ok')))
      const results = await Promise.all(Array.from({ length: 40 }, (_, i) => write(i)))
      const refused = results.filter((r) => r.startsWith('error'))
      expect(refused.length).toBeGreaterThan(0)
      expect(refused[0]).toContain('more than 4 reads and writes in flight (limits.ssh.sftpInFlight)')
      await new Promise<void>((resolve) => s.close(handle, () => resolve()))
      // every write that was answered ok is in the file, none that failed is
      const written = readFileSync(target, 'latin1')
      results.forEach((r, i) => expect(written[i] === 'x', `offset ${i}: ${r}`).toBe(r === 'ok'))
    } finally {
      c.end()
      await gw.gateway.reload(running)
    }
  })
})

describe('handles and metadata', () => {
  it('judges fsetstat on a read-only handle as setstat on its path: a read grant cannot chmod', async () => {
    const before = statSync(join(art, 'build.txt')).mode & 0o7777
    const c = await client()
    try {
      const s = await sftpOf(c)
      const handle = await new Promise<Buffer>((resolve, reject) => s.open(`${art}/build.txt`, 'r', (err, h) => (err ? reject(err) : resolve(h))))
      const err = await new Promise<Error | undefined>((resolve) => s.fchmod(handle, 0o777, (e) => resolve(e ?? undefined)))
      expect(err?.message).toContain('denied')
      const truncated = await new Promise<Error | undefined>((resolve) => s.fsetstat(handle, { size: 0 }, (e) => resolve(e ?? undefined)))
      expect(truncated?.message).toContain('denied')
      expect(statSync(join(art, 'build.txt')).mode & 0o7777).toBe(before)
      expect(readFileSync(join(art, 'build.txt'), 'utf8')).toBe('artifact\n')
      const setstat = (await requests('ssh.sftp')).filter((e) => sshAttrs(e).op === 'setstat' && sshAttrs(e).handle === true)
      expect(setstat.map((e) => [sshAttrs(e).path, e.verdict])).toEqual([
        [`${art}/build.txt`, 'deny'],
        [`${art}/build.txt`, 'deny'],
      ])
    } finally {
      c.end()
    }
  })

  it('judges and records stat, lstat and readlink: a one-directory grant does not reveal the filesystem', async () => {
    const c = await client()
    try {
      const s = await sftpOf(c)
      const stat = await new Promise<string>((resolve) => s.stat('/etc/shadow', (err) => resolve(err ? err.message : 'revealed')))
      const lstat = await new Promise<string>((resolve) => s.lstat('/root', (err) => resolve(err ? err.message : 'revealed')))
      const link = await new Promise<string>((resolve) => s.readlink('/etc/os-release', (err) => resolve(err ? err.message : 'revealed')))
      expect([stat, lstat, link].every((m) => m.includes('denied'))).toBe(true)
      const ok = await new Promise<string>((resolve) => s.stat(`${art}/build.txt`, (err, st) => resolve(err ? err.message : String(st.size))))
      expect(ok).toBe('9')
      const ops = (await requests('ssh.sftp')).map((e) => [sshAttrs(e).op, sshAttrs(e).path, e.verdict])
      expect(ops).toEqual(expect.arrayContaining([['stat', '/etc/shadow', 'deny'], ['lstat', '/root', 'deny'], ['readlink', '/etc/os-release', 'deny'], ['stat', `${art}/build.txt`, 'allow']]))
    } finally {
      c.end()
    }
  })

  it('answers only handles it handed out: forged, predicted, closed and other-channel handles are refused by the gateway', async () => {
    const c = await client()
    try {
      const s = await sftpOf(c)
      const other = await sftpOf(c)
      const refusal = (op: (h: Buffer, cb: (err: Error | null | undefined, ...rest: unknown[]) => void) => void, h: Buffer) =>
        new Promise<string>((resolve) => op(h, (err, ...rest) => resolve(err ? err.message : `answered ${JSON.stringify(rest).slice(0, 40)}`)))
      const ops = (h: Buffer) => [
        refusal((hh, cb) => s.read(hh, Buffer.alloc(16), 0, 16, 0, cb), h),
        refusal((hh, cb) => s.write(hh, Buffer.from('pwned'), 0, 5, 0, cb), h),
        refusal((hh, cb) => s.fstat(hh, cb), h),
        refusal((hh, cb) => s.fsetstat(hh, { mode: 0o777 }, cb), h),
        refusal((hh, cb) => s.readdir(hh, cb as never), h),
        refusal((hh, cb) => s.close(hh, cb), h),
      ]
      // before any open: OpenSSH numbers its handles from 0 as 4-byte integers, so these are the upstream's next ones
      for (const forged of [Buffer.from([0, 0, 0, 0]), Buffer.from([0, 0, 0, 1]), Buffer.from('not-a-handle'), Buffer.alloc(0)]) {
        expect(await Promise.all(ops(forged))).toEqual(Array(6).fill('gatehouse: unknown handle'))
      }
      const handle = await new Promise<Buffer>((resolve, reject) => s.open(`${art}/build.txt`, 'r', (err, h) => (err ? reject(err) : resolve(h))))
      // the handle handed out works on its channel, and only there
      expect(await refusal((hh, cb) => s.read(hh, Buffer.alloc(8), 0, 8, 0, cb), handle)).toMatch(/^answered \[8,/)
      const onOther = await new Promise<string>((resolve) => other.read(handle, Buffer.alloc(8), 0, 8, 0, (err) => resolve(err ? err.message : 'answered')))
      expect(onOther).toBe('gatehouse: unknown handle')
      // the handle after it, which the upstream would hand out next, was never handed out here
      const next = Buffer.from(handle)
      next[next.length - 1] = (next[next.length - 1] as number) + 1
      expect(await Promise.all(ops(next))).toEqual(Array(6).fill('gatehouse: unknown handle'))
      // closed once, the handle is gone
      expect(await refusal((hh, cb) => s.close(hh, cb), handle)).toMatch(/^answered/)
      expect(await refusal((hh, cb) => s.read(hh, Buffer.alloc(8), 0, 8, 0, cb), handle)).toBe('gatehouse: unknown handle')
      expect(readFileSync(join(art, 'build.txt'), 'utf8')).toBe('artifact\n')
      expect(statSync(join(art, 'build.txt')).mode & 0o777).toBe(0o644)
      // recorded once per SFTP session (two channels here), not once per forged handle
      c.end()
      await closed(c).catch(() => undefined)
      const forged = (await gw.audit()).filter((e) => e.type === 'protocol' && (e as { event?: string }).event === 'sftp.unknown-handle')
      expect(forged).toHaveLength(2)
      expect(forged[0]).toMatchObject({ reason: expect.stringContaining('never handed out'), principal: { id: 'agent-1' }, attrs: { handle: '00000000' } })
    } finally {
      c.end()
    }
  })
})

describe('every sftp operation, forwarded and recorded', () => {
  type Result<T> = { err?: Error & { code?: number }; value?: T }
  /** One sftp call, its error or value; a call the gateway never answers fails the test instead of hanging it. */
  const call = <T>(f: (cb: (err: (Error & { code?: number }) | null | undefined, value?: T) => void) => void) =>
    Promise.race([
      new Promise<Result<T>>((resolve) => f((err, value) => resolve(err ? { err } : { value: value as T }))),
      new Promise<Result<T>>((resolve) => setTimeout(() => resolve({ err: new Error('no answer within 5 s') }), 5000)),
    ])
  const outcomesOf = async (request: RequestEvent) => (await gw.audit()).filter((e) => e.type === 'outcome' && (e as { request?: string }).request === request.request) as (AuditEvent & Record<string, unknown>)[]

  it('mkdir, open/write/fstat/close, setstat with each attribute, symlink, readlink, opendir/readdir, rename, remove, rmdir: each judged on its canonical path, done at the target, and its outcome recorded', async () => {
    const ops = join(art, 'scratch', 'ops')
    rmSync(ops, { recursive: true, force: true })
    mkdirSync(ops, { recursive: true })
    const before = (await requests('ssh.sftp')).length
    const c = await client()
    try {
      const s = await sftpOf(c)
      expect((await call((cb) => s.mkdir(`${ops}/d`, cb))).err).toBeUndefined()
      expect(statSync(join(ops, 'd')).isDirectory()).toBe(true)

      const handle = (await call<Buffer>((cb) => s.open(`${ops}/d/f`, 'w', cb))).value as Buffer
      expect((await call((cb) => s.write(handle, Buffer.from('hello'), 0, 5, 0, cb))).err).toBeUndefined()
      // more writes, one after another, than sftpInFlight allows at once (128): each one answered frees its place
      for (let i = 0; i < 140; i++) expect((await call((cb) => s.write(handle, Buffer.from('o'), 0, 1, 4, cb))).err).toBeUndefined()
      expect((await call<{ size: number }>((cb) => s.fstat(handle, cb))).value?.size).toBe(5)
      // chmod through a writable handle in scratch: allowed, judged as setstat on its path
      expect((await call((cb) => s.fchmod(handle, 0o640, cb))).err).toBeUndefined()
      expect((await call((cb) => s.close(handle, cb))).err).toBeUndefined()
      expect(readFileSync(join(ops, 'd', 'f'), 'utf8')).toBe('hello')
      const reader = (await call<Buffer>((cb) => s.open(`${ops}/d/f`, 'r', cb))).value as Buffer
      const got = Buffer.alloc(16)
      expect((await call<number>((cb) => s.read(reader, got, 0, 16, 0, cb))).value).toBe(5)
      // at the end of the file: EOF, and none of the gateway's read buffer
      const past = await call<number>((cb) => s.read(reader, Buffer.alloc(16), 0, 16, 5, cb))
      expect(past.err?.code ?? past.value).toBe(past.err ? ssh2.utils.sftp.STATUS_CODE.EOF : 0)
      expect((await call((cb) => s.close(reader, cb))).err).toBeUndefined()

      expect((await call((cb) => s.setstat(`${ops}/d/f`, { mode: 0o600 }, cb))).err).toBeUndefined()
      expect(statSync(join(ops, 'd', 'f')).mode & 0o7777).toBe(0o600)
      expect((await call((cb) => s.setstat(`${ops}/d/f`, { uid: 0, gid: 0, size: 2 }, cb))).err).toBeUndefined()
      expect(readFileSync(join(ops, 'd', 'f'), 'utf8')).toBe('he')

      expect((await call((cb) => s.symlink('f', `${ops}/d/l`, cb))).err).toBeUndefined()
      expect(readlinkSync(join(ops, 'd', 'l'))).toBe('f')
      expect(await call<string>((cb) => s.readlink(`${ops}/d/l`, cb))).toEqual({ value: 'f' })
      // readlink of a file that is no link: the target's error, as it gave it (sftp-server maps EINVAL to BAD_MESSAGE)
      expect((await call<string>((cb) => s.readlink(`${ops}/d/f`, cb))).err?.code).toBe(ssh2.utils.sftp.STATUS_CODE.BAD_MESSAGE)
      // a link to a directory: opendir follows it, and is judged where it lands
      symlinkSync(join(ops, 'd'), join(ops, 'dl'))
      const dirHandle = (await call<Buffer>((cb) => s.opendir(`${ops}/dl`, cb))).value as Buffer
      const listed = await call<{ filename: string }[]>((cb) => s.readdir(dirHandle, cb))
      expect(listed.value?.map((e) => e.filename).sort()).toEqual(expect.arrayContaining(['f', 'l']))
      // the listing is over: the next readdir is the end of it, as sftp-server says
      const end = await call<unknown>((cb) => s.readdir(dirHandle, cb))
      expect(end.value === false || end.err?.code === ssh2.utils.sftp.STATUS_CODE.EOF).toBe(true)
      expect((await call((cb) => s.close(dirHandle, cb))).err).toBeUndefined()

      expect((await call((cb) => s.rename(`${ops}/d/f`, `${ops}/d/g`, cb))).err).toBeUndefined()
      // below a directory that does not exist (the target canonicalises a missing last name, not a
      // missing directory on the way): judged as written (unresolved), the target's error comes back
      const lost = await call((cb) => s.rename(`${ops}/d/g`, `${ops}/nodir/deeper/g`, cb))
      expect(lost.err?.code).toBe(ssh2.utils.sftp.STATUS_CODE.NO_SUCH_FILE)
      // a directory with something in it: the target refuses, and says so
      const full = await call((cb) => s.rmdir(`${ops}/d`, cb))
      expect(full.err?.code).toBe(ssh2.utils.sftp.STATUS_CODE.FAILURE)
      expect((await call((cb) => s.unlink(`${ops}/d/g`, cb))).err).toBeUndefined()
      expect((await call((cb) => s.unlink(`${ops}/d/l`, cb))).err).toBeUndefined()
      expect((await call((cb) => s.rmdir(`${ops}/d`, cb))).err).toBeUndefined()
      expect(existsSync(join(ops, 'd'))).toBe(false)

      // a file left open when the session ends: its outcome says so, with the bytes written
      const kept = (await call<Buffer>((cb) => s.open(`${ops}/kept`, 'w', cb))).value as Buffer
      expect((await call((cb) => s.write(kept, Buffer.from('abc'), 0, 3, 0, cb))).err).toBeUndefined()
    } finally {
      c.end()
      await closed(c).catch(() => undefined)
    }
    await new Promise((r) => setTimeout(r, 200))
    const recorded = (await requests('ssh.sftp')).slice(before)
    const find = (op: string, path: string) => recorded.find((e) => sshAttrs(e).op === op && sshAttrs(e).path === path) as RequestEvent
    const byOp = recorded.map((e) => [sshAttrs(e).op, sshAttrs(e).path, e.verdict])
    expect(byOp).toEqual(
      expect.arrayContaining([
        ['mkdir', `${ops}/d`, 'allow'],
        ['open', `${ops}/d/f`, 'allow'],
        ['setstat', `${ops}/d/f`, 'allow'],
        ['symlink', `${ops}/d/l`, 'allow'],
        ['readlink', `${ops}/d/l`, 'allow'],
        ['opendir', `${ops}/d`, 'allow'],
        ['rename', `${ops}/d/f`, 'allow'],
        ['rename', `${ops}/d/g`, 'allow'],
        ['rmdir', `${ops}/d`, 'allow'],
        ['remove', `${ops}/d/g`, 'allow'],
        ['remove', `${ops}/d/l`, 'allow'],
      ]),
    )
    const fsetstat = recorded.find((e) => sshAttrs(e).op === 'setstat' && sshAttrs(e).handle === true) as RequestEvent
    expect(fsetstat.text).toBe(`sftp setstat ${ops}/d/f`)
    expect(sshAttrs(fsetstat)).toMatchObject({ subsystem: 'sftp', attrs: { mode: '0640' } })
    const setstats = recorded.filter((e) => sshAttrs(e).op === 'setstat' && sshAttrs(e).handle === undefined).map((e) => sshAttrs(e).attrs)
    expect(setstats).toEqual([{ mode: '0600' }, { uid: 0, gid: 0, size: 2 }])
    expect(sshAttrs(find('symlink', `${ops}/d/l`))).toMatchObject({ to: 'f' })
    expect(sshAttrs(find('opendir', `${ops}/d`))).toMatchObject({ requestedPath: `${ops}/dl` })
    const unresolved = recorded.find((e) => sshAttrs(e).op === 'rename' && sshAttrs(e).resolved === false) as RequestEvent
    expect(unresolved.text).toBe(`sftp rename ${ops}/d/g`)
    expect(sshAttrs(unresolved)).toMatchObject({ subsystem: 'sftp', path: `${ops}/d/g`, requestedTo: `${ops}/nodir/deeper/g` })
    // only a rename carries the destination it was asked for
    expect(recorded.filter((e) => 'requestedTo' in sshAttrs(e)).every((e) => sshAttrs(e).op === 'rename')).toBe(true)
    const outcome = async (op: string, path: string) => (await outcomesOf(find(op, path))).map(({ status, error, bytesIn }) => ({ status, error, bytesIn }))
    expect(await outcome('open', `${ops}/d/f`)).toEqual([{ status: 'closed', error: undefined, bytesIn: 145 }])
    const readOpen = recorded.filter((e) => sshAttrs(e).op === 'open' && sshAttrs(e).path === `${ops}/d/f`)[1] as RequestEvent
    expect((await outcomesOf(readOpen)).map(({ status, bytesIn, bytesOut }) => ({ status, bytesIn, bytesOut }))).toEqual([{ status: 'closed', bytesIn: 0, bytesOut: 5 }])
    expect(await outcome('opendir', `${ops}/d`)).toEqual([{ status: 'opened', error: undefined, bytesIn: undefined }])
    expect(await outcome('readlink', `${ops}/d/l`)).toEqual([{ status: 'ok', error: undefined, bytesIn: undefined }])
    expect(await outcome('open', `${ops}/kept`)).toEqual([{ status: 'not closed', error: undefined, bytesIn: 3 }])
    const rmdirs = recorded.filter((e) => sshAttrs(e).op === 'rmdir')
    const rmdirOutcomes = (await Promise.all(rmdirs.map(outcomesOf))).flat()
    expect(rmdirOutcomes.map((o) => o.error ?? o.status)).toEqual([{ code: 'SFTP 4', message: expect.any(String) }, 'ok'])
    expect((await outcomesOf(unresolved)).map((o) => o.error)).toEqual([{ code: 'SFTP 2', message: expect.any(String) }])
  })

  it('mkdir, rmdir and symlink judge the name they create or remove, not what a symlink of that name points to', async () => {
    // with the link followed, policy would see (and rmdir would remove) the directory it points to
    const dir = join(art, 'scratch', 'lastname')
    rmSync(dir, { recursive: true, force: true })
    mkdirSync(join(dir, 'real'), { recursive: true })
    symlinkSync(join(dir, 'real'), join(dir, 'link'))
    const before = (await requests('ssh.sftp')).length
    const c = await client()
    try {
      const s = await sftpOf(c)
      // the target refuses each (the name exists, or is no directory): what matters is what was judged and touched
      expect((await call((cb) => s.rmdir(`${dir}/link`, cb))).err).toBeDefined()
      expect((await call((cb) => s.mkdir(`${dir}/link`, cb))).err).toBeDefined()
      expect((await call((cb) => s.symlink('elsewhere', `${dir}/link`, cb))).err).toBeDefined()
    } finally {
      c.end()
    }
    expect(statSync(join(dir, 'real')).isDirectory()).toBe(true)
    expect(readlinkSync(join(dir, 'link'))).toBe(join(dir, 'real'))
    // (the sftp session's own request, op `session`, aside)
    const judged = (await requests('ssh.sftp')).slice(before).filter((e) => sshAttrs(e).op !== 'session').map((e) => [sshAttrs(e).op, sshAttrs(e).path])
    expect(judged).toEqual([
      ['rmdir', `${dir}/link`],
      ['mkdir', `${dir}/link`],
      ['symlink', `${dir}/link`],
    ])
  })

  it('a relative path the target cannot resolve is judged against the home directory', async () => {
    const c = await client()
    try {
      const s = await sftpOf(c)
      const missing = await call((cb) => s.stat('no/such/place', cb))
      expect(missing.err?.message).toContain('denied')
      // where sftp starts: the target's answer, given back by the gateway
      expect(await call<string>((cb) => s.realpath('.', cb))).toEqual({ value: '/root' })
    } finally {
      c.end()
    }
    const stat = (await requests('ssh.sftp')).filter((e) => sshAttrs(e).op === 'stat' && sshAttrs(e).requestedPath === 'no/such/place').at(-1) as RequestEvent
    expect(stat.text).toBe('sftp stat /root/no/such/place')
    expect(sshAttrs(stat)).toMatchObject({ path: '/root/no/such/place', resolved: false })
    const realpath = (await requests('ssh.sftp')).filter((e) => sshAttrs(e).op === 'realpath' && sshAttrs(e).requestedPath === '.').at(-1) as RequestEvent
    expect((await outcomesOf(realpath)).map((o) => o.status)).toEqual(['ok'])
  })

  it('a client that asks for more than sftpUnreadBytes of replies it does not read: the session ends, recorded', async () => {
    const big = join(art, 'big.bin')
    writeFileSync(big, Buffer.alloc(6 * 1024 * 1024, 7))
    const running = structuredClone(gw.gateway.config)
    await gw.gateway.reload({ ...structuredClone(running), limits: { ...running.limits, ssh: { sftpUnreadBytes: 65536, sftpInFlight: 4096 } } })
    const c = await client()
    try {
      const s = await sftpOf(c)
      const handle = (await call<Buffer>((cb) => s.open(big, 'r', cb))).value as Buffer
      const ended = closed(c)
      // stop reading what the gateway sends (requests still go out): its replies pile up once the window is used
      const sock = (c as unknown as { _sock: Socket })._sock
      sock.pause()
      const ask = (n: number, from: number) => {
        for (let i = 0; i < n; i++) s.read(handle, Buffer.alloc(32768), 0, 32768, (from + i) * 32768, () => undefined)
      }
      ask(96, 0)
      await new Promise((r) => setTimeout(r, 1500))
      ask(32, 96)
      await new Promise((r) => setTimeout(r, 1000))
      sock.resume()
      await Promise.race([ended, new Promise((r) => setTimeout(r, 10_000))])
      const events = (await gw.audit()).filter((e) => e.type === 'protocol' && (e as { event?: string }).event === 'limit.ssh.sftp-unread')
      expect(events.map((e) => (e as { reason?: string }).reason)).toEqual(['the sftp client asked for more than 65536 bytes it does not read (limits.ssh.sftpUnreadBytes)'])
    } finally {
      c.end()
      await gw.gateway.reload(running)
      rmSync(big, { force: true })
    }
  })
})

describe('exec analysis a docs/ssh.md-style policy can trust', () => {
  const on = (connection: string, command: string) => run('ssh', [...asAgent([], gw.portOf(connection)), command])

  it('exact commands: only the listed argv runs, word for word and case-sensitively', async () => {
    const allowed = await on('build', `make -f ${join(dir, 'Makefile')} build`)
    expect(allowed).toMatchObject({ code: 0, stdout: 'built\n' })
    // `make build` is listed: it reaches the target (which has no Makefile in the home directory)
    expect((await on('build', 'make build')).stderr).toContain('No rule to make target')
    for (const command of ['make BUILD', 'make build extra', 'make -f - build', 'make --eval=x build', 'PATH=~/bin make build', '~/bin/make build', 'make build; id', `make -f ${join(dir, 'Makefile')} build > /tmp/x`]) {
      const r = await on('build', command)
      expect(r.code, command).toBe(126)
      expect(r.stderr, command).toContain('gatehouse: denied by default-deny')
    }
  })

  it('by program: make -f -, --eval, variable overrides, PATH/LD_PRELOAD/MAKEFLAGS and ~/bin/make are refused', async () => {
    expect((await on('by-program', 'make build')).stderr).toContain('No rule to make target')
    for (const command of ['make -f - build', 'make -f /dev/stdin build', 'make --eval=x build', "make CC='sh -c id' build", 'PATH=~/bin make build', 'LD_PRELOAD=/tmp/x.so make build', 'MAKEFLAGS=--eval=x make build', '~/bin/make build', '/tmp/make build']) {
      const r = await on('by-program', command)
      expect(r.code, command).toBe(126)
    }
    const refused = (await requests('ssh.exec')).find((e) => e.text === 'PATH=~/bin make build' && e.session !== undefined && sshAttrs(e).dynamicReasons !== undefined)
    expect(sshAttrs(refused as RequestEvent)).toMatchObject({ env: ['PATH'], dynamic: true, dynamicReasons: expect.arrayContaining(['PATH= changes what runs']) })
  })
})

describe('attempts leave a trace', () => {
  it('records a refused environment variable by name, never its value', async () => {
    const r = await ssh('echo ran', ['-o', 'SetEnv=GATEHOUSE_PROBE_NAME=s3cr3t-value'])
    expect(r.stdout).toBe('ran\n')
    const env = (await requests('ssh.env')).find((e) => sshAttrs(e).name === 'GATEHOUSE_PROBE_NAME')
    expect(env).toMatchObject({ verdict: 'deny', rule: 'gatehouse/env' })
    expect(readFileSync(gw.auditPath, 'utf8')).not.toContain('s3cr3t-value')
  })

  it('records an `ssh -w` tunnel channel as refused', async () => {
    const r = await run('ssh', [...asAgent(['-o', 'ExitOnForwardFailure=yes', '-o', 'Tunnel=point-to-point', '-w', 'any:any', '-N'])], { timeoutMs: 10_000 })
    expect(r.code).toBe(255)
    const channel = (await requests('ssh.channel')).find((e) => sshAttrs(e).type === 'tun@openssh.com')
    expect(channel).toMatchObject({ verdict: 'deny', rule: 'gatehouse/unsupported' })
  })

  it('refuses and records a second exec on a channel; the first runs undisturbed', async () => {
    const c = await client()
    try {
      const result = await new Promise<{ stdout: string; code: number | undefined }>((resolve, reject) => {
        c.exec('sleep 0.3; echo first', (err, ch) => {
          if (err) return reject(err)
          let stdout = ''
          let code: number | undefined
          ch.on('data', (d: Buffer) => (stdout += d.toString()))
          ch.on('exit', (x: number) => (code = x))
          ch.on('close', () => resolve({ stdout, code }))
          const raw = c as unknown as { _protocol: { exec(id: number, command: string, wantReply: boolean): void } }
          raw._protocol.exec((ch as unknown as { outgoing: { id: number } }).outgoing.id, 'echo second-ran', true)
        })
      })
      expect(result).toEqual({ stdout: 'first\n', code: 0 })
      const second = (await requests('ssh.exec')).find((e) => e.text === 'echo second-ran')
      expect(second).toMatchObject({ verdict: 'deny', rule: 'gatehouse/one-request-per-channel' })
    } finally {
      c.end()
    }
  })

  it('an env or pty request after the exec does not change the command judged: refused and recorded', async () => {
    const c = await client()
    try {
      const out = await new Promise<string>((resolve, reject) => {
        c.exec('echo "lang=${LANG:-unset}"', (err, ch) => {
          if (err) return reject(err)
          let stdout = ''
          ch.on('data', (d: Buffer) => (stdout += d.toString()))
          ch.on('close', () => resolve(stdout))
          // LANG is a variable options.env passes; sent after the exec, while it is being judged
          const raw = c as unknown as { _protocol: { env(id: number, key: string, val: string, wantReply: boolean): void } }
          raw._protocol.env((ch as unknown as { outgoing: { id: number } }).outgoing.id, 'LANG', 'late-value', false)
        })
      })
      expect(out).toBe('lang=unset\n')
      const late = (await requests('ssh.env')).find((e) => sshAttrs(e).name === 'LANG')
      expect(late).toMatchObject({ verdict: 'deny', rule: 'gatehouse/env', reason: 'the channel already runs its command; its environment is fixed' })
    } finally {
      c.end()
    }
  })

  it('records a command line too large to read, and says why the session ended', async () => {
    const huge = `echo ${'x'.repeat(40_000)}`
    const r = await ssh(huge)
    expect(r.code).toBe(255)
    const events = await gw.audit()
    const packet = events.find((e): e is RequestEvent => e.type === 'request' && e.action === 'ssh.packet')
    expect(packet).toMatchObject({ verdict: 'deny', rule: 'gatehouse/limits' })
    const end = events.find((e) => e.type === 'session.end' && e.session === packet?.session) as { reason?: string } | undefined
    expect(end?.reason).toContain('larger than the gateway reads')
  })
})

describe('messages', () => {
  it('a denied shell names no recording, and none is written', async () => {
    const r = await run('ssh', [...asAgent(['-tt'])], { timeoutMs: 10_000 })
    expect(r.code).toBe(126)
    expect(r.stdout + r.stderr).toContain('gatehouse: denied by default-deny')
    const shell = (await requests('ssh.shell')).at(-1) as RequestEvent
    expect(shell).toMatchObject({ verdict: 'deny' })
    expect(sshAttrs(shell).recording).toBeUndefined()
    const outcome = (await gw.audit()).find((e) => e.type === 'outcome' && e.request === shell.request) as { recording?: string } | undefined
    expect(outcome?.recording).toBeUndefined()
    expect(existsSync(join(gw.dir, 'recordings', shell.session))).toBe(false)
  })

  it('tells an sftp user why the target was refused (host key mismatch), not just "Connection closed"', async () => {
    const r = await sftpBatch(['ls'], gw.portOf('wrong-key'))
    expect(r.code).not.toBe(0)
    expect(r.stderr).toContain('gatehouse: target host key')
    expect(r.stderr).toContain('does not match')
  })
})

describe('the target is reached only when needed', () => {
  it('does not log into the target for `ssh -N` or a denied request; does for the first admitted one', async () => {
    const before = targetConnections
    const idle = spawn('ssh', asAgent(['-N']), { stdio: 'ignore' })
    await new Promise((r) => setTimeout(r, 1500))
    idle.kill()
    const denied = await ssh('cat /etc/hostname', ['-o', 'RequestTTY=no', '-s'])
    expect(denied.code).not.toBe(0)
    expect(targetConnections).toBe(before)
    expect((await ssh('echo reached')).stdout).toBe('reached\n')
    expect(targetConnections).toBe(before + 1)
  })
})

describe('one session never ends the process', () => {
  it('a command line that makes the shell parser crawl is refused off the event loop; other sessions and later commands go on', async () => {
    const hostile = 'a|'.repeat(16_000)
    const started = performance.now()
    // The gateway runs in this process: the longest gap between ticks of its event loop while
    // the line is analysed. Parsed on the loop, as before, this line held it for about 10 s.
    let last = performance.now()
    let longestGap = 0
    const ticker = setInterval(() => {
      const now = performance.now()
      longestGap = Math.max(longestGap, now - last)
      last = now
    }, 20)
    try {
      const attack = ssh(hostile)
      // while the hostile line is being analysed, another session runs a command
      await new Promise((r) => setTimeout(r, 300))
      expect((await ssh('echo bystander')).stdout).toBe('bystander\n')
      const r = await attack
      expect(r.code).toBe(126)
      expect(r.stderr).toContain('gatehouse: denied by gatehouse/parse')
    } finally {
      clearInterval(ticker)
    }
    expect(performance.now() - started).toBeLessThan(10_000)
    // loose, so a loaded CI machine passes; the old code's gap was several seconds
    expect(longestGap).toBeLessThan(3_000)
    // the parser still works for everyone afterwards
    expect((await ssh('echo after')).stdout).toBe('after\n')
  })


  it('refuses a subsystem name with a NUL or control byte before it reaches the target, and goes on', async () => {
    const c = await client()
    try {
      for (const name of ['sftp\0x', 'sftp\nx', 'a b']) {
        const err = await new Promise<Error | undefined>((resolve) => c.subsys(name, (e) => resolve(e ?? undefined)))
        expect(err, JSON.stringify(name)).toBeDefined()
      }
      expect((await execOn(c, 'echo alive')).stdout).toBe('alive\n')
      const refused = (await requests('ssh.subsystem')).filter((e) => e.rule === 'gatehouse/subsystem').map((e) => sshAttrs(e).subsystem)
      expect(refused).toEqual(expect.arrayContaining(['sftp\\u0000x', 'sftp\\nx', 'a b']))
    } finally {
      c.end()
    }
  })

  it('refuses a signal with an unknown name without dropping the connection', async () => {
    // ssh2's client refuses to send names outside its table; the attacker's client has no such table
    const constants = createRequire(import.meta.url)('ssh2/lib/protocol/constants.js') as { SIGNALS: Record<string, number> }
    constants.SIGNALS.GATEHOUSEBOGUS = 1
    const c = await client()
    try {
      const done = await new Promise<{ stdout: string }>((resolve, reject) => {
        c.exec('sleep 0.5; echo survived', (err, ch) => {
          if (err) return reject(err)
          let stdout = ''
          ch.on('data', (d: Buffer) => (stdout += d.toString()))
          ch.on('close', () => resolve({ stdout }))
          ch.signal('GATEHOUSEBOGUS')
        })
      })
      expect(done.stdout).toBe('survived\n')
      expect((await execOn(c, 'echo still')).stdout).toBe('still\n')
      expect((await requests('ssh.signal')).some((e) => sshAttrs(e).signal === 'GATEHOUSEBOGUS' && e.verdict === 'deny')).toBe(true)
    } finally {
      delete constants.SIGNALS.GATEHOUSEBOGUS
      c.end()
    }
  })

  it('survives cancel-tcpip-forward after the target dropped the gateway\'s connection', async () => {
    const c = await client()
    const ended = closed(c)
    const port = await new Promise<number>((resolve, reject) => c.forwardIn('127.0.0.1', 0, (err, p) => (err ? reject(err) : resolve(p))))
    // the target drops the gateway's connection (as it did on a NUL subsystem name): kill the relay's sockets
    for (const s of relaySockets) s.destroy()
    c.unforwardIn('127.0.0.1', port, () => undefined)
    await ended
    expect((await ssh('echo next-session')).stdout).toBe('next-session\n')
  })

  // A throw (sync) or a rejection (async) injected into each handler a session registers: the
  // session ends, the failure is recorded, the process and every other session go on.
  const sessionModule = createRequire(import.meta.url).resolve('@gatehouse/adapter-ssh').replace(/index\.js$/, 'session.js')
  const sftpModule = sessionModule.replace(/session\.js$/, 'sftp.js')
  const cases: Array<{ module: 'session' | 'sftp'; cls: string; method: string; async: boolean; trigger: (c: ssh2.Client) => Promise<unknown> }> = [
    { module: 'session', cls: 'SshSession', method: 'onExec', async: true, trigger: (c) => execOn(c, 'echo x') },
    { module: 'session', cls: 'SshSession', method: 'onSessionChannel', async: false, trigger: (c) => execOn(c, 'echo x') },
    { module: 'session', cls: 'SshSession', method: 'onSubsystem', async: true, trigger: (c) => new Promise((r) => c.subsys('gatehouse-none', () => r(undefined))) },
    { module: 'session', cls: 'SshSession', method: 'onSftp', async: false, trigger: (c) => sftpOf(c) },
    { module: 'session', cls: 'SshSession', method: 'onDirectTcpip', async: true, trigger: (c) => new Promise((r) => c.forwardOut('127.0.0.1', 1, '127.0.0.1', 9, () => r(undefined))) },
    { module: 'session', cls: 'SshSession', method: 'onGlobalRequest', async: true, trigger: (c) => new Promise((r) => c.forwardIn('127.0.0.1', 0, () => r(undefined))) },
    { module: 'session', cls: 'SshSession', method: 'relaySessionChannel', async: false, trigger: (c) => execOn(c, 'echo x') },
    { module: 'session', cls: 'SshSession', method: 'secondRequest', async: true, trigger: (c) => new Promise((r) => c.exec('sleep 0.2', (_e, ch) => {
      ;(c as unknown as { _protocol: { exec(id: number, cmd: string, reply: boolean): void } })._protocol.exec((ch as unknown as { outgoing: { id: number } }).outgoing.id, 'true', true)
      ch.on('close', r)
    })) },
    { module: 'sftp', cls: 'SftpProxy', method: 'judged', async: true, trigger: async (c) => {
      const s = await sftpOf(c)
      await new Promise((r) => s.opendir(art, () => r(undefined)))
    } },
  ]
  for (const mode of ['throws', 'rejects'] as const) {
    for (const k of cases.filter((c) => mode === 'throws' || c.async)) {
      it(`ends only the session when ${k.cls}.${k.method} ${mode}`, async () => {
        const mod = (await import(k.module === 'session' ? sessionModule : sftpModule)) as Record<string, { prototype: Record<string, unknown> }>
        const proto = (mod[k.cls] as { prototype: Record<string, unknown> }).prototype
        const original = proto[k.method]
        const bystander = await client()
        const victim = await client()
        const victimClosed = closed(victim)
        proto[k.method] = mode === 'throws' ? () => { throw new Error(`injected into ${k.method}`) } : () => Promise.reject(new Error(`injected into ${k.method}`))
        try {
          void k.trigger(victim).catch(() => undefined)
          await victimClosed
        } finally {
          proto[k.method] = original
        }
        expect((await execOn(bystander, 'echo bystander')).stdout).toBe('bystander\n')
        bystander.end()
        const faults = (await gw.audit()).filter((e: AuditEvent) => e.type === 'protocol' && (e as { event?: string }).event === 'session.fault')
        expect(faults.some((e) => (e as { reason?: string }).reason?.includes(`injected into ${k.method}`))).toBe(true)
      })
    }
  }
})
