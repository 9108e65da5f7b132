/**
 * The settings a client asks for at startup: startup parameters other than user, database,
 * replication and options (libpq sends `statement_timeout`, `search_path` … this way when given
 * as connection parameters), and every `-c name=value` or `--name=value` in `options`
 * (`PGOPTIONS`, libpq/psycopg/JDBC `options=`). PostgreSQL applies both the same way, so the
 * gateway treats them the same way too: each is judged as the `SET` it amounts to, and forwarded
 * as a startup parameter when allowed, or the session is refused naming it. None is dropped.
 */

export interface StartupSetting {
  readonly name: string
  readonly value: string
  /** Where the client put it: a startup parameter, or `options`. */
  readonly from: 'parameter' | 'options'
}

/** Startup parameters that are not settings. */
const NOT_SETTINGS = new Set(['user', 'database', 'options', 'replication'])

/** A setting name as PostgreSQL accepts one (custom settings have a dot: `app.tenant`). */
const SETTING_NAME = /^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)*$/

/** The settings in a startup packet, or why the packet cannot be honoured. */
export function startupSettings(params: ReadonlyMap<string, string>): { settings: StartupSetting[] } | { error: string } {
  const settings: StartupSetting[] = []
  for (const [name, value] of params) {
    if (NOT_SETTINGS.has(name) || name.startsWith('_pq_.')) continue

    settings.push({ name, value, from: 'parameter' })
  }
  const options = params.get('options')
  if (options !== undefined) {
    const parsed = parseOptions(options)
    if ('error' in parsed) return parsed
    settings.push(...parsed.settings)
  }
  for (const s of settings) {
    if (!SETTING_NAME.test(s.name)) return { error: `"${printable(s.name)}" is not a setting name` }
    // `Options`, `-c options=…`, `--replication=…`, `_PQ_.x`: names PostgreSQL reads as packet
    // keys once lower-cased, not as settings; they would carry what was never judged.
    const lower = s.name.toLowerCase()
    if (NOT_SETTINGS.has(lower) || lower.startsWith('_pq_.')) return { error: `"${printable(s.name)}" cannot be set at startup` }
  }
  return { settings }
}

/**
 * `options` as PostgreSQL splits it: arguments separated by spaces, a backslash makes the next
 * character literal. `-c name=value`, `-cname=value` and `--name=value` (dashes in the name read
 * as underscores) are settings; any other switch (`-d 5`, `-o …`) is refused, as the gateway
 * cannot judge what it does.
 */
export function parseOptions(text: string): { settings: StartupSetting[] } | { error: string } {
  const args: string[] = []
  let cur = ''
  let has = false
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string
    if (c === '\\' && i + 1 < text.length) {
      cur += text[++i]
      has = true
    } else if (/\s/.test(c)) {
      if (has) args.push(cur)
      cur = ''
      has = false
    } else {
      cur += c
      has = true
    }
  }
  if (has) args.push(cur)
  const settings: StartupSetting[] = []
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string
    let pair: string | undefined
    if (a === '-c') pair = args[++i]
    else if (a.startsWith('-c')) pair = a.slice(2)
    else if (a.startsWith('--')) pair = a.slice(2)
    else return { error: `the startup option "${printable(a)}" is not supported (only -c name=value and --name=value)` }
    const eq = pair?.indexOf('=') ?? -1
    if (pair === undefined || eq <= 0) return { error: `the startup option "${printable(a)}${pair === undefined || a !== '-c' ? '' : ` ${printable(pair)}`}" does not set name=value` }
    const name = pair.slice(0, eq)
    settings.push({ name: a.startsWith('--') ? name.replace(/-/g, '_') : name, value: pair.slice(eq + 1), from: 'options' })
  }
  return { settings }
}

/** The SQL a startup setting amounts to: what the analyzer reads and policy judges. */
export function setText(s: StartupSetting): string {
  return `SET ${s.name} = '${s.value.replace(/'/g, "''")}'`
}

const printable = (s: string) => (s.length > 64 ? `${s.slice(0, 64)}…` : s).replace(/[^\x20-\x7e]/g, '?')
