/**
 * The programs a shell command line would run, read from tree-sitter-bash's parse tree: what an
 * SSH client asks the server to run with `ssh host 'command'` is judged by these facts.
 *
 * Why it is shaped this way: the client writes the command line, so it hides a forbidden program
 * from anything that looks at its surface — in a pipeline, a list, a subshell, a command or
 * process substitution, a function body, a heredoc; behind quotes and escapes (`c"url"`,
 * `$'\x63url'`, `cu\<newline>rl`, `c{u,}rl`); behind wrappers (`sudo env nohup curl`,
 * `find -exec`, `xargs`); inside a script handed to another shell (`sh -c`, `eval`, `trap`,
 * `alias`, a here-string fed to `bash`, an ssh remote command, `GIT_SSH_COMMAND=`); inside a
 * value bash itself expands or runs later (`PS4` under `set -x`, `BASH_ENV`, an exported
 * `BASH_FUNC_f%%`, a `mapfile -C` or `compgen -C` callback). So the walk
 * visits every node of the tree, decodes words the way bash does, looks through the wrappers it
 * knows, and parses literal scripts recursively (to a bounded depth and amount of text). What it
 * cannot see through — a program name or script computed at run time, a shell reading commands
 * from a pipe, the SSH channel or a file on the target (`sh FILE`, `. FILE`, `BASH_ENV=FILE`) —
 * sets `dynamic` rather than being reported as harmless; a redirection target computed at run
 * time that could be `/dev/tcp/…` sets `network`.
 *
 * Where tree-sitter-bash reads a line differently from bash, the difference is either corrected
 * or refused: a redirection followed by more words (`env >/dev/null curl`) swallows them in the
 * tree, so they are given back to the command; backslash-newline splits a word in the tree
 * (`cu\<newline>rl`), so continuations are removed and the line re-parsed; backticks inside a
 * heredoc or inside `${x:-…}` are left as text, so they are found and parsed here. Other
 * differences make the line refused: whitespace bash does not treat as whitespace (`\r`, `\v`,
 * `\f`, Unicode line separators, `\<tab>`), which can make the tree start a comment bash does not
 * see; a newline inside a simple command, which the tree sometimes has after a pipeline
 * (`x | y | z⏎curl || w` becomes `z curl`) and bash never does. Anything the parser rejects is
 * refused too: the gateway fails closed.
 *
 * The program list is best-effort by nature (a copy of `curl` renamed, an interpreter's own
 * code, a wrapper not listed here, data turned into code at run time through arithmetic
 * subscripts built from pieces). A denylist of programs is only as good as that; an allowlist is
 * not affected, since an unknown wrapper is itself a program that is not allowed.
 */
import { createRequire } from 'node:module'
import { Language, Parser, type Node, type Tree } from 'web-tree-sitter'
import { changesWhatRuns, codeArgsReason, CODE_ARGS, COMMAND_VARIABLES } from './code-args.js'

/** What a command line would run, as far as the gateway can tell from its text. */
export interface CommandFacts {
  /**
   * Every program the command line would run, by base name, and also by the path the caller gave
   * when it gave one (`/usr/bin/curl` → `curl`, `/usr/bin/curl`; `~/bin/make` → `make`,
   * `~/bin/make`). Case kept, deduplicated, in first-seen order.
   */
  readonly programs: readonly string[]
  /** The program words as written after quote removal (`/usr/bin/curl`, `curl`); a computed name as written (`$x`). Deduplicated. */
  readonly commands: readonly string[]
  /** Some program name, or a script given to a shell or `eval` (or held by a variable bash runs, like PS4), is computed at run time, or a shell reads its commands from a pipe, the channel or a file (`sh FILE`, `source FILE`, `BASH_ENV`): `programs` may be incomplete. */
  readonly dynamic: boolean
  /** File targets of input and output redirections after quote removal (`/etc/passwd`, `/dev/tcp/10.0.0.1/80`); a computed target as written. */
  readonly redirects: readonly string[]
  /** A redirection or a word targets bash's network pseudo-files `/dev/tcp/…` or `/dev/udp/…`, or a redirection target computed at run time may (`< $d/tcp/…`, `> "$f"`; not `< /tmp/$f`). */
  readonly network: boolean
  /** Something is run in the background: `&`, `coproc`, `nohup`, `setsid`, `disown`, `bg`, `at`, `sudo -b`, `ssh -f`. */
  readonly background: boolean
  /**
   * The exact words the target runs, case kept, when the command line is one simple command
   * made only of literal words: no expansion, substitution or glob, no redirection, no variable
   * assignment, nothing in the background. Absent otherwise. What `ssh.argv` rules match.
   */
  readonly argv?: readonly string[]
  /** Variables the command line sets for a program or the shell (`X=1 make`, `env X=1 …`, `export X=…`), by name. */
  readonly env: readonly string[]
  /** Why `dynamic` is set, where the reason is one of the table's (code-args.ts): `make -f`, `PATH=`, an interpreter's code. */
  readonly dynamicReasons: readonly string[]
}

/** The facts of a command line, or why it is refused (the gateway denies what it cannot analyse). */
export type CommandAnalysis = { readonly ok: true; readonly facts: CommandFacts } | { readonly ok: false; readonly error: string }

/** Command lines longer than this many bytes (UTF-8) are refused. */
const MAX_COMMAND_BYTES = 64 * 1024
/** How deep scripts may nest (`sh -c "eval 'bash -c …'"`) before the command line is refused. */
const MAX_SCRIPT_DEPTH = 8
/** How deep the syntax tree may nest before the command line is refused (the walk is recursive). */
const MAX_SYNTAX_DEPTH = 256
/** Characters parsed in all, across nested scripts, before the command line is refused (brace expansion and `eval` can multiply text). */
const MAX_PARSED_CHARS = 4 * MAX_COMMAND_BYTES
/** Words one brace expansion may produce before the word is treated as computed. */
const MAX_BRACE_WORDS = 64

const PARSE_ERROR = 'the command line could not be parsed'
const DIVERGENT = 'the command line contains whitespace or escapes that bash and the parser read differently'
const TOO_DEEP = 'the command line nests scripts or syntax deeper than the gateway analyses'
const TOO_MUCH = 'the command line expands to more script text than the gateway analyses'
const SPLIT_TOKEN = 'the command line has a word the parser splits where bash does not'
const NUL = 'the command line contains a NUL character, where bash would cut it short'
const DROPPED = 'the command line has text the parser leaves out of its tree, where bash reads it'

let parser: Parser | undefined
let loading: Promise<void> | undefined

/** Loads web-tree-sitter and the bash grammar (WebAssembly). Call once before `analyzeCommand`; idempotent. */
export async function loadShellParser(): Promise<void> {
  loading ??= (async () => {
    await Parser.init()
    const language = await Language.load(createRequire(import.meta.url).resolve('tree-sitter-bash/tree-sitter-bash.wasm'))
    const p = new Parser()
    p.setLanguage(language)
    parser = p
  })().catch((error: unknown) => {
    loading = undefined
    throw error
  })
  return loading
}

/**
 * Analyses a command line as bash would run it. Synchronous; throws if `loadShellParser()` has
 * not completed. Never throws on any input otherwise: what cannot be analysed is `ok: false`.
 * Not bounded in time (some hostile lines take tree-sitter seconds): the gateway calls it on a
 * worker thread with a budget (shell/analyze-worker.ts), never on the event loop.
 */
export function analyzeCommand(text: string): CommandAnalysis {
  if (!parser) throw new Error('analyzeCommand: the shell parser is not loaded; await loadShellParser() first')
  if (text.length > MAX_COMMAND_BYTES || Buffer.byteLength(text, 'utf8') > MAX_COMMAND_BYTES) {
    return { ok: false, error: `the command line is longer than ${MAX_COMMAND_BYTES} bytes, more than the gateway analyses` }
  }
  const facts = new Collector()
  try {
    new Script(parser, facts, 0).analyze(text)
  } catch (error) {
    if (error instanceof Refused) return { ok: false, error: error.reason }
    return { ok: false, error: `the command line could not be analysed: ${error instanceof Error ? error.message : String(error)}` }
  }
  return { ok: true, facts: facts.freeze() }
}

/** Thrown to abandon an analysis; caught in `analyzeCommand`. */
class Refused {
  constructor(readonly reason: string) {}
}

/** Facts gathered across a command line and every script nested in it. */
class Collector {
  readonly programs = new Set<string>()
  readonly commands = new Set<string>()
  readonly redirects = new Set<string>()
  readonly env = new Set<string>()
  readonly reasons = new Set<string>()
  argv: readonly string[] | undefined
  dynamic = false
  network = false
  background = false
  budget = MAX_PARSED_CHARS
  /** HOME is given a value that could lead to `/dev/tcp/…`. */
  tildeChanged = false
  /** A redirection target starts with `~` (HOME). */
  tildeRedirect = false

  freeze(): CommandFacts {
    return Object.freeze({
      programs: Object.freeze([...this.programs]),
      commands: Object.freeze([...this.commands]),
      dynamic: this.dynamic,
      redirects: Object.freeze([...this.redirects]),
      network: this.network || (this.tildeChanged && this.tildeRedirect),
      background: this.background,
      ...(this.argv && !this.background ? { argv: Object.freeze([...this.argv]) } : {}),
      env: Object.freeze([...this.env]),
      dynamicReasons: Object.freeze([...this.reasons]),
    })
  }
}

/** A word after bash's quote removal and brace expansion. */
interface Word {
  /** The word after quote removal; for a computed word, the text as written. */
  readonly text: string
  /** Part of the word is computed at run time: an expansion, a substitution, a glob. */
  readonly dynamic: boolean
  /** The literal text before the first computed part (all of it for a literal word). */
  readonly prefix: string
}

/** Commands for a script: its text, or undefined when it comes from somewhere the gateway cannot read. */
type Stdin = { readonly script: string } | undefined

/** How a program is started: where its standard input comes from, and whether more arguments are appended at run time. */
interface RunContext {
  readonly stdin: () => Stdin
  /** `xargs` and `find -exec … +` append words the gateway cannot see. */
  readonly appended: boolean
}

const literal = (text: string): Word => ({ text, dynamic: false, prefix: text })

/** Words that need no decoding: no quotes, escapes, expansions, globs, braces or tildes. */
const PLAIN_WORD = /^[A-Za-z0-9_./@%+=:,-]*$/
/** Characters bash does not treat as separators but tree-sitter-bash does (its `\s`), and escaped blanks it skips. */
const SUSPECT = /[\r\v\f\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]|\\[ \t]/
/** Nodes whose text between children is literal text, not whitespace between tokens. */
const LITERAL_GAPS = new Set(['string', 'translated_string', 'heredoc_body'])
/** Unquoted tokens, in which a newline always ends the token in bash. */
const UNQUOTED_LEAVES = new Set(['word', 'number', 'variable_name', 'file_descriptor', 'special_variable_name'])
/** Leaves that may hold backticks tree-sitter did not parse as command substitution. */
const BACKTICK_LEAVES = new Set(['word', 'string_content', 'regex', 'extglob_pattern'])
const REDIRECTS = new Set(['file_redirect', 'heredoc_redirect', 'herestring_redirect'])
/**
 * Nodes bash never continues across an unescaped newline. tree-sitter-bash sometimes does
 * (`x | y | z⏎curl || w` becomes `z curl`), which would hide the next line's program.
 */
const SINGLE_LINE = new Set(['command', 'redirected_statement', 'file_redirect', 'herestring_redirect', 'variable_assignment', 'variable_assignments', 'declaration_command', 'unset_command', 'concatenation', 'command_name'])
const NO_NODES: readonly Node[] = []

/**
 * A node's children, all of them or the named ones. web-tree-sitter types them as nullable, but
 * only a node id of 0 reads back as null, and a node of a parsed tree has none: checked here once
 * instead of at every use.
 */
function kids(node: Node): Node[] {
  return node.children.filter(isNode)
}
function namedKids(node: Node): Node[] {
  return node.namedChildren.filter(isNode)
}
function isNode(c: Node | null): c is Node {
  return c !== null
}
/** Statements through which a redirection reaches the last command (`a | b > x`, `a && b > x`). */
const COMPOUNDS = new Set(['redirected_statement', 'pipeline', 'list', 'negated_command'])
/** Builtins whose operands bash may evaluate as arithmetic or as names with subscripts, running `$(…)` inside data. */
const DATA_EVALUATING_BUILTINS = new Set(['let', 'declare', 'typeset', 'local', 'export', 'readonly', 'printf', 'read', 'test', '[', 'unset', 'mapfile', 'readarray'])
/**
 * Variables bash expands like a double-quoted string when it uses them: the prompts (`set -x`
 * prints PS4, `select` PS3), the mail message, and the startup files named by BASH_ENV and ENV.
 * A `$(…)` in their value runs then, so a literal value is searched for substitutions and a
 * computed one is dynamic.
 */
const EXPANDED_VARIABLES = new Set(['PS0', 'PS1', 'PS2', 'PS3', 'PS4', 'BASH_ENV', 'ENV', 'MAILPATH'])
/** Variables naming a file a shell reads commands from when it starts: its content is unseen. */
const STARTUP_VARIABLES = new Set(['BASH_ENV', 'ENV'])
/** The variable `~` expands to: giving it a value can turn `< ~/…` into `/dev/tcp/…`. */
const TILDE_VARIABLES = new Set(['HOME'])
/** An environment variable holding an exported function: `BASH_FUNC_f%%=() { …; }` defines `f` in a child bash. */
const EXPORTED_FUNCTION = /^BASH_FUNC_/
/** Variables whose value bash or a program runs as code. */
const codeVariable = (name: string): boolean => COMMAND_VARIABLES.has(name) || EXPANDED_VARIABLES.has(name) || EXPORTED_FUNCTION.test(name)
/**
 * Whether a nameref target (`declare -n r=TARGET`) is a variable assignments to which are checked
 * (code, HOME, or one that changes what runs: `declare -n r=PATH; r=/tmp; ls`), or holds code (`a[$(…)]`).
 */
function referencesSpecial(target: string): boolean {
  const name = target.replace(/\[[\s\S]*$/, '')
  return codeVariable(name) || TILDE_VARIABLES.has(name) || changesWhatRuns(name) || target.includes('$(') || target.includes('`')
}
/** Paths through which a shell or `source` reads its own standard input (after `//` and `/./` are collapsed). */
const STDIN_PATHS = /^(\/dev\/stdin|\/dev\/fd\/0|\/proc\/(self|thread-self)\/fd\/0)$/
const NETWORK_PREFIXES = ['/dev/tcp/', '/dev/udp/']

/** A path with `//` and `/./` collapsed: the same file whatever the directories are. `..` is kept (through a symbolic link it may lead anywhere). */
const collapsePath = (path: string): string => path.replace(/\/(\.\/)+/g, '/').replace(/\/{2,}/g, '/')

/**
 * Whether a literal path is a shell's own standard input. A different process's (`/proc/1234/fd/0`),
 * another descriptor (`/dev/fd/3`), a path through `..` or any other file is not: what it holds is
 * unseen.
 */
const stdinPath = (path: string): boolean => STDIN_PATHS.test(collapsePath(path))

/** Whether the literal start of a computed word shows it cannot become `/dev/tcp/…` or `/dev/udp/…` (bash matches those names as strings). */
function rulesOutNetwork(prefix: string): boolean {
  const p = collapsePath(prefix)
  return !NETWORK_PREFIXES.some((n) => n.startsWith(p) || p.startsWith(n))
}

/** Whether a word names bash's network pseudo-files (exactly, or with a literal prefix only they start with). */
function networkWord(word: Word): boolean {
  const text = collapsePath(word.text)
  if (text.includes('/dev/tcp/') || text.includes('/dev/udp/')) return true
  if (!word.dynamic) return false
  const prefix = collapsePath(word.prefix)
  return prefix.length >= 2 && NETWORK_PREFIXES.some((p) => p.startsWith(prefix))
}

/** The last path component of a program word (`./curl` → `curl`). */
function basename(text: string): string {
  const trimmed = text.replace(/\/+$/, '')
  return trimmed.slice(trimmed.lastIndexOf('/') + 1)
}

/** Quotes a literal word so a shell reads it back unchanged. */
function shellQuote(word: Word): string {
  return word.dynamic ? word.text : `'${word.text.replace(/'/g, `'\\''`)}'`
}

/** A literal that bash could still run as code if it reaches arithmetic, `${x@P}`, PS4 or a subscript: it holds `$(` or a backtick. */
const latentCode = (word: Word): boolean => !word.dynamic && (word.text.includes('$(') || word.text.includes('`'))

/**
 * Decodes the body of `$'…'` as bash does; a NUL ends the string, as in bash. Undefined when an
 * escape gives a character outside ASCII: bash writes `\xff` as one raw byte and `\u00e9` in the
 * target's locale (`\u00E9` as written under `LANG=C`), which the gateway cannot know.
 */
function decodeAnsiC(body: string): string | undefined {
  let out = ''
  for (let i = 0; i < body.length; i++) {
    const c = body[i] as string
    if (c !== '\\' || i + 1 >= body.length) {
      out += c
      continue
    }
    const d = body[++i] as string
    let code: number | undefined
    switch (d) {
      case 'a': code = 7; break
      case 'b': code = 8; break
      case 'e': case 'E': code = 27; break
      case 'f': code = 12; break
      case 'n': code = 10; break
      case 'r': code = 13; break
      case 't': code = 9; break
      case 'v': code = 11; break
      case '\\': case "'": case '"': case '?': out += d; continue
      case 'x': case 'u': case 'U': {
        const max = d === 'x' ? 2 : d === 'u' ? 4 : 8
        const digits = /^[0-9a-fA-F]+/.exec(body.slice(i + 1, i + 1 + max))?.[0]
        if (!digits) {
          out += `\\${d}`
          continue
        }
        i += digits.length
        code = Number.parseInt(digits, 16)
        if (d === 'x') code &= 0xff
        break
      }
      case 'c': {
        const next = body[i + 1]
        if (next === undefined) {
          out += '\\c'
          continue
        }
        // bash's reader has already put its quoting byte (CTLESC, 0x01) before a raw 0x01 or 0x7f,
        // and `\c` takes that byte, leaving the raw one as text: `\c<DEL>` is 0x01 0x7f
        if (next === '\x01' || next === '\x7f') {
          code = 0x01
          break
        }
        i++
        // bash takes the next byte: after a non-ASCII character, the first byte of its UTF-8 form,
        // leaving the others as raw bytes (`\cé` is 0x03 0xa9)
        if (next.charCodeAt(0) > 0x7f) return undefined
        // POSIX: `\c\\` is control-backslash, both backslashes taken (bash 5.2 does so)
        if (next === '\\' && body[i + 1] === '\\') i++
        code = next === '?' ? 0x7f : next.toUpperCase().charCodeAt(0) & 0x1f
        break
      }
      default: {
        const digits = /^[0-7]{1,3}/.exec(body.slice(i, i + 3))?.[0]
        if (!digits) {
          out += `\\${d}`
          continue
        }
        i += digits.length - 1
        code = Number.parseInt(digits, 8) & 0xff
      }
    }
    if (code === 0) return out
    if (code > 0x7f) return undefined
    out += String.fromCodePoint(code)
  }
  return out
}

/**
 * Refuses a line where tree-sitter-bash ends a `$'…'` string somewhere other than bash does. Its
 * token reads `\\'` as a backslash and an escaped quote, where bash reads an escaped backslash and
 * the closing quote; from there on the two disagree about what is quoted, so in
 * `echo $'\\' ; curl x ; echo '\'` the tree holds one `echo` and bash runs `curl`.
 */
function checkAnsiCStrings(root: Node): void {
  for (const node of root.descendantsOfType('ansi_c_string')) {
    const text = node?.text ?? ''
    let end = 2
    while (end < text.length && text[end] !== "'") end += text[end] === '\\' ? 2 : 1
    if (end !== text.length - 1) throw new Refused(DIVERGENT)
  }
}

/**
 * Refuses a line where tree-sitter-bash joins pieces into one word across text it dropped: in
 * `echo {q}- {1..2}` its concatenation holds `{`, `q`, `}` and `{1..2}`, without the `- `, where
 * bash reads two words. The pieces of a word touch each other; a gap means the tree lost text.
 */
function checkConcatenations(root: Node): void {
  for (const node of root.descendantsOfType('concatenation')) {
    if (!node) continue
    let at = node.startIndex
    for (const child of kids(node)) {
      if (child.startIndex !== at) throw new Refused(SPLIT_TOKEN)
      at = child.endIndex
    }
    if (at !== node.endIndex) throw new Refused(SPLIT_TOKEN)
  }
}

/** Nodes that are a whole word, or the start of one. */
const WORD_NODES = new Set(['variable_assignment', 'word', 'number', 'raw_string', 'string', 'ansi_c_string', 'translated_string', 'concatenation', 'simple_expansion', 'expansion', 'command_substitution', 'arithmetic_expansion', 'brace_expression'])
/** Nodes whose named children are separate words. */
const WORD_LISTS = new Set(['file_redirect', 'heredoc_redirect', 'herestring_redirect', 'declaration_command', 'unset_command', 'array', 'for_statement'])

/**
 * Refuses a line where tree-sitter-bash makes two words of what bash reads as one: a redirection
 * target whose second piece starts with an escape (`> '/dev/'\tcp/1/2` is a target `/dev/` and
 * an argument `tcp/1/2` in the tree, `/dev/tcp/1/2` for bash). Words in a list are separated by
 * blanks; two that touch are one word the tree split. (`command` is checked where it is walked.)
 */
function checkTouchingWords(root: Node): void {
  for (const node of root.descendantsOfType([...WORD_LISTS])) {
    let previous: Node | undefined
    for (const child of node ? namedKids(node) : NO_NODES) {
      if (WORD_NODES.has(child.type) && previous && previous.endIndex === child.startIndex) throw new Refused(SPLIT_TOKEN)
      previous = WORD_NODES.has(child.type) ? child : undefined
    }
  }
}

/** A name bash takes for a variable. */
const VARIABLE_NAME = /^[A-Za-z_]\w*$/
/** A word bash takes as an assignment before a command: `NAME=`, `NAME+=`, `NAME[…]=`. */
const BASH_ASSIGNMENT = /^[A-Za-z_]\w*(\[[^\]]*\])?\+?=/

/** Reserved words, which bash recognises only as a whole word. */
const RESERVED = ['!', '{', '}', '[', ']', '[[', ']]', 'if', 'then', 'elif', 'else', 'fi', 'do', 'done', 'case', 'esac', 'while', 'until', 'for', 'in', 'select', 'function', 'time', 'coproc']
/** Where the reserved words are statements' keywords (elsewhere `{` and `}` belong to `${x}` or `a{1,2}`). */
const KEYWORD_PARENTS = new Set(['negated_command', 'compound_statement', 'if_statement', 'elif_clause', 'else_clause', 'while_statement', 'for_statement', 'c_style_for_statement', 'case_statement', 'do_group', 'function_definition', 'test_command', 'subshell', 'program', 'list', 'pipeline', 'redirected_statement'])
/** Characters that end a word in bash (blanks and operators), or the start or end of the text. */
const WORD_BOUNDARY = /^[ \t\n;&|()<>]?$/

/**
 * Refuses a line where tree-sitter-bash takes a reserved word out of a longer word: in
 * `!"x" y` or `!{3..1}` it reads the negation `!` and a command `x`; bash runs a program named
 * `!x`. A reserved word counts only between blanks or operators.
 */
function checkReservedWords(root: Node, text: string): void {
  for (const node of root.descendantsOfType(RESERVED)) {
    if (!node || node.isNamed || !KEYWORD_PARENTS.has(node.parent?.type ?? '')) continue
    if (!WORD_BOUNDARY.test(text.charAt(node.startIndex - 1)) || !WORD_BOUNDARY.test(text.charAt(node.endIndex))) throw new Refused(SPLIT_TOKEN)
  }
}

/** Where a `word` node is a shell word (inside `${x:-…}` it is the expansion's text, which may hold blanks). */
const BLANKLESS_WORD_PARENTS = new Set(['command', 'command_name', 'concatenation', 'file_redirect', 'herestring_redirect', 'declaration_command', 'unset_command'])

/** A word being decoded: its text, which characters were quoted, and whether part of it is computed. */
class WordBuilder {
  text = ''
  quoted = ''
  dynamic = false
  prefix: string | undefined

  add(text: string, quoted: boolean): void {
    this.text += text
    this.quoted += (quoted ? '1' : '0').repeat(text.length)
  }

  computed(): void {
    if (!this.dynamic) this.prefix = this.text
    this.dynamic = true
  }

  /** Appends unquoted word text, removing backslash escapes; a stray `$`, backtick or quote makes the word computed. */
  unquoted(text: string): void {
    for (let i = 0; i < text.length; i++) {
      const c = text[i] as string
      if (c === '\\') {
        const next = text[i + 1]
        if (next === undefined) this.add('\\', false)
        else if (next !== '\n') this.add(next, true)
        i++
      } else if (c === '`' || c === "'" || c === '"' || (c === '$' && /[\w{(@*#?$!-]/.test(text[i + 1] ?? ''))) {
        this.computed()
        this.add(c, false)
      } else {
        this.add(c, false)
      }
    }
  }

  /** Appends text from inside double quotes, where a backslash escapes only `$`, backtick, `"`, `\` and newline. */
  doubleQuoted(text: string): void {
    for (let i = 0; i < text.length; i++) {
      const c = text[i] as string
      const next = text[i + 1]
      if (c === '\\' && next !== undefined && '$`"\\\n'.includes(next)) {
        if (next !== '\n') this.add(next, true)
        i++
      } else {
        if (c === '`' || (c === '$' && /[\w{(@*#?$!-]/.test(next ?? ''))) this.computed()
        this.add(c, true)
      }
    }
  }
}

/** Whether the unquoted characters of a word make it a glob pattern. */
function isGlob(text: string, quoted: string): boolean {
  let bracket = false
  for (let i = 0; i < text.length; i++) {
    if (quoted[i] === '1') continue
    const c = text[i]
    if (c === '*' || c === '?') return true
    if (c === '[') bracket = true
    else if (c === ']' && bracket) return true
  }
  return false
}

/**
 * The `}` that closes the brace expression opened at `open`, as bash 5's brace_gobbler finds it:
 * the first unquoted `}` at depth 0 after a comma or a `..` at depth 0 (a `}` before either is
 * text: `{q}x,y}` is `q}x y`); -1 when there is none.
 */
function closingBrace(text: string, quoted: string, open: number): number {
  let depth = 0
  let separators = 0
  for (let j = open + 1; j < text.length; j++) {
    if (quoted[j] === '1') continue
    const c = text[j]
    if (c === '}' && depth === 0 && separators > 0) return j
    if (c === '{') depth++
    else if (c === '}') depth = Math.max(0, depth - 1)
    else if (depth === 0 && (c === ',' || (c === '.' && text[j + 1] === '.' && quoted[j + 1] === '0' && text[j + 2] !== '}'))) separators++
  }
  return -1
}

/** Splits a brace expression's inside at its unquoted commas of depth 0. */
function alternativesOf(text: string, quoted: string): Array<[string, string]> {
  const alternatives: Array<[string, string]> = []
  let depth = 0
  let from = 0
  for (let j = 0; j <= text.length; j++) {
    if (j < text.length && quoted[j] === '1') continue
    const c = text[j]
    if (c === '{') depth++
    else if (c === '}') depth = Math.max(0, depth - 1)
    else if ((c === ',' && depth === 0) || j === text.length) {
      alternatives.push([text.slice(from, j), quoted.slice(from, j)])
      from = j + 1
    }
  }
  return alternatives
}

/**
 * Bash brace expansion of a word with its quoting mask, as bash 5 does it: the first `{` with a
 * closing brace (see closingBrace) splits the word into a preamble kept as it is, the inside
 * (alternatives at its commas, each expanded on its own, or a sequence `{1..3}`; neither leaves
 * `{inside}` as text) and the rest, expanded on its own; the words are every combination.
 * Undefined when it would make more than MAX_BRACE_WORDS words, or words bash expands again.
 */
function expandBraces(text: string, quoted: string, depth = 0): Array<[text: string, quoted: string]> | undefined {
  // every nested or successive brace expression at least doubles the words, so deep recursion means too many
  if (depth > 16) return undefined
  for (let open = text.indexOf('{'); open >= 0; open = text.indexOf('{', open + 1)) {
    if (quoted[open] === '1' || (open > 0 && text[open - 1] === '$' && quoted[open - 1] === '0')) continue
    // no closing brace for this one: bash tries the next (`{q,z{1..2}` is `{q,z1 {q,z2`)
    const close = closingBrace(text, quoted, open)
    if (close < 0) continue
    const inside = text.slice(open + 1, close)
    const qInside = quoted.slice(open + 1, close)
    const rest = expandBraces(text.slice(close + 1), quoted.slice(close + 1), depth + 1)
    if (rest === undefined) return undefined
    let middle: Array<[string, string]>
    // without an unquoted comma at any depth, the inside is a sequence or text (bash's own test)
    if (![...inside].some((c, k) => c === ',' && qInside[k] === '0')) {
      // bash's own test reads the raw text and skips only backslash escapes: a comma in quotes
      // makes it a list of one (`{1..2','x}` is `1..2,x`), an escaped one does not (`{1..2\,x}`
      // stays); the mask does not tell the two apart, so the word is computed
      if (inside.includes(',')) return undefined
      const sequence = qInside.includes('1') ? undefined : braceSequence(inside)
      if (sequence === null || (sequence && sequence.length > MAX_BRACE_WORDS)) return undefined
      middle = sequence ? sequence.map((w) => [w, '0'.repeat(w.length)]) : [[`{${inside}}`, `0${qInside}0`]]
    } else {
      middle = []
      for (const [alternative, qAlternative] of alternativesOf(inside, qInside)) {
        const words = expandBraces(alternative, qAlternative, depth + 1)
        if (words === undefined || middle.length + words.length > MAX_BRACE_WORDS) return undefined
        middle.push(...words)
      }
    }
    if (middle.length * rest.length > MAX_BRACE_WORDS) return undefined
    const preamble = text.slice(0, open)
    const qPreamble = quoted.slice(0, open)
    return middle.flatMap(([m, qm]) => rest.map(([r, qr]): [string, string] => [preamble + m + r, qPreamble + qm + qr]))
  }
  return [[text, quoted]]
}

/** The largest and smallest integers bash's sequence expressions take (intmax_t); others leave the word as written. */
const INTMAX = 2n ** 63n - 1n
const INTMIN = -(2n ** 63n)

/** A sequence bound bash pads with zeros: `01`, `-01` (not `0`, `-0` or `+01`). */
const zeroPadded = (bound: string): boolean => (bound.length > 1 && bound[0] === '0') || (bound.length > 2 && bound.startsWith('-0'))

/**
 * The words of a sequence expression `{1..5}`, `{a..e..2}`, `{01..10}`, as bash 5 makes them;
 * undefined when `inner` is not one. A bound with a leading zero pads every number to the longer
 * bound's width; the step's sign is ignored; a step of 0 is 1. Stops after MAX_BRACE_WORDS + 1.
 * Null when a letter range passes the characters between `Z` and `a` (`[ \ ] ^ _ \``): bash
 * expands its results again, so `{Z..a}x` makes a backtick that starts a command substitution.
 */
function braceSequence(inner: string): string[] | null | undefined {
  const m = /^([-+]?\d+|[A-Za-z])\.\.([-+]?\d+|[A-Za-z])(?:\.\.([-+]?\d+))?$/.exec(inner)
  if (!m) return undefined
  const [, from = '', to = '', step = '1'] = m
  const numeric = /\d/.test(from)
  if (numeric !== /\d/.test(to)) return undefined
  const words: string[] = []
  if (!numeric) {
    const a = from.charCodeAt(0)
    const b = to.charCodeAt(0)
    const by = Math.abs(Number(step)) || 1
    for (let v = a; (a <= b ? v <= b : v >= b) && words.length <= MAX_BRACE_WORDS; v += a <= b ? by : -by) words.push(String.fromCharCode(v))
    return words.every((w) => /[A-Za-z]/.test(w)) ? words : null
  }
  const [a, b, stepValue] = [BigInt(from), BigInt(to), BigInt(step)]
  if ([a, b, stepValue].some((v) => v > INTMAX || v < INTMIN)) return undefined
  const by = (stepValue < 0n ? -stepValue : stepValue) || 1n
  const width = zeroPadded(from) || zeroPadded(to) ? Math.max(from.length, to.length) : 0
  const format = (v: bigint): string => (v < 0n ? `-${String(-v).padStart(width - 1, '0')}` : String(v).padStart(width, '0'))
  for (let v = a; (a <= b ? v <= b : v >= b) && words.length <= MAX_BRACE_WORDS; v += a <= b ? by : -by) words.push(format(v))
  return words
}

/** Finds backtick command substitutions in text tree-sitter left unparsed; `skip` are [start, end) ranges it did parse. */
function backtickScripts(text: string, skip: ReadonlyArray<readonly [number, number]> = []): string[] {
  const scripts: string[] = []
  let open = -1
  let s = 0
  for (let i = 0; i < text.length; i++) {
    const range = skip[s]
    if (range && i >= range[0]) {
      s++
      if (open < 0) {
        i = range[1] - 1
        continue
      }
    }
    const c = text[i]
    if (c === '\\') i++
    else if (c === '`') {
      if (open < 0) open = i + 1
      else {
        scripts.push(unescapeBackticks(text.slice(open, i)))
        open = -1
      }
    }
  }
  if (open >= 0) throw new Refused(PARSE_ERROR)
  return scripts
}

/** Inside backticks, bash removes the backslash before `\`, backtick and `$` before parsing. */
const unescapeBackticks = (text: string): string => text.replace(/\\([\\`$])/g, '$1')

/** Options of a wrapper that runs its operands as a program. */
interface WrapperSpec {
  /** Short options that take an argument (attached, or the next word). */
  readonly args?: string
  /** Long options (without `--`) that take an argument when not written with `=`. */
  readonly longArgs?: readonly string[]
  /**
   * The program's other long options (flags, and those whose argument is optional), so that an
   * abbreviation is read as getopt_long reads it (`--sig` is `--signal`). When given, a long option
   * that is in neither list makes the line dynamic: it may take the next word as its argument.
   */
  readonly longFlags?: readonly string[]
  /** Long options that are the long form of a short one (`--shell` is sudo's `-s`): `shorts` gets the letter. */
  readonly longShorts?: Readonly<Record<string, string>>
  /** Options after which the program reads no more options of this command line itself (`env -S`): the scan ends there. */
  readonly stopAt?: readonly string[]
  /** Operands before the program: timeout's duration, chroot's directory, taskset's mask. */
  readonly skip?: number
  /** Short options after which nothing is run (`command -v`, `sudo -e`, `taskset -p`). */
  readonly inert?: string
  /** Short options that run the program in the background (`sudo -b`). */
  readonly backgroundOptions?: string
  /** The wrapper always runs the program in the background (`nohup`, `setsid`). */
  readonly background?: boolean
  /** Short options that, with no program, start a shell reading standard input (`sudo -s`); `*` when it always does. */
  readonly shellWithoutProgram?: string
  /** Options written as a bare number (`nice -10`). */
  readonly numeric?: boolean
  /** `NAME=value` operands before the program set its environment (`sudo PS4=… bash -x`). */
  readonly assignments?: boolean
  /** Options whose argument is `NAME=value` for the program's environment (`systemd-run -E`, `firejail --env=`). */
  readonly envOptions?: readonly string[]
}

/** The options a wrapper was given and where its operands start. */
interface Scanned {
  readonly index: number
  readonly shorts: Set<string>
  readonly longs: Set<string>
  readonly values: Map<string, Word | undefined>
  /** Every option with an argument, in order (`-o` may be given several times). */
  readonly pairs: Array<readonly [string, Word | undefined]>
  /** Why the options may not mean what they were read as (an unknown or ambiguous long option). */
  readonly unsure: string[]
}

/**
 * The long option `--name` stands for, as getopt_long reads it: the one it names exactly, else the
 * only one it begins (`--sig` is `--signal`, `--us` is `--user`). `ambiguous` when it begins
 * several (getopt refuses the line, unless the program has an option of exactly that name that
 * the gateway does not know); `unknown` when it begins none.
 */
function longOption(name: string, known: readonly string[]): { readonly name: string; readonly found: 'exact' | 'prefix' | 'ambiguous' | 'unknown' } {
  if (known.includes(name)) return { name, found: 'exact' }
  const matches = name === '' ? [] : known.filter((k) => k.startsWith(name))
  if (matches.length === 1) return { name: matches[0] as string, found: 'prefix' }
  return { name, found: matches.length > 1 ? 'ambiguous' : 'unknown' }
}

/** A word `--name` or `--name=value` read against `known` (see `longOption`); `value` only when attached with `=`. */
function longWord(t: string, known: readonly string[]): { readonly written: string; readonly name: string; readonly found: ReturnType<typeof longOption>['found']; readonly value?: Word } {
  const eq = t.indexOf('=')
  const written = t.slice(2, eq < 0 ? undefined : eq)
  return { written, ...longOption(written, known), ...(eq >= 0 ? { value: literal(t.slice(eq + 1)) } : {}) }
}

/** Reads options up to the first operand; undefined when a computed word stands where an option or the program could be. */
function scanOptions(args: readonly Word[], spec: Pick<WrapperSpec, 'args' | 'longArgs' | 'longFlags' | 'longShorts' | 'numeric' | 'stopAt'>, from = 0, dashIsOption = false): Scanned | undefined {
  const shorts = new Set<string>()
  const longs = new Set<string>()
  const values = new Map<string, Word | undefined>()
  const pairs: Array<readonly [string, Word | undefined]> = []
  const unsure: string[] = []
  const known = [...(spec.longArgs ?? []), ...(spec.longFlags ?? [])]
  let stop = false
  const set = (key: string, value: Word | undefined): void => {
    values.set(key, value)
    pairs.push([key, value])
    if (spec.stopAt?.includes(key)) stop = true
  }
  let i = from
  for (; i < args.length && !stop; i++) {
    const a = args[i] as Word
    if (a.dynamic) return undefined
    const t = a.text
    if (t === '--') {
      i++
      break
    }
    if (t === '-' && dashIsOption) continue
    if (t.startsWith('--')) {
      const { written, name, found, value } = longWord(t, known)
      longs.add(name)
      const short = spec.longShorts?.[name]
      if (short !== undefined) shorts.add(short)
      if (value) set(name, value)
      else if (spec.longArgs?.includes(name)) set(name, args[++i])
      else if (spec.longFlags !== undefined && (found === 'ambiguous' || found === 'unknown')) unsure.push(`${found} option --${written}`)
      continue
    }
    if (t.length < 2 || t[0] !== '-') break
    if (spec.numeric && /^-\d+$/.test(t)) continue
    for (let j = 1; j < t.length; j++) {
      const ch = t[j] as string
      shorts.add(ch)
      if (spec.args?.includes(ch)) {
        set(ch, j + 1 < t.length ? literal(t.slice(j + 1)) : args[++i])
        break
      }
    }
  }
  return { index: i, shorts, longs, values, pairs, unsure }
}

/** `scanOptions` for a program that runs others: an option the gateway may misread makes the line dynamic. */
function readOptions(s: Script, args: readonly Word[], spec: Parameters<typeof scanOptions>[1], from = 0, dashIsOption = false): Scanned | undefined {
  const scanned = scanOptions(args, spec, from, dashIsOption)
  if (!scanned) {
    s.markDynamic()
    return undefined
  }
  for (const reason of scanned.unsure) s.markDynamic(reason)
  return scanned
}

const hasAny = (set: Set<string>, letters: string | undefined): boolean => letters !== undefined && [...letters].some((c) => set.has(c))

/** What running a known program means for the facts: the programs it runs in turn, the scripts it parses. */
type Handler = (script: Script, args: readonly Word[], context: RunContext) => void

/** A wrapper that runs its first operand (after `skip` more) as a program with the rest as arguments. */
function wrapper(spec: WrapperSpec): Handler {
  return (s, args, context) => {
    const scanned = readOptions(s, args, spec)
    if (!scanned) return
    if (spec.background || hasAny(scanned.shorts, spec.backgroundOptions)) s.facts.background = true
    if (hasAny(scanned.shorts, spec.inert)) return
    for (const [key, value] of scanned.pairs) if (spec.envOptions?.includes(key)) s.environment(value)
    let rest = args.slice(scanned.index + (spec.skip ?? 0))
    if (spec.assignments) {
      let k = 0
      while (k < rest.length && s.environment(rest[k] as Word, true)) k++
      rest = rest.slice(k)
    }
    if (rest.length > 0) return s.run(rest, context)
    if (context.appended) return s.markDynamic()
    if (spec.shellWithoutProgram === '*' || hasAny(scanned.shorts, spec.shellWithoutProgram)) s.stdinScript(context)
  }
}

/** `sh -c SCRIPT`, `bash` reading a script file or its standard input. */
const shell: Handler = (s, args, context) => {
  let command = false
  let readsStdin = false
  let i = 0
  for (; i < args.length; i++) {
    const a = args[i] as Word
    if (a.dynamic) return s.markDynamic()
    const t = a.text
    if (t === '--' || t === '-') {
      i++
      break
    }
    if (t.startsWith('--')) {
      // a startup file: its content is unseen
      if (/^--(rcfile|init-file)(=|$)/.test(t)) {
        s.markDynamic()
        if (!t.includes('=')) i++
      }
      continue
    }
    if (t.length < 2 || (t[0] !== '-' && t[0] !== '+')) break
    for (const ch of t.slice(1)) {
      if (ch === 'c') command = true
      // `-i` alone does not: `bash -i FILE` runs FILE
      else if (ch === 's') readsStdin = true
      else if (ch === 'o' || ch === 'O') i++
    }
  }
  const operand = args[i]
  if (command) {
    if (operand) s.script(operand)
    else if (context.appended) s.markDynamic()
    return
  }
  if (context.appended) s.markDynamic()
  if (operand && !readsStdin) return s.scriptFile(operand, context)
  s.stdinScript(context)
}

/**
 * A shell whose grammar is not bash's: its script is read with bash's grammar all the same (the
 * programs found are reported), and the line is dynamic, since the two disagree (`zsh -c '=curl x'`
 * runs curl, where bash would run a program named `=curl`; fish and csh quote and substitute
 * differently). Only `--version` and `--help` alone run nothing.
 */
function foreignShell(name: string): Handler {
  return (s, args, context) => {
    if (args.length > 0 && args.every((a) => !a.dynamic && (a.text === '--version' || a.text === '--help'))) return
    s.markDynamic(`${name} is not bash: its script is read with bash's grammar, which ${name} does not follow`)
    shell(s, args, context)
  }
}

/** What su's and runuser's options say; getopt permutes, so options may come anywhere before `--`. */
interface SuLine {
  /** The words left when the options are taken out: the user, then the shell's arguments (or, with `-u`, the program and its arguments). */
  readonly operands: Word[]
  /** `-c SCRIPT`, `--command`, `--session-command`. */
  script?: Word
  /** `-s SHELL`, `--shell`: the shell that runs instead of the user's own. */
  shell?: Word
  /** `-u USER` (runuser): run a program as USER, not a shell. */
  asUser: boolean
  /** Why the options may not mean what they were read as. */
  readonly unsure: string[]
}

const SU_LONG_ARGS = ['command', 'session-command', 'shell', 'group', 'supp-group', 'whitelist-environment', 'user']
const SU_LONG = [...SU_LONG_ARGS, 'fast', 'login', 'preserve-environment', 'pty', 'help', 'version']

/** Reads `su`/`runuser` options; a computed word before `--`, or an option the gateway may misread, makes the line dynamic. */
function readSuOptions(s: Script, args: readonly Word[]): SuLine | undefined {
  const line = suOptions(args)
  if (!line) s.markDynamic()
  for (const reason of line?.unsure ?? []) s.markDynamic(reason)
  return line
}

/** Reads `su`/`runuser` options; undefined when a computed word stands before `--`. */
function suOptions(args: readonly Word[]): SuLine | undefined {
  const line: SuLine = { operands: [], asUser: false, unsure: [] }
  const take = (option: string, value: Word | undefined): void => {
    if (option === 'c' || option === 'command' || option === 'session-command') line.script = value
    else if (option === 's' || option === 'shell') line.shell = value
    else if (option === 'u' || option === 'user') line.asUser = true
  }
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as Word
    if (a.dynamic) return undefined
    const t = a.text
    if (t === '--') {
      line.operands.push(...args.slice(i + 1))
      break
    }
    if (t.startsWith('--')) {
      const { written, name, found, value } = longWord(t, SU_LONG)
      if (SU_LONG_ARGS.includes(name)) take(name, value ?? args[++i])
      else if (found === 'ambiguous' || found === 'unknown') line.unsure.push(`${found} option --${written}`)
      continue
    }
    if (t.length > 1 && t[0] === '-') {
      for (let j = 1; j < t.length; j++) {
        const ch = t[j] as string
        if ('cgGsuw'.includes(ch)) {
          take(ch, j + 1 < t.length ? literal(t.slice(j + 1)) : args[++i])
          break
        }
      }
      continue
    }
    if (t !== '-') line.operands.push(a)
  }
  return line
}

/**
 * `su [-c SCRIPT] [-s SHELL] [user [shell args…]]` and `runuser` without `-u`. The user's shell
 * runs: SHELL when given (`-s /usr/bin/python3 -c CODE` runs python), otherwise the user's login
 * shell, read as `sh`.
 */
const su: Handler = (s, args, context) => {
  const line = readSuOptions(s, args)
  if (line) runSu(s, line, context)
}

function runSu(s: Script, line: SuLine, context: RunContext): void {
  const program = line.shell ?? literal('sh')
  s.run([program, ...(line.script ? [literal('-c'), line.script] : []), ...line.operands.slice(1)], context)
}

/** Long option names written once, space-separated. */
const names = (list: string): readonly string[] => list.split(' ')

// Every long option of each program below and in HANDLERS (util-linux 2.38, coreutils 9.1,
// findutils 4.9, procps 4.0, strace 6.1, sudo 1.9): an abbreviation is read as getopt_long reads it.

/** env -S puts the split words in place of the option and reads options again from there. */
const ENV_OPTIONS: WrapperSpec = {
  args: 'uCS',
  longArgs: names('unset chdir split-string'),
  longFlags: names('ignore-environment null debug block-signal default-signal ignore-signal list-signal-handling help version'),
  stopAt: ['S', 'split-string'],
}
const XARGS_OPTIONS: WrapperSpec = {
  args: 'aEdILnPs',
  longArgs: names('arg-file delimiter max-args max-procs max-chars process-slot-var'),
  // --eof, --max-lines and --replace take their argument only after `=`
  longFlags: names('eof exit interactive max-lines no-run-if-empty null open-tty replace show-limits verbose help version'),
}
const WATCH_OPTIONS: WrapperSpec = { args: 'nq', longArgs: names('interval equexit'), longFlags: names('beep chgexit color no-color differences errexit exec no-title no-wrap no-linewrap precise help version') }
const FLOCK_OPTIONS: WrapperSpec = { args: 'Ew', longArgs: names('conflict-exit-code timeout wait'), longFlags: names('shared exclusive unlock nonblock nonblocking nb close no-fork verbose help version') }
const SCRIPT_OPTIONS: WrapperSpec = {
  args: 'cEIOBTm',
  longArgs: names('command echo log-in log-out log-io log-timing logging-format output-limit'),
  longFlags: names('append flush force quiet return timing help version'),
}

/** `env [options] [NAME=value…] [program args…]`, including `env -S 'string'`. */
const env: Handler = (s, args, context) => {
  const scanned = readOptions(s, args, ENV_OPTIONS, 0, true)
  if (!scanned) return
  const split = scanned.values.get('S') ?? scanned.values.get('split-string')
  if (split) {
    // the first -S: its words, then every word after it, are read again as env's arguments
    if (split.dynamic) return s.markDynamic()
    // after a bare `-`, GNU env 9.1 does not run the first split word (`env - --spl=q sh -c …` runs sh, seen with strace): not modelled
    if (args.slice(0, scanned.index).some((a) => a.text === '-')) return s.markDynamic('env - with -S')
    return s.scriptText(['env', split.text, ...args.slice(scanned.index).map(shellQuote)].join(' '))
  }
  let i = scanned.index
  for (; i < args.length; i++) {
    const a = args[i] as Word
    if (a.dynamic) return s.markDynamic()
    const eq = a.text.indexOf('=')
    if (eq < 0) break
    s.assignment(a.text.slice(0, eq), literal(a.text.slice(eq + 1)))
  }
  if (i < args.length) s.run(args.slice(i), context)
  else if (context.appended) s.markDynamic()
}

/** A word holding a placeholder that `xargs -I` or `find -exec` replaces with input: computed at run time. */
const placeholder = (word: Word, marker: string): Word =>
  !word.dynamic && marker !== '' && word.text.includes(marker) ? { text: word.text, dynamic: true, prefix: word.text.slice(0, word.text.indexOf(marker)) } : word

/** `xargs [options] [program [args…]]`: the program gets words from standard input appended. */
const xargs: Handler = (s, args, context) => {
  const scanned = readOptions(s, args, XARGS_OPTIONS)
  if (!scanned) return
  const rest = args.slice(scanned.index)
  const attached = args.slice(0, scanned.index).find((a) => /^-i./s.test(a.text))?.text.slice(2)
  const replace = scanned.values.get('I')?.text ?? scanned.values.get('replace')?.text ?? attached ?? (scanned.shorts.has('i') || scanned.longs.has('replace') ? '{}' : undefined)
  const appended: RunContext = { stdin: () => undefined, appended: true }
  if (rest.length === 0) return s.run([literal('echo')], appended)
  s.run(replace === undefined ? rest : rest.map((a) => placeholder(a, replace)), appended)
}

/** find primaries whose next word is their argument (`-newerXY` too, and `-fprintf FILE FORMAT` takes two). */
const FIND_ARG_PRIMARIES = names('-name -iname -path -ipath -wholename -iwholename -regex -iregex -lname -ilname -type -xtype -size -perm -user -group -uid -gid -newer -anewer -cnewer -mtime -atime -ctime -mmin -amin -cmin -used -inum -links -samefile -maxdepth -mindepth -fstype -context -printf -fprint -fprint0 -fls -fprintf -regextype -files0-from -D')

/** Whether a computed word may begin with `-` (its literal start does not rule it out): it may then be read as an option. */
function mayBeOption(word: Word): boolean {
  return word.dynamic && (word.prefix === '' || word.prefix.startsWith('-'))
}

/**
 * `find … -exec program args… ;` (and `-execdir`, `-ok`, `-okdir`; `+` appends file names). A
 * computed word that is not a primary's argument may itself be `-exec` (`find . "$x" curl … \;`):
 * dynamic when the word after it could be a program and a `;`, a `+` or another computed word
 * follows (`find "$d" -name x -exec …` is a path).
 */
const find: Handler = (s, args) => {
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as Word
    const t = a.text
    if (mayBeOption(a)) {
      const before = args[i - 1]
      const value = (before !== undefined && !before.dynamic && (FIND_ARG_PRIMARIES.includes(before.text) || /^-newer[aBcmt]{2}$/.test(before.text))) || args[i - 2]?.text === '-fprintf'
      // were it -exec, the next word would be the program: a literal `-name` is not one anybody runs
      const next = args[i + 1]
      const program = next !== undefined && (next.dynamic || !next.text.startsWith('-'))
      if (!value && program && args.slice(i + 1).some((b) => b.dynamic || b.text === ';' || b.text === '+')) return s.markDynamic('find: a computed word may be -exec')
      continue
    }
    if (t !== '-exec' && t !== '-execdir' && t !== '-ok' && t !== '-okdir') continue
    let end = i + 1
    while (end < args.length && (args[end] as Word).text !== ';' && (args[end] as Word).text !== '+') end++
    const argv = args.slice(i + 1, end).map((a) => placeholder(a, '{}'))
    if (argv.length > 0) s.run(argv, { stdin: () => undefined, appended: args[end]?.text === '+' })
    i = end
  }
}

/** `eval words…`: the words joined by spaces are a script. */
const evalHandler: Handler = (s, args) => {
  if (args.length === 0) return
  if (args.some((a) => a.dynamic)) return s.markDynamic()
  s.scriptText(args.map((a) => a.text).join(' '))
}

/** `trap 'script' SIGNAL…`: the script runs when the signal (or EXIT) comes. */
const trap: Handler = (s, args) => {
  let i = 0
  while (i < args.length && /^-[lp]*$/.test((args[i] as Word).text) && (args[i] as Word).text !== '-') i++
  if ((args[i] as Word | undefined)?.text === '--') i++
  const operands = args.slice(i)
  const action = operands[0]
  if (!action || action.text === '-' || action.text === '') return
  if (operands.length === 1 && !action.dynamic && /^(SIG)?[A-Z0-9+-]+$/i.test(action.text)) return
  s.script(action)
}

/** `alias name='script'`: with `expand_aliases`, the name runs the script. */
const alias: Handler = (s, args) => {
  for (const a of args) {
    if (a.dynamic) {
      s.markDynamic()
      continue
    }
    const eq = a.text.indexOf('=')
    if (eq > 0) s.scriptText(a.text.slice(eq + 1))
  }
}

/** `source FILE` / `. FILE`: the file's commands are unknown, unless it is standard input. */
const source: Handler = (s, args, context) => {
  const file = args[0]?.text === '--' ? args[1] : args[0]
  if (file) s.scriptFile(file, context)
}

/** `printf -v NAME format …`: NAME gets a value made at run time. A computed first word may be `-v`. */
const printf: Handler = (s, args) => {
  const first = args[0]
  if (!first) return
  if (first.dynamic || first.text === '-v') s.assignedName(args[1])
  else if (first.text.startsWith('-v')) s.assign(first.text.slice(2), undefined)
}

/** `read [-a NAME] [NAME…]`: the names get values from input. */
const read: Handler = (s, args) => {
  const scanned = scanOptions(args, { args: 'adinNptu' })
  if (!scanned) return s.markDynamic()
  if (scanned.values.has('a')) s.assignedName(scanned.values.get('a'))
  for (const name of args.slice(scanned.index)) s.assignedName(name)
}

/** `mapfile [-C callback [-c quantum]] [NAME]`: NAME gets lines from input; the callback is evaluated with an index and a line appended. */
const mapfile: Handler = (s, args) => {
  const scanned = scanOptions(args, { args: 'dnOsuCc' })
  if (!scanned) return s.markDynamic()
  if (scanned.values.has('C')) s.callback(scanned.values.get('C'), 2)
  s.assignedName(args[scanned.index])
}

/**
 * `compgen`/`complete`: `-C command` is evaluated and `-F function` called with three words
 * appended, `-W wordlist` is expanded (substitutions run), `-V NAME` (bash 5.3) gets the matches.
 */
const completion: Handler = (s, args) => {
  const scanned = scanOptions(args, { args: 'oAGWFCXPSV' })
  if (!scanned) return s.markDynamic()
  for (const [key, value] of scanned.pairs) {
    if (key === 'C' || key === 'F') s.callback(value, 3)
    else if (key === 'V') s.assignedName(value)
    else if (key === 'W' && value) {
      if (value.dynamic || /[<>]\(/.test(value.text)) s.markDynamic()
      else s.expandedText(value.text)
    }
  }
}

/** `enable -f FILE NAME`: loads a builtin from a shared object, code the gateway cannot see. */
const enable: Handler = (s, args) => {
  const scanned = scanOptions(args, { args: 'f' })
  if (!scanned || scanned.shorts.has('f')) s.markDynamic()
}

/** `hash -p /path/prog name`: `name` now runs `/path/prog`. */
const hash: Handler = (s, args) => {
  const scanned = scanOptions(args, { args: 'p' })
  const path = scanned?.values.get('p')
  if (!scanned) s.markDynamic()
  else if (path) s.program(path)
}

/** `watch [options] command…`: the words joined by spaces run through `sh -c` (with `-x`, as a program). */
const watch: Handler = (s, args, context) => {
  const scanned = readOptions(s, args, WATCH_OPTIONS)
  if (!scanned) return
  const rest = args.slice(scanned.index)
  if (scanned.shorts.has('x') || scanned.longs.has('exec')) return s.run(rest, context)
  if (rest.some((a) => a.dynamic)) return s.markDynamic()
  if (rest.length > 0) s.shellScript(literal(rest.map((a) => a.text).join(' ')))
}

/** `flock [options] lockfile program args…` or `flock lockfile -c script`. */
const flock: Handler = (s, args, context) => {
  const scanned = readOptions(s, args, FLOCK_OPTIONS)
  if (!scanned) return
  const rest = args.slice(scanned.index + 1)
  const first = rest[0]
  if (first && !first.dynamic && (first.text === '-c' || first.text === '--command')) {
    const script = rest[1]
    if (script) s.shellScript(script)
    return
  }
  if (rest.length > 0) s.run(rest, context)
}

/** `script -c command [file]` (util-linux); without `-c` it starts an interactive shell. */
const scriptHandler: Handler = (s, args, context) => {
  const scanned = readOptions(s, args, SCRIPT_OPTIONS)
  if (!scanned) return
  const script = scanned.values.get('c') ?? scanned.values.get('command')
  if (script) s.shellScript(script)
  else {
    s.program(literal('sh'))
    s.stdinScript(context)
  }
}

/** `sg group [-c] command`: the command runs through `/bin/sh -c`. */
const sg: Handler = (s, args, context) => {
  let i = 0
  if (args[i]?.text === '-') i++
  i++
  if (args[i]?.text === '-c') i++
  const rest = args.slice(i)
  s.program(literal('sh'))
  if (rest.length === 0) return s.stdinScript(context)
  if (rest.some((a) => a.dynamic)) return s.markDynamic()
  s.scriptText(rest.map((a) => a.text).join(' '))
}

/** `runuser -u user [--] program args…` (options are taken out wherever they are), or `runuser [-l] user -c script` like su. */
const runuser: Handler = (s, args, context) => {
  const line = readSuOptions(s, args)
  if (!line) return
  if (!line.asUser) return runSu(s, line, context)
  if (line.operands.length > 0) s.run(line.operands, context)
}

/** `coproc [NAME] command`: tree-sitter-bash reads `coproc NAME { … }` as words, so the braces are skipped here. */
const coproc: Handler = (s, args, context) => {
  s.facts.background = true
  let i = 0
  const opens = (w: Word | undefined): boolean => w !== undefined && (w.text === '{' || w.text.startsWith('('))
  if (opens(args[0])) i = 1
  else if (opens(args[1])) i = 2
  const rest = args.slice(i)
  if (rest.length > 0) s.run(rest, context)
}

/** `at`/`batch`: the commands come from standard input (or `-f file`) and run later. */
const at: Handler = (s, args, context) => {
  s.facts.background = true
  const scanned = scanOptions(args, { args: 'qft' })
  if (!scanned) return s.markDynamic()
  // `-f FILE`: the commands are in a file, unseen
  if (scanned.values.has('f')) s.markDynamic()
  else if (!hasAny(scanned.shorts, 'lrdc')) s.stdinScript(context)
}

/** ssh options that name a command run on the local machine, or on the remote one (RemoteCommand, judged here too). */
const LOCAL_COMMAND_OPTIONS = /^\s*(proxycommand|localcommand|knownhostscommand|remotecommand)\s*(?:=\s*|\s+)(.*)$/is
/** An ssh option name followed by its separator: `Port=`, `User `. */
const SSH_OPTION_NAME = /^\s*([a-z]+)\s*(=|\s)/i

/** ssh options that name a shared library (`none`, and `internal` for the security key one, load nothing). */
const LIBRARY_OPTIONS = /^\s*(pkcs11provider|securitykeyprovider)\s*(?:=\s*|\s+)(.*)$/is

/** Scripts given in `-o Option=value` that ssh runs, and libraries it loads. A computed value is dynamic unless its literal start names an option that runs nothing (`-o "Port=$p"`). */
function sshOptions(s: Script, values: Iterable<Word | undefined>): void {
  for (const value of values) {
    if (!value) continue
    if (value.dynamic) {
      const name = SSH_OPTION_NAME.exec(value.prefix)?.[1]
      if (name === undefined || /command|setenv|provider/i.test(name)) s.markDynamic()
      continue
    }
    const m = LOCAL_COMMAND_OPTIONS.exec(value.text)
    if (m?.[2] && m[2].trim().toLowerCase() !== 'none') s.scriptText(m[2])
    // a shared library ssh loads into itself: code the gateway does not see
    const library = LIBRARY_OPTIONS.exec(value.text)
    if (library?.[2] && !/^(none|internal)$/i.test(library[2].trim())) s.markDynamic(`ssh -o ${library[1] ?? ''}: a library ssh loads`)
    // SetEnv=NAME=value… sets the remote command's environment (quotes, if any, are ssh's)
    const env = /^\s*setenv\s*(?:=\s*|\s+)(.*)$/is.exec(value.text)
    if (env?.[1]) for (const pair of env[1].split(/\s+/)) s.environment(literal(pair.replace(/["']/g, '')))
  }
}

/** `ssh [options] destination [options] [command…]`: the remote command is a script (run there, judged here too). */
const ssh: Handler = (s, args) => {
  const spec = { args: 'BbcDEeFIiJLlmOoPpQRSWw' }
  const oValues: Array<Word | undefined> = []
  const collect = (from: number): Scanned | undefined => {
    const scanned = scanOptions(args, spec, from)
    if (!scanned) return undefined
    if (scanned.shorts.has('f')) s.facts.background = true
    for (const [key, value] of scanned.pairs) {
      if (key === 'o') oValues.push(value)
      // a configuration file can name ProxyCommand, LocalCommand, KnownHostsCommand: unseen
      if (key === 'F') s.markDynamic('ssh -F: a configuration file can name commands ssh runs')
      if (key === 'I') s.markDynamic('ssh -I: a PKCS#11 library ssh loads')
    }
    return scanned
  }
  const first = collect(0)
  if (!first) return s.markDynamic()
  const second = collect(first.index + 1)
  if (!second) return s.markDynamic()
  sshOptions(s, oValues)
  const remote = args.slice(second.index)
  if (remote.length === 0) return
  if (remote.some((a) => a.dynamic)) return s.markDynamic()
  s.scriptText(remote.map((a) => a.text).join(' '))
}

/** `scp`/`sftp`: `-S program` replaces ssh, `-D path` (sftp) runs a local server, `-o ProxyCommand=…`. */
const scp: Handler = (s, args) => {
  const scanned = scanOptions(args, { args: 'BbcDFiJlOoPRSsX' })
  if (!scanned) return s.markDynamic()
  sshOptions(s, scanned.pairs.filter(([key]) => key === 'o').map(([, value]) => value))
  if (scanned.values.has('F')) s.markDynamic('scp -F: a configuration file can name commands ssh runs')
  for (const key of ['S', 'D']) {
    const program = scanned.values.get(key)
    if (program) s.program(program)
  }
}

/** `rsync -e 'ssh …'` / `--rsh=…`: a command line rsync runs locally. */
const rsync: Handler = (s, args) => {
  for (let i = 0; i < args.length; i++) {
    const t = (args[i] as Word).text
    if (t === '-e' || t === '--rsh') {
      const value = args[++i]
      if (value) s.script(value)
    } else if (t.startsWith('--rsh=')) s.scriptText(t.slice(6))
    else {
      // bundled short options: -avze 'ssh …', -essh; B, T, f and M take their own argument
      const bundled = /^-([a-zA-Z0-9]*?)e(.*)$/s.exec(t)
      if (!bundled || /[BTfM]/.test(bundled[1] ?? '')) continue
      const value = bundled[2] ? literal(bundled[2]) : args[++i]
      if (value) s.script(value)
    }
  }
}

/** tar's long options whose value it runs as a command, and the options they might be confused with when abbreviated. */
const TAR_COMMAND_OPTIONS = names('to-command use-compress-program info-script new-volume-script rsh-command checkpoint-action')
const TAR_KNOWN = [...TAR_COMMAND_OPTIONS, 'checkpoint']
/** Long options whose argument may be the next word (the values of `--file "$a"`, `--directory "$d"` are not options). */
const TAR_LONG_ARGS = names('file directory exclude exclude-from files-from transform xform owner group mode mtime newer newer-mtime after-date label format blocking-factor record-size tape-length suffix backup starting-file strip-components exclude-tag exclude-tag-under exclude-tag-all index-file volno-file warning occurrence listed-incremental level owner-map group-map')
const TAR_COMPUTED = 'tar: a computed word may be an option that runs a command'
/** Short options that take an argument (`-I PROG` and `-F SCRIPT` run it). */
const TAR_SHORT_ARGS = 'bCfFgHIKLNTVX'

/**
 * GNU tar options that run commands: `--to-command`, `-I`/`--use-compress-program`,
 * `-F`/`--info-script`/`--new-volume-script`, `--rsh-command`, `--checkpoint-action=exec=`, in
 * every form tar reads: abbreviated (`--to-comm`), with the value as the next word, in a bundle
 * (`-xIcurl`), and in the traditional first word (`tar xIf PROG archive`), whose letters take
 * their values from the words after it in order.
 */
const tar: Handler = (s, args) => {
  // --to-command, the volume script and checkpoint exec run through `/bin/sh -c`; the compress and rsh programs are split into words and run
  const value = (name: string, v: Word | undefined): void => {
    if (!v) return
    if (name === 'use-compress-program' || name === 'rsh-command') return s.script(v)
    if (name !== 'checkpoint-action') return s.shellScript(v)
    if (v.dynamic) return s.markDynamic()
    if (v.text.startsWith('exec=')) s.shellScript(literal(v.text.slice(5)))
  }
  let i = 0
  const first = args[0]
  // a computed first word may be the traditional bundle (`xI`) or an option that runs a command
  if (first?.dynamic) return s.markDynamic(TAR_COMPUTED)
  if (first && first.text.length > 0 && !first.text.startsWith('-')) {
    i = 1
    for (const letter of first.text) {
      if (!TAR_SHORT_ARGS.includes(letter)) continue
      const v = args[i++]
      if (letter === 'I') value('use-compress-program', v)
      else if (letter === 'F') value('info-script', v)
    }
  }
  for (; i < args.length; i++) {
    const a = args[i] as Word
    const t = a.text
    if (t === '--') break
    if (a.dynamic) {
      // an option whose name or value is computed (`--to-command=$x`, `-I"$p"`), or a word that may
      // be one: tar reads options among the operands (`tar -xf a "$m"` with m=--to-command=curl)
      if (mayBeOption(a)) s.markDynamic(TAR_COMPUTED)
      continue
    }
    if (t.startsWith('--')) {
      const long = longWord(t, TAR_KNOWN)
      if (long.found === 'ambiguous') s.markDynamic(`ambiguous option --${long.written}`)
      if (TAR_COMMAND_OPTIONS.includes(long.name)) value(long.name, long.value ?? args[++i])
      else if (long.value === undefined && TAR_LONG_ARGS.includes(longOption(long.written, TAR_LONG_ARGS).name)) i++
      continue
    }
    if (t.length < 2 || t[0] !== '-') continue
    for (let j = 1; j < t.length; j++) {
      const letter = t[j] as string
      if (!TAR_SHORT_ARGS.includes(letter)) continue
      const v = j + 1 < t.length ? literal(t.slice(j + 1)) : args[++i]
      if (letter === 'I') value('use-compress-program', v)
      else if (letter === 'F') value('info-script', v)
      break
    }
  }
}

/**
 * `git -c key=value` keys whose value git runs through the shell: ssh, proxy and pager commands,
 * editors, diff, merge and filter drivers, gpg programs, tools, upload and receive packs.
 * Matched against the key in lower case (`alias.*` and `credential.*helper` are read apart).
 */
const GIT_COMMAND_KEYS = /^(core\.(sshcommand|pager|editor|askpass|fsmonitor|gitproxy|alternaterefscommand)|sequence\.editor|diff\.external|pager\..+|gpg\.(.+\.)?program|gpg\.ssh\.defaultkeycommand|(diff|merge|filter|difftool|mergetool|browser|man)\..+\.(textconv|command|driver|clean|smudge|process|cmd|path)|uploadpack\.packobjectshook|remote\..+\.(uploadpack|receivepack))$/
/**
 * Keys git runs nothing from. Any other key makes the line dynamic: git has many more that run a
 * command or load code (`core.hooksPath`, `init.templateDir`, `include.path`, `protocol.ext.allow`
 * with an `ext::` URL, `url.*.insteadOf`), and new ones come with new versions.
 */
const GIT_INERT_KEYS = /^((user|author|committer|color|advice|column|status|log|i18n|gc|maintenance|pull|push|fetch|rebase|branch|safe|http|pack|index|checkout|commit|tag|merge|diff|format|blame|grep|help|feature)\..+|protocol\.version|init\.defaultbranch|core\.(quotepath|autocrlf|safecrlf|filemode|abbrev|ignorecase|eol|whitespace|symlinks|compression|bigfilethreshold|precomposeunicode|preloadindex|untrackedcache|logallrefupdates|commentchar|excludesfile|attributesfile|longpaths|checkstat|trustctime))$/
/** git's global options (before the subcommand) that take the next word as their argument. */
const GIT_GLOBAL_ARGS = ['-C', '--git-dir', '--work-tree', '--namespace', '--config-env', '--attr-source', '--super-prefix']

/** What a credential helper value runs: `!script`; an absolute path, run by the shell; else `git credential-NAME args`, also through the shell. */
function credentialHelper(value: string): string | undefined {
  if (value === '') return undefined
  if (value.startsWith('!')) return value.slice(1)
  return value.startsWith('/') ? value : `git credential-${value}`
}

/**
 * Options of git subcommands whose value git runs through the shell (`git rebase -x CMD`,
 * `git clone -u CMD`, `git push --receive-pack=CMD`). git's parse-options takes an abbreviation
 * (`--exe`), so a long option that begins one of these is read as it.
 */
const GIT_SUBCOMMAND_OPTIONS = new Map<string, { readonly short?: string; readonly long: readonly string[] }>([
  ['rebase', { short: 'x', long: ['exec'] }],
  ['clone', { short: 'u', long: ['upload-pack'] }],
  ['fetch', { long: ['upload-pack'] }],
  ['pull', { long: ['upload-pack'] }],
  ['ls-remote', { long: ['upload-pack'] }],
  ['push', { long: ['receive-pack', 'exec'] }],
  ['send-pack', { long: ['receive-pack', 'exec'] }],
  ['archive', { long: ['exec'] }],
  ['difftool', { short: 'x', long: ['extcmd'] }],
  ['filter-branch', { long: names('env-filter tree-filter index-filter parent-filter msg-filter commit-filter tag-name-filter') }],
])

/**
 * `git -c key=value … subcommand …`: configuration values git runs, and subcommands that run a
 * command. `alias.x=!cmd` is a script and `alias.x=args` the git command line it stands for; a
 * credential helper runs through the shell whatever its form (`credential.helper='x; curl …'`
 * runs curl). `-c` is read among the global options before the subcommand only (after it, `-c`
 * is the subcommand's: `git log -c`).
 */
const git: Handler = (s, args) => {
  let i = 0
  for (; i < args.length; i++) {
    const a = args[i] as Word
    if (a.dynamic) return // code-args marks a computed git argument dynamic
    if (GIT_GLOBAL_ARGS.includes(a.text)) i++
    else if (a.text === '-c') gitSetting(s, args[++i])
    else if (!a.text.startsWith('-')) break
  }
  const subcommand = args[i]?.text ?? ''
  const rest = args.slice(i + 1)
  if (subcommand === 'bisect' && rest[0]?.text === 'run') return s.run(rest.slice(1), { stdin: () => undefined, appended: false })
  const foreach = subcommand === 'submodule' ? rest.findIndex((a) => a.text === 'foreach') : -1
  if (foreach >= 0) {
    const words = rest.slice(foreach + 1)
    const script = words.findIndex((a) => !/^--(recursive|quiet)$/.test(a.text) && a.text !== '-q')
    if (script < 0) return
    if (words.slice(script).some((a) => a.dynamic)) return s.markDynamic()
    return s.scriptText(words.slice(script).map((a) => a.text).join(' '))
  }
  if (subcommand === 'config') return gitConfig(s, rest)
  const spec = GIT_SUBCOMMAND_OPTIONS.get(subcommand)
  if (!spec) return
  for (let j = 0; j < rest.length; j++) {
    const t = (rest[j] as Word).text
    if (t === '--') break
    let value: Word | undefined
    if (t.startsWith('--')) {
      // an ambiguous abbreviation is read as one of these too: it errs towards reporting
      const long = longWord(t, spec.long)
      if (long.found === 'unknown') continue
      value = long.value ?? rest[++j]
    } else if (spec.short && t.length > 1 && t[0] === '-' && t.includes(spec.short)) {
      const at = t.indexOf(spec.short)
      value = at + 1 < t.length ? literal(t.slice(at + 1)) : rest[++j]
    } else continue
    if (value) s.script(value)
  }
}

/** `git config` options whose value is the next word. */
const GIT_CONFIG_ARGS = ['-f', '--file', '--blob', '--type', '--default', '--comment', '--value', '--fixed-value']
/** `git config` verbs (git 2.46) and actions that write no value. */
const GIT_CONFIG_READS = /^(get|list|edit|rename-section|remove-section|unset|--get|--get-all|--get-regexp|--get-urlmatch|--list|-l|--edit|-e|--unset|--unset-all|--rename-section|--remove-section|--get-color|--get-colorbool|--show-origin|--show-scope|--name-only|-z|--null)$/

/**
 * `git config [options] [set] NAME VALUE`: a value written to the configuration is run by the next
 * git command that reads it (`git config alias.x '!curl …'; git x`, in this line or a later
 * session), so it is judged as `git -c NAME=VALUE` is. Reading, listing and unsetting write nothing.
 */
function gitConfig(s: Script, args: readonly Word[]): void {
  const operands: Word[] = []
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as Word
    if (a.dynamic) return s.markDynamic()
    if (GIT_CONFIG_READS.test(a.text)) return
    if (a.text === '--') {
      operands.push(...args.slice(i + 1))
      break
    }
    if (GIT_CONFIG_ARGS.includes(a.text)) i++
    else if (!a.text.startsWith('-')) operands.push(a)
  }
  const [name, value] = operands[0]?.text === 'set' ? operands.slice(1) : operands
  if (!name || !value) return
  if (value.dynamic) return s.markDynamic()
  gitSetting(s, literal(`${name.text}=${value.text}`), 'config')
}

/** One `git -c key[=value]`: a value git runs is a script; a key not known to be inert makes the line dynamic. */
function gitSetting(s: Script, setting: Word | undefined, how = '-c'): void {
  if (!setting) return
  if (setting.dynamic) return s.markDynamic()
  const eq = setting.text.indexOf('=')
  const key = (eq < 0 ? setting.text : setting.text.slice(0, eq)).toLowerCase()
  const value = eq < 0 ? undefined : setting.text.slice(eq + 1)
  if (key.startsWith('alias.')) {
    if (value !== undefined) s.scriptText(value.startsWith('!') ? value.slice(1) : `git ${value}`)
  } else if (/^credential\.(.+\.)?helper$/.test(key)) {
    const script = credentialHelper(value ?? '')
    if (script !== undefined) s.scriptText(script)
  } else if (GIT_COMMAND_KEYS.test(key)) {
    // `-c pager.log` alone is `true` (the default pager); core.fsmonitor=true is the built-in monitor
    if (value !== undefined && !/^(true|false|yes|no|on|off|1|0|)$/i.test(value)) s.scriptText(value)
  } else if (!GIT_INERT_KEYS.test(key)) s.markDynamic(`git ${how} ${key}: git may run code this setting names`)
}

const STRACE_LONG = names('abbrev attach columns const-print-style decode-pids detach-on env fault inject interruptible kvm output raw read signal status string-limit summary-columns summary-sort-by summary-syscall-overhead trace trace-path user verbose write')
/** strace's flags, and the options whose argument comes only after `=`. */
const STRACE_FLAGS = names(
  'absolute-timestamps daemonize debug decode-fds failed-only follow-forks instruction-pointer no-abbrev output-append-mode output-separately quiet relative-timestamps seccomp-bpf stack-traces strings-in-hex successful-only summary summary-only summary-wall-clock syscall-number syscall-times tips timestamps help version',
)

/**
 * `ip netns exec NAME program…`, `ip vrf exec NAME program…`: ip takes any prefix of an object or
 * command that it matches first (`ip net e ns curl`), so a line that may be one is dynamic, as is
 * `ip -batch FILE`.
 */
const ip: Handler = (s, args) => {
  // `ip -batch FILE` reads its commands (netns exec among them) from a file or standard input
  if (args.some((a) => /^--?b(a(t(ch?)?)?)?$/.test(a.text))) return s.markDynamic('ip -batch reads commands from a file')
  const object = args.findIndex((a) => a.dynamic || (a.text.length >= 3 && 'netns'.startsWith(a.text)) || (a.text.length > 0 && 'vrf'.startsWith(a.text)))
  if (object < 0) return
  if (args.slice(object).some((a) => a.dynamic || (a.text.length > 0 && 'exec'.startsWith(a.text)))) s.markDynamic('ip netns exec and ip vrf exec run a program')
}

/** `disown`, `bg`: their operands are jobs, already started; what they say is that something runs in the background. */
const backgroundOnly: Handler = (s) => {
  s.facts.background = true
}

/** Programs whose operands are run as commands or scripts, by basename. */
const HANDLERS = new Map<string, Handler>([
  ['sh', shell], ['bash', shell], ['dash', shell], ['ksh', shell], ['mksh', shell], ['pdksh', shell], ['ash', shell],
  ['rbash', shell], ['yash', shell], ['posh', shell],
  ...['zsh', 'fish', 'csh', 'tcsh'].map((name): [string, Handler] => [name, foreignShell(name)]),
  ['su', su], ['runuser', runuser], ['sg', sg],
  ['eval', evalHandler], ['trap', trap], ['alias', alias], ['source', source], ['.', source], ['hash', hash],
  ['printf', printf], ['read', read], ['mapfile', mapfile], ['readarray', mapfile], ['compgen', completion], ['complete', completion], ['enable', enable],
  ['env', env], ['xargs', xargs], ['find', find], ['watch', watch], ['flock', flock], ['script', scriptHandler],
  ['ssh', ssh], ['scp', scp], ['sftp', scp], ['rsync', rsync], ['tar', tar], ['git', git], ['ip', ip],
  ['coproc', coproc], ['at', at], ['batch', at],
  [
    'sudo',
    wrapper({
      args: 'aCcDgpRrTtUu',
      longArgs: names('auth-type close-from chdir login-class group host prompt chroot role type command-timeout other-user user'),
      longFlags: names('askpass background bell preserve-env edit set-home help login remove-timestamp reset-timestamp list no-update non-interactive preserve-groups stdin shell version validate'),
      longShorts: { background: 'b', edit: 'e', login: 'i', shell: 's' },
      inert: 'e',
      backgroundOptions: 'b',
      shellWithoutProgram: 'is',
      assignments: true,
    }),
  ],
  ['doas', wrapper({ args: 'uC', shellWithoutProgram: 's' })],
  ['pkexec', wrapper({ longArgs: ['user'], longFlags: names('keep-cwd disable-internal-agent help version') })],
  ['nohup', wrapper({ background: true, longFlags: names('help version') })],
  ['setsid', wrapper({ background: true, longFlags: names('ctty fork wait help version') })],
  ['disown', backgroundOnly],
  ['bg', backgroundOnly],
  ['nice', wrapper({ args: 'n', longArgs: ['adjustment'], longFlags: names('help version'), numeric: true })],
  ['ionice', wrapper({ args: 'cnpPu', longArgs: names('class classdata pid pgid uid'), longFlags: names('ignore help version'), longShorts: { pid: 'p', pgid: 'P', uid: 'u' }, inert: 'pPu' })],
  // logsave [-asv] LOGFILE PROGRAM ARGS…
  ['logsave', wrapper({ skip: 1 })],
  ['timeout', wrapper({ args: 'sk', longArgs: names('signal kill-after'), longFlags: names('foreground preserve-status verbose help version'), skip: 1 })],
  ['time', wrapper({ args: 'fo', longArgs: names('format output'), longFlags: names('append verbose quiet portability help version') })],
  ['exec', wrapper({ args: 'a' })],
  // `command -v`/`-V` only describe the program
  ['command', wrapper({ inert: 'vV' })],
  ['builtin', wrapper({})],
  ['stdbuf', wrapper({ args: 'ioe', longArgs: names('input output error'), longFlags: names('help version') })],
  ['chroot', wrapper({ longArgs: names('userspec groups'), longFlags: names('skip-chdir help version'), skip: 1, shellWithoutProgram: '*' })],
  ['strace', wrapper({ args: 'abeEIoOpPsSuUX', longArgs: STRACE_LONG, longFlags: STRACE_FLAGS })],
  ['ltrace', wrapper({ args: 'aADeFlnopsuwx', longArgs: names('align config debug indent library output where'), longFlags: names('demangle no-signals help version') })],
  ['busybox', wrapper({})],
  ['taskset', wrapper({ skip: 1, longFlags: names('all-tasks pid cpu-list help version'), longShorts: { pid: 'p' }, inert: 'p' })],
  [
    'chrt',
    wrapper({
      args: 'DPT',
      longArgs: names('sched-runtime sched-period sched-deadline'),
      longFlags: names('batch deadline fifo idle other rr reset-on-fork all-tasks max pid verbose help version'),
      longShorts: { pid: 'p', max: 'm' },
      skip: 1,
      inert: 'pm',
    }),
  ],
  ['faketime', wrapper({ longArgs: ['date-prog'], longFlags: names('exclude-monotonic disable-shm help version'), skip: 1 })],
  ['unbuffer', wrapper({})],
  ['catchsegv', wrapper({})],
  ['proxychains', wrapper({ args: 'f' })],
  ['proxychains4', wrapper({ args: 'f' })],
  // `torsocks --shell` starts a shell reading standard input
  ['torsocks', wrapper({ args: 'uapP', longArgs: names('user pass address port'), longFlags: names('isolate shell help version'), shellWithoutProgram: '*' })],
  ['ssh-agent', wrapper({ args: 'aEtP' })],
  ['dbus-run-session', wrapper({ longArgs: names('config-file dbus-daemon'), longFlags: names('help version') })],
  [
    'nsenter',
    wrapper({ args: 'tSG', longArgs: names('target setuid setgid wdns'), longFlags: names('all mount uts ipc net pid cgroup user time preserve-credentials root wd no-fork follow-context help version') }),
  ],
  [
    'unshare',
    wrapper({
      args: 'SGRw',
      longArgs: names('setuid setgid root wd map-user map-group map-users map-groups propagation setgroups monotonic boottime'),
      longFlags: names('mount uts ipc net pid user cgroup time fork map-root-user map-current-user map-auto kill-child mount-proc keep-caps help version'),
    }),
  ],
  ['firejail', wrapper({ envOptions: ['env'] })],
  [
    'systemd-run',
    wrapper({
      args: 'upEHM',
      longArgs: names(
        'unit property path-property socket-property timer-property description slice setenv machine host uid gid working-directory nice service-type on-active on-boot on-startup on-unit-active on-unit-inactive on-calendar',
      ),
      longFlags: names('no-ask-password user system scope slice-inherit no-block wait send-sighup same-dir pty pipe quiet remain-after-exit collect shell on-timezone-change on-clock-change help version'),
      longShorts: { shell: 'S' },
      background: true,
      envOptions: ['E', 'setenv'],
      shellWithoutProgram: 'S',
    }),
  ],
])

/** One parsed script: the command line, or a script nested in it. */
class Script {
  /** The text the tree was parsed from (after line continuations are removed). */
  private source = ''

  constructor(
    private readonly parser: Parser,
    readonly facts: Collector,
    private readonly level: number,
    /** The script is `: <<DELIMITER` wrapped around text to expand (see `expandedText`): the `:` is not reported. */
    private readonly expansionOnly = false,
  ) {}

  /** Parses `text` and adds what it runs to the facts. */
  analyze(text: string): void {
    this.facts.budget -= text.length
    if (this.facts.budget < 0) throw new Refused(TOO_MUCH)
    if (text.includes('\0')) throw new Refused(NUL)
    let tree = this.parse(text)
    try {
      // every line, not only one with continuations or odd whitespace: tree-sitter-bash can drop
      // a token and leave its text between nodes (`x - {1..2}q` has no `-` in the tree)
      for (let pass = 0; ; pass++) {
        const continuations: number[] = []
        this.checkGaps(tree.rootNode, text, continuations, 0)
        if (continuations.length === 0) break
        if (pass >= 4) throw new Refused(PARSE_ERROR)
        let joined = ''
        let from = 0
        for (const at of continuations) {
          joined += text.slice(from, at)
          from = at + 2
        }
        text = joined + text.slice(from)
        tree.delete()
        tree = this.parse(text)
      }
      if (text.includes("$'")) checkAnsiCStrings(tree.rootNode)
      checkConcatenations(tree.rootNode)
      checkTouchingWords(tree.rootNode)
      checkReservedWords(tree.rootNode, text)
      this.source = text
      this.walk(tree.rootNode)
    } finally {
      tree.delete()
    }
  }

  private parse(text: string): Tree {
    // Time is bounded by the caller: the gateway runs this on a worker with a budget (the SSH
    // adapter's BackgroundPool), since tree-sitter's error recovery is superlinear on some lines
    // and its progress callback does not stop it promptly.
    const tree = this.parser.parse(text)
    if (!tree) {
      this.parser.reset()
      throw new Refused(PARSE_ERROR)
    }
    if (tree.rootNode.hasError) {
      tree.delete()
      throw new Refused(PARSE_ERROR)
    }
    return tree
  }

  /**
   * Checks the text between tokens: bash separates words only by space, tab and newline, and
   * joins a backslash-newline to what surrounds it; tree-sitter-bash skips more. Continuations
   * are collected (to be removed and the text re-parsed); anything else is refused.
   */
  private checkGaps(node: Node, text: string, continuations: number[], nest: number): void {
    if (nest > MAX_SYNTAX_DEPTH) throw new Refused(TOO_DEEP)
    const literalGaps = LITERAL_GAPS.has(node.type)
    let at = nest === 0 ? 0 : node.startIndex
    const children = kids(node)
    const gap = (from: number, to: number): void => {
      if (literalGaps || from >= to) return
      for (let i = from; i < to; i++) {
        const c = text[i]
        if (c === ' ' || c === '\t' || c === '\n') continue
        if (c === '\\' && text[i + 1] === '\n' && i + 1 < to) {
          continuations.push(i++)
          continue
        }
        throw new Refused(SUSPECT.test(text.slice(i, i + 2)) ? DIVERGENT : DROPPED)
      }
    }
    for (const child of children) {
      gap(at, child.startIndex)
      // an operator or keyword token is its own text (after blanks the lexer took along: `"a ${x}"`
      // gives a `${` token ` ${`); one that is not was lexed from other text (`x\?<<'E'` gives a
      // `<<` token whose text is the backslash)
      if (!child.isNamed && child.childCount === 0 && child.type !== child.text && child.type !== child.text.replace(/^[ \t\n]+/, '')) throw new Refused(DROPPED)
      // a word holds no blank (an escaped one is refused before): `<<< } } x` has the word `} }`
      if (child.type === 'word' && BLANKLESS_WORD_PARENTS.has(node.type) && /[ \t\n]/.test(child.text)) throw new Refused(DROPPED)
      if (child.childCount > 0) this.checkGaps(child, text, continuations, nest + 1)
      at = child.endIndex
    }
    gap(at, nest === 0 ? text.length : node.endIndex)
  }

  /**
   * Visits every node, reporting what each runs, redirects to or puts in the background.
   * `trailing` are redirections of enclosing `redirected_statement`s that bash applies to the
   * last command of their body (`a | b > x` redirects `b`); they are passed down to it.
   */
  private walk(node: Node, trailing: readonly Node[] = NO_NODES): void {
    // (no depth check: checkGaps went through this same tree and refuses one deeper than MAX_SYNTAX_DEPTH)
    // `( … ) > file word`: bash refuses the stray word; tree-sitter-bash makes it a redirect target
    if (trailing.length > 0 && node.type !== 'command' && !COMPOUNDS.has(node.type) && this.redirectWords(trailing).length > 0) throw new Refused(PARSE_ERROR)
    if (SINGLE_LINE.has(node.type)) this.singleLine(node)
    switch (node.type) {
      case 'command':
        return this.command(node, trailing)
      case 'redirected_statement':
      case 'pipeline':
      case 'list':
      case 'negated_command':
        return this.compound(node, trailing)
      case 'comment':
        return
      case '&':
        this.facts.background = true
        return
      case 'file_redirect':
        this.fileRedirect(node)
        break
      case 'heredoc_redirect':
        this.heredoc(node)
        break
      case 'command_substitution': {
        const text = node.text
        if (text.startsWith('`')) {
          const inner = text.slice(1, -1)
          const unescaped = unescapeBackticks(inner)
          if (unescaped !== inner) this.scriptText(unescaped)
        }
        break
      }
      case 'variable_assignment':
        this.variableAssignment(node)
        break
      case 'declaration_command': {
        const keyword = node.firstChild?.type
        if (keyword) this.program(literal(keyword))
        this.declaration(node, keyword ?? '')
        break
      }
      case 'unset_command': {
        const keyword = node.firstChild?.type
        if (keyword) this.program(literal(keyword))
        for (const child of namedKids(node)) {
          if (child.type !== 'variable_assignment' && this.words(child).some(latentCode)) this.markDynamic()
        }
        break
      }
      case 'for_statement':
        this.forStatement(node)
        break
      case 'expansion': {
        const text = node.text
        // ${x@P} expands x as a prompt string, running any $(…) in its value
        if (/@P\}$/.test(text)) this.markDynamic()
        if (text.includes('=')) this.defaultAssignment(node)
        break
      }
      case 'test_command':
        // [[ -v 'a[$(…)]' ]] and [[ x -eq 'a[$(…)]' ]] evaluate the subscript
        if (this.holdsLatentCode(node)) this.markDynamic()
        break
      default:
        if (node.childCount === 0) {
          // an unquoted word never holds a raw newline in bash; tree-sitter-bash sometimes glues the next line's command onto one
          if (UNQUOTED_LEAVES.has(node.type) && node.text.includes('\n')) throw new Refused(PARSE_ERROR)
          if (BACKTICK_LEAVES.has(node.type)) {
            const text = node.text
            if (text.includes('`')) for (const script of backtickScripts(text)) this.scriptText(script)
            if (text.includes('/dev/')) this.networkText(text)
          } else if (node.type === 'raw_string' || node.type === 'ansi_c_string') {
            const text = node.text
            if (text.includes('/dev/')) this.networkText(text)
            // "${x:-'$(…)'}": inside double quotes bash reads these quotes as characters, and runs what
            // they hold; "${x:-$'…'}" decodes the escapes (extquote) but still runs a $(…) or backticks inside
            const inner = text.slice(node.type === 'raw_string' ? 1 : 2, -1)
            if (/[$`]/.test(inner) && this.insideDoubleQuotes(node)) this.expandedText(inner)
          }
          return
        }
    }
    for (const child of kids(node)) this.walk(child)
  }

  /** Whether a literal word under `node` holds `$(` or a backtick. */
  private holdsLatentCode(node: Node): boolean {
    for (const child of namedKids(node)) {
      const type = child.type
      if (type === 'word' || type === 'raw_string' || type === 'string' || type === 'ansi_c_string' || type === 'concatenation') {
        if (this.words(child).some(latentCode)) return true
      } else if (child.childCount > 0 && type !== 'command_substitution' && this.holdsLatentCode(child)) return true
    }
    return false
  }

  /** Whether a node is inside a double-quoted string or a heredoc body (not across a command substitution). */
  private insideDoubleQuotes(node: Node): boolean {
    for (let p = node.parent; p; p = p.parent) {
      const type = p.type
      if (type === 'string' || type === 'heredoc_body') return true
      if (type === 'command_substitution' || type === 'process_substitution' || type === 'program') return false
    }
    return false
  }

  /**
   * `declare`, `typeset`, `local`, `export`, `readonly`: `NAME=value` words are assignments
   * (`variable_assignment` children are walked on their own); a computed word may assign any
   * variable; `-n` makes a name a reference to another variable, which a later assignment sets.
   */
  private declaration(node: Node, keyword: string): void {
    const references = keyword === 'declare' || keyword === 'typeset' || keyword === 'local'
    let nameref = false
    let options = true
    for (const child of namedKids(node)) {
      if (child.type === 'variable_assignment') {
        options = false
        if (!nameref) continue
        const target = child.childForFieldName('value')
        const words = target ? this.words(target) : []
        if (words.length !== 1 || words[0]?.dynamic || referencesSpecial(words[0]?.text ?? '')) this.markDynamic()
        continue
      }
      // a bare name: `export NAME`, `declare -n NAME` (a reference whose target the next assignment sets)
      if (child.type === 'variable_name') {
        options = false
        if (nameref) this.markDynamic()
        continue
      }
      for (const word of this.words(child)) {
        if (word.dynamic) {
          const eq = word.prefix.indexOf('=')
          if (eq < 0) this.markDynamic()
          else this.assign(word.prefix.slice(0, eq).replace(/\+$/, ''), undefined, false, true)
          continue
        }
        if (latentCode(word)) this.markDynamic()
        if (options && /^[-+]./.test(word.text)) {
          if (references && word.text[0] === '-' && word.text.includes('n')) nameref = true
          continue
        }
        options = false
        const m = /^([^=]+?)(\+?)=([\s\S]*)$/.exec(word.text)
        if (m) {
          this.assign(m[1] as string, literal(m[3] as string), m[2] === '+', true)
          if (nameref && referencesSpecial(m[3] as string)) this.markDynamic()
        } else if (nameref) this.markDynamic()
      }
    }
  }

  /** `for NAME in words`, `select NAME in words`: NAME gets each word in turn (the positional parameters without `in`). */
  private forStatement(node: Node): void {
    const name = node.childForFieldName('variable')?.text
    if (!name) return
    let values = false
    for (let i = 0; i < node.childCount; i++) {
      const child = node.child(i)
      if (!child) continue
      if (child.type === 'in') values = true
      else if (node.fieldNameForChild(i) === 'value') for (const word of this.words(child)) this.assign(name, word)
    }
    if (!values) this.assign(name, undefined)
  }

  /** `${NAME=word}`, `${NAME:=word}`: NAME gets the word when it is unset (or empty). */
  private defaultAssignment(node: Node): void {
    let name: string | undefined
    let indirect = false
    let at = -1
    for (let i = 0; i < node.childCount && at < 0; i++) {
      const child = node.child(i)
      if (!child) continue
      const type = child.type
      if (type === '!') indirect = true
      else if (name === undefined && type === 'variable_name') name = child.text
      else if (name === undefined && type === 'subscript') name = child.childForFieldName('name')?.text ?? ''
      else if (type === '=' || type === ':=') at = i
      else if (name !== undefined) return
    }
    if (at < 0 || name === undefined) return
    if (indirect) return this.markDynamic()
    const values: Node[] = []
    for (let i = at + 1; i < node.childCount; i++) {
      const child = node.child(i)
      if (child && child.type !== '}') values.push(child)
    }
    const first = values[0]
    if (!first) return this.assign(name, literal(''))
    const words = values.length === 1 && !(first.type === 'raw_string' && this.insideDoubleQuotes(node)) ? this.words(first) : []
    this.assign(name, words.length === 1 ? words[0] : undefined)
  }

  /** Refuses a node whose children are separated by a newline where bash would end the command. */
  private singleLine(node: Node): void {
    let at = -1
    for (const child of kids(node)) {
      if (at >= 0 && at < child.startIndex && this.source.slice(at, child.startIndex).includes('\n')) throw new Refused(PARSE_ERROR)
      at = child.endIndex
    }
  }

  /** Statements whose redirections, or whose last part, carry redirections to a command inside. */
  private compound(node: Node, trailing: readonly Node[]): void {
    const children = kids(node)
    if (node.type === 'redirected_statement') {
      const body = node.firstNamedChild
      const own = children.filter((c) => c.id !== body?.id && REDIRECTS.has(c.type))
      for (const child of children) this.walk(child, child.id === body?.id ? [...trailing, ...own] : NO_NODES)
      return
    }
    const last = node.lastNamedChild
    for (const child of children) this.walk(child, child.id === last?.id ? trailing : NO_NODES)
  }

  /** A simple command: its name, arguments (including words tree-sitter put after a redirection), and what it runs. */
  private command(node: Node, trailing: readonly Node[]): void {
    let name: Word[] = []
    const args: Node[] = []
    const redirects: Node[] = []
    let previous: Node | undefined
    for (const child of kids(node)) {
      const type = child.type
      // An operator-like token among the words (`make == build`, `make -C$"x"`): tree-sitter-bash
      // drops or splits what bash reads as one word. So are two word nodes with nothing between them.
      if (!child.isNamed) throw new Refused(SPLIT_TOKEN)
      const word = type === 'command_name' || (!REDIRECTS.has(type) && type !== 'comment')
      // (an assignment too: `x=$a\# q` is one word for bash, an assignment and a command `#` in the tree)
      // and a word that touches a redirection: `<<<$'\e'\~ q` is the here-string `\e~` for bash
      if (word && previous && previous.endIndex === child.startIndex) throw new Refused(SPLIT_TOKEN)
      previous = word || REDIRECTS.has(type) ? child : undefined
      if (type === 'command_name') {
        const word = child.firstChild
        // `coproc NAME { … }` leaves a lone `}` (or `{`) as a command name; after an assignment (`x= }`) it is one for bash too
        if (word && !(word.type === 'word' && (word.text === '}' || word.text === '{') && node.firstChild?.id === child.id)) name = this.words(word)
        // reported before what its arguments run, so programs come in the order they are written
        if (name[0] && !(this.expansionOnly && node.startIndex === 0)) this.program(name[0])
      } else if (REDIRECTS.has(type)) redirects.push(child)
      else if (child.isNamed && type !== 'variable_assignment' && type !== 'comment') args.push(child)
      this.walk(child)
    }
    redirects.push(...trailing)
    if (name.length === 0 || (this.expansionOnly && node.startIndex === 0)) return
    const extra = this.redirectWords(redirects)
    const descriptors = new Map<number, string>()
    const argNodes = [...args, ...extra].sort((a, b) => a.startIndex - b.startIndex).filter((a) => {
      // `0</dev/null` after a word: tree-sitter reads the 0 as an argument, bash as the descriptor
      const descriptor = /^\d+$/.test(a.text) && redirects.some((r) => r.startIndex === a.endIndex && !kids(r).some((c) => c.type === 'file_descriptor'))
      if (descriptor) descriptors.set(a.endIndex, a.text)
      return !descriptor
    })
    const argWords = argNodes.map((a) => this.words(a))
    const argv = [...name, ...argWords.flat()]
    if (this.isWholeLine(node) && redirects.length === 0 && !kids(node).some((c) => c.type === 'variable_assignment') && argv.every((w) => !w.dynamic)) {
      this.facts.argv = argv.map((w) => w.text)
    }
    const context = { stdin: () => this.stdinOf(redirects, descriptors), appended: false }
    const first = node.firstChild
    if (first?.type === 'command_name' && (first.text === 'time' || first.text === '!')) return this.keywords([first, ...argNodes], [name, ...argWords], context)
    this.run(argv, context)
  }

  /**
   * `time` and `!` written plainly as the first word are bash's reserved words, which tree-sitter-bash
   * reads as a command with arguments. `time` (not /usr/bin/time) takes only `-p`, then `--`, and
   * times the pipeline after it; `!` negates it; either may follow the other (`time -p ! curl`,
   * `! ! curl`), and the pipeline's first command may start with assignments (`time x= curl`).
   * `nodes` are the words as written, `words` what each stands for.
   */
  private keywords(nodes: readonly Node[], words: readonly Word[][], context: RunContext): void {
    let i = 0
    for (;;) {
      const text = nodes[i]?.text
      if (text === '!') i++
      else if (text === 'time') {
        for (const word of words[i] ?? []) this.program(word)
        i++
        if (nodes[i]?.text === '-p') i++
        if (nodes[i]?.text === '--') i++
      } else break
    }
    for (; nodes[i] && BASH_ASSIGNMENT.test(nodes[i]?.text ?? ''); i++) {
      // an assignment, not a word: the line has no argv, as `x=1 curl` has none (and bash does not brace-expand it)
      this.facts.argv = undefined
      const value = words[i] ?? []
      this.environment(value.length === 1 ? value[0] : literal(nodes[i]?.text ?? ''), true)
    }
    this.run(words.slice(i).flat(), context)
  }

  /** The node is the command line's only statement (comments aside), at the top level. */
  private isWholeLine(node: Node): boolean {
    if (this.level !== 0 || this.expansionOnly || node.parent?.type !== 'program') return false
    return namedKids(node.parent).filter((c) => c.type !== 'comment').length === 1
  }

  /** Words tree-sitter attached to redirections that bash gives to the command: a file redirection's second and later targets, a heredoc's arguments. */
  private redirectWords(redirects: readonly Node[]): Node[] {
    const words: Node[] = []
    for (const r of redirects) {
      if (r.type === 'file_redirect') {
        words.push(...this.destinations(r).slice(1))
      } else if (r.type === 'heredoc_redirect') {
        for (let i = 0; i < r.childCount; i++) {
          const field = r.fieldNameForChild(i)
          const child = r.child(i)
          if (!child) continue
          if (field === 'argument') words.push(child)
          else if (field === 'redirect' && child.type === 'file_redirect') words.push(...this.destinations(child).slice(1))
        }
      }
    }
    return words
  }

  private destinations(redirect: Node): Node[] {
    return namedKids(redirect).filter((c) => c.type !== 'file_descriptor')
  }

  /** The script a command reads on standard input, if a heredoc or here-string gives it literally. */
  private stdinOf(redirects: readonly Node[], descriptors: ReadonlyMap<number, string>): Stdin {
    let stdin: Node | undefined
    const nested = redirects.flatMap((r) => (r.type === 'heredoc_redirect' ? [r, ...namedKids(r).filter((c) => REDIRECTS.has(c.type))] : [r]))
    for (const r of [...nested].sort((a, b) => a.startIndex - b.startIndex)) {
      const fd = kids(r).find((c) => c.type === 'file_descriptor')?.text ?? descriptors.get(r.startIndex)
      const operator = kids(r).find((c) => !c.isNamed)?.type ?? ''
      const input = r.type !== 'file_redirect' || operator === '<' || operator === '<&'
      if (input && (fd === undefined || fd === '0')) stdin = r
    }
    if (!stdin) return undefined
    if (stdin.type === 'herestring_redirect') {
      const word = namedKids(stdin).find((c) => c.type !== 'file_descriptor')
      const value = word ? this.words(word) : []
      return value.length === 1 && !value[0]?.dynamic ? { script: `${value[0]?.text ?? ''}\n` } : undefined
    }
    if (stdin.type === 'heredoc_redirect') return this.heredocText(stdin)
    const target = this.destinations(stdin)[0]
    return target?.text === '/dev/null' ? { script: '' } : undefined
  }

  /** The text of a heredoc, if it is literal (a quoted delimiter, or no expansions in the body). */
  private heredocText(redirect: Node): Stdin {
    const start = kids(redirect).find((c) => c.type === 'heredoc_start')
    const body = kids(redirect).find((c) => c.type === 'heredoc_body')
    if (!body) return { script: '' }
    if (start && /['"\\]/.test(start.text)) return { script: body.text }
    if (namedKids(body).some((c) => c.type !== 'heredoc_content')) return undefined
    const text = body.text
    if (/(^|[^\\])(\\\\)*(`|\$[\w{(@*#?$!-])/.test(text)) return undefined
    return { script: text.replace(/\\([\\$`])|\\\n/g, (_m, c: string | undefined) => c ?? '') }
  }

  /** An unquoted heredoc runs backticks in its body, which tree-sitter-bash leaves as text. */
  private heredoc(redirect: Node): void {
    const start = kids(redirect).find((c) => c.type === 'heredoc_start')
    const body = kids(redirect).find((c) => c.type === 'heredoc_body')
    if (!body || (start && /['"\\]/.test(start.text))) return
    const text = body.text
    if (!text.includes('`')) return
    const skip = namedKids(body)
      .filter((c) => c.type !== 'heredoc_content')
      .map((c) => [c.startIndex - body.startIndex, c.endIndex - body.startIndex] as const)
    for (const script of backtickScripts(text, skip)) this.scriptText(script)
  }

  /**
   * `> file`, `< file`, `&> file`, `>& file` (not `>&2`): the target is reported, and checked for
   * /dev/tcp. A computed target is taken for one unless its literal start rules it out; `<&` only
   * duplicates descriptors, and a process substitution is a `/dev/fd/` path.
   */
  private fileRedirect(node: Node): void {
    const target = this.destinations(node)[0]
    if (!target) return
    const operator = kids(node).find((c) => !c.isNamed)?.type ?? ''
    for (const word of this.words(target)) {
      if ((operator === '>&' || operator === '<&') && /^(\d+-?|-)$/.test(word.text)) continue
      this.facts.redirects.add(word.text)
      if (word.dynamic && operator !== '<&' && target.type !== 'process_substitution' && !rulesOutNetwork(word.prefix)) this.facts.network = true
    }
    // `~` is HOME, checked where it is assigned; `~+`, `~-` and `~N` are directories `cd` and `pushd` change
    const tilde = /^~([/+-]|\d|$)/.exec(target.text)
    if (tilde) {
      if (tilde[1] === '/' || tilde[1] === '') this.facts.tildeRedirect = true
      else this.facts.network = true
    }
  }

  /** `NAME=value`, `NAME+=value`, `NAME[i]=value`, `NAME=(values…)`. */
  private variableAssignment(node: Node): void {
    const target = node.childForFieldName('name')
    const name = (target?.type === 'subscript' ? target.childForFieldName('name')?.text : target?.text) ?? ''
    // `*x=q` is no assignment for bash but a word it runs (a glob); tree-sitter-bash takes any name
    if (!VARIABLE_NAME.test(name)) throw new Refused(SPLIT_TOKEN)
    const append = kids(node).some((c) => c.type === '+=')
    const value = node.childForFieldName('value')
    if (!value) return this.assign(name, literal(''), append, true)
    const elements = value.type === 'array' ? namedKids(value) : [value]
    for (const element of elements) for (const word of this.words(element)) this.assign(name, word, append, true)
  }

  /**
   * A variable gets a value (`NAME=value`, `env NAME=value`, `declare`, `for NAME in`,
   * `${NAME:=value}`); `value` is undefined when only known at run time (`read NAME`,
   * `printf -v NAME`, `mapfile NAME`). The value of a variable that bash or a program runs as code
   * is parsed, or is dynamic when computed or appended to; another literal holding `$(` is latent code.
   */
  assign(target: string, value: Word | undefined, append = false, environment = false): void {
    const name = target.replace(/\[[\s\S]*$/, '')
    if (environment) this.facts.env.add(name)
    if (changesWhatRuns(name) && !codeVariable(name)) this.markDynamic(`${name}= changes what runs`)
    if (TILDE_VARIABLES.has(name) && (!value || !rulesOutNetwork(value.dynamic ? value.prefix : value.text))) this.facts.tildeChanged = true
    if (!codeVariable(name)) {
      if (value && latentCode(value)) this.markDynamic()
      return
    }
    if (!value || value.dynamic || append) return this.markDynamic()
    if (COMMAND_VARIABLES.has(name)) return this.scriptText(value.text)
    // bash defines the function from `f () { …; }`: the body is a script
    if (EXPORTED_FUNCTION.test(name)) return this.scriptText(value.text.replace(/^\s*\(\s*\)/, ''))
    this.expandedText(value.text)
    // BASH_ENV and ENV name a file the shell sources: its content is unseen
    if (STARTUP_VARIABLES.has(name) && value.text !== '') this.markDynamic()
  }

  /** A builtin gives the variable a word names a value made at run time (`read NAME`, `printf -v NAME`); a computed name may be any variable. */
  assignedName(word: Word | undefined): void {
    if (!word) return
    if (word.dynamic) this.markDynamic()
    else this.assign(word.text, undefined)
  }

  /** `NAME=value` given to `env`; `value` undefined when computed. */
  assignment(name: string, value: Word | undefined): void {
    this.assign(name, value, false, true)
    if (value && networkWord(value)) this.facts.network = true
  }

  /**
   * A word that may be `NAME=value` for a program's environment (`sudo NAME=value program`,
   * `systemd-run -E`, ssh `SetEnv`). Returns whether it is one: a word that is not may be the
   * program. As an option's argument (`operand` false), a computed word may set any variable.
   */
  environment(word: Word | undefined, operand = false): boolean {
    if (!word) return false
    const text = word.dynamic ? word.prefix : word.text
    const eq = text.indexOf('=')
    if (eq <= 0 || /[/\s]/.test(text.slice(0, eq))) {
      if (!operand && word.dynamic) this.markDynamic()
      return false
    }
    this.assignment(text.slice(0, eq), word.dynamic ? undefined : literal(text.slice(eq + 1)))
    return true
  }

  /**
   * A literal bash expands like a double-quoted string when it uses it (a prompt, BASH_ENV, a
   * `compgen -W` list): its substitutions are parsed as those of a heredoc body. Prompt escapes are
   * decoded loosely, so that more is found rather than less: an octal escape becomes its character
   * (`\044(` is `$(`), every other backslash is dropped.
   */
  expandedText(text: string): void {
    if (!/[$`\\]/.test(text)) return
    const body = text.replace(/\\([0-7]{1,3}|[\s\S]?)/g, (_m, c: string) => {
      const char = /^[0-7]/.test(c) ? String.fromCharCode(Number.parseInt(c, 8) & 0xff) : c
      return char === '\\' || char === '\0' ? '' : char
    })
    if (!/[$`]/.test(body)) return
    let delimiter = 'GATEHOUSE_EOF'
    while (body.includes(delimiter)) delimiter += '_'
    this.scriptText(`: <<${delimiter}\n${body}\n${delimiter}\n`, true)
  }

  /** A string a builtin evaluates with `appended` words from input added (`mapfile -C`, `compgen -C`/`-F`). */
  callback(word: Word | undefined, appended: number): void {
    if (!word) return
    if (word.dynamic) return this.markDynamic()
    this.scriptText(word.text + ' "$_"'.repeat(appended))
  }

  /** A shell or `source` runs a script file: its own standard input is read as such; any other file's content is unseen. */
  scriptFile(file: Word, context: RunContext): void {
    if (!file.dynamic && stdinPath(file.text)) this.stdinScript(context)
    else this.markDynamic()
  }

  private networkText(text: string): void {
    if (/\/dev\/+(tcp|udp)\//.test(text)) this.facts.network = true
  }

  /** The words a node stands for after quote removal and brace expansion. */
  words(node: Node): Word[] {
    const type = node.type
    if ((type === 'word' || type === 'number') && PLAIN_WORD.test(node.text)) {
      const word = literal(node.text)
      if (word.text.includes('/dev/') && networkWord(word)) this.facts.network = true
      return [word]
    }
    const b = new WordBuilder()
    this.build(node, b)
    if (!b.dynamic && b.text.startsWith('~') && b.quoted[0] === '0' && !b.text.includes('/')) b.computed()
    if (!b.dynamic && isGlob(b.text, b.quoted)) b.computed()
    let words: Word[]
    if (b.dynamic) words = [{ text: node.text, dynamic: true, prefix: b.prefix ?? '' }]
    else if (!b.quoted.includes('0') || !b.text.includes('{')) words = [literal(b.text)]
    else {
      // an empty result (`{,x}`) is dropped by bash unless a quote made it (`""{,x}`); the mask cannot tell, so it is computed
      const expanded = expandBraces(b.text, b.quoted)
      // and a result that starts with an unquoted `~` (`{,}~`) is tilde-expanded after brace expansion, like the word above
      const computed = !expanded || expanded.some(([w, q]) => w === '' || (w.startsWith('~') && q[0] === '0' && !w.includes('/')))
      words = computed ? [{ text: node.text, dynamic: true, prefix: '' }] : expanded.map(([w]) => literal(w))
    }
    for (const word of words) if (networkWord(word)) this.facts.network = true
    return words
  }

  private build(node: Node, b: WordBuilder): void {
    switch (node.type) {
      case 'word':
      case 'number':
      case 'brace_expression':
        // `$@{1..2}`: tree-sitter-bash puts a parameter into the brace token; its value is only known at run time
        if (node.type === 'brace_expression' && /[$`]/.test(node.text)) {
          b.computed()
          return b.add(node.text, false)
        }
        return node.type === 'brace_expression' ? b.add(node.text, false) : b.unquoted(node.text)
      case 'raw_string':
        return b.add(node.text.slice(1, -1), true)
      case 'ansi_c_string': {
        const decoded = decodeAnsiC(node.text.slice(2, -1))
        if (decoded !== undefined) return b.add(decoded, true)
        b.computed()
        return b.add(node.text, false)
      }
      case 'translated_string':
        // `$"ls"` is looked up in the message catalog TEXTDOMAIN and TEXTDOMAINDIR name, which the
        // caller can set and write: its text is only known at run time, from its start (the
        // translation of `$"/tmp/x"` may be `/dev/tcp/…`, so its text is no prefix of the word)
        b.computed()
        for (const child of namedKids(node)) this.build(child, b)
        return
      case 'string': {
        const text = node.text
        const base = node.startIndex
        let at = 1
        for (const child of namedKids(node)) {
          b.doubleQuoted(text.slice(at, child.startIndex - base))
          if (child.type === 'string_content') b.doubleQuoted(child.text)
          else {
            b.computed()
            b.add(child.text, true)
          }
          at = child.endIndex - base
        }
        b.doubleQuoted(text.slice(at, Math.max(at, text.length - 1)))
        return
      }
      case 'concatenation':
        for (const child of kids(node)) this.build(child, b)
        return
      default:
        b.computed()
        b.add(node.text, false)
    }
  }

  /** Runs a program with its arguments: reports it, then looks through it if it runs something else. */
  run(argv: readonly Word[], context: RunContext): void {
    const [program, ...args] = argv
    if (!program) return
    if (program.dynamic) return this.program(program)
    this.program(program)
    const base = basename(program.text)
    if (DATA_EVALUATING_BUILTINS.has(base) && args.some(latentCode)) this.markDynamic()
    HANDLERS.get(base)?.(this, args, context)
    const spec = CODE_ARGS.get(base)
    if (spec) {
      // a computed argument of such a program may be the option that makes it read code
      if (args.some((a) => a.dynamic)) return this.markDynamic(`${base} is given an argument computed at run time`)
      if (spec.environment && this.facts.env.size > 0) this.markDynamic(`${base} takes ${[...this.facts.env][0] ?? ''}= from its environment`)
      const reason = codeArgsReason(base, args.map((a) => a.text))
      if (reason) this.markDynamic(reason)
    }
  }

  /** Reports a program word without running its arguments. */
  program(word: Word): void {
    if (word.dynamic) {
      this.markDynamic()
      this.facts.commands.add(word.text)
      return
    }
    this.facts.commands.add(word.text)
    const base = basename(word.text)
    if (base) this.facts.programs.add(base)
    // a program the caller named by path is also reported by that path: an allowlist of names
    // (`make`) then does not admit `~/bin/make`, and a denylist of names still catches `/usr/bin/curl`
    if (base && base !== word.text) this.facts.programs.add(word.text)
  }

  /**
   * A script a program hands to the shell (`flock -c`, `script -c`, `watch`, `sg`, `su -c`): the
   * shell is a program the line starts, reported as `sh` (the program starts `$SHELL` or
   * `/bin/sh`; a line that sets SHELL is dynamic), and its script is parsed.
   */
  shellScript(word: Word): void {
    this.program(literal('sh'))
    this.script(word)
  }

  /** A script given as a word: parsed if literal, otherwise the facts are incomplete. */
  script(word: Word): void {
    if (word.dynamic) this.markDynamic()
    else this.scriptText(word.text)
  }

  /** Parses a nested script and adds what it runs. */
  scriptText(text: string, expansionOnly = false): void {
    if (text.trim() === '') return
    if (this.level + 1 > MAX_SCRIPT_DEPTH) throw new Refused(TOO_DEEP)
    new Script(this.parser, this.facts, this.level + 1, expansionOnly).analyze(text)
  }

  /** A shell reading commands from standard input: parsed if a heredoc or here-string gives them, otherwise unknown. */
  stdinScript(context: RunContext): void {
    const stdin = context.stdin()
    if (stdin) this.scriptText(stdin.script)
    else this.markDynamic()
  }

  markDynamic(reason?: string): void {
    this.facts.dynamic = true
    if (reason) this.facts.reasons.add(reason)
  }
}
