/**
 * The tripwire: does the command tag the server reported for a statement contradict the
 * statement the gateway judged? A statement judged as a SELECT cannot complete as `DELETE 5`
 * unless the gateway's model of the session drifted from the server's (a SQL-level prepared
 * statement replaced by server-side code, say). Defence in depth, not the guarantee: the
 * guarantee is the session model's (session-model.ts).
 *
 * Only tags that say data was read or changed are compared (SELECT, INSERT, UPDATE, DELETE,
 * MERGE, COPY, FETCH, MOVE): a contradiction there is what matters, and those tags are exact.
 */
import type { SqlFacts } from './facts.js'

/** Tag words that report reading or changing rows. */
const DATA_TAGS: ReadonlySet<string> = new Set(['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'MERGE', 'COPY', 'FETCH', 'MOVE'])

/** Judged statement type → the data tag words its completion may report. */
const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  SELECT: ['SELECT'],
  INSERT: ['INSERT'],
  UPDATE: ['UPDATE'],
  DELETE: ['DELETE'],
  MERGE: ['MERGE'],
  COPY: ['COPY'],
  FETCH: ['FETCH'],
  MOVE: ['MOVE'],
  // CREATE TABLE … AS and CREATE MATERIALIZED VIEW report `SELECT n` (or their own CREATE tag).
  CREATE: ['SELECT'],
}

/** Why `tag` contradicts `judged`, or undefined when it is consistent with it. */
export function tagContradicts(judged: SqlFacts, tag: string): string | undefined {
  const space = tag.indexOf(' ')
  const word = space < 0 ? tag : tag.slice(0, space)
  const statement = judged.statement
  const allowed = ALLOWED[statement]
  if (allowed) {
    // A data statement must report its own tag word (or, for CREATE, `SELECT n` or its own CREATE tag).
    if (allowed.includes(word) || (!DATA_TAGS.has(word) && statement === 'CREATE')) return undefined
    return `the statement was judged as ${statement} but the server completed it as "${tag}"`
  }
  if (DATA_TAGS.has(word)) return `the statement was judged as ${statement} but the server completed it as "${tag}"`
  return undefined
}
