/**
 * What a Redis command does, read from the server's own command table: the upstream's `COMMAND`
 * reply gives each command's (and subcommand's) flags, ACL categories and key positions, so the
 * adapter names keys and kinds exactly as the server it forwards to does, whatever its version
 * and modules. Commands whose keys move with their arguments (`movablekeys`: EVAL's numkeys,
 * ZUNIONSTORE, SORT … STORE, XREAD …) are asked of the server itself (`COMMAND GETKEYS`).
 */
import { RespError, type ArgList, type RespValue } from './resp.js'

export interface CommandSpec {
  readonly name: string
  readonly arity: number
  readonly flags: ReadonlySet<string>
  readonly categories: ReadonlySet<string>
  readonly firstKey: number
  readonly lastKey: number
  readonly step: number
  readonly subcommands: ReadonlyMap<string, CommandSpec>
}

/** The attributes of one command (`request.attrs.redis`). */
export interface RedisFacts {
  /** The command, lower-cased, and its subcommand for container commands (`config`, `get`). */
  command: string
  subcommand?: string
  /** The keys it names, as the server reads them. */
  keys: string[]
  write: boolean
  readonly: boolean
  /** ACL categories @admin, @dangerous, @scripting, @pubsub … without the @. */
  categories: string[]
  admin: boolean
  dangerous: boolean
  scripting: boolean
  /** Not in the upstream's command table: what it does cannot be said. */
  unknown: boolean
  /**
   * Set when the command reaches keys its arguments do not name, so no key rule can judge it: a
   * server-side script (it may call any command on any key), or SORT/SORT_RO whose BY or GET
   * patterns make the server read keys named by the data. The policy engine allows such a
   * request only by a rule with `allowOpaque: true` (core's rule for code it cannot analyse).
   */
  opaque?: true
  code?: { language: string; analysed: false; why: string }[]
  /** Databases other than the selected one the command writes into or swaps (MOVE, COPY … DB n, SWAPDB). */
  targetDbs?: (number | string)[]
  /**
   * The command answers with key names it does not name (KEYS, SCAN, RANDOMKEY, CLUSTER
   * GETKEYSINSLOT): a key rule judges the keys a command names, not the names it lists, and key
   * names can be secrets themselves (`session:<token>`). `patterns`: the glob the names are
   * matched against (`*` when the command takes none).
   */
  enumerates: boolean
  patterns?: string[]
}

/** The key names a command lists without naming them, as the glob it matches them against; undefined when it lists none. */
export function enumeratedPatterns(command: string, subcommand: string | undefined, argv: ArgList): string[] | undefined {
  if (command === 'keys') return [str(argv.at(1))]
  if (command === 'randomkey' || (command === 'cluster' && subcommand === 'getkeysinslot')) return ['*']
  if (command !== 'scan') return undefined
  // SCAN cursor [MATCH pattern] [COUNT n] [TYPE t], read as the server reads it: in pairs, the last MATCH counts
  let pattern = '*'
  for (let i = 2; i + 1 < argv.length; i += 2) if (str(argv.at(i)).toLowerCase() === 'match') pattern = str(argv.at(i + 1))
  return [pattern]
}

/** The databases MOVE, COPY … DB n and SWAPDB reach beyond the selected one. */
export function targetDbsOf(command: string, argv: ArgList): (number | string)[] | undefined {
  const db = (v: Buffer | undefined) => {
    const t = str(v)
    return /^-?\d+$/.test(t) ? Number(t) : t
  }
  if (command === 'move' && argv.length >= 3) return [db(argv.at(2))]
  if (command === 'swapdb' && argv.length >= 3) return [db(argv.at(1)), db(argv.at(2))]
  if (command === 'copy') {
    const out: (number | string)[] = []
    for (let i = 3; i < argv.length; i++) if (str(argv.at(i)).toLowerCase() === 'db') out.push(db(argv.at(++i)))
    return out.length > 0 ? out : undefined
  }
  return undefined
}

/** Why a command reaches keys beyond those it names, if it does. */
export function opaqueReason(command: string, argv: ArgList, scripting: boolean): { language: string; analysed: false; why: string } | undefined {
  if (scripting && SCRIPT_RUNNERS.has(command)) return { language: 'lua', analysed: false, why: `${command} runs server-side code that may call any command on any key` }
  if (command === 'sort' || command === 'sort_ro') {
    // SORT key [BY pattern] [LIMIT offset count] [GET pattern …] [ASC|DESC] [ALPHA] [STORE dest]:
    // a BY or GET pattern with `*` makes the server read the keys the elements name
    for (let i = 2; i < argv.length; i++) {
      const word = str(argv.at(i)).toLowerCase()
      if (word === 'limit') i += 2
      else if (word === 'store') i += 1
      else if (word === 'by' || word === 'get') {
        const pattern = argv.at(i + 1)
        if (pattern !== undefined && pattern.includes(0x2a)) return { language: 'redis-pattern', analysed: false, why: `${command} ${word.toUpperCase()} ${str(pattern).slice(0, 64)} reads keys named by the sorted elements` }
        i += 1
      }
    }
  }
  return undefined
}

/** Commands that run code on the server (scripts loaded with SCRIPT/FUNCTION LOAD run through these). */
const SCRIPT_RUNNERS = new Set(['eval', 'evalsha', 'eval_ro', 'evalsha_ro', 'fcall', 'fcall_ro'])

const str = (v: RespValue | undefined): string => (Buffer.isBuffer(v) ? v.toString('utf8') : typeof v === 'string' ? v : '')
const num = (v: RespValue | undefined): number => (typeof v === 'number' ? v : Number(str(v)))
const list = (v: RespValue | undefined): string[] => (Array.isArray(v) ? v.map((x) => str(x).toLowerCase().replace(/^@/, '')) : [])

function specOf(entry: RespValue): CommandSpec | undefined {
  if (!Array.isArray(entry) || entry.length < 6) return undefined
  const full = str(entry[0]).toLowerCase()
  const name = full.includes('|') ? full.slice(full.indexOf('|') + 1) : full
  const subs = new Map<string, CommandSpec>()
  for (const s of Array.isArray(entry[9]) ? entry[9] : []) {
    const spec = specOf(s)
    if (spec) subs.set(spec.name, spec)
  }
  return { name, arity: num(entry[1]), flags: new Set(list(entry[2])), firstKey: num(entry[3]), lastKey: num(entry[4]), step: num(entry[5]), categories: new Set(list(entry[6])), subcommands: subs }
}

/** The command table from a `COMMAND` reply. */
export function commandTable(reply: RespValue): Map<string, CommandSpec> {
  const table = new Map<string, CommandSpec>()
  for (const entry of Array.isArray(reply) ? reply : []) {
    const spec = specOf(entry)
    if (spec) table.set(spec.name, spec)
  }
  return table
}

/** The spec that applies to `argv` (a container's subcommand when there is one). */
export function specFor(table: ReadonlyMap<string, CommandSpec>, argv: ArgList): { spec?: CommandSpec; command: string; subcommand?: string } {
  const command = (argv.at(0) as Buffer).toString('utf8').toLowerCase()
  const spec = table.get(command)
  if (!spec) return { command }
  if (spec.subcommands.size > 0 && argv.length > 1) {
    const subcommand = (argv.at(1) as Buffer).toString('utf8').toLowerCase()
    const sub = spec.subcommands.get(subcommand)
    return sub ? { spec: sub, command, subcommand } : { command, subcommand }
  }
  return { spec, command }
}

/** Key positions by the legacy first/last/step triple (what every command without movable keys declares). */
export function keysByPosition(spec: CommandSpec, argv: ArgList): string[] {
  if (spec.firstKey <= 0) return []
  const last = spec.lastKey < 0 ? argv.length + spec.lastKey : spec.lastKey
  const keys: string[] = []
  for (let i = spec.firstKey; i <= last && i < argv.length; i += Math.max(1, spec.step)) keys.push((argv.at(i) as Buffer).toString('utf8'))
  return keys
}

/** The facts of a command; `keys` from the server for movable-keys commands (`getKeys`). */
export async function factsOf(table: ReadonlyMap<string, CommandSpec>, argv: ArgList, getKeys: () => Promise<RespValue>): Promise<RedisFacts | { error: string }> {
  const { spec, command, subcommand } = specFor(table, argv)
  const base = { command, ...(subcommand === undefined ? {} : { subcommand }) }
  if (!spec) return { ...base, keys: [], write: true, readonly: false, categories: [], admin: true, dangerous: true, scripting: false, unknown: true, enumerates: true, patterns: ['*'] }
  // the server refuses a wrong number of arguments before anything runs; so does the gateway (arity < 0: at least -arity)
  if (spec.arity > 0 ? argv.length !== spec.arity : argv.length < -spec.arity) return { error: `ERR wrong number of arguments for '${subcommand ? `${command}|${subcommand}` : command}' command` }
  let keys: string[]
  if (spec.flags.has('movablekeys')) {
    const reply = await getKeys()
    if (reply instanceof RespError) {
      // "The command has no key arguments" is an answer; anything else the server would refuse too
      if (/no key arguments/i.test(reply.message)) keys = []
      else return { error: reply.message }
    } else {
      keys = Array.isArray(reply) ? reply.map(str) : []
    }
  } else {
    keys = keysByPosition(spec, argv)
  }
  const categories = [...spec.categories].sort()
  const opaque = opaqueReason(command, argv, spec.categories.has('scripting'))
  const targetDbs = targetDbsOf(command, argv)
  const patterns = enumeratedPatterns(command, subcommand, argv)
  return {
    ...base,
    ...(targetDbs ? { targetDbs } : {}),
    ...(patterns ? { patterns } : {}),
    enumerates: patterns !== undefined,
    ...(opaque ? { opaque: true as const, code: [opaque] } : {}),
    keys,
    write: spec.flags.has('write'),
    readonly: spec.flags.has('readonly'),
    categories,
    admin: spec.flags.has('admin') || spec.categories.has('admin'),
    dangerous: spec.categories.has('dangerous'),
    scripting: spec.categories.has('scripting'),
    unknown: false,
  }
}
