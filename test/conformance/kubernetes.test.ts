/**
 * The conformance kit (@gatehouse/testkit) run against the built-in Kubernetes adapter. No real
 * API server can run on these machines: the upstream is the STUB API server of
 * test/fixtures/k8s-stub-upstream-impl.mjs, which records every request it received. The client
 * is Node's own HTTPS client with one kept-alive connection (a gateway session is a TLS
 * connection); kubectl itself is tested against the adapter in test/adapters/kubernetes. Markers
 * ride in a create's `fieldManager` (so the request line, which the audit records, carries them)
 * and its ConfigMap's name: the policy denies writes to namespace `ck-denied` and holds those to
 * `ck-held`; the probe looks for the marker in what the stub received.
 */
import { Agent, request } from 'node:https'
import type { Socket } from 'node:net'
import { generateCertificates } from '@gatehouse/adapter-kubernetes'
import { describeConformance, type ClientResult } from '@gatehouse/testkit'
import { startK8sStub } from '../fixtures/k8s-stub-upstream.js'

let certs: Awaited<ReturnType<typeof generateCertificates>> | undefined

interface Answer {
  status: number
  body: string
}

describeConformance({
  name: 'kubernetes (Node HTTPS client, STUB API server)',
  adapter: 'kubernetes',
  rules: {
    denied: { actions: ['k8s.create'], match: { 'k8s.namespace': ['ck-denied'] } },
    held: { actions: ['k8s.create'], match: { 'k8s.namespace': ['ck-held'] } },
  },
  explainDenied: { k8s: 'POST /api/v1/namespaces/ck-denied/configmaps' },
  async startUpstream() {
    certs ??= await generateCertificates(['127.0.0.1', 'localhost'])
    const stub = await startK8sStub()
    return {
      connection: { tls: { cert: certs.cert, key: certs.key }, upstream: { server: stub.url, token: stub.token, ca: stub.ca } },
      seen: async (marker) => stub.received.filter((r) => r.url.includes(marker) || r.body.includes(marker)).length,
      close: () => stub.close(),
    }
  },
  client: {
    async connect({ host, port, identity, token }) {
      const agent = new Agent({ keepAlive: true, maxSockets: 1, ca: certs?.caCert })
      let socket: Socket | undefined
      let markClosed!: () => void
      const closed = new Promise<void>((resolve) => (markClosed = resolve))
      const call = (method: string, path: string, body?: unknown) =>
        new Promise<Answer>((resolve, reject) => {
          const payload = body === undefined ? undefined : JSON.stringify(body)
          const req = request({ host, port, method, path, agent, headers: { authorization: `Bearer ${identity}:${token}`, accept: 'application/json', ...(payload ? { 'content-type': 'application/json' } : {}) } }, (res) => {
            let text = ''
            res.on('data', (d: Buffer) => (text += d.toString()))
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }))
          })
          req.on('socket', (s: Socket) => {
            if (socket === s) return
            socket = s
            s.once('close', () => markClosed())
          })
          req.on('error', reject)
          req.end(payload)
        })
      const version = await call('GET', '/version')
      if (version.status !== 200) {
        agent.destroy()
        throw new Error(`login refused: HTTP ${version.status} ${version.body}`)
      }
      const namespace = { allowed: 'default', denied: 'ck-denied', held: 'ck-held' }
      return {
        closed,
        send: async (kind, marker): Promise<ClientResult> => {
          const r = await call('POST', `/api/v1/namespaces/${namespace[kind]}/configmaps?fieldManager=${marker}`, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `cm-${marker}` }, data: { m: marker } }).catch((err: Error) => ({ status: 0, body: err.message }))
          if (r.status >= 200 && r.status < 300) return { ok: true }
          let message = r.body
          try {
            message = String((JSON.parse(r.body) as { message?: string }).message ?? r.body)
          } catch {
            /* not a Status */
          }
          return { ok: false, error: `HTTP ${r.status}: ${message}` }
        },
        close: async () => agent.destroy(),
      }
    },
  },
})
