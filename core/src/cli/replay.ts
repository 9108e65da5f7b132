/**
 * `gatehouse replay SESSION`: plays a session's terminal recordings (asciicast v2, written by
 * the core TerminalRecorder) on this terminal at recorded speed, or faster with a speed factor.
 * Long pauses are capped, as asciinema does with --idle-time-limit.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { basename, join } from 'node:path'

export interface ReplayOptions {
  readonly dataDir: string
  readonly session: string
  /** Only this request's recording; default: every recording of the session, in request order. */
  readonly request?: string
  readonly speed: number
  readonly idleLimitSeconds: number
  readonly write: (text: string) => void
  readonly sleep?: (ms: number) => Promise<void>
}

/** The recordings of a session, oldest request first. */
export function recordingsOf(dataDir: string, session: string): string[] {
  // A session id is a path segment the gateway made: never `.`, `..` or anything with a slash.
  if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(session)) return []
  const dir = join(dataDir, 'recordings', session)
  if (!existsSync(dir)) return []
  const requestNumber = (f: string) => Number(/\.(\d+)\.cast$/.exec(f)?.[1] ?? 0)
  return readdirSync(dir)
    .filter((f) => f.endsWith('.cast'))
    .sort((a, b) => requestNumber(a) - requestNumber(b))
    .map((f) => join(dir, f))
}

/** Plays the recordings; resolves with how many were played. Throws when there is none. */
export async function replay(opts: ReplayOptions): Promise<number> {
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)))
  let files = recordingsOf(opts.dataDir, opts.session)
  if (opts.request) files = files.filter((f) => basename(f) === `${opts.request}.cast`)
  if (files.length === 0) throw new Error(`no recordings for session ${opts.session}${opts.request ? ` request ${opts.request}` : ''} under ${join(opts.dataDir, 'recordings')}`)
  for (const file of files) {
    const [header, ...events] = readFileSync(file, 'utf8').split('\n').filter(Boolean)
    const h = JSON.parse(header ?? '{}') as { version?: number }
    if (h.version !== 2) throw new Error(`${file}: not an asciicast v2 recording`)
    let last = 0
    for (const line of events) {
      const [t, kind, data] = JSON.parse(line) as [number, string, string]
      const wait = Math.min(t - last, opts.idleLimitSeconds) / opts.speed
      last = t
      if (wait > 0) await sleep(wait * 1000)
      if (kind === 'o') opts.write(data)
    }
  }
  return files.length
}
