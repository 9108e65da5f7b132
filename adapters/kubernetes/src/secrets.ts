/**
 * Secret values never reach the caller: in a response about secrets (an object, a list, a watch
 * event, kubectl's Table form), every value under `data` and `stringData` of an object with
 * `metadata` is replaced by a fixed marker, and so is the `last-applied-configuration`
 * annotation kubectl writes (it embeds the whole Secret as it was applied). Keys stay, so a
 * caller sees which keys a secret has, never their values.
 */

/** Valid base64 (clients that decode `data` still can), and plain to a person reading YAML. */
export const REDACTED = 'REDACTED'
const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration'

/** What was replaced, by name (for the audit): `data.password`, `annotations.last-applied-configuration`. */
export type Redactions = Set<string>

export function redactValue(doc: unknown, found: Redactions): void {
  const walk = (v: unknown, depth: number): void => {
    if (!v || typeof v !== 'object' || depth > 64) return
    if (Array.isArray(v)) {
      for (const x of v) walk(x, depth + 1)
      return
    }
    const o = v as Record<string, unknown>
    if (o.metadata && typeof o.metadata === 'object') {
      for (const field of ['data', 'stringData'] as const) {
        const values = o[field]
        if (values && typeof values === 'object' && !Array.isArray(values)) {
          for (const key of Object.keys(values)) {
            ;(values as Record<string, unknown>)[key] = REDACTED
            found.add(`${field}.${key}`)
          }
        } else if (values !== undefined && values !== null) {
          o[field] = REDACTED
          found.add(field)
        }
      }
      const annotations = (o.metadata as Record<string, unknown>).annotations
      if (annotations && typeof annotations === 'object' && LAST_APPLIED in annotations) {
        ;(annotations as Record<string, unknown>)[LAST_APPLIED] = REDACTED
        found.add('annotations.last-applied-configuration')
      }
    }
    for (const x of Object.values(o)) walk(x, depth + 1)
  }
  walk(doc, 0)
}

/**
 * A whole response about secrets, redacted. A body the gateway cannot read as JSON is not passed
 * on: it is replaced by a Status (fail closed).
 */
export function redactSecrets(body: Buffer, found: Redactions): Buffer {
  if (body.length === 0) return body
  let doc: unknown
  try {
    doc = JSON.parse(body.toString('utf8'))
  } catch {
    found.add('unreadable response')
    return Buffer.from(JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'gatehouse: a response about secrets that the gateway cannot read as JSON is withheld', reason: 'InternalError', code: 502 }))
  }
  redactValue(doc, found)
  return Buffer.from(JSON.stringify(doc))
}

/** A watch stream (one JSON event per line), redacted event by event. */
export class SecretRedactor {
  private pending: Buffer[] = []
  private pendingBytes = 0

  constructor(
    readonly found: Redactions,
    private readonly maxEventBytes = 16 * 1024 * 1024,
  ) {}

  /** What of `chunk` can go to the client now: every complete event, redacted. */
  push(chunk: Buffer): Buffer {
    const out: Buffer[] = []
    let start = 0
    for (let nl = chunk.indexOf(0x0a); nl >= 0; nl = chunk.indexOf(0x0a, start)) {
      const line = this.pending.length > 0 ? Buffer.concat([...this.pending, chunk.subarray(start, nl)]) : chunk.subarray(start, nl)
      this.pending = []
      this.pendingBytes = 0
      if (line.length > 0) out.push(redactSecrets(line, this.found), NEWLINE)
      start = nl + 1
    }
    if (start < chunk.length) {
      this.pending.push(chunk.subarray(start))
      this.pendingBytes += chunk.length - start
      if (this.pendingBytes > this.maxEventBytes) throw new Error('a watch event about secrets is too large to redact')
    }
    return Buffer.concat(out)
  }

  /** The rest, at the end of the stream. */
  end(): Buffer {
    if (this.pendingBytes === 0) return Buffer.alloc(0)
    const line = Buffer.concat(this.pending)
    this.pending = []
    this.pendingBytes = 0
    return redactSecrets(line, this.found)
  }
}

const NEWLINE = Buffer.from('\n')
