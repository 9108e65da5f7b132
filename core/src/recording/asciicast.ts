/**
 * Terminal recordings (docs/architecture.md, "The SSH adapter"): what a terminal session
 * showed, timed, as asciicast v2 files that `asciinema play` and asciinema-player replay. A
 * service in core so every adapter with a terminal (SSH shells, Kubernetes exec with a TTY)
 * records the same way.
 *
 * One file per request: `<dataDir>/recordings/<session id>/<request id>.cast`; a header line,
 * then one JSON array per event: `[seconds, "o", text]` output, `[seconds, "i", text]` input
 * (only when the connection records input), `[seconds, "r", "COLSxROWS"]` a resize. Output is
 * decoded as UTF-8 across chunk boundaries, so a character split between two reads stays whole.
 */
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs'
import { join } from 'node:path'
import { StringDecoder } from 'node:string_decoder'
import type { InjectionToken } from 'tsyringe'

export interface TerminalRecordingInit {
  readonly session: string
  readonly request: string
  readonly cols: number
  readonly rows: number
  readonly term?: string
  readonly title?: string
  /** Record what the user typed too (it may contain secrets typed at prompts). */
  readonly recordInput?: boolean
}

export interface TerminalRecording {
  /** Where the recording is written; name it in the request's outcome (`recording`). */
  readonly path: string
  /** Bytes the terminal showed. Must not throw. */
  output(data: Buffer | string): void
  /** Bytes the user typed; ignored unless the recording was opened with `recordInput`. */
  input(data: Buffer | string): void
  resize(cols: number, rows: number): void
  /** Flushes and closes the file; idempotent. */
  close(): Promise<void>
}

export interface TerminalRecorder {
  /** Where the recording of this request is (or would be) written. */
  pathFor(session: string, request: string): string
  /** Opens a recording for one terminal request. Called once per request, before its first output. */
  open(init: TerminalRecordingInit): TerminalRecording
}
export const TerminalRecorder: InjectionToken<TerminalRecorder> = Symbol.for('gatehouse.TerminalRecorder')

/** A path segment from an id the gateway made (`s-1a2b.3`); anything else is replaced. */
function segment(id: string): string {
  return id.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '_') || '_'
}

export class AsciicastRecorder implements TerminalRecorder {
  constructor(private readonly dir: string) {}

  pathFor(session: string, request: string): string {
    return join(this.dir, segment(session), `${segment(request)}.cast`)
  }

  open(init: TerminalRecordingInit): TerminalRecording {
    const path = this.pathFor(init.session, init.request)
    mkdirSync(join(this.dir, segment(init.session)), { recursive: true })
    return new AsciicastFile(path, init)
  }
}

class AsciicastFile implements TerminalRecording {
  private readonly stream: WriteStream
  private readonly started = performance.now()
  private readonly out = new StringDecoder('utf8')
  private readonly in = new StringDecoder('utf8')
  private closing: Promise<void> | undefined

  constructor(
    readonly path: string,
    private readonly init: TerminalRecordingInit,
  ) {
    this.stream = createWriteStream(path, { flags: 'wx', mode: 0o600 })
    this.stream.on('error', () => undefined)
    const header = {
      version: 2,
      width: init.cols,
      height: init.rows,
      timestamp: Math.floor(Date.now() / 1000),
      ...(init.title ? { title: init.title } : {}),
      env: { TERM: init.term ?? 'xterm', SHELL: '' },
    }
    this.stream.write(`${JSON.stringify(header)}\n`)
  }

  private event(kind: 'o' | 'i' | 'r', text: string): void {
    if (this.closing || text === '') return
    const t = Math.round(performance.now() - this.started) / 1000
    this.stream.write(`${JSON.stringify([t, kind, text])}\n`)
  }

  output(data: Buffer | string): void {
    this.event('o', typeof data === 'string' ? data : this.out.write(data))
  }

  input(data: Buffer | string): void {
    if (this.init.recordInput) this.event('i', typeof data === 'string' ? data : this.in.write(data))
  }

  resize(cols: number, rows: number): void {
    this.event('r', `${cols}x${rows}`)
  }

  close(): Promise<void> {
    if (!this.closing) {
      const rest = this.out.end()
      if (rest) this.event('o', rest)
      this.closing = new Promise((resolve) => this.stream.end(() => resolve()))
    }
    return this.closing
  }
}
