/**
 * The conformance kit (@gatehouse/testkit) run against the built-in SSH adapter, in front of a
 * throwaway OpenSSH sshd (test/fixtures/sshd.ts), through the real OpenSSH client: a session is
 * one connection held by a ControlMaster (`ssh -M`, logging in with the gateway token as its
 * password through SSH_ASKPASS), each request an exec multiplexed over it (`ssh -S`). Markers
 * are file names under one directory: `touch` is allowed, `mkdir` denied, `cp` held; the probe
 * lists the directory.
 */
import { spawn, execFile } from 'node:child_process'
import { chmodSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateHostKey } from '@gatehouse/adapter-ssh'
import { describeConformance, type ClientResult } from '@gatehouse/testkit'
import { sshArgs, startSshd } from '../fixtures/sshd.js'

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-ssh-conformance-'))
const marks = join(dir, 'marks')
let sessions = 0

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Runs the ssh client; resolves with its exit code and output. */
function ssh(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('ssh', args, { env: { PATH: process.env.PATH ?? '', HOME: dir, ...env }, timeout: 60_000 }, (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }))
  })
}

describeConformance({
  name: 'ssh (OpenSSH client with ControlMaster, real sshd)',
  adapter: 'ssh',
  rules: {
    denied: { actions: ['ssh.exec'], match: { 'ssh.programs': ['mkdir'] } },
    held: { actions: ['ssh.exec'], match: { 'ssh.programs': ['cp'] } },
  },
  explainDenied: { command: `mkdir ${marks}/sample` },
  async startUpstream() {
    const sshd = await startSshd()
    await ssh([...sshArgs({ port: sshd.port, user: sshd.user, identityFile: sshd.clientKeyPath }), `mkdir -p ${marks}`])
    return {
      connection: {
        upstream: { host: sshd.host, port: sshd.port, user: sshd.user, privateKey: sshd.clientPrivateKey, hostKey: sshd.hostKeyFingerprint },
        options: { hostKeys: [generateHostKey().privateKey] },
      },
      seen: async (marker) => readdirSync(marks).filter((f) => f.includes(marker)).length,
      close: () => sshd.stop(),
    }
  },
  client: {
    async connect({ host, port, identity, token }) {
      const n = ++sessions
      const askpass = join(dir, `askpass-${n}.sh`)
      writeFileSync(askpass, `#!/bin/sh\necho '${token}'\n`)
      chmodSync(askpass, 0o700)
      const control = join(dir, `ctl-${n}`)
      const base = sshArgs({ host, port, user: identity, password: true, extra: ['-S', control, '-o', 'PreferredAuthentications=password', '-o', 'PubkeyAuthentication=no', '-o', 'NumberOfPasswordPrompts=1'] })
      const master = spawn('ssh', ['-M', '-N', ...base], { env: { PATH: process.env.PATH ?? '', HOME: dir, SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: 'force', DISPLAY: ':0' }, stdio: ['ignore', 'ignore', 'pipe'] })
      let stderr = ''
      master.stderr?.on('data', (d: Buffer) => (stderr += d.toString()))
      let exited = false
      const closed = new Promise<void>((resolve) => master.once('exit', () => ((exited = true), resolve())))
      // logged in once the control socket answers; refused when the master gives up
      for (;;) {
        if (exited) throw new Error(`ssh login refused: ${stderr.trim()}`)
        if ((await ssh(['-S', control, '-O', 'check', 'x'])).code === 0) break
        await sleep(50)
      }
      const program = { allowed: 'touch', denied: 'mkdir', held: 'cp /dev/null' }
      return {
        closed,
        send: async (kind, marker): Promise<ClientResult> => {
          const r = await ssh([...base, `${program[kind]} ${marks}/${kind}-${marker}`])
          return r.code === 0 ? { ok: true } : { ok: false, error: `exit ${r.code}: ${r.stderr.trim()}` }
        },
        close: async () => {
          if (!exited) {
            master.kill('SIGTERM')
            await closed
          }
        },
      }
    },
  },
})
