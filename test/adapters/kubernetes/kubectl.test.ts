/**
 * The kubernetes adapter with the real kubectl (1.32) and @kubernetes/client-node, over TLS,
 * against a STUB API server (test/fixtures/k8s-stub-upstream.ts: no real API server runs here).
 * The stub records each request and the Authorization header it came with: the gateway's
 * credential reaches it, the caller's never does, and a denied request never arrives.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { execFile, spawn } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { PassThrough } from 'node:stream'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { generateToken } from '@gatehouse/core'
import { kubeconfigFor } from '@gatehouse/adapter-kubernetes'
import * as k8s from '@kubernetes/client-node'
import { KUBECTL, startK8sGateway, type K8sGateway } from '../../fixtures/k8s-gateway.js'

const REPO = fileURLToPath(new URL('../../..', import.meta.url))
const CLI = join(REPO, 'core', 'dist', 'cli.js')

let gw: K8sGateway

beforeAll(async () => {
  gw = await startK8sGateway(`
      - { id: discovery, effect: allow, actions: [k8s.get], match: { k8s.discovery: true } }
      - { id: reads, effect: allow, actions: [k8s.get, k8s.list, k8s.watch, k8s.log], match: { k8s.namespace: [default] } }
      - { id: namespaces, effect: allow, actions: [k8s.get, k8s.list], match: { k8s.resource: [namespaces] } }
      - { id: writes, effect: allow, actions: [k8s.create, k8s.delete], match: { k8s.namespace: [default], k8s.resource: [pods, configmaps] } }
      - { id: exec, effect: allow, actions: [k8s.exec, k8s.attach], match: { k8s.namespace: [default] } }
      - { id: forward, effect: allow, actions: [k8s.portforward], match: { k8s.namespace: [default], k8s.ports: ['8080'] } }
      - { id: no-host, effect: deny, actions: [k8s.create, k8s.update, k8s.patch], match: { k8s.body.privileged: true }, reason: privileged pods are not allowed }
`)
}, 60_000)

afterAll(async () => {
  await gw?.close()
})

describe('kubectl through the gateway', () => {
  it('get pods: the stub saw the gateway credential, never the caller token; the call is audited with its verb, resource and namespace', async () => {
    const before = gw.stub.received.length
    const r = await gw.kubectl(['get', 'pods', '-n', 'default'])
    expect(r.stderr).toBe('')
    expect(r.stdout).toMatch(/NAME\s+STATUS\n/)
    expect(r.stdout).toContain('web-1')
    expect(r.stdout).toContain('web-2')
    const seen = gw.stub.received.slice(before)
    expect(seen.length).toBeGreaterThan(0)
    for (const s of seen) {
      expect(s.authorization).toBe(`Bearer ${gw.stub.token}`)
      expect(JSON.stringify(s.headers)).not.toContain(gw.tokens.agent)
    }
    const list = gw.audit().find((e) => e.type === 'request' && e.action === 'k8s.list' && (e.attrs as { k8s?: { resource?: string } }).k8s?.resource === 'pods')
    expect(list).toMatchObject({ verdict: 'allow', rule: 'k/reads', target: 'pods/default', principal: { id: 'agent-1' }, attrs: { k8s: { verb: 'list', namespace: 'default', resource: 'pods', group: '', version: 'v1' } } })
    expect(await gw.auditFind((e) => e.type === 'outcome' && e.request === list?.request)).toMatchObject({ status: 200 })
  })

  it('a read in another namespace is denied as a Kubernetes Forbidden that names the rule, and never reaches the API server', async () => {
    const before = gw.stub.received.length
    const r = await gw.kubectl(['get', 'pods', '-n', 'prod'])
    expect(r.code).not.toBe(0)
    expect(r.stderr).toMatch(/Error from server \(Forbidden\): gatehouse: .*denied/)
    expect(gw.stub.received.slice(before).filter((s) => s.url.includes('/namespaces/prod/'))).toEqual([])
  })

  it('get one pod, namespaces, logs and logs -f stream', async () => {
    expect((await gw.kubectl(['get', 'pod', 'web-1', '-n', 'default', '-o', 'jsonpath={.metadata.name}'])).stdout).toBe('web-1')
    expect((await gw.kubectl(['get', 'namespaces'])).stdout).toContain('kube-system')
    expect((await gw.kubectl(['logs', 'web-1', '-n', 'default'])).stdout).toBe('log line 1 of web-1\nlog line 2 of web-1\n')
    const followed = await gw.kubectl(['logs', '-f', 'web-2', '-n', 'default'])
    expect(followed.stdout).toBe('followed line 1 of web-2\nfollowed line 2 of web-2\nfollowed line 3 of web-2\n')
    const logs = gw.audit().filter((e) => e.type === 'request' && e.action === 'k8s.log')
    expect(logs.map((e) => (e.attrs as { k8s: { name: string } }).k8s.name)).toEqual(['web-1', 'web-2'])
  })

  it('watch streams events as they happen', async () => {
    const config = gw.kubeconfig(`agent-1:${gw.tokens.agent}`)
    const child = spawn(KUBECTL, ['--kubeconfig', config, '--cache-dir', join(gw.dir, 'kube-cache'), 'get', 'pods', '-n', 'default', '-w', '-o', 'name'], { env: { PATH: process.env.PATH ?? '', HOME: gw.dir } })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    const waitFor = async (text: string) => {
      for (let i = 0; i < 200 && !out.includes(text); i++) await new Promise((r) => setTimeout(r, 25))
      expect(out).toContain(text)
    }
    await waitFor('pod/web-1')
    gw.stub.addPod('default', 'web-3')
    await waitFor('pod/web-3')
    child.kill()
    expect(gw.audit().some((e) => e.type === 'request' && e.action === 'k8s.watch')).toBe(true)
  })

  it('creating a privileged pod is denied by the rule before the API server sees it; a plain one is created', async () => {
    const podFile = (name: string, privileged: boolean) => {
      const f = join(gw.dir, `${name}.json`)
      writeFileSync(f, JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name }, spec: { containers: [{ name: 'c', image: 'busybox', securityContext: { privileged } }] } }))
      return f
    }
    const before = gw.stub.received.length
    const denied = await gw.kubectl(['create', '-n', 'default', '--validate=false', '-f', podFile('root-pod', true)])
    expect(denied.code).not.toBe(0)
    expect(denied.stderr).toMatch(/Forbidden.*privileged pods are not allowed/)
    expect(gw.stub.received.slice(before).filter((s) => s.method === 'POST')).toEqual([])
    const made = await gw.kubectl(['create', '-n', 'default', '--validate=false', '-f', podFile('plain-pod', false)])
    expect(made.stderr).toBe('')
    expect(made.stdout).toContain('pod/plain-pod created')
    const intent = gw.audit().find((e) => e.type === 'request' && e.action === 'k8s.create' && e.verdict === 'deny')
    expect(intent).toMatchObject({ rule: 'k/no-host', attrs: { k8s: { resource: 'pods', body: { kind: 'Pod', privileged: true } } } })
  })

  it('secret values are redacted in `get secret -o yaml`, in lists and in the last-applied annotation; the audit says what was masked', async () => {
    const r = await gw.kubectl(['get', 'secret', 'db-password', '-n', 'default', '-o', 'yaml'])
    expect(r.stderr).toBe('')
    expect(r.stdout).toContain('password: REDACTED')
    expect(r.stdout).toContain('user: REDACTED')
    expect(r.stdout).not.toContain(Buffer.from('hunter2').toString('base64'))
    expect(r.stdout).not.toContain('aHVudGVyMg')
    const list = await gw.kubectl(['get', 'secrets', '-n', 'default', '-o', 'json'])
    expect(list.stdout).toContain('"password": "REDACTED"')
    expect(list.stdout).not.toContain('aHVudGVyMg')
    const table = await gw.kubectl(['get', 'secrets', '-n', 'default', '-o', 'wide'])
    expect(table.stdout).toContain('db-password')
    const get = gw.audit().find((e) => e.type === 'request' && e.action === 'k8s.get' && (e.attrs as { k8s: { resource?: string } }).k8s.resource === 'secrets')
    const outcome = await gw.auditFind((e) => e.type === 'outcome' && e.request === get?.request)
    expect(outcome).toMatchObject({ status: 200, masked: ['annotations.last-applied-configuration', 'data.password', 'data.user'] })
    expect(JSON.stringify(gw.audit())).not.toContain('aHVudGVyMg')
  })

  it('a token scoped to another connection, a wrong token and no token are refused with 401', async () => {
    expect((await gw.kubectl(['get', 'pods', '-n', 'default'], { credential: `agent-2:${gw.tokens.elsewhere}` })).stderr).toMatch(/Unauthorized|must be logged in/)
    expect((await gw.kubectl(['get', 'pods', '-n', 'default'], { credential: `agent-1:${generateToken()}` })).stderr).toMatch(/Unauthorized|must be logged in/)
    const bare = await gw.raw('/api/v1/namespaces/default/pods', {})
    expect(bare.status).toBe(401)
    expect(bare.body).toMatchObject({ kind: 'Status', code: 401, reason: 'Unauthorized' })
    expect(await gw.auditFind((e) => e.type === 'protocol' && e.event === 'auth.missing')).toMatchObject({ connection: 'cluster' })
  })

  it('@kubernetes/client-node as a client: list pods, and a delete in prod is Forbidden', async () => {
    const kc = new k8s.KubeConfig()
    kc.loadFromString(kubeconfigFor({ server: gw.server, ca: gw.ca, credential: `agent-1:${gw.tokens.agent}` }))
    const api = kc.makeApiClient(k8s.CoreV1Api)
    const pods = await api.listNamespacedPod({ namespace: 'default' })
    expect(pods.items.map((p) => p.metadata?.name)).toContain('web-1')
    const err = await api.deleteNamespacedPod({ namespace: 'prod', name: 'db-1' }).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 403 })
    expect(gw.stub.received.some((s) => s.method === 'DELETE' && s.url.includes('db-1'))).toBe(false)
  })

  it('exec over WebSocket: output, the exit code kubectl exits with, and the outcome', async () => {
    const hello = await gw.kubectl(['exec', 'web-1', '-n', 'default', '--', 'echo', 'hello', 'world'])
    expect(hello).toMatchObject({ code: 0, stdout: 'hello world\n' })
    const failed = await gw.kubectl(['exec', 'web-1', '-n', 'default', '--', 'sh', '-c', 'exit 3'])
    expect(failed.code).toBe(3)
    const intent = await gw.auditFind((e) => e.type === 'request' && e.action === 'k8s.exec' && JSON.stringify((e.attrs as { k8s: { exec: { command: string[] } } }).k8s.exec.command) === '["sh","-c","exit 3"]')
    expect(intent).toMatchObject({ verdict: 'allow', rule: 'k/exec', attrs: { k8s: { name: 'web-1', namespace: 'default', exec: { tty: false, stdout: true } } } })
    expect(await gw.auditFind((e) => e.type === 'outcome' && e.request === intent?.request)).toMatchObject({ status: 3 })
    // stdin through, and its end (the v5 close of channel 0) ends cat
    const config = gw.kubeconfig(`agent-1:${gw.tokens.agent}`)
    const cat = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(KUBECTL, ['--kubeconfig', config, 'exec', '-i', 'web-1', '-n', 'default', '--', 'cat'], { env: { PATH: process.env.PATH ?? '', HOME: gw.dir } })
      let out = ''
      child.stdout.on('data', (d: Buffer) => (out += d.toString()))
      child.on('close', (code) => resolve({ code, out }))
      child.stdin.end('line one\nline two\n')
    })
    expect(cat).toEqual({ code: 0, out: 'line one\nline two\n' })
  })

  it('attach -i joins the running process (the stub attaches to a cat)', async () => {
    const config = gw.kubeconfig(`agent-1:${gw.tokens.agent}`)
    const attached = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(KUBECTL, ['--kubeconfig', config, 'attach', '-i', 'web-1', '-n', 'default'], { env: { PATH: process.env.PATH ?? '', HOME: gw.dir } })
      let out = ''
      child.stdout.on('data', (d: Buffer) => (out += d.toString()))
      child.on('close', (code) => resolve({ code, out }))
      child.stdin.end('hello attach\n')
    })
    expect(attached.out).toContain('hello attach')
    expect(await gw.auditFind((e) => e.type === 'request' && e.action === 'k8s.attach')).toMatchObject({ verdict: 'allow', attrs: { k8s: { verb: 'attach', exec: { stdin: true } } } })
  })

  it('exec with a tty is recorded as asciicast v2 with the session, the exit code in the outcome', async () => {
    const config = gw.kubeconfig(`agent-1:${gw.tokens.agent}`)
    // script(1) gives kubectl a terminal
    // (a terminal of 100x30: kubectl sends its size on the resize channel)
    const child = spawn('script', ['-qfec', `stty cols 100 rows 30; ${KUBECTL} --kubeconfig ${config} exec -it web-2 -n default -- sh`, '/dev/null'], { env: { PATH: process.env.PATH ?? '', HOME: gw.dir, TERM: 'xterm' } })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    const waitFor = async (text: string) => {
      for (let i = 0; i < 400 && !out.includes(text); i++) await new Promise((r) => setTimeout(r, 25))
      expect(out).toContain(text)
    }
    await waitFor('$ ')
    child.stdin.write('whoami\r')
    await waitFor('you typed: whoami')
    child.stdin.write('exit\r')
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
    expect(code).toBe(0)
    const intent = await gw.auditFind((e) => e.type === 'request' && e.action === 'k8s.exec' && (e.attrs as { k8s: { exec: { tty: boolean } } }).k8s.exec.tty)
    const outcome = (await gw.auditFind((e) => e.type === 'outcome' && e.request === intent?.request)) as { status: number; recording: string }
    expect(outcome.status).toBe(0)
    const lines = readFileSync(outcome.recording, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as unknown)
    expect(lines[0]).toMatchObject({ version: 2 })
    expect(lines.filter((l) => Array.isArray(l) && l[1] === 'o').map((l) => (l as string[])[2]).join('')).toContain('you typed: whoami')
    // kubectl sends the terminal's size on the resize channel: recorded
    expect(lines.filter((l) => Array.isArray(l) && l[1] === 'r').map((l) => (l as string[])[2])).toContain('100x30')
  })

  it('exec in another namespace is Forbidden and never reaches the API server', async () => {
    const before = gw.stub.received.length
    const r = await gw.kubectl(['exec', 'db-1', '-n', 'prod', '--', 'echo', 'x'])
    expect(r.code).not.toBe(0)
    expect(r.stderr).toMatch(/Forbidden|forbidden/)
    expect(gw.stub.received.slice(before).filter((x) => x.url.includes('/exec'))).toEqual([])
  })

  it('gatehouse k8s cert makes a CA and a serving certificate for the hosts; k8s kubeconfig prints one kubectl uses', async () => {
    const out = join(gw.dir, 'made-certs')
    const run = (args: string[], env: Record<string, string> = {}) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
        execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } }, (e, stdout, stderr) => resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, stdout, stderr })),
      )
    const made = await run(['k8s', 'cert', '--out', out, '--host', '127.0.0.1', '--host', 'gateway.internal'])
    expect(made.code, made.stderr).toBe(0)
    expect((statSync(join(out, 'tls.key')).mode & 0o777).toString(8)).toBe('600')
    expect((statSync(join(out, 'ca.key')).mode & 0o777).toString(8)).toBe('600')
    const cert = new X509Certificate(readFileSync(join(out, 'tls.crt')))
    expect(cert.verify(new X509Certificate(readFileSync(join(out, 'ca.crt'))).publicKey)).toBe(true)
    expect(cert.subjectAltName).toBe('IP Address:127.0.0.1, DNS:gateway.internal')
    expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1')
    // never overwrites, and writes all four files or none
    const again = await run(['k8s', 'cert', '--out', out])
    expect(again.code).not.toBe(0)
    expect(again.stderr).toMatch(/ca\.crt, ca\.key, tls\.crt, tls\.key already there/)
    rmSync(join(out, 'ca.crt'))
    expect((await run(['k8s', 'cert', '--out', out])).code).not.toBe(0)
    expect(existsSync(join(out, 'ca.crt'))).toBe(false)
    // a kubeconfig for agent-1 against the running gateway (its CA), the token from the environment
    writeFileSync(join(gw.dir, 'gw-ca.crt'), gw.ca)
    const printed = await run(['k8s', 'kubeconfig', '--server', gw.server, '--ca', join(gw.dir, 'gw-ca.crt'), '--identity', 'agent-1', '--namespace', 'default'], { GATEHOUSE_TOKEN: gw.tokens.agent })
    expect(printed.code, printed.stderr).toBe(0)
    const file = join(gw.dir, 'cli.kubeconfig')
    writeFileSync(file, printed.stdout)
    const r = await new Promise<{ stdout: string; stderr: string }>((resolve) => execFile(KUBECTL, ['--kubeconfig', file, 'get', 'pods', '-o', 'name'], { env: { PATH: process.env.PATH ?? '', HOME: gw.dir } }, (_e, stdout, stderr) => resolve({ stdout, stderr })))
    expect(r.stderr).toBe('')
    expect(r.stdout.split('\n')).toContain('pod/web-1')
    expect((await run(['k8s', 'kubeconfig', '--server', gw.server, '--ca', join(gw.dir, 'gw-ca.crt')], { GATEHOUSE_TOKEN: '' })).stderr).toMatch(/set GATEHOUSE_TOKEN/)
  })

  it('port-forward allowed by a rule is tunnelled (client-node PortForward) and its bytes recorded; another port is denied', async () => {
    const kc = new k8s.KubeConfig()
    kc.loadFromString(kubeconfigFor({ server: gw.server, ca: gw.ca, credential: `agent-1:${gw.tokens.agent}` }))
    const forward = new k8s.PortForward(kc)
    const output = new PassThrough()
    const input = new PassThrough()
    let received = ''
    output.on('data', (d: Buffer) => (received += d.toString()))
    const ws = (await forward.portForward('default', 'web-1', [8080], output, null, input)) as { close(): void }
    input.write('ping')
    for (let i = 0; i < 200 && !received.includes('echo:ping'); i++) await new Promise((r) => setTimeout(r, 25))
    expect(received).toBe('echo:ping')
    ws.close()
    const intent = await gw.auditFind((e) => e.type === 'request' && e.action === 'k8s.portforward' && e.verdict === 'allow')
    expect(intent).toMatchObject({ rule: 'k/forward', attrs: { k8s: { ports: ['8080'], name: 'web-1' } } })
    const outcome = (await gw.auditFind((e) => e.type === 'outcome' && e.request === intent?.request)) as { bytesIn: number; bytesOut: number }
    expect(outcome.bytesIn).toBeGreaterThanOrEqual(5)
    expect(outcome.bytesOut).toBeGreaterThanOrEqual(10)
    // port 22 is not allowed
    await forward.portForward('default', 'web-1', [22], new PassThrough(), null, new PassThrough()).catch(() => undefined)
    expect(await gw.auditFind((e) => e.type === 'request' && e.action === 'k8s.portforward' && JSON.stringify((e.attrs as { k8s: { ports: string[] } }).k8s.ports) === '["22"]')).toMatchObject({ verdict: 'deny' })
    expect(gw.stub.received.filter((x) => x.url.includes('/portforward')).map((x) => x.url)).toEqual(['/api/v1/namespaces/default/pods/web-1/portforward?ports=8080'])
  })

  it('gatehouse policy explain --k8s answers for a request', async () => {
    const r = await new Promise<{ stdout: string; stderr: string }>((resolve) =>
      execFile(process.execPath, [CLI, 'policy', 'explain', '-c', join(gw.dir, 'gatehouse.yaml'), '-i', 'agent-1', '--connection', 'cluster', '--k8s', 'DELETE /api/v1/namespaces/prod/pods/db-1', '--json'], (_e, stdout, stderr) => resolve({ stdout, stderr })),
    )
    expect(r.stderr).toBe('')
    expect(JSON.parse(r.stdout)).toMatchObject({ verdict: 'deny', attrs: { k8s: { verb: 'delete', namespace: 'prod', resource: 'pods', name: 'db-1' } } })
  })
})

