/**
 * A conservative SQL lexer that builds a cache key for the analysis cache: the text with every
 * plain numeric literal replaced by NUL (which no protocol-valid query text contains). Two texts
 * with the same key differ only inside numeric literals, which change no statement type, table,
 * function or command the analyser reports, so they share one analysis.
 *
 * The lexer follows PostgreSQL's scanner (standard_conforming_strings on, UTF-8) for the parts
 * that decide where code ends and literals begin: comments (nested), quoted identifiers, standard,
 * E'', B'', X'', N'' and U&'' strings, dollar quotes, parameters. Anything it is not sure about
 * (numbers with a trailing dot, exponents without digits, hex/underscore forms, a stray `$`,
 * unterminated literals) makes it give up, and the caller then keys by the exact text; a
 * disagreement with PostgreSQL can therefore cost a cache miss, never a wrong verdict.
 * The adapter refuses statements while the session runs with standard_conforming_strings off or
 * a non-UTF-8 client_encoding, the two settings under which this lexing would be wrong.
 */

export interface NormalizedSql {
  /** Cache key: the text with numeric literals replaced by "\0". */
  readonly key: string
  /** [start, end) character offsets of each replaced literal in the original text. */
  readonly spans: readonly number[]
}

const isIdentStart = (c: number) => (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c >= 128
const isIdentCont = (c: number) => isIdentStart(c) || (c >= 48 && c <= 57) || c === 36
const isDigit = (c: number) => c >= 48 && c <= 57
const QUOTE = 39
const DQUOTE = 34
const DOLLAR = 36

/** Returns the normalized key, or undefined when the text should be keyed as is. */
export function normalizeSql(text: string): NormalizedSql | undefined {
  const n = text.length
  let spans: number[] | undefined
  let i = 0
  while (i < n) {
    const c = text.charCodeAt(i)
    // whitespace
    if (c === 32 || (c >= 9 && c <= 13)) {
      i++
      continue
    }
    // -- comment
    if (c === 45 && text.charCodeAt(i + 1) === 45) {
      while (i < n && text.charCodeAt(i) !== 10 && text.charCodeAt(i) !== 13) i++
      continue
    }
    // /* nested comment */
    if (c === 47 && text.charCodeAt(i + 1) === 42) {
      let depth = 1
      i += 2
      while (i < n && depth > 0) {
        if (text.charCodeAt(i) === 47 && text.charCodeAt(i + 1) === 42) {
          depth++
          i += 2
        } else if (text.charCodeAt(i) === 42 && text.charCodeAt(i + 1) === 47) {
          depth--
          i += 2
        } else i++
      }
      if (depth > 0) return undefined
      continue
    }
    if (c === QUOTE) {
      const end = skipQuoted(text, i, QUOTE, false)
      if (end < 0) return undefined
      i = end
      continue
    }
    if (c === DQUOTE) {
      const end = skipQuoted(text, i, DQUOTE, false)
      if (end < 0) return undefined
      i = end
      continue
    }
    if (isIdentStart(c)) {
      const start = i
      i++
      // U&'…' / U&"…"
      if ((c === 85 || c === 117) && text.charCodeAt(i) === 38) {
        const q = text.charCodeAt(i + 1)
        if (q === QUOTE || q === DQUOTE) {
          const end = skipQuoted(text, i + 1, q, false)
          if (end < 0) return undefined
          i = end
          continue
        }
      }
      while (i < n && isIdentCont(text.charCodeAt(i))) i++
      if (i - start === 1 && text.charCodeAt(i) === QUOTE) {
        const p = c | 32
        // E'…' has backslash escapes; B'…', X'…', N'…' are plain.
        if (p === 101 || p === 98 || p === 120 || p === 110) {
          const end = skipQuoted(text, i, QUOTE, p === 101)
          if (end < 0) return undefined
          i = end
        }
      }
      continue
    }
    if (c === DOLLAR) {
      // $1 parameter
      if (isDigit(text.charCodeAt(i + 1))) {
        i++
        while (i < n && isDigit(text.charCodeAt(i))) i++
        if (i < n && isIdentCont(text.charCodeAt(i))) return undefined
        continue
      }
      // $tag$ … $tag$
      let j = i + 1
      if (j < n && isIdentStart(text.charCodeAt(j)) && text.charCodeAt(j) !== DOLLAR) {
        j++
        while (j < n && isIdentCont(text.charCodeAt(j)) && text.charCodeAt(j) !== DOLLAR) j++
      }
      if (text.charCodeAt(j) !== DOLLAR) return undefined
      const tag = text.slice(i, j + 1)
      const close = text.indexOf(tag, j + 1)
      if (close < 0) return undefined
      i = close + tag.length
      continue
    }
    if (isDigit(c) || (c === 46 && isDigit(text.charCodeAt(i + 1)))) {
      // Only [0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)? followed by a non-identifier, non-dot character.
      if (c === 46) return undefined
      const start = i
      while (i < n && isDigit(text.charCodeAt(i))) i++
      if (text.charCodeAt(i) === 46) {
        if (!isDigit(text.charCodeAt(i + 1))) return undefined
        i++
        while (i < n && isDigit(text.charCodeAt(i))) i++
      }
      const e = text.charCodeAt(i)
      if (e === 101 || e === 69) {
        let j = i + 1
        if (text.charCodeAt(j) === 43 || text.charCodeAt(j) === 45) j++
        if (!isDigit(text.charCodeAt(j))) return undefined
        while (j < n && isDigit(text.charCodeAt(j))) j++
        i = j
      }
      const next = text.charCodeAt(i)
      if (i < n && (isIdentCont(next) || next === 46)) return undefined
      ;(spans ??= []).push(start, i)
      continue
    }
    i++
  }
  if (!spans) return { key: text, spans: [] }
  let key = ''
  let last = 0
  for (let k = 0; k < spans.length; k += 2) {
    key += text.slice(last, spans[k]) + '\0'
    last = spans[k + 1] as number
  }
  key += text.slice(last)
  return { key, spans }
}

/** Index after the closing quote of a literal starting at `i`, or -1 when unterminated. */
function skipQuoted(text: string, i: number, quote: number, backslash: boolean): number {
  const n = text.length
  i++
  while (i < n) {
    const c = text.charCodeAt(i)
    if (backslash && c === 92) {
      i += 2
      continue
    }
    if (c === quote) {
      if (text.charCodeAt(i + 1) === quote) {
        i += 2
        continue
      }
      return i + 1
    }
    i++
  }
  return -1
}

/** Maps a character offset in the original text to the normalized key (offsets outside spans only). */
export function toKeyOffset(offset: number, spans: readonly number[]): number | undefined {
  let delta = 0
  for (let k = 0; k < spans.length; k += 2) {
    const s = spans[k] as number
    const e = spans[k + 1] as number
    if (offset <= s) break
    if (offset < e) return undefined
    delta += e - s - 1
  }
  return offset - delta
}

/** Maps an offset in the normalized key back to the original text described by `spans`. */
export function fromKeyOffset(keyOffset: number, spans: readonly number[]): number {
  let delta = 0
  for (let k = 0; k < spans.length; k += 2) {
    const s = spans[k] as number
    const e = spans[k + 1] as number
    // span k sits at key offset s - delta and is one character long there
    if (keyOffset <= s - delta) break
    delta += e - s - 1
  }
  return keyOffset + delta
}
