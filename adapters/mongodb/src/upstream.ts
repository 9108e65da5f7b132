/**
 * The upstream side: one `MongoClient` per gateway connection holds the gateway's credential and
 * does what the driver does (server discovery and monitoring, TLS, authentication, pooling).
 * Each logged-in client session takes one of its pooled connections for its lifetime and sends
 * the commands it judged on it (driver-internals.ts says why below the public API).
 */
import { BSON, MongoClient, MongoServerError, type Document } from 'mongodb'
import { GatewayError } from '@gatehouse/core'
import { namespaceOf, RawResponse, selectPrimary, type DriverConnection, type DriverServer } from './driver-internals.js'
import type { UpstreamConfig } from './config.js'

/** How the gateway presents itself in hello: as the upstream is. */
export interface UpstreamShape {
  readonly kind: 'standalone' | 'replicaset' | 'sharded'
  readonly minWireVersion: number
  readonly maxWireVersion: number
  readonly logicalSessionTimeoutMinutes?: number
  readonly maxBsonObjectSize: number
  readonly maxMessageSizeBytes: number
  readonly maxWriteBatchSize: number
  readonly setName?: string
  readonly setVersion?: number
  readonly electionId?: unknown
}

export class Upstream {
  private readonly client: MongoClient
  private connecting: Promise<unknown> | undefined

  constructor(private readonly config: UpstreamConfig) {
    // Pool: one connection per logged-in session (the core's session limits bound them).
    this.client = new MongoClient(config.uri, { serverSelectionTimeoutMS: config.serverSelectionTimeoutMS, maxPoolSize: 0, appName: 'gatehouse', monitorCommands: false })
  }

  private async primary(): Promise<{ server: DriverServer; topologyType: string; timeoutContext: unknown }> {
    try {
      this.connecting ??= this.client.connect().catch((err: unknown) => {
        this.connecting = undefined
        throw err
      })
      await this.connecting
      return await selectPrimary(this.client, this.config.serverSelectionTimeoutMS)
    } catch (err) {
      const auth = (err as { name?: string }).name === 'MongoServerSelectionError' && /auth/i.test(String((err as Error).message))
      throw new GatewayError(auth ? 'GH_ERR_UPSTREAM_AUTH' : 'GH_ERR_UPSTREAM_UNAVAILABLE', auth ? 'the gateway could not log in to the upstream' : 'the upstream is unavailable', { cause: err })
    }
  }

  /** What the upstream is, from the driver's view of its primary. */
  async shape(): Promise<UpstreamShape> {
    const { server, topologyType } = await this.primary()
    const d = server.description as Document
    const kind = topologyType === 'Sharded' || d.type === 'Mongos' || topologyType === 'LoadBalanced' ? 'sharded' : topologyType.startsWith('ReplicaSet') ? 'replicaset' : 'standalone'
    return {
      kind,
      minWireVersion: Number(d.minWireVersion ?? 0),
      maxWireVersion: Number(d.maxWireVersion ?? 0),
      ...(typeof d.logicalSessionTimeoutMinutes === 'number' ? { logicalSessionTimeoutMinutes: d.logicalSessionTimeoutMinutes } : {}),
      maxBsonObjectSize: Number(d.maxBsonObjectSize ?? 16 * 1024 * 1024),
      maxMessageSizeBytes: Number(d.maxMessageSizeBytes ?? 48_000_000),
      maxWriteBatchSize: Number(d.maxWriteBatchSize ?? 100_000),
      ...(kind === 'replicaset' && typeof d.setName === 'string' ? { setName: d.setName, ...(d.setVersion != null ? { setVersion: Number(d.setVersion) } : {}), ...(d.electionId != null ? { electionId: d.electionId } : {}) } : {}),
    }
  }

  /** A connection to the primary for one session, logged in with the gateway's credential. */
  async open(): Promise<UpstreamConnection> {
    const { server, timeoutContext } = await this.primary()
    try {
      return new UpstreamConnection(server, await server.pool.checkOut({ timeoutContext }))
    } catch (err) {
      throw new GatewayError('GH_ERR_UPSTREAM_UNAVAILABLE', 'no connection to the upstream could be opened', { cause: err })
    }
  }

  async close(): Promise<void> {
    await this.client.close().catch(() => undefined)
  }
}

/** An answer from the upstream: the raw reply document, and whether it says ok. */
export interface UpstreamReply {
  readonly ok: boolean
  readonly bytes: Uint8Array
}

export class UpstreamConnection {
  private released = false

  constructor(
    private readonly server: DriverServer,
    private readonly conn: DriverConnection,
  ) {}

  get closed(): boolean {
    return this.released || this.conn.closed
  }

  /**
   * Sends `command` to database `db` as it is (the driver adds only `$db` and its cluster time).
   * A command error comes back as a reply with ok false; a network failure throws.
   */
  async command(db: string, command: Document, moreToCome: boolean): Promise<UpstreamReply> {
    try {
      const res = await this.conn.command(namespaceOf(db), command, moreToCome ? { moreToCome: true } : {}, RawResponse)
      return { ok: true, bytes: res.toBytes() }
    } catch (err) {
      if (err instanceof MongoServerError) return { ok: false, bytes: BSON.serialize(err.errorResponse as Document) }
      throw err
    }
  }

  /** Gives the connection back to the pool, or drops it when it broke. Idempotent. */
  release(): void {
    if (this.released) return
    this.released = true
    if (this.conn.closed) return
    this.server.pool.checkIn(this.conn)
  }

  /** Drops the connection (a network error, a command cut off mid-way). */
  destroy(): void {
    if (this.released) return
    this.released = true
    this.conn.destroy()
    this.server.pool.checkIn(this.conn)
  }
}
