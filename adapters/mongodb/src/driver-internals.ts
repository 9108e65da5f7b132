/**
 * The parts of the `mongodb` driver the gateway uses below its public API, in one place.
 *
 * Why below it: every public way to run a command (`db.command`, `runCommand`) goes through the
 * driver's own session handling, which writes the driver's `lsid` (and `txnNumber`) over the
 * client's. The client behind the gateway has its own sessions and transactions, so the gateway
 * sends its commands on a connection the driver's pool opened — the driver's connection code, its
 * authentication (SCRAM, X.509 …) and TLS — and leaves the session fields as the client wrote them.
 * The driver is pinned to a minor version (package.json) because of this.
 */
import { createRequire } from 'node:module'
import type { Document, MongoClient } from 'mongodb'

const require = createRequire(import.meta.url)

/** A driver connection, as far as the gateway uses it (lib/cmap/connection.js). */
export interface DriverConnection {
  command(ns: unknown, cmd: Document, options: Record<string, unknown>, responseType: unknown): Promise<DriverResponse>
  readonly closed: boolean
  destroy(): void
}

/** A raw server answer (lib/cmap/wire_protocol/responses.js, MongoDBResponse). */
export interface DriverResponse {
  toBytes(): Uint8Array
}

export interface DriverServer {
  readonly description: Document & { type: string; address: string }
  readonly pool: { checkOut(o: { timeoutContext: unknown }): Promise<DriverConnection>; checkIn(c: DriverConnection): void }
}

interface DriverTopology {
  selectServer(selector: unknown, options: { operationName: string; timeoutContext: unknown; deprioritizedServers?: unknown }): Promise<DriverServer>
  readonly description: { type: string }
}

const { MongoDBResponse } = require('mongodb/lib/cmap/wire_protocol/responses.js') as { MongoDBResponse: unknown }
const { MongoDBNamespace } = require('mongodb/lib/utils.js') as { MongoDBNamespace: new (db: string, coll?: string) => unknown }
const { TimeoutContext } = require('mongodb/lib/timeout.js') as { TimeoutContext: { create(o: Record<string, unknown>): unknown } }
const { readPreferenceServerSelector } = require('mongodb/lib/sdam/server_selection.js') as { readPreferenceServerSelector(rp: unknown): unknown }
const { ReadPreference } = require('mongodb') as typeof import('mongodb')
const { DeprioritizedServers } = require('mongodb/lib/sdam/server_selection.js') as { DeprioritizedServers?: new () => unknown }

export const RawResponse = MongoDBResponse
export const namespaceOf = (db: string): unknown => new MongoDBNamespace(db, '$cmd')

/** The primary (or the one server of a standalone or mongos), chosen by the driver's own server selection. */
export async function selectPrimary(client: MongoClient, timeoutMS: number): Promise<{ server: DriverServer; topologyType: string; timeoutContext: unknown }> {
  const topology = (client as unknown as { topology?: DriverTopology }).topology
  if (!topology) throw new Error('the upstream client is not connected')
  const timeoutContext = TimeoutContext.create({ serverSelectionTimeoutMS: timeoutMS, waitQueueTimeoutMS: timeoutMS })
  const server = await topology.selectServer(readPreferenceServerSelector(ReadPreference.primary), { operationName: 'gatehouse', timeoutContext, ...(DeprioritizedServers ? { deprioritizedServers: new DeprioritizedServers() } : {}) })
  return { server, topologyType: topology.description.type, timeoutContext }
}
