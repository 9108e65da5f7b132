/** Frontend (client → server) messages the gateway needs to understand. */
import { typed } from './frame.js'
import { BodyReader, ProtocolViolation } from './reader.js'

export const PROTOCOL_3_0 = 196608
export const SSL_REQUEST = 80877103
export const GSSENC_REQUEST = 80877104
export const CANCEL_REQUEST = 80877102

/** Message type bytes. */
export const F = {
  Query: 0x51, // Q
  Parse: 0x50, // P
  Bind: 0x42, // B
  Execute: 0x45, // E
  Describe: 0x44, // D
  Close: 0x43, // C
  Sync: 0x53, // S
  Flush: 0x48, // H
  Terminate: 0x58, // X
  CopyData: 0x64, // d
  CopyDone: 0x63, // c
  CopyFail: 0x66, // f
  FunctionCall: 0x46, // F
  Password: 0x70, // p
} as const

export function parseStartupParams(body: Buffer): Map<string, string> {
  const r = new BodyReader(body)
  const params = new Map<string, string>()
  while (r.remaining > 1) {
    const key = r.cstring()
    if (key === '') break
    params.set(key, r.cstring())
  }
  return params
}

export function parseCancel(body: Buffer): { pid: number; secret: Buffer } {
  if (body.length < 8) throw new ProtocolViolation('CancelRequest too short')
  return { pid: body.readInt32BE(0), secret: Buffer.from(body.subarray(4)) }
}

export function parseQuery(body: Buffer): string {
  const end = body.indexOf(0)
  if (end < 0) throw new ProtocolViolation('Query message is not NUL-terminated')
  return body.toString('utf8', 0, end)
}

export interface ParseMessage {
  readonly name: string
  readonly query: string
  readonly paramTypes: readonly number[]
}

export function parseParse(body: Buffer): ParseMessage {
  const r = new BodyReader(body)
  const name = r.cstring()
  const query = r.cstring()
  const n = r.int16()
  const paramTypes: number[] = []
  for (let i = 0; i < n; i++) paramTypes.push(r.int32())
  return { name, query, paramTypes }
}

export interface BindMessage {
  readonly portal: string
  readonly statement: string
  /** Parameter values for the audit: text as strings, binary as base64, NULL as null. */
  readonly params: readonly (string | null)[]
}

export function parseBind(body: Buffer): BindMessage {
  const r = new BodyReader(body)
  const portal = r.cstring()
  const statement = r.cstring()
  return { portal, statement, params: readValues(r, 'Bind', 'parameter') }
}

/** A FunctionCall ('F', the fast-path interface large objects use): the function's OID and its arguments as Bind carries them. */
export function parseFunctionCall(body: Buffer): { oid: number; args: (string | null)[] } {
  const r = new BodyReader(body)
  const oid = r.int32() >>> 0
  const args = readValues(r, 'FunctionCall', 'argument')
  r.int16() // the result's format
  return { oid, args }
}

/**
 * Format codes, then values, as Bind and FunctionCall carry them: text values as strings,
 * binary ones as `base64:…`, NULL as null (what the audit records).
 */
function readValues(r: BodyReader, message: string, what: string): (string | null)[] {
  const nFormats = r.int16()
  const formats: number[] = []
  for (let i = 0; i < nFormats; i++) formats.push(r.int16())
  const n = r.int16()
  if (nFormats > 1 && nFormats !== n) throw new ProtocolViolation(`${message} has ${nFormats} ${what} formats for ${n} ${what}s`)
  const values: (string | null)[] = []
  for (let i = 0; i < n; i++) {
    const len = r.int32()
    if (len === -1) {
      values.push(null)
      continue
    }
    const bytes = r.bytes(len)
    const format = nFormats === 0 ? 0 : nFormats === 1 ? formats[0] : formats[i]
    values.push(format === 1 ? `base64:${bytes.toString('base64')}` : bytes.toString('utf8'))
  }
  return values
}

export function parseExecute(body: Buffer): { portal: string; maxRows: number } {
  const r = new BodyReader(body)
  return { portal: r.cstring(), maxRows: r.int32() }
}

/** Describe and Close: a kind byte ('S' statement or 'P' portal) and a name. */
export function parseTarget(body: Buffer): { kind: 'S' | 'P'; name: string } {
  const r = new BodyReader(body)
  const kind = String.fromCharCode(r.bytes(1)[0] as number)
  if (kind !== 'S' && kind !== 'P') throw new ProtocolViolation(`invalid Describe/Close target '${kind}'`)
  return { kind, name: r.cstring() }
}

/** SASLInitialResponse: mechanism and initial client response. */
export function parseSaslInitial(body: Buffer): { mechanism: string; data: string } {
  const r = new BodyReader(body)
  const mechanism = r.cstring()
  const len = r.int32()
  return { mechanism, data: len < 0 ? '' : r.bytes(len).toString('utf8') }
}

export function parsePassword(body: Buffer): string {
  const end = body.indexOf(0)
  return body.toString('utf8', 0, end < 0 ? body.length : end)
}

// Builders for the messages the gateway itself sends upstream.


const cstr = (s: string) => Buffer.from(`${s}\0`, 'utf8')

export function buildStartup(params: Record<string, string>): Buffer {
  const parts: Buffer[] = []
  for (const [k, v] of Object.entries(params)) parts.push(cstr(k), cstr(v))
  parts.push(Buffer.from([0]))
  const body = Buffer.concat(parts)
  const out = Buffer.allocUnsafe(8 + body.length)
  out.writeInt32BE(8 + body.length, 0)
  out.writeInt32BE(PROTOCOL_3_0, 4)
  body.copy(out, 8)
  return out
}

export function buildSslRequest(): Buffer {
  const b = Buffer.allocUnsafe(8)
  b.writeInt32BE(8, 0)
  b.writeInt32BE(SSL_REQUEST, 4)
  return b
}

export function buildCancel(pid: number, secret: Buffer): Buffer {
  const b = Buffer.allocUnsafe(12 + secret.length)
  b.writeInt32BE(12 + secret.length, 0)
  b.writeInt32BE(CANCEL_REQUEST, 4)
  b.writeInt32BE(pid, 8)
  secret.copy(b, 12)
  return b
}

export function buildQuery(sql: string): Buffer {
  return typed(F.Query, cstr(sql))
}

export function buildParse(name: string, sql: string): Buffer {
  return typed(F.Parse, Buffer.concat([cstr(name), cstr(sql), Buffer.from([0, 0])]))
}

/**
 * A message `type` whose body starts with the C strings `names`, followed by `rest` as sent: one
 * allocation, one copy (this is on the path of every renamed Parse, Bind and Execute).
 */
function withNames(type: number, names: readonly string[], rest: Buffer): Buffer {
  let len = 4 + rest.length
  for (const n of names) len += Buffer.byteLength(n, 'utf8') + 1
  const out = Buffer.allocUnsafe(1 + len)
  out[0] = type
  out.writeInt32BE(len, 1)
  let o = 5
  for (const n of names) {
    o += out.write(n, o, 'utf8')
    out[o++] = 0
  }
  rest.copy(out, o)
  return out
}

/** The client's Parse under another statement name: the query text and parameter types as sent. */
export function renameParse(body: Buffer, name: string): Buffer {
  const end = body.indexOf(0)
  if (end < 0) throw new ProtocolViolation('Parse name is not NUL-terminated')
  return withNames(F.Parse, [name], body.subarray(end + 1))
}

/** The client's Bind under other portal and statement names: formats and parameter values as sent. */
export function renameBind(body: Buffer, portal: string, statement: string): Buffer {
  const a = body.indexOf(0)
  const b = a < 0 ? -1 : body.indexOf(0, a + 1)
  if (b < 0) throw new ProtocolViolation('Bind names are not NUL-terminated')
  return withNames(F.Bind, [portal, statement], body.subarray(b + 1))
}

export function buildExecute(portal: string, maxRows: number): Buffer {
  const rows = Buffer.allocUnsafe(4)
  rows.writeInt32BE(maxRows, 0)
  return withNames(F.Execute, [portal], rows)
}

/** Describe or Close (`type`) of a statement ('S') or portal ('P'). */
export function buildTarget(type: typeof F.Describe | typeof F.Close, kind: 'S' | 'P', name: string): Buffer {
  return typed(type, Buffer.concat([Buffer.from(kind, 'latin1'), cstr(name)]))
}

export const SYNC = Buffer.from([F.Sync, 0, 0, 0, 4])

export function buildPassword(password: string): Buffer {
  return typed(F.Password, cstr(password))
}

export function buildSaslInitial(mechanism: string, data: string): Buffer {
  const d = Buffer.from(data, 'utf8')
  const len = Buffer.allocUnsafe(4)
  len.writeInt32BE(d.length, 0)
  return typed(F.Password, Buffer.concat([cstr(mechanism), len, d]))
}

export function buildSaslResponse(data: string): Buffer {
  return typed(F.Password, Buffer.from(data, 'utf8'))
}

export const TERMINATE = Buffer.from([F.Terminate, 0, 0, 0, 4])
