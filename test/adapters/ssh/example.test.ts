/**
 * examples/ssh-target/README.md, step by step, against a throwaway sshd in place of the target
 * (its address, its user and its host key instead of 10.0.0.7, deploy and the pinned key). The
 * keys the steps make go to a copy of the example in a temp dir, as the README's `.gitignore`
 * keeps them out of the repository.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startSshd, type Sshd } from '../../fixtures/sshd.js'
import { freePort, waitForPort } from '../../fixtures/net.js'

const root = fileURLToPath(new URL('../../..', import.meta.url))
const CLI = join(root, 'core/dist/cli.js')
let sshd: Sshd
let work: string
let gateway: ChildProcess | undefined

beforeAll(async () => {
  sshd = await startSshd()
  work = mkdtempSync(join(tmpdir(), 'gatehouse-example-ssh-'))
  mkdirSync(join(work, 'examples/ssh-target'), { recursive: true })
})
afterAll(async () => {
  if (gateway && gateway.exitCode === null && gateway.signalCode === null) gateway.kill('SIGKILL')
  await sshd?.stop()
  rmSync(work, { recursive: true, force: true })
})

const sh = (line: string) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    execFile('sh', ['-c', line], { cwd: work }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr })),
  )

describe('examples/ssh-target: the README steps', () => {
  it('keys, fingerprint, start, an allowed command that runs and a refused one that never reaches the target', async () => {
    const readme = readFileSync(join(root, 'examples/ssh-target/README.md'), 'utf8')
    const steps = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => (m[1] as string).replace(/^ +/gm, '').trim().split('\n'))
    expect(steps).toHaveLength(6)
    const [hostKey, deploy, fingerprint, agent, start, connect] = steps as [string[], string[], string[], string[], string[], string[]]
    const gatehouse = (line: string) => line.replace('npx gatehouse', `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)}`)

    // 1. the gateway's host key, written where the config reads it
    expect(await sh(gatehouse(hostKey[0] as string))).toMatchObject({ code: 0 })
    // 2. the deploy key; "installing it on the target" is the throwaway sshd authorizing its client key
    expect(await sh(deploy[0] as string)).toMatchObject({ code: 0 })
    expect(deploy[1]).toBe('ssh-copy-id -i examples/ssh-target/deploy_ed25519.pub deploy@10.0.0.7')
    copyFileSync(sshd.clientKeyPath, join(work, 'examples/ssh-target/deploy_ed25519'))
    // 3. the target's fingerprint, from its host key file
    const fp = await sh((fingerprint[0] as string).replace('/etc/ssh/ssh_host_ed25519_key.pub', `${sshd.hostKeyPath}.pub`))
    const pinned = /SHA256:\S+/.exec(fp.stdout)?.[0] as string
    expect(pinned).toBe(sshd.hostKeyFingerprint)
    // 4. the agent's key, in the temp dir instead of ~/.ssh
    const agentKey = join(work, 'gatehouse_ci_runner')
    expect(await sh((agent[0] as string).replace('~/.ssh/gatehouse_ci_runner', agentKey))).toMatchObject({ code: 0 })
    const port = await freePort()
    const config = readFileSync(join(root, 'examples/ssh-target/gatehouse.yaml'), 'utf8')
      .replace(/- ssh-ed25519 \S+ ci-runner/, `- ${readFileSync(`${agentKey}.pub`, 'utf8').trim()}`)
      .replace('listen: 127.0.0.1:2222', `listen: 127.0.0.1:${port}`)
      .replace('host: 10.0.0.7', `host: ${sshd.host}`)
      .replace('port: 22\n', `port: ${sshd.port}\n`)
      .replace('user: deploy', `user: ${sshd.user}`)
      .replace(/hostKey: SHA256:\S+/, `hostKey: ${pinned}`)
      .replace('dataDir: ../../.gatehouse/ssh-target', `dataDir: ${JSON.stringify(join(work, 'data'))}`)
    writeFileSync(join(work, 'examples/ssh-target/gatehouse.yaml'), config)
    // 5. start it as written
    expect(start).toEqual(['npx gatehouse start --config examples/ssh-target/gatehouse.yaml'])
    gateway = spawn(process.execPath, [CLI, 'start', '--config', 'examples/ssh-target/gatehouse.yaml'], { cwd: work, stdio: ['ignore', 'pipe', 'pipe'] })
    await waitForPort(port)
    // 6. connect as written (batch mode, and a known_hosts of its own, for a test)
    const ssh = (line: string) =>
      sh(line.replace('~/.ssh/gatehouse_ci_runner', agentKey).replace('-p 2222', `-p ${port} -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=${join(work, 'known_hosts')}`))
    const ran = await ssh(connect[0] as string)
    expect(ran.stdout).toMatch(/load average/)
    expect(ran.code).toBe(0)
    const refused = await ssh(connect[1] as string)
    expect(refused.code).toBe(126)
    expect(refused.stderr).toContain('gatehouse: denied by ci-ops/no-lateral-movement: no hops from the target to other hosts')
    gateway.kill('SIGTERM')
    await new Promise((res) => gateway?.once('exit', res))
    const audit = readFileSync(join(work, 'data', 'audit.jsonl'), 'utf8')
    expect(audit).toContain('"verdict":"deny"')
    expect(audit).toContain('curl http://10.0.0.9/')
  }, 120_000)
})
