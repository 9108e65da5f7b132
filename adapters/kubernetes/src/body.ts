/**
 * A write's body, decoded as the API server will decode it, and the facts policy judges in it:
 * what kind of object, and whether a pod it creates or changes asks for the host (network, PID,
 * IPC namespaces, host paths, host ports), for privileged mode, privilege escalation or added
 * capabilities — wherever in the object they appear (a Pod, a Deployment's template, a patch).
 */
import { isMap, isScalar, parseDocument, visit } from 'yaml'

export type PatchType = 'json' | 'merge' | 'strategic' | 'apply'

/** Largest YAML body read, in a worker thread (JSON bodies, and JSON sent as YAML, are read up to limits.kubernetes.maxBodyBytes). */
const MAX_YAML_BYTES = 1024 * 1024

export interface BodyFacts {
  readonly kind?: string
  readonly apiVersion?: string
  /** The content type's patch flavour, for a PATCH. */
  readonly patchType?: PatchType
  readonly hostNetwork: boolean
  readonly hostPID: boolean
  readonly hostIPC: boolean
  readonly privileged: boolean
  readonly hostPath: boolean
  readonly hostPorts: boolean
  readonly allowPrivilegeEscalation: boolean
  /** Capabilities added to a container (`securityContext.capabilities.add`). */
  readonly capabilities: readonly string[]
}

/** `forward`: the body to send upstream instead of the caller's (YAML goes on as the JSON the gateway read). */
export type DecodedBody = { ok: true; facts: BodyFacts; forward?: Buffer } | { ok: false; status: number; reason: string }

const JSON_TYPES: Record<string, PatchType | undefined> = {
  'application/json': undefined,
  'application/merge-patch+json': 'merge',
  'application/strategic-merge-patch+json': 'strategic',
  'application/json-patch+json': 'json',
}
const YAML_TYPES: Record<string, PatchType | undefined> = { 'application/yaml': undefined, 'application/apply-patch+yaml': 'apply' }

/**
 * Whether `decodeBody` would read this body as YAML (not JSON, not JSON written as YAML): costly,
 * so the adapter has a worker thread do it (yaml-worker.ts).
 */
export function needsYamlReader(contentType: string | undefined, body: Buffer): boolean {
  const type = (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? ''
  if (!(type in YAML_TYPES)) return false
  const first = body.subarray(0, 64).toString('latin1').trimStart()
  return !first.startsWith('{') || tryJson(body.toString('utf8')) === undefined
}

export function decodeBody(contentType: string | undefined, body: Buffer): DecodedBody {
  const type = (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? ''
  if (type.includes('protobuf')) return { ok: false, status: 415, reason: 'the gateway judges JSON and YAML bodies: send application/json (kubectl does unless told otherwise)' }
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(body)
  } catch {
    return { ok: false, status: 400, reason: 'the request body is not UTF-8' }
  }
  let doc: unknown
  let patchType: PatchType | undefined
  let forward: Buffer | undefined
  if (type in JSON_TYPES) {
    patchType = JSON_TYPES[type]
    try {
      doc = JSON.parse(text)
    } catch (err) {
      return { ok: false, status: 400, reason: `the request body is not JSON: ${(err as Error).message}` }
    }
    if (hasDuplicateKeys(text)) return { ok: false, status: 400, reason: 'the request body has a key twice in one object: the gateway does not guess which one the server keeps' }
  } else if (type in YAML_TYPES) {
    patchType = YAML_TYPES[type]
    // JSON is YAML: kubectl's server-side apply sends JSON, read here at JSON's speed
    const json = text.trimStart().startsWith('{') ? tryJson(text) : undefined
    if (json !== undefined) {
      if (hasDuplicateKeys(text)) return { ok: false, status: 400, reason: 'the request body has a key twice in one object: the gateway does not guess which one the server keeps' }
      return finish(json.value, patchType, Buffer.from(JSON.stringify(json.value)))
    }
    // YAML is read at ~1.4 µs a byte (in a worker: yaml-worker.ts), and bounded
    if (body.length > MAX_YAML_BYTES) return { ok: false, status: 413, reason: `a YAML body over ${MAX_YAML_BYTES / 1024} KiB is not read: send it as JSON (application/json, or JSON text for apply patches)` }
    // The API server's YAML reader (goyaml) and this one differ at the edges (tags such as !!binary,
    // merge keys, non-string keys), so the gateway refuses those, and forwards the JSON of what it
    // read: the server then reads exactly that (JSON is YAML). Duplicates are checked here in
    // linear time (the library's own check is quadratic in the keys of a map).
    const parsed = parseDocument(text, { uniqueKeys: false, version: '1.2', merge: false })
    if (parsed.errors.length > 0) return { ok: false, status: 400, reason: `the request body is not YAML the gateway reads: ${parsed.errors[0]?.message.split('\n')[0] ?? ''}` }
    const odd = yamlOddity(parsed)
    if (odd) return { ok: false, status: 400, reason: odd }
    try {
      doc = parsed.toJS({ maxAliasCount: 0 })
    } catch {
      return { ok: false, status: 400, reason: 'the request body uses YAML aliases (&anchor / *alias): the gateway does not expand them; write the values out' }
    }
    forward = Buffer.from(JSON.stringify(doc))
  } else {
    return { ok: false, status: 415, reason: `content type "${type}" is not one the gateway judges (JSON, YAML, JSON/merge/strategic-merge/apply patches)` }
  }
  return finish(doc, patchType, forward)
}

function finish(doc: unknown, patchType: PatchType | undefined, forward: Buffer | undefined): DecodedBody {
  if (patchType === 'json') {
    const refused = jsonPatchRefusal(doc)
    if (refused) return { ok: false, status: 400, reason: refused }
  }
  return { ok: true, facts: factsOf(patchType === 'json' ? fromJsonPatch(doc) : doc, patchType), ...(forward ? { forward } : {}) }
}

function tryJson(text: string): { value: unknown } | undefined {
  try {
    return { value: JSON.parse(text) as unknown }
  } catch {
    return undefined
  }
}

/**
 * JSON Patch operations the gateway cannot judge by their value: `copy` and `move` put a value
 * from elsewhere in the object (an annotation holding `true`, a secret's data) where the
 * gateway cannot see it; `test` against a secret's data answers whether a guess is right.
 */
function jsonPatchRefusal(doc: unknown): string | undefined {
  if (!Array.isArray(doc)) return 'a JSON patch is a list of operations'
  for (const op of doc) {
    const o = op && typeof op === 'object' ? (op as { op?: unknown; path?: unknown }) : {}
    if (o.op === 'copy' || o.op === 'move') return `JSON patch "${o.op}" moves values the gateway cannot judge where they land: write the value with add or replace`
    if (o.op === 'test' && typeof o.path === 'string' && /^\/(data|stringData)(\/|$)/.test(o.path)) return 'JSON patch "test" on data would reveal whether a guessed value is right'
  }
  return undefined
}

/** What of a YAML document the gateway does not read as the API server would: explicit tags, non-string keys, duplicate keys. */
function yamlOddity(doc: ReturnType<typeof parseDocument>): string | undefined {
  let found: string | undefined
  visit(doc, {
    Node(_key, node) {
      if (found) return visit.BREAK
      // parsed nodes carry a tag only when the source wrote one (`!!binary`, `!!str`, `!custom`)
      const tag = (node as { tag?: string }).tag
      if (tag !== undefined) {
        found = `the request body uses the YAML tag ${tag.slice(0, 40)}: write plain values`
        return visit.BREAK
      }
      if (isMap(node)) {
        const keys = new Set<string>()
        for (const pair of node.items) {
          const key = pair.key
          if (!isScalar(key) || typeof key.value !== 'string') {
            found = 'the request body has a YAML key that is not a plain string'
            return visit.BREAK
          }
          if (keys.has(key.value)) {
            found = `the request body has the key "${key.value.slice(0, 64)}" twice in one map: the gateway does not guess which one the server keeps`
            return visit.BREAK
          }
          keys.add(key.value)
        }
      }
      return undefined
    },
  })
  return found
}

/** JSON Patch operations as the object they would write: `{op: add, path: /spec/hostNetwork, value: true}` → `{spec: {hostNetwork: true}}`. */
function fromJsonPatch(doc: unknown): unknown {
  if (!Array.isArray(doc)) return doc
  return doc.map((op: unknown) => {
    if (!op || typeof op !== 'object') return op
    const { path, value } = op as { path?: unknown; value?: unknown }
    if (typeof path !== 'string') return value
    return path
      .split('/')
      .slice(1)
      .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
      .reduceRight<unknown>((inner, key) => ({ [key]: inner }), value)
  })
}

function factsOf(doc: unknown, patchType: PatchType | undefined): BodyFacts {
  const f = { hostNetwork: false, hostPID: false, hostIPC: false, privileged: false, hostPath: false, hostPorts: false, allowPrivilegeEscalation: false, capabilities: new Set<string>() }
  const seen = new Set<unknown>()
  const walk = (v: unknown, depth: number): void => {
    if (!v || typeof v !== 'object' || seen.has(v) || depth > 100) return
    seen.add(v)
    if (Array.isArray(v)) {
      for (const x of v) walk(x, depth + 1)
      return
    }
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      // a value that is not plainly false counts (a string "true" is refused by the server, or means true)
      const on = x !== false && x !== null && x !== undefined && x !== 'false'
      if (k === 'hostNetwork' && on) f.hostNetwork = true
      else if (k === 'hostPID' && on) f.hostPID = true
      else if (k === 'hostIPC' && on) f.hostIPC = true
      else if (k === 'privileged' && on) f.privileged = true
      // removed or nulled, it falls back to its default, which allows escalation
      else if (k === 'allowPrivilegeEscalation' && x !== false && x !== 'false') f.allowPrivilegeEscalation = true
      else if (k === 'hostPath' && on) f.hostPath = true
      else if (k === 'hostPort' && on && x !== 0) f.hostPorts = true
      // capabilities.add as a list, or one element of it written by a JSON patch (…/add/- or …/add/0)
      else if (k === 'add' && Array.isArray(x)) for (const c of x) f.capabilities.add(String(c))
      else if (k === 'add' && x && typeof x === 'object') for (const c of Object.values(x)) if (typeof c === 'string') f.capabilities.add(c)
      walk(x, depth + 1)
    }
  }
  walk(doc, 0)
  const top = doc && typeof doc === 'object' && !Array.isArray(doc) ? (doc as Record<string, unknown>) : {}
  return {
    ...(typeof top.kind === 'string' ? { kind: top.kind } : {}),
    ...(typeof top.apiVersion === 'string' ? { apiVersion: top.apiVersion } : {}),
    ...(patchType === undefined ? {} : { patchType }),
    hostNetwork: f.hostNetwork,
    hostPID: f.hostPID,
    hostIPC: f.hostIPC,
    privileged: f.privileged,
    hostPath: f.hostPath,
    hostPorts: f.hostPorts,
    allowPrivilegeEscalation: f.allowPrivilegeEscalation,
    capabilities: [...f.capabilities].sort(),
  }
}

/** Whether some JSON object in `text` (valid JSON) names a key twice: JSON.parse keeps the last silently. */
function hasDuplicateKeys(text: string): boolean {
  const stack: ({ keys: Set<string>; expectKey: boolean } | undefined)[] = []
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    const top = stack[stack.length - 1]
    if (c === '{') stack.push({ keys: new Set(), expectKey: true })
    else if (c === '[') stack.push(undefined)
    else if (c === '}' || c === ']') stack.pop()
    else if (c === ',' && top) top.expectKey = true
    else if (c === '"') {
      let j = i + 1
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1
      if (top?.expectKey) {
        const key = JSON.parse(text.slice(i, j + 1)) as string
        if (top.keys.has(key)) return true
        top.keys.add(key)
        top.expectKey = false
      }
      i = j
    }
  }
  return false
}
