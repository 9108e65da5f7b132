/**
 * A Kubernetes API request read the way the API server reads it.
 *
 * The API server (Go's net/http, then k8s.io/apiserver's RequestInfoFactory) percent-decodes the
 * path, trims its slashes, splits it on `/` and reads prefix, group, version, namespace, resource,
 * name and subresource from the parts; the verb comes from the method, a `watch`/`proxy` part, or
 * (for a GET or DELETE without a name) from `?watch`. Query parameters are decoded with Go's
 * url.ParseQuery, and a boolean parameter is false only for `false` or `0`.
 *
 * The gateway must judge what the server will run, so it does not try to mimic every corner of
 * that: it refuses what could be read two ways (an encoded `/`, `.` and `..` segments, empty
 * segments, control characters, a `;` in the query, a parameter given twice) and forwards a path
 * and a query it rebuilt from what it judged, so the server cannot read anything else.
 */

/** The verbs policy sees: the API server's, with the streaming subresources named as verbs. */
export type K8sVerb = 'get' | 'list' | 'watch' | 'create' | 'update' | 'patch' | 'delete' | 'deletecollection' | 'exec' | 'attach' | 'portforward' | 'log' | 'proxy'

export interface K8sRequest {
  /** The request's verb; a non-resource request (`/version`, discovery) has the method's (`get`, `post`…). */
  readonly verb: string
  readonly method: string
  /** False for discovery, `/version`, `/openapi/…` and other paths outside `/api/V/…` and `/apis/G/V/…`. */
  readonly resourceRequest: boolean
  /**
   * True only for what clients read to find the API: `/api`, `/api/V`, `/apis`, `/apis/G`,
   * `/apis/G/V`, `/version`, `/openapi/v2`, `/openapi/v3[/…]` — not `/logs`, `/metrics`,
   * `/debug/…` or other non-resource paths a rule for discovery should not open.
   */
  readonly discovery: boolean
  /** The decoded path, rebuilt from its segments (what was judged). */
  readonly path: string
  readonly apiPrefix?: 'api' | 'apis'
  /** `''` for the core group. */
  readonly group?: string
  readonly version?: string
  readonly namespace?: string
  readonly resource?: string
  readonly name?: string
  readonly subresource?: string
  /** What follows the subresource (a proxy path). */
  readonly extra?: string
  /** Decoded query parameters, as forwarded (booleans canonical: `true` or `false`). */
  readonly query: ReadonlyMap<string, readonly string[]>
}

export type ParsedRequest = { ok: true; request: K8sRequest; target: string } | { ok: false; status: number; reason: string }

const METHOD_VERBS: Record<string, string> = { GET: 'get', HEAD: 'get', POST: 'create', PUT: 'update', PATCH: 'patch', DELETE: 'delete' }
/** Parts after the version that make the verb (RequestInfoFactory's specialVerbs). */
const SPECIAL_VERBS = new Set(['watch', 'proxy'])
/** Namespace subresources: `/namespaces/NS/status` is the namespace's status, not a resource. */
const NAMESPACE_SUBRESOURCES = new Set(['status', 'finalize'])
/** Subresources that are verbs of their own for policy. */
const STREAM_VERBS: Record<string, K8sVerb> = { exec: 'exec', attach: 'attach', portforward: 'portforward', log: 'log', proxy: 'proxy' }
/** Parameters the API server reads as booleans (false only for `false`/`0`): forwarded as `true`/`false`. */
const BOOLEAN_PARAMS = new Set(['watch', 'allowWatchBookmarks', 'follow', 'previous', 'timestamps', 'insecureSkipTLSVerifyBackend', 'stdin', 'stdout', 'stderr', 'tty', 'sendInitialEvents', 'pretty', 'orphanDependents', 'ignoreStoreReadErrorWithClusterBreakingPotential'])
/** Parameters that may repeat (in order). Any other one given twice is refused: the server reads only the first. */
const REPEATABLE_PARAMS = new Set(['command', 'ports', 'dryRun'])
const MAX_TARGET = 8192

/** `method` and `rawTarget` as they arrived (the request line's target). */
export function parseRequest(method: string, rawTarget: string): ParsedRequest {
  if (!(method in METHOD_VERBS)) return { ok: false, status: 405, reason: `method ${method} is not used by the Kubernetes API` }
  if (rawTarget.length > MAX_TARGET) return { ok: false, status: 414, reason: `the request path is longer than ${MAX_TARGET} characters` }
  // printable ASCII only: anything else is encoded by every client
  if (!/^\/[\x21-\x7e]*$/.test(rawTarget)) return { ok: false, status: 400, reason: 'the request path must be printable ASCII starting with /' }
  const q = rawTarget.indexOf('?')
  const rawPath = q < 0 ? rawTarget : rawTarget.slice(0, q)
  const rawQuery = q < 0 ? '' : rawTarget.slice(q + 1)
  if (rawPath.includes('#') || rawQuery.includes('#')) return { ok: false, status: 400, reason: 'a fragment (#) has no place in a request path' }

  const segments: string[] = []
  if (rawPath !== '/') {
    for (const raw of rawPath.slice(1).split('/')) {
      const seg = decode(raw, false)
      if (seg === undefined) return { ok: false, status: 400, reason: `the path segment "${raw}" is not valid percent-encoded UTF-8` }
      if (seg === '') return { ok: false, status: 400, reason: 'the request path has an empty segment (// or a trailing /)' }
      if (seg === '.' || seg === '..') return { ok: false, status: 400, reason: 'the request path has a . or .. segment' }
      if (seg.includes('/')) return { ok: false, status: 400, reason: `the path segment "${raw}" encodes a /` }
      if (/[\x00-\x1f\x7f\\]/.test(seg)) return { ok: false, status: 400, reason: `the path segment "${raw}" has a control character or a backslash` }
      segments.push(seg)
    }
  }

  const query = new Map<string, string[]>()
  if (rawQuery !== '') {
    if (rawQuery.includes(';')) return { ok: false, status: 400, reason: 'a ; in the query string is read differently by different servers: use &' }
    for (const pair of rawQuery.split('&')) {
      if (pair === '') continue
      const eq = pair.indexOf('=')
      const key = decode(eq < 0 ? pair : pair.slice(0, eq), true)
      const value = decode(eq < 0 ? '' : pair.slice(eq + 1), true)
      if (key === undefined || value === undefined) return { ok: false, status: 400, reason: `the query parameter "${pair.slice(0, 64)}" is not valid percent-encoded UTF-8` }
      if (/[\x00-\x1f\x7f]/.test(key)) return { ok: false, status: 400, reason: 'a query parameter name has a control character' }
      const values = query.get(key)
      if (values && !REPEATABLE_PARAMS.has(key)) return { ok: false, status: 400, reason: `the query parameter "${key}" is given more than once` }
      const canonical = BOOLEAN_PARAMS.has(key) ? String(!(value === '0' || value.toLowerCase() === 'false')) : value
      if (values) values.push(canonical)
      else query.set(key, [canonical])
    }
  }

  const request = describe(method, segments, query)
  if (typeof request === 'string') return { ok: false, status: 400, reason: request }
  return { ok: true, request, target: rebuild(segments, query) }
}

/** RequestInfoFactory.NewRequestInfo over decoded segments. */
function describe(method: string, segments: readonly string[], query: ReadonlyMap<string, readonly string[]>): K8sRequest | string {
  const path = `/${segments.map((s) => s).join('/')}`
  const methodVerb = METHOD_VERBS[method] as string
  const discovery =
    (method === 'GET' || method === 'HEAD') &&
    (((segments[0] === 'api' || segments[0] === 'apis') && segments.length <= 3) || path === '/version' || path === '/openapi/v2' || (segments[0] === 'openapi' && segments[1] === 'v3'))
  const nonResource: K8sRequest = { verb: method.toLowerCase(), method, resourceRequest: false, discovery, path, query }
  const prefix = segments[0]
  if (segments.length < 3 || (prefix !== 'api' && prefix !== 'apis')) return nonResource
  let parts = segments.slice(1)
  let group = ''
  if (prefix === 'apis') {
    if (parts.length < 3) return nonResource
    group = parts[0] as string
    parts = parts.slice(1)
  }
  const version = parts[0] as string
  parts = parts.slice(1)
  let verb = methodVerb
  if (SPECIAL_VERBS.has(parts[0] as string)) {
    if (parts.length < 2) return `unable to determine kind and namespace from the path ${path}`
    verb = parts[0] as string
    parts = parts.slice(1)
  }
  let namespace: string | undefined
  if (parts[0] === 'namespaces') {
    if (parts.length > 1) {
      namespace = parts[1]
      if (parts.length > 2 && !NAMESPACE_SUBRESOURCES.has(parts[2] as string)) parts = parts.slice(2)
    }
  }
  const resource = parts[0] as string
  let name = parts[1]
  const subresource = verb !== 'proxy' ? parts[2] : undefined
  const extraFrom = verb !== 'proxy' ? 3 : 2
  const extra = parts.length > extraFrom ? parts.slice(extraFrom).join('/') : undefined
  if (name === undefined && verb === 'get') {
    verb = query.get('watch')?.[0] === 'true' ? 'watch' : 'list'
    const exact = exactName(query.get('fieldSelector')?.[0])
    if (exact !== undefined) name = exact
  }
  if (name === undefined && verb === 'delete') verb = 'deletecollection'
  if (subresource !== undefined && subresource in STREAM_VERBS) verb = STREAM_VERBS[subresource] as K8sVerb
  return {
    verb,
    method,
    resourceRequest: true,
    discovery: false,
    path,
    apiPrefix: prefix,
    group,
    version,
    ...(namespace === undefined ? {} : { namespace }),
    resource,
    ...(name === undefined ? {} : { name }),
    ...(subresource === undefined ? {} : { subresource }),
    ...(extra === undefined ? {} : { extra }),
    query,
  }
}

/** `metadata.name=X` (or `==`) in a field selector, as the API server reads a watch of one object. */
function exactName(selector: string | undefined): string | undefined {
  if (selector === undefined) return undefined
  for (const term of selector.split(',')) {
    const m = /^\s*metadata\.name\s*==?\s*([^\s,=!]+)\s*$/.exec(term)
    if (m && /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(m[1] as string)) return m[1]
  }
  return undefined
}

/**
 * Go's unescape: `%XX` only, an invalid escape or bytes that are not UTF-8 an error (as
 * decodeURIComponent has it); `+` is a space in the query, a plus in the path.
 */
function decode(s: string, query: boolean): string | undefined {
  try {
    return decodeURIComponent(query ? s.replace(/\+/g, ' ') : s)
  } catch {
    return undefined
  }
}

/** The target forwarded upstream: each segment and parameter encoded the one way, from what was judged. */
function rebuild(segments: readonly string[], query: ReadonlyMap<string, readonly string[]>): string {
  const path = `/${segments.map(encodeSegment).join('/')}`
  const pairs: string[] = []
  for (const [key, values] of query) for (const v of values) pairs.push(`${encodeURIComponent(key)}=${encodeURIComponent(v)}`)
  return pairs.length === 0 ? path : `${path}?${pairs.join('&')}`
}

/** encodeURIComponent, keeping `:` and `@` (names such as `system:node:x`, `pod:8080` read better). */
function encodeSegment(s: string): string {
  return encodeURIComponent(s).replace(/%3A/g, ':').replace(/%40/g, '@')
}
