/**
 * The built-in Kubernetes rule sets (plugins/policy/src/rule-sets.ts) under a policy that
 * otherwise allows every k8s action: exec, port-forward and proxy, workloads that reach the
 * node, and privilege escalation are denied, through kubectl and raw requests, and nothing of
 * them reaches the (stub) API server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startK8sGateway, type K8sGateway } from '../../fixtures/k8s-gateway.js'

let gw: K8sGateway
const auth = () => ({ authorization: `Bearer agent-1:${gw.tokens.agent}`, 'content-type': 'application/json' })

beforeAll(async () => {
  gw = await startK8sGateway(`      - { id: everything, effect: allow, actions: ['k8s.*'] }\n`, '', ['k8s-exec', 'k8s-portforward', 'k8s-host-access', 'k8s-escalation'])
}, 60_000)

afterAll(async () => {
  await gw?.close()
})

const pod = (spec: Record<string, unknown>, container: Record<string, unknown> = {}) => JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: `p-${Math.random().toString(36).slice(2, 8)}` }, spec: { containers: [{ name: 'c', image: 'x', ...container }], ...spec } })

describe('built-in kubernetes rule sets', () => {
  it('a plain pod is created; kubectl get works', async () => {
    expect((await gw.raw('/api/v1/namespaces/default/pods', auth(), 'POST', pod({}))).status).toBe(201)
    expect((await gw.kubectl(['get', 'pods', '-n', 'prod'])).stdout).toContain('db-1')
  })

  it('kubectl exec is denied by k8s-exec/exec', async () => {
    const r = await gw.kubectl(['exec', 'web-1', '-n', 'default', '--', 'echo', 'x'])
    expect(r.code).not.toBe(0)
    // kubectl tries WebSocket first (denied by the rule), then falls back to SPDY (refused: not served)
    const execs = gw.audit().filter((e) => e.type === 'request' && e.action === 'k8s.exec')
    expect(execs.map((e) => [e.verdict, e.rule])).toContainEqual(['deny', 'k/k8s-exec/exec'])
    expect(execs.every((e) => e.verdict === 'deny')).toBe(true)
    expect(gw.stub.received.some((x) => x.url.includes('/exec'))).toBe(false)
  })

  it('kubectl port-forward is denied by k8s-portforward/portforward, and never reaches the API server', async () => {
    const r = await gw.kubectl(['port-forward', 'pod/web-1', '-n', 'default', '18080:80'], { timeoutMs: 20_000 })
    expect(r.code).not.toBe(0)
    const forwards = gw.audit().filter((e) => e.type === 'request' && e.action === 'k8s.portforward')
    expect(forwards.length).toBeGreaterThan(0)
    // over WebSocket it is judged and denied by the set; kubectl's SPDY fallback is refused as not served
    expect(forwards.map((e) => e.rule)).toContain('k/k8s-portforward/portforward')
    expect(forwards.every((e) => e.verdict === 'deny')).toBe(true)
    expect(gw.stub.received.some((x) => x.url.includes('/portforward'))).toBe(false)
  })

  it.each([
    ['hostNetwork', pod({ hostNetwork: true }), 'k/k8s-host-access/host-network'],
    ['hostPID', pod({ hostPID: true }), 'k/k8s-host-access/host-pid'],
    ['hostIPC', pod({ hostIPC: true }), 'k/k8s-host-access/host-ipc'],
    ['privileged', pod({}, { securityContext: { privileged: true } }), 'k/k8s-host-access/privileged'],
    ['hostPath', pod({ volumes: [{ name: 'root', hostPath: { path: '/' } }] }), 'k/k8s-host-access/host-path'],
    ['hostPort', pod({}, { ports: [{ containerPort: 22, hostPort: 22 }] }), 'k/k8s-host-access/host-ports'],
    ['added capabilities', pod({}, { securityContext: { capabilities: { add: ['NET_ADMIN'] } } }), 'k/k8s-host-access/capabilities'],
    ['privilege escalation', pod({}, { securityContext: { allowPrivilegeEscalation: true } }), 'k/k8s-host-access/privilege-escalation'],
  ])('a pod asking for %s is denied, nothing upstream', async (_what, body, rule) => {
    const from = gw.stub.received.length
    const r = await gw.raw('/api/v1/namespaces/default/pods', auth(), 'POST', body)
    expect(r.status).toBe(403)
    expect(String(r.body.message)).toContain(rule)
    expect(gw.stub.received.length).toBe(from)
  })

  it.each([
    ['a role binding', 'POST', '/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings', '{"kind":"RoleBinding","metadata":{"name":"x"}}', 'k/k8s-escalation/rbac'],
    ['a service-account token', 'POST', '/api/v1/namespaces/default/serviceaccounts/default/token', '{"kind":"TokenRequest"}', 'k/k8s-escalation/service-account-tokens'],
    ['a certificate signing request', 'POST', '/apis/certificates.k8s.io/v1/certificatesigningrequests', '{"kind":"CertificateSigningRequest","metadata":{"name":"x"}}', 'k/k8s-escalation/certificates'],
    ['a debug container', 'PATCH', '/api/v1/namespaces/default/pods/web-1/ephemeralcontainers', '{"spec":{"ephemeralContainers":[{"name":"d","image":"x"}]}}', 'k/k8s-exec/ephemeral-containers'],
    ['a proxy to a service', 'GET', '/api/v1/namespaces/default/services/web:80/proxy/admin', undefined, 'k/k8s-portforward/proxy'],
  ])('%s is denied', async (_what, method, path, body, rule) => {
    const from = gw.stub.received.length
    const headers = method === 'PATCH' ? { ...auth(), 'content-type': 'application/strategic-merge-patch+json' } : auth()
    const r = await gw.raw(path, headers, method, body)
    expect(r.status).toBe(403)
    expect(String(r.body.message)).toContain(rule)
    expect(gw.stub.received.length).toBe(from)
  })
})
