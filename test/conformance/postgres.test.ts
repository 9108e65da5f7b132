/**
 * The conformance kit (@gatehouse/testkit) run against the built-in PostgreSQL adapter, in front of
 * the machine's PostgreSQL (a throwaway database per upstream), through node `pg` on the extended
 * query protocol. Markers are rows: the policy denies writes to `ck_denied` and holds writes to `ck_held`; the probe counts
 * the rows that really arrived.
 */
import pg from 'pg'
import { describeConformance, type ClientResult } from '@gatehouse/testkit'

const SERVER = { host: '127.0.0.1', port: 5432, user: 'postgres' }

describeConformance({
  name: 'postgres (node pg, real PostgreSQL 15)',
  adapter: 'postgres',
  rules: {
    denied: { actions: ['sql.query'], match: { 'sql.writes': ['ck_denied'] } },
    held: { actions: ['sql.query'], match: { 'sql.writes': ['ck_held'] } },
  },
  explainDenied: { sql: "INSERT INTO ck_denied VALUES ('sample')" },
  async startUpstream() {
    const database = `ck_${Math.random().toString(36).slice(2, 10)}`
    const admin = new pg.Client({ ...SERVER, database: 'postgres' })
    await admin.connect()
    await admin.query(`CREATE DATABASE ${database}`)
    const look = new pg.Client({ ...SERVER, database })
    await look.connect()
    await look.query('CREATE TABLE ck_allowed (m text); CREATE TABLE ck_denied (m text); CREATE TABLE ck_held (m text)')
    return {
      connection: { upstream: { ...SERVER, database, auth: 'trust' } },
      seen: async (marker) => {
        const r = await look.query<{ n: string }>('SELECT (SELECT count(*) FROM ck_allowed WHERE m = $1) + (SELECT count(*) FROM ck_denied WHERE m = $1) + (SELECT count(*) FROM ck_held WHERE m = $1) AS n', [marker])
        return Number(r.rows[0]?.n)
      },
      close: async () => {
        await look.end()
        await admin.query(`DROP DATABASE ${database} WITH (FORCE)`)
        await admin.end()
      },
    }
  },
  client: {
    async connect({ host, port, identity, token, connection }) {
      const c = new pg.Client({ host, port, user: identity, password: token, database: (connection.upstream as { database: string }).database })
      const closed = new Promise<void>((resolve) => c.on('end', () => resolve()))
      c.on('error', () => undefined)
      await c.connect()
      return {
        closed,
        send: async (kind, marker): Promise<ClientResult> => {
          try {
            // the extended protocol (Parse/Bind/Execute) as drivers use it; the marker is a literal
            // in the statement, since a statement denied at Parse is never bound to parameters
            await c.query({ text: `INSERT INTO ck_${kind} VALUES ('${marker}')`, queryMode: 'extended' })
            return { ok: true }
          } catch (err) {
            return { ok: false, error: (err as Error).message }
          }
        },
        close: () => c.end().catch(() => undefined),
      }
    },
  },
})
