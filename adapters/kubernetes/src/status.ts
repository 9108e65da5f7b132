/** Refusals as the API server words them: a `Status` object kubectl prints as "Error from server (Reason): message". */
import type { ServerResponse } from 'node:http'

const REASONS: Record<number, string> = { 400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 405: 'MethodNotAllowed', 408: 'Timeout', 413: 'RequestEntityTooLarge', 414: 'RequestURITooLong', 415: 'UnsupportedMediaType', 500: 'InternalError', 502: 'ServiceUnavailable', 503: 'ServiceUnavailable', 504: 'Timeout' }

export function statusBody(code: number, message: string): string {
  return JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason: REASONS[code] ?? 'Unknown', code })
}

/** Answers with a Status, unless the response has started (then it can only be cut). */
export function sendStatus(res: ServerResponse, code: number, message: string, close = false): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  const body = statusBody(code, message)
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...(close ? { connection: 'close' } : {}) })
  res.end(body)
}
