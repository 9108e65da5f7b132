/**
 * The two state stores' SQL clients: PGlite in a directory (embedded: no server, one process)
 * and a node-postgres pool (shared by replicas). Both are loaded only when a store is opened.
 */
import { mkdirSync } from 'node:fs'
import { GatewayError } from '../errors.js'
import type { SqlClient } from './sql.js'

/** PGlite, on disk in `dir` (created if missing). One process at a time may open it. */
export async function openEmbedded(dir: string): Promise<SqlClient> {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const { PGlite } = await import('@electric-sql/pglite')
  let db: InstanceType<typeof PGlite>
  try {
    db = await PGlite.create(dir)
  } catch (err) {
    throw new GatewayError('GH_ERR_STATE_UNAVAILABLE', `could not open the embedded state store in ${dir}: ${(err as Error).message}`, { cause: err })
  }
  return {
    async query<T>(text: string, params?: readonly unknown[]) {
      return (await db.query<T>(text, params as unknown[] | undefined)).rows
    },
    transaction<R>(fn: (tx: Pick<SqlClient, 'query'>) => Promise<R>) {
      return db.transaction((tx) => fn({ query: async <T>(text: string, params?: readonly unknown[]) => (await tx.query<T>(text, params as unknown[] | undefined)).rows }))
    },
    async close() {
      await db.close()
    },
  }
}

/** A PostgreSQL pool on `url` (a libpq connection URI). */
export async function openPostgres(url: string, options: { max?: number } = {}): Promise<SqlClient> {
  const { default: pg } = await import('pg')
  const pool = new pg.Pool({ connectionString: url, max: options.max ?? 5, application_name: 'gatehouse' })
  // An idle client losing its server must not crash the gateway: the next query reconnects.
  pool.on('error', () => undefined)
  try {
    const c = await pool.connect()
    c.release()
  } catch (err) {
    await pool.end().catch(() => undefined)
    // the URL may hold a password: name the host only
    throw new GatewayError('GH_ERR_STATE_UNAVAILABLE', `could not connect to the PostgreSQL state store at ${hostOf(url)}: ${(err as Error).message}`, { cause: err })
  }
  return {
    async query<T>(text: string, params?: readonly unknown[]) {
      return (await pool.query(text, params as unknown[] | undefined)).rows as T[]
    },
    async transaction<R>(fn: (tx: Pick<SqlClient, 'query'>) => Promise<R>) {
      const c = await pool.connect()
      try {
        await c.query('BEGIN')
        const r = await fn({ query: async <T>(text: string, params?: readonly unknown[]) => (await c.query(text, params as unknown[] | undefined)).rows as T[] })
        await c.query('COMMIT')
        return r
      } catch (err) {
        await c.query('ROLLBACK').catch(() => undefined)
        throw err
      } finally {
        c.release()
      }
    },
    async close() {
      await pool.end()
    },
  }
}

/** host:port/database of a connection URI, without user or password. */
export function hostOf(url: string): string {
  try {
    const u = new URL(url)
    return `${u.hostname}${u.port ? `:${u.port}` : ''}${u.pathname}`
  } catch {
    return '(an unreadable URL)'
  }
}
