/**
 * One client connection to the kubernetes listener (TLS, HTTP/1.1, keep-alive): one gateway
 * session. The first request's bearer credential logs the session in; every later request on
 * the connection must carry the same one. Each request is read as the API server reads it
 * (request.ts, body.ts), judged, recorded, and only then sent to the API server with the
 * gateway's credential, on a path and query rebuilt from what was judged.
 */
import { createHash } from 'node:crypto'
import { STATUS_CODES, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import { request as httpsRequest, type Agent } from 'node:https'
import type { Duplex } from 'node:stream'
import WebSocket from 'ws'
import type { TLSSocket } from 'node:tls'
import { isGatewayError, type BackgroundPool, type ConnectionSlot, type Credentials, type GatewayError, type GatewayRequest, type Logger, type Pipeline, type SessionHandle, type TerminalRecorder } from '@gatehouse/core'
import { decodeBody, needsYamlReader, type BodyFacts, type DecodedBody } from './body.js'
import type { KubernetesLimits } from './config.js'
import { parseRequest, type K8sRequest } from './request.js'
import { redactSecrets, SecretRedactor, type Redactions } from './secrets.js'
import { sendStatus, statusBody } from './status.js'
import { execFacts, offeredProtocols, offersV5, relay, TUNNEL_PROTOCOLS, V5, type ExecFacts } from './exec.js'
import type { Upstream } from './upstream.js'

export interface SessionDeps {
  readonly connection: string
  readonly pipeline: Pipeline
  readonly upstream: Upstream
  readonly logger: Logger
  readonly slot: ConnectionSlot
  readonly recorder: TerminalRecorder
  /** Reads YAML bodies off the event loop (yaml-worker.ts). */
  readonly yaml: BackgroundPool<{ type: string; body: Buffer }, DecodedBody>
}

/** Headers that are the connection's own, or the caller's identity: never forwarded. */
const DROPPED_HEADERS = new Set(['authorization', 'connection', 'keep-alive', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'content-length', 'accept-encoding', 'expect', 'http2-settings', 'audit-id', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-real-ip', 'forwarded'])
const DROPPED_RESPONSE_HEADERS = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'trailer', 'upgrade', 'proxy-authenticate'])
/** Requests that stream for as long as the client reads: no upstream timeout. */
const STREAMING_VERBS = new Set(['watch', 'exec', 'attach', 'portforward', 'proxy'])
const EMPTY = Buffer.alloc(0)
/** Largest response the gateway reads whole to redact Secret values (a list of secrets). */
const MAX_REDACTED_RESPONSE = 64 * 1024 * 1024

export class KubernetesSession {
  readonly handle: SessionHandle
  private credentialDigest: string | undefined
  private loggingIn: Promise<void> | undefined
  private readonly inflight = new Set<ServerResponse>()
  /** exec/attach streams open now. */
  private streams = 0
  private closed = false
  /** Set once the connection must serve nothing more: its later requests are refused until it closes. */
  private refusing: string | undefined

  constructor(
    private readonly socket: TLSSocket,
    private readonly deps: SessionDeps,
    private readonly limits: () => KubernetesLimits,
  ) {
    this.handle = deps.pipeline.openSession({ protocol: 'kubernetes', clientAddress: socket.remoteAddress ?? '', tls: true })
    this.handle.busyWhen(() => this.inflight.size > 0 || this.streams > 0)
    this.handle.onTerminate((t) => {
      for (const res of this.inflight) sendStatus(res, t.code === 'GH_ERR_AUTH_REVOKED' || t.code === 'GH_ERR_AUTH_EXPIRED' ? 401 : 503, `gatehouse: ${t.reason}`, true)
      this.close(t.reason)
    })
    socket.once('close', () => this.close('the client closed the connection'))
  }

  /** Ends the session (shutdown, a limit, the client gone). */
  close(reason: string): void {
    if (this.closed) return
    this.closed = true
    this.socket.destroy()
    void this.handle.end(reason)
  }

  async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // pipelined requests all start at once: one connection cannot open without bound upstream
    if (this.inflight.size >= this.limits().maxInflight) {
      const reason = `more than ${this.limits().maxInflight} requests in flight on this connection (limits.kubernetes.maxInflight)`
      sendStatus(res, 429, `gatehouse: ${reason}`)
      // counted, logged and recorded by core like its own limits
      void this.deps.pipeline.limitReached(this.handle.info, 'kubernetes.inflight', reason)
      return
    }
    this.inflight.add(res)
    res.once('close', () => this.inflight.delete(res))
    this.handle.touch()
    try {
      const refusal = await this.authorize(req.headers.authorization)
      if (refusal) return sendStatus(res, refusal.status, refusal.message, refusal.close)
      await this.judgeAndForward(req, res)
    } catch (err) {
      this.deps.logger.error({ session: this.handle.info.id, err: String(err) }, 'kubernetes request failed')
      sendStatus(res, 500, 'gatehouse: internal gateway error')
    }
  }

  /** Logs the session in with the request's credential, or checks it is the one it logged in with; a refusal to render otherwise. */
  private async authorize(header: string | undefined): Promise<{ status: number; message: string; close: boolean } | undefined> {
    const presented = credentialsOf(header)
    if (!presented) {
      // recorded, not counted as a failed login (a health check without a token must not lock out
      // its address); the connection closes, so each such record costs a new TLS connection
      const reason = 'present a gateway token as the bearer token (IDENTITY:TOKEN) or a workload JWT'
      void this.deps.pipeline.protocolEvent(this.handle.info, { event: 'auth.missing', reason })
      this.refusing ??= 'an earlier request on this connection presented no credential'
      return { status: 401, message: `gatehouse: ${reason}`, close: true }
    }
    const digest = createHash('sha256').update(presented.raw).digest('base64')
    while (this.loggingIn) await this.loggingIn
    if (this.refusing) return { status: 401, message: `gatehouse: ${this.refusing}`, close: true }
    const info = this.handle.info
    if (info.principal) {
      if (digest === this.credentialDigest) return undefined
      // the answers to earlier requests still go out; this and every later one is refused, then the connection closes
      this.refusing = 'this connection logged in with another credential; open a new connection'
      void this.deps.pipeline.protocolEvent(info, { event: 'auth.credential-changed', reason: this.refusing })
      return { status: 401, message: `gatehouse: ${this.refusing}`, close: true }
    }
    let done: () => void = () => undefined
    this.loggingIn = new Promise((resolve) => (done = resolve))
    try {
      await this.deps.pipeline.authenticate(info, presented.credentials)
      this.credentialDigest = digest
      this.deps.slot.authenticated()
      return undefined
    } catch (err) {
      const message = isGatewayError(err) ? err.clientMessage : 'authentication failed'
      if (this.deps.pipeline.loginAttemptsLeft(info) <= 0) this.refusing = 'too many failed logins on this connection'
      return { status: 401, message: `gatehouse: ${message}`, close: this.refusing !== undefined }
    } finally {
      this.loggingIn = undefined
      done()
    }
  }

  /**
   * An upgrade: exec or attach over WebSocket (v5.channel.k8s.io), judged like any request, then
   * relayed to the API server's own stream. Anything else (SPDY, port-forward for now) is
   * answered with a Status, and the connection closes.
   */
  async serveUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    this.streams++
    socket.once('close', () => this.streams--)
    this.handle.touch()
    const answer = (status: number, message: string) => {
      const body = statusBody(status, message)
      socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
    }
    try {
      const refusal = await this.authorize(req.headers.authorization)
      if (refusal) return answer(refusal.status, refusal.message)
      const { pipeline } = this.deps
      const screened = this.screen(req)
      if (!screened.ok) {
        const error = await pipeline.refuse(screened.request, screened.refusal)
        return answer(refusalStatus(error, screened.status), `gatehouse: ${error.clientMessage}`)
      }
      const { k, target } = screened
      const exec = k.verb === 'exec' || k.verb === 'attach' ? execFacts(k.query) : undefined
      const request = this.newRequest(k, target, undefined, exec)
      const tunnel = k.verb === 'portforward' ? offeredProtocols(req, TUNNEL_PROTOCOLS) : []
      const unserved =
        k.verb === 'portforward'
          ? tunnel.length === 0
            ? 'port-forward needs WebSocket (kubectl 1.31 or later does this by default, client libraries with the channel protocols); SPDY is not served'
            : undefined
          : !exec
            ? `${k.verb} streams are not served by this gateway (exec, attach and port-forward are)`
            : !offersV5(req)
              ? `exec and attach need WebSocket with the ${V5} subprotocol (kubectl 1.30 or later does this by default); SPDY is not served`
              : undefined
      if (unserved) {
        const error = await pipeline.refuse(request, { rule: 'gatehouse/upgrade', reason: unserved, code: 'GH_ERR_PROTOCOL_UNSUPPORTED' })
        return answer(refusalStatus(error, 400), `gatehouse: ${error.clientMessage}`)
      }
      const admission = await pipeline.admit(request)
      if (!admission.admitted) return answer(statusOf(admission.error), `gatehouse: ${admission.error.clientMessage}`)
      if (this.closed || socket.destroyed) return pipeline.complete(request, { skipped: true })
      await this.relayStream(req, socket, head, request, target, exec ? { mode: 'exec', exec } : { mode: 'tunnel', protocols: tunnel }, answer)
    } catch (err) {
      this.deps.logger.error({ session: this.handle.info.id, err: String(err) }, 'kubernetes stream failed')
      if (!socket.destroyed) answer(500, 'gatehouse: internal gateway error')
    }
  }

  /** Opens the API server's own stream for a judged exec, attach or port-forward, then relays. */
  private async relayStream(req: IncomingMessage, socket: Duplex, head: Buffer, request: GatewayRequest, target: string, stream: { mode: 'exec'; exec: ExecFacts } | { mode: 'tunnel'; protocols: readonly string[] }, answer: (status: number, message: string) => void): Promise<void> {
    const { pipeline, upstream } = this.deps
    const opts = await upstream.options()
    const up = new WebSocket(`wss://${upstream.server.host}${upstream.basePath}${target}`, stream.mode === 'exec' ? [V5] : [...stream.protocols], { agent: opts.agent as Agent, headers: opts.headers, perMessageDeflate: false, handshakeTimeout: this.limits().upstreamTimeoutMs })
    const opened = await new Promise<{ ok: true } | { ok: false; status: number; body?: string; error?: string }>((resolve) => {
      up.once('open', () => resolve({ ok: true }))
      up.once('unexpected-response', (_r, res) => {
        let body = ''
        res.on('data', (d: Buffer) => (body += d.toString('utf8').slice(0, 65536)))
        res.on('end', () => resolve({ ok: false, status: res.statusCode ?? 502, body }))
        res.on('error', () => resolve({ ok: false, status: res.statusCode ?? 502, body }))
      })
      up.once('error', (err) => resolve({ ok: false, status: 503, error: err.message }))
    })
    if (!opened.ok) {
      pipeline.complete(request, { status: opened.status, error: { code: 'GH_ERR_UPSTREAM_UNAVAILABLE', message: opened.error ?? `the API server answered ${opened.status}` } })
      // the API server's own Status (a 404 for a pod that is not there) is what the client should see
      if (opened.body && opened.body.startsWith('{')) {
        socket.end(`HTTP/1.1 ${opened.status} ${STATUS_CODES[opened.status] ?? ''}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(opened.body)}\r\nconnection: close\r\n\r\n${opened.body}`)
      } else answer(503, 'gatehouse: the API server did not open the stream')
      return
    }
    const recording = stream.mode === 'exec' && stream.exec.tty ? this.deps.recorder.open({ session: this.handle.info.id, request: request.id, cols: 80, rows: 24, title: request.text ?? '' }) : undefined
    const result = await relay(req, socket, head, up, { mode: stream.mode, ...(recording ? { recording } : {}), touch: () => this.handle.touch() })
    await recording?.close()
    pipeline.complete(request, {
      ...(result.exitCode === undefined ? {} : { status: result.exitCode }),
      bytesIn: result.bytesIn,
      bytesOut: result.bytesOut,
      ...(result.error === undefined ? {} : { error: { code: 'GH_ERR_UPSTREAM_UNAVAILABLE', message: result.error } }),
      ...(recording ? { recording: recording.path } : {}),
    })
  }

  private async judgeAndForward(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { pipeline } = this.deps
    const method = req.method ?? ''
    const screened = this.screen(req)
    if (!screened.ok) return this.refuse(res, screened.request, screened.status, screened.refusal.rule, screened.refusal.reason, screened.refusal.code)
    const { k, target } = screened
    // exec, attach and port-forward are streams: without an upgrade the API server answers them with an error
    if (k.verb === 'exec' || k.verb === 'attach' || k.verb === 'portforward') return this.refuse(res, this.newRequest(k, target, undefined), 400, 'gatehouse/upgrade', `${k.verb} needs WebSocket with the ${V5} subprotocol (kubectl 1.30 or later)`, 'GH_ERR_PROTOCOL_UNSUPPORTED')

    const encoding = String(req.headers['content-encoding'] ?? 'identity').toLowerCase()
    if (encoding !== 'identity') return this.refuse(res, this.newRequest(k, target, undefined), 415, 'gatehouse/parse', `a request body in content-encoding ${encoding.slice(0, 32)} is not judged: send it uncompressed`, 'GH_ERR_PARSE_FAILED')
    const body = await this.readBody(req)
    if (!Buffer.isBuffer(body)) {
      // the rest of the body may still come: the connection closes after this answer
      this.refusing ??= 'an earlier request on this connection sent a body the gateway did not take'
      return this.refuse(res, this.newRequest(k, target, undefined), body.status, 'gatehouse/limits', body.reason, 'GH_ERR_PROTOCOL_UNSUPPORTED', true)
    }
    let facts: BodyFacts | undefined
    let sent = body
    // a body on a read would go upstream unjudged
    if (body.length > 0 && (method === 'GET' || method === 'HEAD')) return this.refuse(res, this.newRequest(k, target, undefined), 400, 'gatehouse/parse', `a ${method} request carries no body`, 'GH_ERR_PARSE_FAILED')
    if (body.length > 0) {
      const type = req.headers['content-type']
      const decoded = needsYamlReader(type, body) ? await this.deps.yaml.run({ type: type ?? '', body }, this.handle.info.principal?.id) : decodeBody(type, body)
      if (!decoded.ok) return this.refuse(res, this.newRequest(k, target, undefined), decoded.status, 'gatehouse/parse', decoded.reason, 'GH_ERR_PARSE_FAILED')
      facts = decoded.facts
      // YAML goes on as the JSON the gateway read, so the server cannot read it another way
      if (decoded.forward) sent = Buffer.from(decoded.forward)
    }
    const request = this.newRequest(k, target, facts)
    const admission = await pipeline.admit(request)
    if (!admission.admitted) {
      sendStatus(res, statusOf(admission.error), `gatehouse: ${admission.error.clientMessage}`)
      return
    }
    if (this.closed || res.destroyed) {
      pipeline.complete(request, { skipped: true })
      return
    }
    await this.forward(req, res, request, k, target, sent)
  }

  /**
   * The request read as the API server reads it, or what to refuse before policy (a path or query
   * read two ways, impersonation through the gateway's credential): the caller records it with
   * `pipeline.refuse` and answers in its own way (a response, or a raw socket for an upgrade).
   */
  private screen(req: IncomingMessage): { ok: true; k: K8sRequest; target: string } | { ok: false; request: GatewayRequest; status: number; refusal: { rule: string; reason: string; code: 'GH_ERR_PARSE_FAILED' | 'GH_ERR_POLICY_DENIED' } } {
    const method = req.method ?? ''
    const parsed = parseRequest(method, req.url ?? '')
    if (!parsed.ok) {
      const request = this.deps.pipeline.request(this.handle.info, { action: 'k8s.request', text: `${method} ${(req.url ?? '').slice(0, 1024)}`, attrs: { k8s: { method, error: parsed.reason } } })
      return { ok: false, request, status: parsed.status, refusal: { rule: 'gatehouse/parse', reason: parsed.reason, code: 'GH_ERR_PARSE_FAILED' } }
    }
    const impersonation = Object.keys(req.headers).filter((h) => h.startsWith('impersonate-'))
    if (impersonation.length > 0) {
      const reason = `impersonation (${impersonation.join(', ')}) would act with the gateway's own credential: refused`
      return { ok: false, request: this.newRequest(parsed.request, parsed.target, undefined), status: 403, refusal: { rule: 'gatehouse/impersonation', reason, code: 'GH_ERR_POLICY_DENIED' } }
    }
    return { ok: true, k: parsed.request, target: parsed.target }
  }

  private newRequest(k: K8sRequest, target: string, body: BodyFacts | undefined, exec?: ExecFacts): GatewayRequest {
    const q = k.query
    const attrs = {
      verb: k.verb,
      resourceRequest: k.resourceRequest,
      discovery: k.discovery,
      path: k.path,
      ...(k.resourceRequest ? { group: k.group, version: k.version, resource: k.resource } : {}),
      ...(k.namespace === undefined ? {} : { namespace: k.namespace }),
      ...(k.name === undefined ? {} : { name: k.name }),
      ...(k.subresource === undefined ? {} : { subresource: k.subresource }),
      ...(q.has('dryRun') ? { dryRun: true } : {}),
      ...(q.has('fieldManager') ? { fieldManager: q.get('fieldManager')?.[0] } : {}),
      ...(body ? { body } : {}),
      ...(exec ? { exec } : {}),
      ...(k.verb === 'portforward' ? { ports: [...(k.query.get('ports') ?? [])].flatMap((p) => p.split(',')) } : {}),
    }
    const resource = k.group ? `${k.resource}.${k.group}` : k.resource
    const objectTarget = k.resourceRequest ? [resource, k.namespace, k.name].filter((x) => x !== undefined).join('/') : k.path
    return this.deps.pipeline.request(this.handle.info, { action: `k8s.${k.verb}`, target: objectTarget, text: `${k.method} ${target}`, attrs: { k8s: attrs } })
  }

  /** Records a refusal the gateway makes before policy, and answers it as a Status. */
  private async refuse(res: ServerResponse, request: GatewayRequest, status: number, rule: string, reason: string, code: 'GH_ERR_PARSE_FAILED' | 'GH_ERR_POLICY_DENIED' | 'GH_ERR_PROTOCOL_UNSUPPORTED', close = false): Promise<void> {
    const error = await this.deps.pipeline.refuse(request, { rule, reason, code })
    sendStatus(res, refusalStatus(error, status), `gatehouse: ${error.clientMessage}`, close)
  }

  /** The whole body, or why it is refused: too large, or not all there within limits.kubernetes.upstreamTimeoutMs. */
  private readBody(req: IncomingMessage): Promise<Buffer | { status: number; reason: string }> {
    const { maxBodyBytes: max, upstreamTimeoutMs } = this.limits()
    const declared = Number(req.headers['content-length'] ?? 0)
    // most requests (every get, list and watch) have no body: no timer, no listeners
    if (declared === 0 && req.headers['transfer-encoding'] === undefined) return Promise.resolve(EMPTY)
    if (declared > max) {
      req.resume()
      return Promise.resolve({ status: 413, reason: `the request body (${declared} bytes) is larger than limits.kubernetes.maxBodyBytes (${max})` })
    }
    return new Promise((resolve) => {
      const chunks: Buffer[] = []
      let size = 0
      const done = (result: Buffer | { status: number; reason: string }) => {
        clearTimeout(timer)
        req.off('data', onData)
        req.off('end', onEnd)
        req.off('error', onError)
        if (!Buffer.isBuffer(result)) req.resume()
        resolve(result)
      }
      // a body sent a byte a minute would keep the session busy (never idle) for ever
      const timer = setTimeout(() => done({ status: 408, reason: `the request body did not arrive within limits.kubernetes.upstreamTimeoutMs (${upstreamTimeoutMs} ms)` }), upstreamTimeoutMs)
      const onData = (chunk: Buffer) => {
        size += chunk.length
        if (size > max) done({ status: 413, reason: `the request body is larger than limits.kubernetes.maxBodyBytes (${max})` })
        else chunks.push(chunk)
      }
      const onEnd = () => done(Buffer.concat(chunks))
      const onError = () => done({ status: 400, reason: 'the request body was cut off' })
      req.on('data', onData)
      req.on('end', onEnd)
      req.on('error', onError)
    })
  }

  private async forward(req: IncomingMessage, res: ServerResponse, request: GatewayRequest, k: K8sRequest, target: string, body: Buffer): Promise<void> {
    const { pipeline, upstream } = this.deps
    let opts: Awaited<ReturnType<Upstream['options']>>
    try {
      opts = await upstream.options()
    } catch (err) {
      this.deps.logger.error({ err: String(err) }, 'could not load the upstream credential')
      pipeline.complete(request, { error: { code: 'GH_ERR_UPSTREAM_AUTH', message: 'the gateway could not load its credential for the API server' } })
      sendStatus(res, 503, 'gatehouse: the gateway could not load its credential for the API server')
      return
    }
    const headers = forwardedHeaders(req.headers)
    if (body.length > 0) headers['content-length'] = String(body.length)
    // every answer about secrets is read and redacted (a delete answers with the deleted object too)
    const redact = k.resource === 'secrets' && k.group === '' && k.method !== 'HEAD'
    const found: Redactions = new Set()
    // about secrets the gateway asks for JSON only (the Table form kubectl asks for is JSON too)
    if (redact) headers.accept = String(headers.accept ?? '').toLowerCase().includes('as=table') ? 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json' : 'application/json'
    const up = httpsRequest({ ...opts, method: k.method, path: upstream.basePath + target, headers: { ...headers, ...opts.headers, host: upstream.server.host } })
    const streaming = STREAMING_VERBS.has(k.verb) || k.query.get('follow')?.[0] === 'true'
    if (!streaming) up.setTimeout(this.limits().upstreamTimeoutMs, () => up.destroy(new Error('the API server did not answer in time')))
    let bytesOut = 0
    let finished = false
    const finish = (outcome: { status?: number; error?: { code: string; message: string } }) => {
      if (finished) return
      finished = true
      pipeline.complete(request, {
        ...(outcome.status === undefined ? {} : { status: outcome.status }),
        bytesIn: body.length,
        bytesOut,
        ...(outcome.error ? { error: outcome.error } : {}),
        ...(found.size > 0 ? { masked: [...found].sort() } : {}),
      })
    }
    res.once('close', () => {
      if (!finished) {
        up.destroy()
        finish({ ...(res.headersSent ? { status: res.statusCode } : {}), error: { code: 'GH_ERR_SESSION_CLOSED', message: 'the client went away before the response ended' } })
      }
    })
    up.on('response', (ur) => {
      up.setTimeout(0)
      const status = ur.statusCode ?? 502
      const responseHeaders: Record<string, string | string[]> = {}
      for (const [name, value] of Object.entries(ur.headers)) if (value !== undefined && !DROPPED_RESPONSE_HEADERS.has(name)) responseHeaders[name] = value
      const json = /^application\/json\b/i.test(String(ur.headers['content-type'] ?? 'application/json'))
      if (redact && !json) {
        up.destroy()
        found.add('unreadable response')
        finish({ status: 502, error: { code: 'GH_ERR_PROTOCOL_UNSUPPORTED', message: `an answer about secrets in ${String(ur.headers['content-type']).slice(0, 64)} was withheld` } })
        sendStatus(res, 502, 'gatehouse: an answer about secrets that is not JSON is withheld')
        return
      }
      ur.on('error', (err) => {
        finish({ status, error: { code: 'GH_ERR_UPSTREAM_UNAVAILABLE', message: err.message } })
        res.destroy()
      })
      if (redact && k.verb === 'watch') {
        const redactor = new SecretRedactor(found)
        res.writeHead(status, responseHeaders)
        ur.on('data', (chunk: Buffer) => {
          this.handle.touch()
          let out: Buffer
          try {
            out = redactor.push(chunk)
          } catch (err) {
            up.destroy()
            finish({ status, error: { code: 'GH_ERR_PROTOCOL_UNSUPPORTED', message: (err as Error).message } })
            res.destroy()
            return
          }
          bytesOut += out.length
          // a client that stops reading holds the API server's stream, not the gateway's memory
          if (out.length > 0 && !res.write(out)) {
            ur.pause()
            res.once('drain', () => ur.resume())
          }
        })
        ur.on('end', () => {
          if (finished) return
          const out = redactor.end()
          bytesOut += out.length
          res.end(out)
          finish({ status })
        })
        return
      }
      if (redact) {
        const chunks: Buffer[] = []
        let size = 0
        ur.on('data', (chunk: Buffer) => {
          size += chunk.length
          if (size > MAX_REDACTED_RESPONSE) {
            up.destroy()
            finish({ error: { code: 'GH_ERR_PROTOCOL_UNSUPPORTED', message: 'a response with secrets was too large to redact' } })
            sendStatus(res, 502, 'gatehouse: the response was too large for the gateway to redact its secrets')
            return
          }
          chunks.push(chunk)
        })
        ur.on('end', () => {
          if (finished) return
          const out = redactSecrets(Buffer.concat(chunks), found)
          bytesOut = out.length
          res.writeHead(status, { ...responseHeaders, 'content-length': out.length })
          res.end(out)
          finish({ status })
        })
        return
      }
      res.writeHead(status, responseHeaders)
      ur.on('data', (chunk: Buffer) => {
        bytesOut += chunk.length
        this.handle.touch()
      })
      ur.pipe(res)
      ur.on('end', () => finish({ status }))
    })
    up.on('error', (err) => {
      if (finished) return
      this.deps.logger.warn({ session: this.handle.info.id, err: err.message }, 'the API server request failed')
      finish({ error: { code: 'GH_ERR_UPSTREAM_UNAVAILABLE', message: err.message } })
      sendStatus(res, 503, 'gatehouse: the API server is unavailable')
    })
    up.end(body)
  }
}

/** `Bearer IDENTITY:TOKEN` (a gateway token) or `Bearer TOKEN` (a workload JWT). */
function credentialsOf(header: string | undefined): { credentials: Credentials; raw: string } | undefined {
  const m = /^Bearer +(\S+)\s*$/i.exec(header ?? '')
  if (!m) return undefined
  const raw = m[1] as string
  const colon = raw.indexOf(':')
  if (colon > 0) return { raw, credentials: { kind: 'password', user: raw.slice(0, colon), password: raw.slice(colon + 1) } }
  return { raw, credentials: { kind: 'bearer', token: raw } }
}

function forwardedHeaders(h: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const [name, value] of Object.entries(h)) {
    if (value === undefined || DROPPED_HEADERS.has(name) || name.startsWith('impersonate-') || name.startsWith('x-remote-')) continue
    out[name] = value
  }
  // responses the gateway can read: JSON, never protobuf or CBOR
  const accept = String(out.accept ?? '').toLowerCase()
  if (accept.includes('protobuf') || accept.includes('cbor')) out.accept = 'application/json'
  return out
}

/** The status of a refusal the gateway recorded: `status`, unless the record itself failed (then the audit is down: 503). */
function refusalStatus(error: GatewayError, status: number): number {
  return error.code === 'GH_ERR_AUDIT_UNAVAILABLE' ? 503 : status
}

function statusOf(err: GatewayError): number {
  switch (err.code) {
    case 'GH_ERR_AUDIT_UNAVAILABLE':
    case 'GH_ERR_STATE_UNAVAILABLE':
      return 503
    case 'GH_ERR_PARSE_FAILED':
    case 'GH_ERR_PROTOCOL_UNSUPPORTED':
      return 400
    default:
      return 403
  }
}
