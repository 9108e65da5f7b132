/**
 * One client connection: the handshake (`hello`, answered by the gateway), the login (SCRAM-SHA-256
 * against gateway tokens, run by core, speculative or not), then every command judged and sent on.
 *
 * Security-relevant shape:
 * - Messages are handled one at a time, in order; the next is not read until the answer to the
 *   last has been written (clients do not pipeline commands on one connection).
 * - What is judged is what is sent: the command is decoded once from BSON that bson-check.ts
 *   found unambiguous, judged, and that same decoded document is what the driver sends upstream.
 * - Nothing reaches the upstream before login: there is no upstream connection until then.
 * - getMore and killCursors are not judged again: they continue the command that opened the
 *   cursor, and only cursors this session opened may be named (a cursor id is not a credential).
 *   The opening command's outcome is recorded when its cursor ends, with every document it
 *   returned; its mask applies to every batch.
 * - Unacknowledged commands (moreToCome) cannot be answered: a refused one closes the
 *   connection, so the client learns something went wrong at its next command.
 */
import type { Socket } from 'node:net'
import { TLSSocket } from 'node:tls'
import { BSON, Binary, Int32, Long, type Document } from 'bson'
import { GatewayError, isGatewayError, maskPathsOf, type ConnectionSlot, type GatewayRequest, type Logger, type Pipeline, type ScramExchange, type SessionHandle } from '@gatehouse/core'
import { analyseCommand, commandName, opensCursor, trueValue, type MongoFacts } from './command.js'
import { plainDbRefs } from './codec/dbref.js'
import { maskRefusal } from './masking.js'
import type { MongoLimits } from './config.js'
import { mongoError, refusalError, type MongoErrorDoc } from './errors.js'
import { encodeOpMsg, encodeOpReply, FrameReader, MSG_FLAGS, OP, OP_NAMES, readOpMsg, readOpQuery, WireError, type Frame } from './codec/wire.js'
import type { Upstream, UpstreamConnection, UpstreamShape } from './upstream.js'

const DECODE = { promoteValues: false, bsonRegExp: true } as const
const SCRAM_SHA_256 = 'SCRAM-SHA-256'
/** The longest audit text of one command; the rest is cut (its attributes are complete). */
const MAX_TEXT = 4096
/** Commands the gateway answers itself, logged in or not, as the server does. */
const OWN = new Set(['hello', 'ping', 'saslStart', 'saslContinue', 'authenticate', 'logout', 'connectionStatus'])
/** The largest message read from a client that has not logged in. */
const PRE_LOGIN_MESSAGE_BYTES = 64 * 1024
/** Commands (other than hello, ping and the login) a connection may send before it logs in. */
const MAX_COMMANDS_BEFORE_LOGIN = 16
/** Distinct client sessions (lsids) one gateway session may use. */
const MAX_LSIDS = 10_000

export interface SessionDeps {
  readonly connection: string
  readonly pipeline: Pipeline
  readonly upstream: Upstream
  readonly logger: Logger
  readonly slot: ConnectionSlot
  readonly limits: () => MongoLimits
  readonly connectionId: number
  /** The client's address and port, from the TCP connection (a TLS stream over a replayed one has none of its own). */
  readonly client: { readonly address: string; readonly port: number; readonly local: string }
  /** host:port named in hello (replica sets), when configured. */
  readonly advertise: string | undefined
  /** Monitor connections held on this listener (they never log in), in all and by client address. */
  readonly monitors: { count: number; bySource: Map<string, number> }
  /**
   * Client session ids (lsid) in use on this listener: the identity that uses each, and its
   * connections that did. Every client reaches the upstream as the gateway's one user, so the
   * server would let one identity continue another's session or transaction by naming its lsid.
   * (A driver uses one lsid on several of its connections, all of one identity.)
   */
  readonly lsids: Map<string, { readonly identity: string; readonly sessions: Set<MongoSession> }>
}

/** A cursor this session opened: getMore continues the request that opened it. */
interface OpenCursor {
  readonly request: GatewayRequest
  readonly ns: string
  readonly masks: boolean
  rows: number
}

export class MongoSession {
  readonly handle: SessionHandle
  private readonly reader: FrameReader
  private closed = false
  private working = false
  private up: UpstreamConnection | undefined
  private login: { exchange: ScramExchange; serverFinal?: string; skipEmpty: boolean } | undefined
  private loggedIn = false
  /** What the first hello said this connection is: one that logs in, or a driver's monitor. */
  private role: 'unknown' | 'login' | 'monitor' = 'unknown'
  private readonly cursors = new Map<string, OpenCursor>()
  private shape: UpstreamShape | undefined
  private readonly ownLsids = new Set<string>()
  private commandsBeforeLogin = 0

  constructor(
    private readonly socket: Socket,
    private readonly deps: SessionDeps,
  ) {
    // before login a client sends hello and its SCRAM messages, each well under 64 KiB
    this.reader = new FrameReader(() => (this.loggedIn ? deps.limits().maxMessageBytes : PRE_LOGIN_MESSAGE_BYTES))
    const tls = socket instanceof TLSSocket
    this.handle = deps.pipeline.openSession({ protocol: 'mongodb', clientAddress: `${deps.client.address}:${deps.client.port}`, tls })
    this.handle.busyWhen(() => this.working)
    // MongoDB has no message a server sends unasked: a session the gateway ends is closed.
    this.handle.onTerminate((t) => this.close(t.reason))
    socket.on('data', (chunk: Buffer) => {
      this.reader.push(chunk)
      void this.pump()
    })
    socket.on('error', () => this.close('client socket error'))
    socket.once('close', () => this.close('the client closed the connection'))
  }

  /** Ends the session (shutdown, a limit, the client gone). Idempotent. */
  close(reason: string): void {
    if (this.closed) return
    this.closed = true
    this.socket.destroy()
    if (this.role === 'monitor') {
      this.deps.monitors.count--
      const source = this.deps.client.address
      const n = (this.deps.monitors.bySource.get(source) ?? 1) - 1
      if (n <= 0) this.deps.monitors.bySource.delete(source)
      else this.deps.monitors.bySource.set(source, n)
    }
    for (const id of this.ownLsids) {
      const entry = this.deps.lsids.get(id)
      entry?.sessions.delete(this)
      if (entry && entry.sessions.size === 0) this.deps.lsids.delete(id)
    }
    // a command cut off mid-way leaves its answer on the wire: that connection cannot be reused
    if (this.working) this.up?.destroy()
    else this.up?.release()
    for (const c of this.cursors.values()) this.deps.pipeline.complete(c.request, { rows: c.rows, status: 'cursor open at session end' })
    this.cursors.clear()
    void this.handle.end(reason)
  }

  private async pump(): Promise<void> {
    if (this.working || this.closed) return
    this.working = true
    this.socket.pause()
    try {
      for (;;) {
        let frame: Frame | undefined
        try {
          frame = this.reader.next()
        } catch (err) {
          if (!(err instanceof WireError)) throw err
          await this.fatal('mongo.malformed', err.message)
          return
        }
        if (!frame || this.closed) break
        this.handle.touch()
        await this.handleFrame(frame)
        if (this.closed) return
        if (this.socket.writableNeedDrain) await new Promise<void>((resolve) => this.socket.once('drain', resolve).once('close', resolve))
      }
    } catch (err) {
      this.deps.logger.error({ session: this.handle.info.id, err: String(err) }, 'mongodb session failed')
      this.close('internal gateway error')
      return
    } finally {
      this.working = false
    }
    if (!this.closed) this.socket.resume()
  }

  /** A message after which the connection cannot continue: recorded, then closed. */
  private async fatal(event: string, reason: string): Promise<void> {
    await this.deps.pipeline.protocolEvent(this.handle.info, { event, reason })
    this.close(reason)
  }

  private async handleFrame(frame: Frame): Promise<void> {
    const maxDepth = this.deps.limits().maxDepth
    if (frame.opCode === OP.MSG) {
      const msg = readOpMsg(frame.body, maxDepth)
      if ('problem' in msg) return this.malformed(frame, msg.problem)
      let doc: Document
      try {
        doc = BSON.deserialize(msg.body, DECODE)
        for (const [id, docs] of msg.sequences) {
          if (Object.prototype.hasOwnProperty.call(doc, id)) return this.malformed(frame, `field "${id}" is both in the body and a document sequence`)
          Object.defineProperty(doc, id, { value: docs.map((d) => BSON.deserialize(d, DECODE)), enumerable: true, writable: true, configurable: true })
        }
        if (msg.dbRef) plainDbRefs(doc)
      } catch (err) {
        return this.malformed(frame, `invalid BSON: ${(err as Error).message}`)
      }
      return this.command(frame, doc, (msg.flags & MSG_FLAGS.moreToCome) !== 0)
    }
    if (frame.opCode === OP.QUERY) return this.legacyQuery(frame, maxDepth)
    if (frame.opCode === OP.COMPRESSED) return this.fatal('mongo.compressed', 'OP_COMPRESSED: the gateway offers no compressors and reads commands only uncompressed; connect without compressors')
    return this.fatal('mongo.opcode', `${OP_NAMES[frame.opCode] ?? `opcode ${frame.opCode}`} is not supported (the gateway speaks OP_MSG)`)
  }

  /** A message whose framing was sound but whose content cannot be judged: answered, recorded, the connection stays. */
  private async malformed(frame: Frame, problem: string): Promise<void> {
    await this.deps.pipeline.protocolEvent(this.handle.info, { event: 'mongo.malformed', reason: problem })
    this.reply(frame, mongoError(problem.startsWith('invalid BSON') ? 'InvalidBSON' : 'FailedToParse', `gatehouse: ${problem}`))
  }

  /** The legacy OP_QUERY: only the handshake (`hello`/`isMaster` on `*.$cmd`), as servers since 5.1. */
  private async legacyQuery(frame: Frame, maxDepth: number): Promise<void> {
    const q = readOpQuery(frame.body, maxDepth)
    if ('problem' in q) return this.fatal('mongo.malformed', q.problem)
    let doc: Document
    try {
      doc = BSON.deserialize(q.query, DECODE)
    } catch (err) {
      return this.fatal('mongo.malformed', `invalid BSON: ${(err as Error).message}`)
    }
    if (doc.$query !== undefined && typeof doc.$query === 'object') doc = doc.$query as Document
    const name = commandName(doc)
    if (q.collection.endsWith('.$cmd') && name === 'hello') {
      const answer = await this.hello(doc, Object.keys(doc)[0] !== 'hello')
      this.write(encodeOpReply(frame.requestId, BSON.serialize(answer)))
      return
    }
    void this.deps.pipeline.protocolEvent(this.handle.info, { event: 'mongo.op-query', reason: `OP_QUERY ${name || q.collection} refused` })
    this.write(encodeOpReply(frame.requestId, BSON.serialize(mongoError('UnsupportedOpQueryCommand', `gatehouse: unsupported OP_QUERY command: ${name.slice(0, 100)}; the gateway speaks OP_MSG`))))
  }

  private reply(frame: Frame, doc: Document | Uint8Array): void {
    this.write(encodeOpMsg(frame.requestId, doc instanceof Uint8Array ? doc : BSON.serialize(doc)))
  }

  private write(parts: readonly Buffer[]): void {
    if (this.closed) return
    this.socket.cork()
    for (const p of parts) this.socket.write(p)
    this.socket.uncork()
  }

  private async command(frame: Frame, doc: Document, moreToCome: boolean): Promise<void> {
    const name = commandName(doc)
    const db = doc.$db
    if (typeof db !== 'string' || db === '') return this.malformed(frame, 'OP_MSG requests require a $db argument')
    if (OWN.has(name)) {
      if (moreToCome) return this.fatal('mongo.more-to-come', `${name} cannot be sent unacknowledged`)
      return this.reply(frame, await this.own(name, doc, Object.keys(doc)[0] !== name))
    }
    if (this.role === 'unknown') this.role = 'login'
    if (!this.loggedIn || !this.up) {
      // recorded once per connection; a connection that keeps trying (a monitor connection has no
      // login timeout) is closed rather than allowed to fill the audit
      this.commandsBeforeLogin++
      if (this.commandsBeforeLogin > MAX_COMMANDS_BEFORE_LOGIN) return this.fatal('auth.missing', `more than ${MAX_COMMANDS_BEFORE_LOGIN} commands before login`)
      if (this.commandsBeforeLogin === 1) void this.deps.pipeline.protocolEvent(this.handle.info, { event: 'auth.missing', reason: `${name.slice(0, 100)} before login` })
      if (moreToCome) return this.close('unacknowledged command before login')
      return this.reply(frame, mongoError('Unauthorized', `gatehouse: command ${name.slice(0, 100)} requires authentication (log in with SCRAM-SHA-256: a gateway identity and its token)`))
    }
    if (name === 'getMore') return this.getMore(frame, doc, db)
    if (name === 'killCursors') return this.killCursors(frame, doc, db)
    await this.judgeAndForward(frame, doc, db, name, moreToCome)
  }

  private requestFor(doc: Document, db: string): GatewayRequest {
    const facts = analyseCommand(doc, db)
    return this.deps.pipeline.request(this.handle.info, { action: 'mongo.command', target: facts.collection === undefined ? db : `${db}.${facts.collection}`, text: textOf(doc), attrs: { mongo: facts } })
  }

  /** Why this command may not use its lsid (another gateway session's), or undefined. */
  private lsidRefusal(doc: Document): string | undefined {
    const lsid = doc.lsid as Document | undefined
    if (lsid === undefined) return undefined
    const id = lsid !== null && typeof lsid === 'object' ? lsid.id : undefined
    if (!(id instanceof Binary) || Object.keys(lsid).length !== 1) return 'lsid must be { id: UUID }'
    const key = Buffer.from(id.buffer).toString('hex')
    if (this.ownLsids.has(key)) return undefined
    const identity = this.handle.info.principal?.id ?? ''
    const entry = this.deps.lsids.get(key)
    if (entry !== undefined && entry.identity !== identity) return 'this client session (lsid) is in use by another identity'
    if (this.ownLsids.size >= MAX_LSIDS) return `this connection has used ${MAX_LSIDS} client sessions (lsid)`
    this.ownLsids.add(key)
    if (entry) entry.sessions.add(this)
    else this.deps.lsids.set(key, { identity, sessions: new Set([this]) })
    return undefined
  }

  private async judgeAndForward(frame: Frame, doc: Document, db: string, name: string, moreToCome: boolean): Promise<void> {
    const request = this.requestFor(doc, db)
    const foreign = this.lsidRefusal(doc)
    if (foreign !== undefined) {
      const err = await this.deps.pipeline.refuse(request, { rule: 'gatehouse/foreign-session', reason: foreign })
      return this.refused(frame, err, moreToCome)
    }
    const limits = this.deps.limits()
    if (opensCursor(name) && this.cursors.size >= limits.maxCursors) {
      const reason = `this session has ${limits.maxCursors} cursors open (limits.mongodb.maxCursors): exhaust or kill some first`
      const err = await this.deps.pipeline.refuse(request, { rule: 'gatehouse/limit', reason, code: 'GH_ERR_LIMIT_SESSIONS' })
      void this.deps.pipeline.limitReached(this.handle.info, 'mongodb.cursors', reason, { recorded: true })
      return this.refused(frame, err, moreToCome)
    }
    const admission = await this.deps.pipeline.admit(request)
    if (!admission.admitted) return this.refused(frame, admission.error, moreToCome)
    const maskPaths = maskPathsOf(admission.decision)
    const masks = maskPaths !== undefined
    if (maskPaths) {
      const why = maskRefusal(doc, request.attrs.mongo as MongoFacts, maskPaths)
      if (why !== undefined) {
        // allowed with a mask the gateway cannot keep for this command: refused before it runs
        const message = `gatehouse: ${why} (rule ${admission.decision.rule ?? '?'} masks ${maskPaths.map((m) => m.text).join(', ')})`
        this.deps.pipeline.complete(request, { error: { code: 'GH_ERR_POLICY_DENIED', message } })
        if (moreToCome) return this.close(message)
        return this.reply(frame, mongoError('Unauthorized', message))
      }
    }
    const answer = await this.forward(request, db, doc, moreToCome)
    if (!answer) return
    if (moreToCome) {
      this.deps.pipeline.complete(request, { status: 'unacknowledged' })
      return
    }
    const reply = BSON.deserialize(answer.bytes, DECODE)
    // under a mask an error could quote a masked value (a failed conversion, a duplicate key): withheld
    if (masks && withholdErrors(reply)) {
      this.deps.pipeline.complete(request, answer.ok && trueValue(reply.ok) ? writeOutcome(reply) : { error: errorOf(reply) })
      return this.reply(frame, reply)
    }
    if (!answer.ok || !trueValue(reply.ok)) {
      this.deps.pipeline.complete(request, { error: errorOf(reply) })
      return this.reply(frame, answer.bytes)
    }
    const cursor = reply.cursor as Document | undefined
    const batch = cursor && Array.isArray(cursor.firstBatch) ? (cursor.firstBatch as Document[]) : undefined
    if (cursor && batch) {
      if (masks) plainDbRefs(batch)
      for (const d of batch) this.deps.pipeline.transform(request, d)
      const id = cursor.id
      if (id instanceof Long && !id.isZero()) this.cursors.set(id.toString(), { request, ns: String(cursor.ns ?? ''), masks, rows: batch.length })
      else this.deps.pipeline.complete(request, { rows: batch.length, status: 'ok' })
      return this.reply(frame, masks ? reply : answer.bytes)
    }
    this.deps.pipeline.complete(request, writeOutcome(reply))
    this.reply(frame, answer.bytes)
  }

  /** Sends a judged command upstream; undefined when the connection failed (the session is closed). */
  private async forward(request: GatewayRequest, db: string, doc: Document, moreToCome: boolean): Promise<{ ok: boolean; bytes: Uint8Array } | undefined> {
    const up = this.up as UpstreamConnection
    try {
      return await up.command(db, doc, moreToCome)
    } catch (err) {
      const message = (err as Error).message
      this.deps.pipeline.complete(request, { error: { code: 'GH_ERR_UPSTREAM_UNAVAILABLE', message: 'the upstream connection failed' } })
      this.deps.logger.warn({ session: this.handle.info.id, err: message }, 'upstream connection failed')
      up.destroy()
      this.close('upstream connection failed')
      return undefined
    }
  }

  private refused(frame: Frame, err: GatewayError, moreToCome: boolean): void {
    // an unacknowledged command cannot be answered: the connection closes so the client notices
    if (moreToCome) return this.close(`unacknowledged command refused: ${err.clientMessage}`)
    this.reply(frame, refusalError(err))
  }

  /** A cursor of this session named by a getMore or killCursors, or why it is not one. */
  private ownCursor(id: unknown, db: string, collection: unknown): { key: string; cursor: OpenCursor } | { reason: string } {
    if (!(id instanceof Long)) return { reason: 'a cursor id is a 64-bit integer' }
    const key = id.toString()
    const cursor = this.cursors.get(key)
    if (!cursor) return { reason: `cursor ${key} was not opened by this session` }
    const ns = `${db}.${String(collection)}`
    // listCollections and friends answer with "db.$cmd.listCollections" as the namespace
    if (cursor.ns !== ns) return { reason: `cursor ${key} belongs to ${cursor.ns}, not ${ns}` }
    return { key, cursor }
  }

  private async refuseCursor(frame: Frame, doc: Document, db: string, reason: string): Promise<void> {
    const request = this.requestFor(doc, db)
    const err = await this.deps.pipeline.refuse(request, { rule: 'gatehouse/foreign-cursor', reason })
    this.reply(frame, refusalError(err))
  }

  private async getMore(frame: Frame, doc: Document, db: string): Promise<void> {
    const own = this.ownCursor(doc.getMore, db, doc.collection)
    if ('reason' in own) return this.refuseCursor(frame, doc, db, own.reason)
    const { key, cursor } = own
    const answer = await this.forward(cursor.request, db, doc, false)
    if (!answer) return
    const reply = BSON.deserialize(answer.bytes, DECODE)
    if (cursor.masks && withholdErrors(reply)) {
      this.cursors.delete(key)
      this.deps.pipeline.complete(cursor.request, { rows: cursor.rows, error: errorOf(reply) })
      return this.reply(frame, reply)
    }
    const c = reply.cursor as Document | undefined
    const batch = answer.ok && trueValue(reply.ok) && c && Array.isArray(c.nextBatch) ? (c.nextBatch as Document[]) : undefined
    if (!batch || !c) {
      this.cursors.delete(key)
      this.deps.pipeline.complete(cursor.request, { rows: cursor.rows, error: errorOf(reply) })
      return this.reply(frame, answer.bytes)
    }
    if (cursor.masks) plainDbRefs(batch)
    for (const d of batch) this.deps.pipeline.transform(cursor.request, d)
    cursor.rows += batch.length
    if (!(c.id instanceof Long) || c.id.isZero()) {
      this.cursors.delete(key)
      this.deps.pipeline.complete(cursor.request, { rows: cursor.rows, status: 'ok' })
    }
    this.reply(frame, cursor.masks ? reply : answer.bytes)
  }

  private async killCursors(frame: Frame, doc: Document, db: string): Promise<void> {
    const ids = Array.isArray(doc.cursors) ? (doc.cursors as unknown[]) : []
    const owned: string[] = []
    for (const id of ids) {
      const own = this.ownCursor(id, db, doc.killCursors)
      if ('reason' in own) return this.refuseCursor(frame, doc, db, own.reason)
      owned.push(own.key)
    }
    if (owned.length === 0) return this.refuseCursor(frame, doc, db, 'killCursors names no cursor')
    const first = this.cursors.get(owned[0] as string) as OpenCursor
    const answer = await this.forward(first.request, db, doc, false)
    if (!answer) return
    const reply = BSON.deserialize(answer.bytes, DECODE)
    const gone = [...(Array.isArray(reply.cursorsKilled) ? reply.cursorsKilled : []), ...(Array.isArray(reply.cursorsNotFound) ? reply.cursorsNotFound : [])] as unknown[]
    for (const id of gone) {
      const key = String(id)
      const c = this.cursors.get(key)
      if (!c) continue
      this.cursors.delete(key)
      this.deps.pipeline.complete(c.request, { rows: c.rows, status: 'killed' })
    }
    this.reply(frame, answer.bytes)
  }

  /** hello, ping and the login conversation, answered by the gateway. */
  private async own(name: string, doc: Document, legacyName: boolean): Promise<Document> {
    switch (name) {
      case 'hello':
        return this.hello(doc, legacyName)
      case 'ping':
        return { ok: 1 }
      case 'saslStart':
        return this.saslStart(doc)
      case 'saslContinue':
        return this.saslContinue(doc)
      case 'connectionStatus': {
        // the caller's identity, not the gateway's user on the upstream
        const principal = this.handle.info.principal
        return { authInfo: { authenticatedUsers: principal ? [{ user: principal.id, db: 'admin' }] : [], authenticatedUserRoles: [] }, ok: 1 }
      }
      default:
        return mongoError('AuthenticationFailed', `gatehouse: ${name} is not supported: log in with SCRAM-SHA-256 (a gateway identity and its token)`)
    }
  }

  /**
   * The gateway's own hello: the upstream's limits and wire versions, presented as the upstream
   * is (a standalone, a replica set whose one member is the gateway, or a mongos). No compressors
   * are offered, so clients send commands uncompressed.
   */
  private async hello(doc: Document, legacyName: boolean): Promise<Document> {
    if (this.role === 'unknown') {
      const logsIn = doc.speculativeAuthenticate !== undefined || doc.saslSupportedMechs !== undefined
      if (logsIn) this.role = 'login'
      else this.becomeMonitor()
      if (this.closed) return { ok: 0 }
    }
    try {
      this.shape ??= await this.deps.upstream.shape()
    } catch (err) {
      return mongoError('HostUnreachable', `gatehouse: ${isGatewayError(err) ? err.clientMessage : 'the upstream is unavailable'}`)
    }
    const s = this.shape
    const limits = this.deps.limits()
    const me = this.deps.advertise ?? this.deps.client.local
    const answer: Document = {
      [legacyName ? 'ismaster' : 'isWritablePrimary']: true,
      helloOk: true,
      ...(s.kind === 'replicaset' ? { hosts: [me], setName: s.setName, ...(s.setVersion !== undefined ? { setVersion: s.setVersion } : {}), ...(s.electionId !== undefined ? { electionId: s.electionId } : {}), primary: me, me, secondary: false } : {}),
      ...(s.kind === 'sharded' ? { msg: 'isdbgrid' } : {}),
      maxBsonObjectSize: new Int32(Math.min(s.maxBsonObjectSize, limits.maxMessageBytes)),
      maxMessageSizeBytes: new Int32(Math.min(s.maxMessageSizeBytes, limits.maxMessageBytes)),
      maxWriteBatchSize: new Int32(s.maxWriteBatchSize),
      localTime: new Date(),
      ...(s.logicalSessionTimeoutMinutes !== undefined ? { logicalSessionTimeoutMinutes: new Int32(s.logicalSessionTimeoutMinutes) } : {}),
      connectionId: new Int32(this.deps.connectionId),
      minWireVersion: new Int32(s.minWireVersion),
      maxWireVersion: new Int32(s.maxWireVersion),
      readOnly: false,
    }
    if (doc.saslSupportedMechs !== undefined) answer.saslSupportedMechs = [SCRAM_SHA_256]
    const spec = doc.speculativeAuthenticate as Document | undefined
    if (spec && typeof spec === 'object' && !this.loggedIn && spec.mechanism === SCRAM_SHA_256) {
      // the first SCRAM step rides on hello; a failure here leaves the client to log in the long way
      const first = await this.saslStart(spec)
      if (first.ok === 1) {
        delete first.ok
        answer.speculativeAuthenticate = first
      }
    }
    answer.ok = 1
    return answer
  }

  /**
   * A connection whose first hello shows it will not log in: a driver's server monitor, which asks
   * hello every few seconds for as long as the client runs. It stops counting as a login in
   * progress (its login would never come, and closing it would make the driver drop its pool),
   * and counts against limits.mongodb.monitorConnections instead; it can run nothing but
   * hello and ping until it logs in.
   */
  private becomeMonitor(): void {
    const { monitorConnections: max, monitorConnectionsPerSource: perSource } = this.deps.limits()
    const source = this.deps.client.address
    const fromSource = this.deps.monitors.bySource.get(source) ?? 0
    if (this.deps.monitors.count >= max || fromSource >= perSource) {
      const reason = fromSource >= perSource ? `${perSource} monitoring connections from ${source} are open on this listener (limits.mongodb.monitorConnectionsPerSource)` : `${max} monitoring connections are open on this listener (limits.mongodb.monitorConnections)`
      void this.deps.pipeline.limitReached(this.handle.info, fromSource >= perSource ? 'mongodb.monitor-connections-per-source' : 'mongodb.monitor-connections', reason)
      this.close(reason)
      return
    }
    this.role = 'monitor'
    this.deps.monitors.count++
    this.deps.monitors.bySource.set(source, fromSource + 1)
    this.deps.slot.authenticated()
  }

  /** The first SCRAM step (the authentication database, admin or another, is not used: identities are the gateway's). */
  private async saslStart(doc: Document): Promise<Document> {
    if (this.loggedIn) {
      const reason = 'this connection is logged in already; open a new connection to log in as another identity'
      void this.deps.pipeline.protocolEvent(this.handle.info, { event: 'auth.refused', reason })
      return mongoError('AuthenticationFailed', `gatehouse: ${reason}`)
    }
    if (doc.mechanism !== SCRAM_SHA_256) return mongoError('MechanismUnavailable', `gatehouse: mechanism ${String(doc.mechanism).slice(0, 40)} is not supported: use SCRAM-SHA-256 (authMechanism=SCRAM-SHA-256) with a gateway identity and its token`)
    const payload = doc.payload
    if (!(payload instanceof Binary)) return mongoError('BadValue', 'gatehouse: saslStart payload must be binary')
    const clientFirst = Buffer.from(payload.buffer).toString('utf8')
    const m = /^[^,]*,[^,]*,n=([^,]*),/.exec(clientFirst)
    const user = m ? (m[1] as string).replace(/=2C/g, ',').replace(/=3D/g, '=') : ''
    try {
      const exchange = this.deps.pipeline.scram(this.handle.info, user)
      const serverFirst = exchange.start(clientFirst)
      const options = doc.options as Document | undefined
      this.login = { exchange, skipEmpty: options !== undefined && trueValue(options.skipEmptyExchange) }
      return { conversationId: new Int32(1), done: false, payload: new Binary(Buffer.from(serverFirst, 'utf8')), ok: 1 }
    } catch (err) {
      return mongoError('AuthenticationFailed', `gatehouse: ${isGatewayError(err) ? err.clientMessage : 'authentication failed'}`)
    }
  }

  private async saslContinue(doc: Document): Promise<Document> {
    const login = this.login
    if (!login) return mongoError('ProtocolError', 'gatehouse: no SASL conversation in progress')
    if (login.serverFinal !== undefined) {
      // the empty last step of clients that do not skip it
      this.login = undefined
      return { conversationId: new Int32(1), done: true, payload: new Binary(Buffer.alloc(0)), ok: 1 }
    }
    const payload = doc.payload
    if (!(payload instanceof Binary)) return mongoError('BadValue', 'gatehouse: saslContinue payload must be binary')
    let serverFinal: string
    try {
      ;({ serverFinal } = await login.exchange.finish(Buffer.from(payload.buffer).toString('utf8')))
    } catch (err) {
      this.login = undefined
      // core has recorded the failure; a connection out of attempts is closed after the answer
      if (this.deps.pipeline.loginAttemptsLeft(this.handle.info) <= 0) setImmediate(() => this.close('too many failed logins on this connection'))
      const e = isGatewayError(err) ? err : new GatewayError('GH_ERR_AUTH_FAILED')
      return mongoError('AuthenticationFailed', e.code === 'GH_ERR_AUTH_FAILED' ? 'Authentication failed.' : `gatehouse: ${e.clientMessage}`)
    }
    try {
      this.up = await this.deps.upstream.open()
    } catch (err) {
      const e = isGatewayError(err) ? err : new GatewayError('GH_ERR_UPSTREAM_UNAVAILABLE')
      this.deps.logger.warn({ session: this.handle.info.id, code: e.code, err: String((e.opts.cause as Error | undefined)?.message ?? e.message) }, 'upstream connection failed')
      setImmediate(() => this.close('upstream unavailable'))
      return mongoError('HostUnreachable', `gatehouse: the upstream of connection "${this.deps.connection}" is unavailable`)
    }
    if (this.closed) {
      this.up.release()
      return { ok: 0 }
    }
    this.loggedIn = true
    if (this.role !== 'monitor') this.deps.slot.authenticated()
    if (login.skipEmpty) this.login = undefined
    else login.serverFinal = serverFinal
    return { conversationId: new Int32(1), done: login.skipEmpty, payload: new Binary(Buffer.from(serverFinal, 'utf8')), ok: 1 }
  }
}

/** The command as the audit shows it: relaxed extended JSON, without the session plumbing. */
function textOf(doc: Document): string {
  const shown: Document = {}
  for (const k of Object.keys(doc)) if (k !== 'lsid' && k !== '$clusterTime' && k !== '$db') shown[k] = k === 'pwd' ? 'REDACTED' : doc[k]
  let text: string
  try {
    text = BSON.EJSON.stringify(shown, { relaxed: true })
  } catch {
    text = `{"${commandName(doc)}": …}`
  }
  return text.length > MAX_TEXT ? `${text.slice(0, MAX_TEXT)}…` : text
}

const WITHHELD = 'gatehouse: the error is withheld: the command reads masked fields, and the message could quote one'

/** Replaces the messages of a reply's error and write errors (under a mask); whether there were any. */
function withholdErrors(reply: Document): boolean {
  let any = false
  if (!trueValue(reply.ok) && reply.errmsg !== undefined) {
    reply.errmsg = WITHHELD
    any = true
  }
  for (const key of ['writeErrors', 'writeConcernError'] as const) {
    const v = reply[key] as unknown
    for (const e of Array.isArray(v) ? v : v && typeof v === 'object' ? [v] : []) {
      if (e && typeof e === 'object') {
        ;(e as Document).errmsg = WITHHELD
        delete (e as Document).errInfo
        delete (e as Document).keyValue
        any = true
      }
    }
  }
  delete reply.keyValue
  return any
}

function errorOf(reply: Document): { code: string; message: string } {
  return { code: String(reply.codeName ?? reply.code ?? 'error'), message: String(reply.errmsg ?? 'command failed').slice(0, 500) }
}

/** A write's outcome: documents affected, and its first write error. */
function writeOutcome(reply: Document): { rows?: number; status: string; error?: { code: string; message: string } } {
  const n = reply.n
  const rows = n === undefined ? undefined : Number(typeof n === 'object' && n !== null && 'value' in n ? (n as { value: unknown }).value : n)
  const writeErrors = Array.isArray(reply.writeErrors) ? (reply.writeErrors as Document[]) : []
  const first = writeErrors[0] ?? (reply.writeConcernError as Document | undefined)
  return { ...(rows === undefined || Number.isNaN(rows) ? {} : { rows }), status: 'ok', ...(first ? { error: errorOf(first) } : {}) }
}
