/**
 * Held requests on the kubernetes adapter: a `kubectl delete` a rule sends to review waits
 * (nothing reaches the API server) until an approver decides through the admin API; approved,
 * it runs; denied, kubectl prints a Forbidden naming the review.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateToken, hashToken } from '@gatehouse/core'
import { startK8sGateway, type K8sGateway } from '../../fixtures/k8s-gateway.js'

let gw: K8sGateway
const alice = generateToken()

const api = (method: string, path: string, body?: unknown) =>
  fetch(`http://127.0.0.1:${gw.gateway.adminPort}${path}`, { method, headers: { authorization: `Bearer ${alice}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) }).then(async (r) => ({ status: r.status, json: (await r.json()) as Record<string, unknown> }))

async function pendingFor(text: string): Promise<string> {
  for (let i = 0; i < 400; i++) {
    const { json } = await api('GET', '/reviews')
    const found = (json.reviews as { id: string; text: string }[]).find((r) => r.text === text)
    if (found) return found.id
    await new Promise((r) => setTimeout(r, 25))
  }
  throw new Error(`no pending review for ${text}`)
}

beforeAll(async () => {
  gw = await startK8sGateway(
    `
      - { id: discovery, effect: allow, actions: [k8s.get], match: { k8s.discovery: true } }
      - { id: reads, effect: allow, actions: [k8s.get, k8s.list], match: { k8s.namespace: [default] } }
      - { id: deletes, effect: review, actions: [k8s.delete], match: { k8s.namespace: [default] }, reason: deleting needs a person, review: { timeoutSeconds: 60 } }
      - { id: exec, effect: review, actions: [k8s.exec], match: { k8s.namespace: [default] }, reason: exec needs a person, review: { timeoutSeconds: 60 } }
`,
    `admin:
  listen: "127.0.0.1:0"
  tokens:
    - { id: alice, role: approver, hash: "${hashToken(alice, 'alice')}" }
`,
  )
}, 60_000)

afterAll(async () => {
  await gw?.close()
})

describe('held kubernetes requests', () => {
  it('kubectl delete waits for an approval, then runs; the API server saw nothing before it', async () => {
    const run = gw.kubectl(['delete', 'pod', 'web-2', '-n', 'default', '--wait=false'])
    const id = await pendingFor('DELETE /api/v1/namespaces/default/pods/web-2')
    expect(gw.stub.received.some((r) => r.method === 'DELETE')).toBe(false)
    expect(await api('POST', `/reviews/${id}/approve`, { reason: 'cleanup' })).toMatchObject({ status: 200, json: { result: 'approved' } })
    const r = await run
    expect(r.stderr).toBe('')
    expect(r.stdout).toContain('pod "web-2" deleted')
    expect(gw.stub.received.filter((x) => x.method === 'DELETE').map((x) => x.url)).toEqual(['/api/v1/namespaces/default/pods/web-2'])
    expect(gw.audit().find((e) => e.type === 'review' && e.review === id)).toMatchObject({ decision: 'approved', by: 'alice' })
  })

  it('denied: kubectl prints Forbidden with the reason, nothing is deleted', async () => {
    const run = gw.kubectl(['delete', 'pod', 'web-1', '-n', 'default', '--wait=false'])
    const id = await pendingFor('DELETE /api/v1/namespaces/default/pods/web-1')
    await api('POST', `/reviews/${id}/deny`, { reason: 'web-1 serves traffic' })
    const r = await run
    expect(r.code).not.toBe(0)
    expect(r.stderr).toMatch(/Error from server \(Forbidden\): gatehouse: .*web-1 serves traffic/)
    expect(gw.stub.received.some((x) => x.method === 'DELETE' && x.url.endsWith('/web-1'))).toBe(false)
  })

  it('kubectl exec waits for an approval, then runs with its exit code', async () => {
    const run = gw.kubectl(['exec', 'web-1', '-n', 'default', '--', 'echo', 'approved'])
    const id = await pendingFor('GET /api/v1/namespaces/default/pods/web-1/exec?command=echo&command=approved&container=main&stderr=true&stdout=true')
    expect(gw.stub.received.some((r) => r.url.includes('/exec'))).toBe(false)
    const review = (await api('GET', `/reviews/${id}`)).json
    expect(review).toMatchObject({ action: 'k8s.exec', attrs: { k8s: { exec: { command: ['echo', 'approved'] } } } })
    await api('POST', `/reviews/${id}/approve`)
    expect(await run).toMatchObject({ code: 0, stdout: 'approved\n' })
  })
})
