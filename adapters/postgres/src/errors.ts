/** Gateway errors rendered as PostgreSQL ErrorResponses with the SQLSTATE a client expects. */
import type { GatewayError } from '@gatehouse/core'
import { buildError } from './codec/backend.js'

export const SQLSTATE = {
  insufficientPrivilege: '42501',
  syntaxError: '42601',
  featureNotSupported: '0A000',
  protocolViolation: '08P01',
  connectionFailure: '08006',
  serverRejected: '08004',
  invalidAuthorization: '28000',
  invalidPassword: '28P01',
  adminShutdown: '57P01',
  idleSessionTimeout: '57P05',
  idleInTransactionTimeout: '25P03',
  systemError: '58000',
  internalError: 'XX000',
  tooManyConnections: '53300',
  invalidCatalogName: '3D000',
} as const

const BY_CODE: Partial<Record<GatewayError['code'], string>> = {
  GH_ERR_POLICY_DENIED: SQLSTATE.insufficientPrivilege,
  GH_ERR_POLICY_REVIEW: SQLSTATE.insufficientPrivilege,
  GH_ERR_REVIEW_DENIED: SQLSTATE.insufficientPrivilege,
  GH_ERR_REVIEW_EXPIRED: SQLSTATE.insufficientPrivilege,
  GH_ERR_POLICY_ERROR: SQLSTATE.insufficientPrivilege,
  GH_ERR_PARSE_FAILED: SQLSTATE.syntaxError,
  GH_ERR_PROTOCOL: SQLSTATE.protocolViolation,
  GH_ERR_PROTOCOL_UNSUPPORTED: SQLSTATE.featureNotSupported,
  GH_ERR_AUDIT_UNAVAILABLE: SQLSTATE.systemError,
  GH_ERR_UPSTREAM_UNAVAILABLE: SQLSTATE.connectionFailure,
  GH_ERR_UPSTREAM_AUTH: SQLSTATE.serverRejected,
  GH_ERR_SHUTTING_DOWN: SQLSTATE.adminShutdown,
  GH_ERR_AUTH_FAILED: SQLSTATE.invalidPassword,
  GH_ERR_AUTH_EXPIRED: SQLSTATE.invalidPassword,
  GH_ERR_AUTH_THROTTLED: SQLSTATE.invalidAuthorization,
  GH_ERR_LIMIT_SESSIONS: SQLSTATE.tooManyConnections,
  GH_ERR_AUTH_SCOPE: SQLSTATE.invalidAuthorization,
  GH_ERR_AUTH_REVOKED: SQLSTATE.adminShutdown,
  GH_ERR_SESSION_LIMIT: SQLSTATE.adminShutdown,
  GH_ERR_SESSION_TERMINATED: SQLSTATE.adminShutdown,
}

export function sqlstateFor(err: GatewayError): string {
  return BY_CODE[err.code] ?? SQLSTATE.internalError
}

/** An ERROR-level ErrorResponse for a refused statement; the session stays usable. */
export function renderError(err: GatewayError, sqlstate = sqlstateFor(err), position?: number): Buffer {
  return buildError({ code: sqlstate, message: `gatehouse: ${err.clientMessage}`, detail: `gateway error ${err.code}${err.opts.rule ? `, rule ${err.opts.rule}` : ''}`, ...(position ? { position } : {}) })
}
