/**
 * The state store named by the config (`state:`), opened on first use: a gateway that never
 * issues a token or holds a request pays nothing for it.
 */
import { resolve } from 'node:path'
import type { GatewayConfig } from '../config/schema.js'
import { openEmbedded, openPostgres } from './clients.js'
import { SqlStateStore } from './sql.js'
import type { StateStore } from './store.js'

export function stateStoreFor(config: Pick<GatewayConfig, 'state' | 'dataDir'>): StateStore {
  const state = config.state
  if (state.store === 'postgres') return new SqlStateStore('postgres', () => openPostgres(state.url, { max: state.poolSize }))
  const dir = resolve(config.dataDir, state.dir ?? 'state')
  return new SqlStateStore('embedded', () => openEmbedded(dir))
}

export { SqlStateStore, MIGRATIONS, migrate, type SqlClient } from './sql.js'
export { openEmbedded, openPostgres } from './clients.js'
export * from './store.js'
