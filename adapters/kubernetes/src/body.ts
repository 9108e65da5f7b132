/**
 * A write's body, decoded as the API server will decode it, and the facts policy judges in it:
 * what kind of object, and whether a pod it creates or changes asks for the host (network, PID,
 * IPC namespaces, host paths, host ports), for privileged mode, privilege escalation or added
 * capabilities — wherever in the object they appear (a Pod, a Deployment's template, a patch).
 */
import { parseDocument } from 'yaml'

export type PatchType = 'json' | 'merge' | 'strategic' | 'apply'

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

export type DecodedBody = { ok: true; facts: BodyFacts } | { ok: false; status: number; reason: string }

const JSON_TYPES: Record<string, PatchType | undefined> = {
  'application/json': undefined,
  'application/merge-patch+json': 'merge',
  'application/strategic-merge-patch+json': 'strategic',
  'application/json-patch+json': 'json',
}
const YAML_TYPES: Record<string, PatchType | undefined> = { 'application/yaml': undefined, 'application/apply-patch+yaml': 'apply' }

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
    // one document, no duplicate keys, no aliases (the API server's YAML reader expands them; so would we, but a billion laughs)
    const parsed = parseDocument(text, { uniqueKeys: true, version: '1.2' })
    if (parsed.errors.length > 0) return { ok: false, status: 400, reason: `the request body is not YAML the gateway reads: ${parsed.errors[0]?.message.split('\n')[0] ?? ''}` }
    try {
      doc = parsed.toJS({ maxAliasCount: 0 })
    } catch {
      return { ok: false, status: 400, reason: 'the request body uses YAML aliases (&anchor / *alias): the gateway does not expand them; write the values out' }
    }
  } else {
    return { ok: false, status: 415, reason: `content type "${type}" is not one the gateway judges (JSON, YAML, JSON/merge/strategic-merge/apply patches)` }
  }
  return { ok: true, facts: factsOf(patchType === 'json' ? fromJsonPatch(doc) : doc, patchType) }
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
      else if (k === 'allowPrivilegeEscalation' && on) f.allowPrivilegeEscalation = true
      else if (k === 'hostPath' && on) f.hostPath = true
      else if (k === 'hostPort' && on && x !== 0) f.hostPorts = true
      else if (k === 'add' && Array.isArray(x)) for (const c of x) f.capabilities.add(String(c))
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
