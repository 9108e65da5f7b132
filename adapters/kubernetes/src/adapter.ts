/** The kubernetes adapter's listener: an HTTPS server kubectl and client libraries use as their API server. */
import { createServer as createHttpsServer } from 'node:https'
import { createServer as createNetServer, type Socket } from 'node:net'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { TLSSocket } from 'node:tls'
import { BackgroundPool, GatewayError, inject, TerminalRecorder, injectable, PluginContextToken, serveListener, validate, type ConnectionConfig, type ExplainedRequest, type ExplainInput, type Listener, type Logger, type Pipeline, type PluginContext, type ProtocolAdapter } from '@gatehouse/core'
import { KubernetesLimits, KubernetesOptions, UpstreamConfig } from './config.js'
import type { DecodedBody } from './body.js'
import { parseRequest } from './request.js'
import { KubernetesSession } from './session.js'
import { Upstream } from './upstream.js'

/** Every action the adapter produces: `k8s.<verb>`; `k8s.request` for what could not be read. */
export const K8S_ACTIONS = ['k8s.get', 'k8s.list', 'k8s.watch', 'k8s.create', 'k8s.update', 'k8s.patch', 'k8s.delete', 'k8s.deletecollection', 'k8s.exec', 'k8s.attach', 'k8s.portforward', 'k8s.log', 'k8s.proxy', 'k8s.post', 'k8s.put', 'k8s.head', 'k8s.request'] as const

@injectable()
export class KubernetesAdapter implements ProtocolAdapter {
  readonly protocol = 'kubernetes'
  readonly actions = K8S_ACTIONS
  readonly limits = KubernetesLimits
  private readonly logger: Logger

  constructor(
    @inject(PluginContextToken) ctx: PluginContext,
    @inject(TerminalRecorder) private readonly recorder: TerminalRecorder,
  ) {
    this.logger = ctx.logger
  }

  /** YAML request bodies are read here, each within two seconds, never on the event loop. */
  private readonly yaml = new BackgroundPool<{ type: string; body: Buffer }, DecodedBody>(new URL('./yaml-worker.js', import.meta.url), {
    budgetMs: 2000,
    failed: (kind, detail) => ({ ok: false, status: kind === 'timeout' ? 413 : 503, reason: kind === 'timeout' ? 'the YAML body took too long to read: send it as JSON' : `the YAML body could not be read: ${detail}` }),
  })

  /** At gateway shutdown, after sessions ended: stops the YAML workers. */
  async close(): Promise<void> {
    await this.yaml.close()
  }

  checkConnection(connection: ConnectionConfig, path: string): void {
    const upstream = validate(UpstreamConfig, connection.upstream, { base: `${path}.upstream` })
    validate(KubernetesOptions, connection.options ?? {}, { base: `${path}.options` })
    if (upstream.kubeconfig === undefined && !upstream.inCluster && (upstream.server === undefined || upstream.token === undefined)) {
      throw new GatewayError('GH_ERR_CONFIG_INVALID', `${path}.upstream: set kubeconfig, inCluster: true, or server and token (the gateway's credential on the API server)`)
    }
    if (!connection.tls) throw new GatewayError('GH_ERR_CONFIG_INVALID', `${path}.tls: a kubernetes connection needs tls (kubectl sends bearer tokens only over TLS); \`gatehouse k8s cert\` makes a CA and a certificate`)
  }

  async explain(input: ExplainInput): Promise<readonly ExplainedRequest[]> {
    if (input.k8s === undefined) throw new GatewayError('GH_ERR_CONFIG_INVALID', 'a kubernetes connection is explained with --k8s "VERB PATH" (e.g. "GET /api/v1/namespaces/default/pods")')
    const m = /^\s*([A-Za-z]+)\s+(\S+)\s*$/.exec(input.k8s)
    if (!m) throw new GatewayError('GH_ERR_CONFIG_INVALID', '--k8s takes "METHOD PATH", e.g. "DELETE /api/v1/namespaces/prod/pods/web-1"')
    const method = (m[1] as string).toUpperCase()
    const parsed = parseRequest(method, m[2] as string)
    if (!parsed.ok) return [{ action: 'k8s.request', text: input.k8s, attrs: { k8s: { method, error: parsed.reason } }, refusal: { rule: 'gatehouse/parse', reason: parsed.reason } }]
    const k = parsed.request
    return [{ action: `k8s.${k.verb}`, text: `${method} ${parsed.target}`, attrs: { k8s: { verb: k.verb, resourceRequest: k.resourceRequest, discovery: k.discovery, path: k.path, ...(k.resourceRequest ? { group: k.group, version: k.version, resource: k.resource } : {}), ...(k.namespace === undefined ? {} : { namespace: k.namespace }), ...(k.name === undefined ? {} : { name: k.name }), ...(k.subresource === undefined ? {} : { subresource: k.subresource }) } } }]
  }

  async listen(connection: ConnectionConfig, pipeline: Pipeline, signal: AbortSignal): Promise<Listener> {
    const upstream = new Upstream(validate(UpstreamConfig, connection.upstream))
    const tls = connection.tls as NonNullable<ConnectionConfig['tls']>
    const logger = this.logger.child({ connection: connection.name })
    const limits = () => pipeline.limits.adapter as KubernetesLimits
    const sessions = new Set<KubernetesSession>()
    const bySocket = new WeakMap<TLSSocket, KubernetesSession>()
    const slots = new Map<string, ReturnType<Pipeline['admitConnection']>>()
    let accepting = true

    const https = createHttpsServer({
      cert: tls.cert,
      key: tls.key,
      ALPNProtocols: ['http/1.1'],
      maxHeaderSize: limits().maxHeaderBytes,
      // a watch or a log stream lasts as long as the client wants: no whole-request timeout
      requestTimeout: 0,
      headersTimeout: 30_000,
      keepAliveTimeout: 120_000,
    })
    https.on('secureConnection', (socket: TLSSocket) => {
      const slot = slots.get(keyOf(socket))
      if (!slot || !accepting) {
        socket.destroy()
        return
      }
      const session = new KubernetesSession(socket, { connection: connection.name, pipeline, upstream, logger, slot, recorder: this.recorder, yaml: this.yaml }, limits)
      sessions.add(session)
      bySocket.set(socket, session)
      socket.once('close', () => sessions.delete(session))
    })
    https.on('request', (req, res) => {
      const session = bySocket.get(req.socket as TLSSocket)
      if (!session) {
        res.destroy()
        return
      }
      void session.serve(req, res)
    })
    // exec and attach (WebSocket); anything else that asks to upgrade gets a Status
    https.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const session = bySocket.get(socket as TLSSocket)
      if (!session) {
        socket.destroy()
        return
      }
      void session.serveUpgrade(req, socket, head)
    })
    https.on('tlsClientError', (err: Error) => logger.debug({ err: err.message }, 'TLS handshake failed'))
    https.on('clientError', (err: Error, socket: Socket) => {
      // malformed HTTP: a plain 400, as the API server would, and the connection closes; recorded
      // against the connection's session (it exists once the TLS handshake is done)
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n')
      else socket.destroy()
      const session = bySocket.get(socket as TLSSocket)
      if (session) void pipeline.protocolEvent(session.handle.info, { event: 'http.malformed', reason: `malformed HTTP: ${err.message.slice(0, 200)}` })
      else logger.debug({ err: err.message }, 'malformed HTTP request')
    })

    // Our own listener in front: core's limits decide how many may be logging in at once (in all
    // and from one address), before the TLS handshake costs anything.
    const listener = createNetServer({ noDelay: true }, (socket) => {
      const slot = accepting ? pipeline.admitConnection(socket.remoteAddress ?? '', 'kubernetes', () => socket.destroy()) : undefined
      if (!slot) {
        socket.destroy()
        return
      }
      const key = keyOf(socket)
      slots.set(key, slot)
      socket.once('close', () => {
        slots.delete(key)
        slot.release()
      })
      https.emit('connection', socket)
    })
    listener.on('error', (err: Error) => logger.error({ err: err.message }, 'listener error'))
    signal.addEventListener('abort', () => upstream.close(), { once: true })
    return serveListener(listener, connection.listen, {
      sessions: { get size() { return sessions.size }, [Symbol.iterator]: () => sessions[Symbol.iterator]() },
      signal,
      stopAccepting: () => {
        accepting = false
      },
    })
  }
}

function keyOf(socket: Socket): string {
  return `${socket.remoteAddress ?? ''}:${socket.remotePort ?? 0}`
}
