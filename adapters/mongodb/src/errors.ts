/** Gateway refusals as MongoDB command errors: `{ ok: 0, errmsg, code, codeName }`, as a server would answer. */
import type { GatewayError } from '@gatehouse/core'

/** The server's error codes the gateway answers with (src/mongo/base/error_codes.yml). */
export const MONGO_ERROR = {
  BadValue: 2,
  HostUnreachable: 6,
  FailedToParse: 9,
  Unauthorized: 13,
  ProtocolError: 17,
  AuthenticationFailed: 18,
  InvalidBSON: 22,
  CommandNotFound: 59,
  ExceededMemoryLimit: 146,
  MechanismUnavailable: 334,
  UnsupportedOpQueryCommand: 352,
  InternalError: 1,
  ExceededTimeLimit: 262,
} as const

export type MongoErrorName = keyof typeof MONGO_ERROR

export interface MongoErrorDoc {
  ok: 0
  errmsg: string
  code: number
  codeName: string
}

export function mongoError(name: MongoErrorName, message: string): MongoErrorDoc {
  return { ok: 0, errmsg: message, code: MONGO_ERROR[name], codeName: name }
}

/** A refusal by policy, a limit or a held request's review, as the client sees it. */
export function refusalError(err: GatewayError): MongoErrorDoc {
  return mongoError(BY_KIND[err.kind], `gatehouse: ${err.clientMessage}`)
}

/** Denials are Unauthorized (13), as the server answers a command the user may not run. */
const BY_KIND: Readonly<Record<GatewayError['kind'], MongoErrorName>> = { AccessDenied: 'Unauthorized', BadRequest: 'BadValue', Unavailable: 'HostUnreachable', Timeout: 'ExceededTimeLimit', Internal: 'InternalError' }
