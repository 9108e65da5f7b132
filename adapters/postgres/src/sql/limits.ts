/**
 * Limits on what the gateway parses. Parsing is synchronous (libpg-query is WebAssembly), so a
 * text that makes the parser slow would hold a thread other sessions need.
 */

/** Texts longer than this (in characters) are not analysed, so they are refused. */
export const MAX_ANALYSED_TEXT = 1024 * 1024

/**
 * Nested comments make the SQL and PL/pgSQL scanners quadratic (`/*` × 40 000 takes 16 s). Real
 * statements, and real function bodies, have a handful.
 */
export const MAX_COMMENT_OPENERS = 256

/** Why `text` is too costly to parse safely, if it is. Also applied to DO and function bodies after unescaping. */
export function tooCostly(text: string): string | undefined {
  if (text.length > MAX_ANALYSED_TEXT) return `the statement text is longer than ${MAX_ANALYSED_TEXT} characters, more than the gateway analyses`
  let openers = 0
  for (let i = text.indexOf('/*'); i >= 0; i = text.indexOf('/*', i + 2)) {
    if (++openers > MAX_COMMENT_OPENERS) return `the statement text opens more than ${MAX_COMMENT_OPENERS} comments, more than the gateway analyses`
  }
  return undefined
}
