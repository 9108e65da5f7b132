/** Backend (server → client) messages: builders for what the gateway says itself, parsers for what it inspects. */
import { typed } from './frame.js'

export const B = {
  Authentication: 0x52, // R
  BackendKeyData: 0x4b, // K
  ParameterStatus: 0x53, // S
  ReadyForQuery: 0x5a, // Z
  ErrorResponse: 0x45, // E
  NoticeResponse: 0x4e, // N
  CommandComplete: 0x43, // C
  EmptyQueryResponse: 0x49, // I
  RowDescription: 0x54, // T
  DataRow: 0x44, // D
  NoData: 0x6e, // n
  ParameterDescription: 0x74, // t
  ParseComplete: 0x31, // 1
  BindComplete: 0x32, // 2
  CloseComplete: 0x33, // 3
  PortalSuspended: 0x73, // s
  CopyInResponse: 0x47, // G
  CopyOutResponse: 0x48, // H
  CopyBothResponse: 0x57, // W
  CopyData: 0x64, // d
  CopyDone: 0x63, // c
  NotificationResponse: 0x41, // A
  FunctionCallResponse: 0x56, // V
  NegotiateProtocolVersion: 0x76, // v
} as const

export const AUTH = { Ok: 0, Cleartext: 3, MD5: 5, SASL: 10, SASLContinue: 11, SASLFinal: 12 } as const


function int32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4)
  b.writeInt32BE(n, 0)
  return b
}

export interface ErrorFields {
  severity?: 'ERROR' | 'FATAL' | 'PANIC' | 'WARNING' | 'NOTICE'
  code: string
  message: string
  detail?: string
  hint?: string
  /** 1-based character position in the query text (psql prints its caret there). */
  position?: number
}

export function buildError(f: ErrorFields, type: number = B.ErrorResponse): Buffer {
  const sev = f.severity ?? 'ERROR'
  const parts = [`S${sev}`, `V${sev}`, `C${f.code}`, `M${f.message}`]
  if (f.detail) parts.push(`D${f.detail}`)
  if (f.hint) parts.push(`H${f.hint}`)
  if (f.position) parts.push(`P${f.position}`)
  return typed(type, Buffer.from(`${parts.join('\0')}\0\0`, 'utf8'))
}

export function buildReadyForQuery(status: number): Buffer {
  return Buffer.from([B.ReadyForQuery, 0, 0, 0, 5, status])
}

export function buildAuth(code: number, data?: Buffer): Buffer {
  return typed(B.Authentication, data ? Buffer.concat([int32(code), data]) : int32(code))
}

export function buildAuthSasl(mechanisms: readonly string[]): Buffer {
  return buildAuth(AUTH.SASL, Buffer.from(`${mechanisms.join('\0')}\0\0`, 'utf8'))
}

export function buildBackendKeyData(pid: number, secret: Buffer): Buffer {
  return typed(B.BackendKeyData, Buffer.concat([int32(pid), secret]))
}

export function buildParameterStatus(name: string, value: string): Buffer {
  return typed(B.ParameterStatus, Buffer.from(`${name}\0${value}\0`, 'utf8'))
}

/** Fields of an ErrorResponse or NoticeResponse body. */
export function parseErrorFields(body: Buffer): Map<string, string> {
  const out = new Map<string, string>()
  let i = 0
  while (i < body.length && body[i] !== 0) {
    const code = String.fromCharCode(body[i] as number)
    const end = body.indexOf(0, i + 1)
    if (end < 0) break
    out.set(code, body.toString('utf8', i + 1, end))
    i = end + 1
  }
  return out
}

export function parseCommandTag(body: Buffer): string {
  const end = body.indexOf(0)
  return body.toString('latin1', 0, end < 0 ? body.length : end)
}

/** Rows from a command tag: `SELECT 5`, `INSERT 0 3`, `UPDATE 2`, `COPY 10` … */
export function rowsFromTag(tag: string): number | undefined {
  const sp = tag.lastIndexOf(' ')
  if (sp < 0) return undefined
  const n = Number(tag.slice(sp + 1))
  return Number.isInteger(n) ? n : undefined
}

export function parseParameterStatus(body: Buffer): [string, string] {
  const a = body.indexOf(0)
  const b = body.indexOf(0, a + 1)
  return [body.toString('utf8', 0, a), body.toString('utf8', a + 1, b < 0 ? body.length : b)]
}
