/**
 * The kubernetes adapter with the real kubectl (1.32) and @kubernetes/client-node, over TLS,
 * against a STUB API server (test/fixtures/k8s-stub-upstream.ts: no real API server runs here).
 * The stub records each request and the Authorization header it came with: the gateway's
 * credential reaches it, the caller's never does, and a denied request never arrives.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { execFile, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createLogger, Gateway, generateToken, hashToken, loadConfigFile } from '@gatehouse/core'
import { generateCertificates, kubeconfigFor } from '@gatehouse/adapter-kubernetes'
import * as k8s from '@kubernetes/client-node'
import { startK8sStub, type K8sStub } from '../../fixtures/k8s-stub-upstream.js'

const KUBECTL = '/usr/lib/google-cloud-sdk/bin/kubectl.1.32'
const REPO = fileURLToPath(new URL('../../..', import.meta.url))
const CLI = join(REPO, 'core', 'dist', 'cli.js')

let stub: K8sStub
let gateway: Gateway
let dir: string
let ca: string
let server: string
const agentToken = generateToken()
const elsewhereToken = generateToken()

type Event = { type: string; [k: string]: unknown }
const audit = (): Event[] =>
  readFileSync(join(dir, 'audit.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Event)

/** The first audit event matching `pred`, waiting for it: outcomes are written lazily, with the next intent or within a second. */
async function auditFind(pred: (e: Event) => boolean): Promise<Event | undefined> {
  for (let i = 0; i < 100; i++) {
    const found = audit().find(pred)
    if (found) return found
    await new Promise((r) => setTimeout(r, 25))
  }
  return undefined
}

function kubeconfig(credential: string): string {
  const file = join(dir, `kubeconfig-${Math.random().toString(36).slice(2)}`)
  writeFileSync(file, kubeconfigFor({ server, ca, credential }))
  return file
}

function kubectl(args: string[], opts: { credential?: string; timeoutMs?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const config = kubeconfig(opts.credential ?? `agent-1:${agentToken}`)
  return new Promise((resolve) => {
    execFile(KUBECTL, ['--kubeconfig', config, '--cache-dir', join(dir, 'kube-cache'), ...args], { env: { PATH: process.env.PATH ?? '', HOME: dir }, timeout: opts.timeoutMs ?? 30_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    )
  })
}

beforeAll(async () => {
  stub = await startK8sStub()
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-k8s-'))
  const certs = await generateCertificates(['127.0.0.1', 'localhost'])
  ca = certs.caCert
  writeFileSync(join(dir, 'tls.crt'), certs.cert)
  writeFileSync(join(dir, 'tls.key'), certs.key)
  writeFileSync(join(dir, 'upstream-ca.crt'), stub.ca)
  const path = join(dir, 'gatehouse.yaml')
  writeFileSync(
    path,
    `dataDir: ${dir}
log: { level: silent }
identities:
  - { id: agent-1, groups: [agents], tokens: [ { hash: "${hashToken(agentToken, 'agent-1')}" } ] }
  - { id: agent-2, groups: [agents], tokens: [ { hash: "${hashToken(elsewhereToken, 'agent-2')}", connections: [elsewhere] } ] }
plugins:
  - { use: audit-jsonl, config: { path: audit.jsonl } }
connections:
  - name: cluster
    adapter: kubernetes
    listen: "127.0.0.1:0"
    tls: { cert: "\${file:${join(dir, 'tls.crt')}}", key: "\${file:${join(dir, 'tls.key')}}" }
    upstream: { server: "${stub.url}", token: "${stub.token}", ca: "\${file:${join(dir, 'upstream-ca.crt')}}" }
  - name: elsewhere
    adapter: kubernetes
    listen: "127.0.0.1:0"
    tls: { cert: "\${file:${join(dir, 'tls.crt')}}", key: "\${file:${join(dir, 'tls.key')}}" }
    upstream: { server: "${stub.url}", token: "${stub.token}", ca: "\${file:${join(dir, 'upstream-ca.crt')}}" }
policies:
  - id: k
    principals: { groups: [agents] }
    rules:
      - { id: discovery, effect: allow, actions: [k8s.get], match: { k8s.resourceRequest: false } }
      - { id: reads, effect: allow, actions: [k8s.get, k8s.list, k8s.watch, k8s.log], match: { k8s.namespace: [default] } }
      - { id: namespaces, effect: allow, actions: [k8s.get, k8s.list], match: { k8s.resource: [namespaces] } }
      - { id: writes, effect: allow, actions: [k8s.create, k8s.delete], match: { k8s.namespace: [default], k8s.resource: [pods, configmaps] } }
      - { id: no-host, effect: deny, actions: [k8s.create, k8s.update, k8s.patch], match: { k8s.body.privileged: true }, reason: privileged pods are not allowed }
`,
  )
  gateway = await Gateway.build(loadConfigFile(path), { logger: createLogger('silent') })
  await gateway.start()
  server = `https://127.0.0.1:${gateway.address('cluster').port}`
}, 60_000)

afterAll(async () => {
  await gateway?.shutdown(0)
  await stub?.close()
  rmSync(dir, { recursive: true, force: true })
})

describe('kubectl through the gateway', () => {
  it('get pods: the stub saw the gateway credential, never the caller token; the call is audited with its verb, resource and namespace', async () => {
    const before = stub.received.length
    const r = await kubectl(['get', 'pods', '-n', 'default'])
    expect(r.stderr).toBe('')
    expect(r.stdout).toMatch(/NAME\s+STATUS\n/)
    expect(r.stdout).toContain('web-1')
    expect(r.stdout).toContain('web-2')
    const seen = stub.received.slice(before)
    expect(seen.length).toBeGreaterThan(0)
    for (const s of seen) {
      expect(s.authorization).toBe(`Bearer ${stub.token}`)
      expect(JSON.stringify(s.headers)).not.toContain(agentToken)
    }
    const list = audit().find((e) => e.type === 'request' && e.action === 'k8s.list' && (e.attrs as { k8s?: { resource?: string } }).k8s?.resource === 'pods')
    expect(list).toMatchObject({ verdict: 'allow', rule: 'k/reads', target: 'pods/default', principal: { id: 'agent-1' }, attrs: { k8s: { verb: 'list', namespace: 'default', resource: 'pods', group: '', version: 'v1' } } })
    expect(await auditFind((e) => e.type === 'outcome' && e.request === list?.request)).toMatchObject({ status: 200 })
  })

  it('a read in another namespace is denied as a Kubernetes Forbidden that names the rule, and never reaches the API server', async () => {
    const before = stub.received.length
    const r = await kubectl(['get', 'pods', '-n', 'prod'])
    expect(r.code).not.toBe(0)
    expect(r.stderr).toMatch(/Error from server \(Forbidden\): gatehouse: .*denied/)
    expect(stub.received.slice(before).filter((s) => s.url.includes('/namespaces/prod/'))).toEqual([])
  })

  it('get one pod, namespaces, logs and logs -f stream', async () => {
    expect((await kubectl(['get', 'pod', 'web-1', '-n', 'default', '-o', 'jsonpath={.metadata.name}'])).stdout).toBe('web-1')
    expect((await kubectl(['get', 'namespaces'])).stdout).toContain('kube-system')
    expect((await kubectl(['logs', 'web-1', '-n', 'default'])).stdout).toBe('log line 1 of web-1\nlog line 2 of web-1\n')
    const followed = await kubectl(['logs', '-f', 'web-2', '-n', 'default'])
    expect(followed.stdout).toBe('followed line 1 of web-2\nfollowed line 2 of web-2\nfollowed line 3 of web-2\n')
    const logs = audit().filter((e) => e.type === 'request' && e.action === 'k8s.log')
    expect(logs.map((e) => (e.attrs as { k8s: { name: string } }).k8s.name)).toEqual(['web-1', 'web-2'])
  })

  it('watch streams events as they happen', async () => {
    const config = kubeconfig(`agent-1:${agentToken}`)
    const child = spawn(KUBECTL, ['--kubeconfig', config, '--cache-dir', join(dir, 'kube-cache'), 'get', 'pods', '-n', 'default', '-w', '-o', 'name'], { env: { PATH: process.env.PATH ?? '', HOME: dir } })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    const waitFor = async (text: string) => {
      for (let i = 0; i < 200 && !out.includes(text); i++) await new Promise((r) => setTimeout(r, 25))
      expect(out).toContain(text)
    }
    await waitFor('pod/web-1')
    stub.addPod('default', 'web-3')
    await waitFor('pod/web-3')
    child.kill()
    expect(audit().some((e) => e.type === 'request' && e.action === 'k8s.watch')).toBe(true)
  })

  it('creating a privileged pod is denied by the rule before the API server sees it; a plain one is created', async () => {
    const podFile = (name: string, privileged: boolean) => {
      const f = join(dir, `${name}.json`)
      writeFileSync(f, JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name }, spec: { containers: [{ name: 'c', image: 'busybox', securityContext: { privileged } }] } }))
      return f
    }
    const before = stub.received.length
    const denied = await kubectl(['create', '-n', 'default', '--validate=false', '-f', podFile('root-pod', true)])
    expect(denied.code).not.toBe(0)
    expect(denied.stderr).toMatch(/Forbidden.*privileged pods are not allowed/)
    expect(stub.received.slice(before).filter((s) => s.method === 'POST')).toEqual([])
    const made = await kubectl(['create', '-n', 'default', '--validate=false', '-f', podFile('plain-pod', false)])
    expect(made.stderr).toBe('')
    expect(made.stdout).toContain('pod/plain-pod created')
    const intent = audit().find((e) => e.type === 'request' && e.action === 'k8s.create' && e.verdict === 'deny')
    expect(intent).toMatchObject({ rule: 'k/no-host', attrs: { k8s: { resource: 'pods', body: { kind: 'Pod', privileged: true } } } })
  })

  it('secret values are redacted in `get secret -o yaml`, in lists and in the last-applied annotation; the audit says what was masked', async () => {
    const r = await kubectl(['get', 'secret', 'db-password', '-n', 'default', '-o', 'yaml'])
    expect(r.stderr).toBe('')
    expect(r.stdout).toContain('password: REDACTED')
    expect(r.stdout).toContain('user: REDACTED')
    expect(r.stdout).not.toContain(Buffer.from('hunter2').toString('base64'))
    expect(r.stdout).not.toContain('aHVudGVyMg')
    const list = await kubectl(['get', 'secrets', '-n', 'default', '-o', 'json'])
    expect(list.stdout).toContain('"password": "REDACTED"')
    expect(list.stdout).not.toContain('aHVudGVyMg')
    const table = await kubectl(['get', 'secrets', '-n', 'default', '-o', 'wide'])
    expect(table.stdout).toContain('db-password')
    const get = audit().find((e) => e.type === 'request' && e.action === 'k8s.get' && (e.attrs as { k8s: { resource?: string } }).k8s.resource === 'secrets')
    const outcome = await auditFind((e) => e.type === 'outcome' && e.request === get?.request)
    expect(outcome).toMatchObject({ status: 200, masked: ['annotations.last-applied-configuration', 'data.password', 'data.user'] })
    expect(JSON.stringify(audit())).not.toContain('aHVudGVyMg')
  })

  it('a token scoped to another connection, a wrong token and no token are refused with 401', async () => {
    expect((await kubectl(['get', 'pods', '-n', 'default'], { credential: `agent-2:${elsewhereToken}` })).stderr).toMatch(/Unauthorized|must be logged in/)
    expect((await kubectl(['get', 'pods', '-n', 'default'], { credential: `agent-1:${generateToken()}` })).stderr).toMatch(/Unauthorized|must be logged in/)
    const bare = await fetchGateway('/api/v1/namespaces/default/pods', {})
    expect(bare.status).toBe(401)
    expect(bare.body).toMatchObject({ kind: 'Status', code: 401, reason: 'Unauthorized' })
  })

  it('@kubernetes/client-node as a client: list pods, and a delete in prod is Forbidden', async () => {
    const kc = new k8s.KubeConfig()
    kc.loadFromString(kubeconfigFor({ server, ca, credential: `agent-1:${agentToken}` }))
    const api = kc.makeApiClient(k8s.CoreV1Api)
    const pods = await api.listNamespacedPod({ namespace: 'default' })
    expect(pods.items.map((p) => p.metadata?.name)).toContain('web-1')
    const err = await api.deleteNamespacedPod({ namespace: 'prod', name: 'db-1' }).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 403 })
    expect(stub.received.some((s) => s.method === 'DELETE' && s.url.includes('db-1'))).toBe(false)
  })

  it('gatehouse policy explain --k8s answers for a request', async () => {
    const r = await new Promise<{ stdout: string; stderr: string }>((resolve) =>
      execFile(process.execPath, [CLI, 'policy', 'explain', '-c', join(dir, 'gatehouse.yaml'), '-i', 'agent-1', '--connection', 'cluster', '--k8s', 'DELETE /api/v1/namespaces/prod/pods/db-1', '--json'], (_e, stdout, stderr) => resolve({ stdout, stderr })),
    )
    expect(r.stderr).toBe('')
    expect(JSON.parse(r.stdout)).toMatchObject({ verdict: 'deny', attrs: { k8s: { verb: 'delete', namespace: 'prod', resource: 'pods', name: 'db-1' } } })
  })
})

/** A raw HTTPS request to the gateway (what kubectl would never send). */
export async function fetchGateway(path: string, headers: Record<string, string>, method = 'GET'): Promise<{ status: number; body: Record<string, unknown> }> {
  const { request } = await import('node:https')
  return new Promise((resolve, reject) => {
    const req = request(`${server}${path}`, { method, headers, ca, agent: false }, (res) => {
      let text = ''
      res.on('data', (d: Buffer) => (text += d.toString()))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} }))
    })
    req.on('error', reject)
    req.end()
  })
}
