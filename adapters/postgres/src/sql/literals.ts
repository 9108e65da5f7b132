/**
 * Text whose meaning depends on `standard_conforming_strings`.
 *
 * Why: the server lexes a plain string literal `'…'` differently with the setting on (a
 * backslash is an ordinary character) and off (a backslash escapes the next character, `\'`
 * included). The setting can change where the gateway cannot see it: a `set_config(…, true)`
 * inside an unsynced pipeline reverts before the server reports it, a function can carry
 * `SET standard_conforming_strings = off`. So `'a\'' ; DELETE FROM t; --'` is one literal to a
 * parser reading with the setting on and a SELECT followed by a DELETE to a server reading with
 * it off. The gateway does not guess which reading applies: a text reads the same under both
 * exactly when no plain literal contains a backslash (E'…', dollar-quoted strings, identifiers
 * and comments read the same under both, and U&'…' is an error when the setting is off), so a
 * text with such a literal is refused.
 */
import { scanSync } from 'libpg-query'

const BACKSLASH = 0x5c
const QUOTE = 0x27

/** Why `text` reads differently depending on standard_conforming_strings, or undefined when it does not. */
export function ambiguousLiteral(text: string): string | undefined {
  // The common case costs one search: no backslash, nothing to read two ways.
  if (!text.includes('\\')) return undefined
  let tokens: readonly { start: number; end: number; tokenName: string }[]
  try {
    tokens = scanSync(text).tokens
  } catch {
    // The scanner rejects it: so does the parser (the same lexer), which reports why.
    return undefined
  }
  const bytes = Buffer.from(text, 'utf8')
  for (const t of tokens) {
    // Token offsets are byte offsets. A plain literal's token starts with its quote (N'…' too:
    // the N is a token of its own); E'…' starts with E, dollar quotes with $.
    if (t.tokenName !== 'SCONST' || bytes[t.start] !== QUOTE) continue
    const i = bytes.indexOf(BACKSLASH, t.start)
    if (i >= 0 && i < t.end) return AMBIGUOUS
  }
  return undefined
}

const AMBIGUOUS =
  "a backslash inside a standard string literal ('…'): the server reads it differently when standard_conforming_strings is off, so the gateway cannot judge it; write E'…' with escaped backslashes or a dollar-quoted string"
