/**
 * Function OIDs to names, for the FunctionCall message (the fast-path interface libpq, psycopg2,
 * pgjdbc and pg_dump/pg_restore use for large objects): it names its function only by OID, so the
 * gateway looks the OID up in the upstream's catalog, on a connection of its own, and judges the
 * call as the SQL call of that function. Names of built-in functions are remembered; a user's
 * function is looked up on every call (it can be renamed under the same OID).
 */
export interface FunctionName {
  readonly schema: string
  readonly name: string
}

const MAX_KNOWN = 10_000
/** PostgreSQL's first OID for objects users create: everything below is built in. */
const FIRST_NORMAL_OBJECT_ID = 16384

export class FunctionOids {
  private readonly known = new Map<number, FunctionName>()
  private readonly looking = new Map<number, Promise<FunctionName | undefined>>()

  constructor(private readonly lookup: (sql: string) => Promise<(string | null)[][]>) {}

  /** The function with this OID, or undefined when the upstream has none. Rejects when the lookup fails. */
  resolve(oid: number): Promise<FunctionName | undefined> {
    const hit = this.known.get(oid)
    if (hit) return Promise.resolve(hit)
    let pending = this.looking.get(oid)
    if (!pending) {
      // `oid` is an unsigned 32-bit integer from the message: safe to put in the text as is.
      pending = this.lookup(`SELECT n.nspname, p.proname FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE p.oid = ${oid >>> 0}`)
        .then((rows) => {
          const [schema, name] = rows[0] ?? []
          if (typeof schema !== 'string' || typeof name !== 'string') return undefined
          const found = { schema, name }
          // Built-in functions (below FirstNormalObjectId) keep their names; a user's function can
          // be renamed or moved under the same OID, so its name is looked up on every call.
          if (oid < FIRST_NORMAL_OBJECT_ID) {
            if (this.known.size >= MAX_KNOWN) this.known.delete(this.known.keys().next().value as number)
            this.known.set(oid, found)
          }
          return found
        })
        .finally(() => this.looking.delete(oid))
      this.looking.set(oid, pending)
    }
    return pending
  }
}

/** The call a FunctionCall makes, as SQL: what the gateway analyses and policy judges. */
export function callText(fn: FunctionName, args: number): string {
  const ident = (s: string) => `"${s.replace(/"/g, '""')}"`
  return `SELECT ${ident(fn.schema)}.${ident(fn.name)}(${Array.from({ length: args }, (_, i) => `$${i + 1}`).join(', ')})`
}
