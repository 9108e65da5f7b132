/**
 * The `mask` obligation: a policy rule that allows a request may name fields of the documents
 * that come back (`ssn`, `card.number`, `contacts.*.phone`); core replaces their values before
 * the client sees them, whichever adapter carries the documents (`Pipeline.transform`), and the
 * outcome record names the fields that were replaced — never a value.
 *
 * Paths are dot-separated field names. `*` stands for any one field name (or array index). An
 * array on the way is looked through, element by element, as MongoDB reads dot paths, so
 * `items.price` masks the price of every item. The value at the end of a path is replaced whatever
 * it is (a string, a number, a whole sub-document).
 */
import type { Decision, Obligation } from '../types.js'

/** What a masked value becomes. */
export const MASKED = '[masked]'

/** The obligation a rule with `mask` attaches to its allow decision. */
export interface MaskObligation extends Obligation {
  readonly kind: 'mask'
  readonly fields: readonly string[]
}

/** One mask path, split once. */
export interface MaskPath {
  readonly text: string
  readonly segments: readonly string[]
}

export const isMaskObligation = (o: Obligation): o is MaskObligation => o.kind === 'mask' && Array.isArray((o as MaskObligation).fields)

/** The mask paths a decision carries, or undefined when it masks nothing. */
export function maskPathsOf(decision: Decision): readonly MaskPath[] | undefined {
  if (decision.verdict !== 'allow' || !decision.obligations) return undefined
  const paths: MaskPath[] = []
  for (const o of decision.obligations) if (isMaskObligation(o)) for (const f of o.fields) paths.push({ text: f, segments: f.split('.') })
  return paths.length > 0 ? paths : undefined
}

/** A JSON-like container: a plain object or an array (not a Date, a Buffer, a driver's value type). */
function isContainer(v: unknown): v is Record<string, unknown> | unknown[] {
  if (v === null || typeof v !== 'object') return false
  if (Array.isArray(v)) return true
  const proto = Object.getPrototypeOf(v) as unknown
  return proto === Object.prototype || proto === null
}

/**
 * Replaces, in place, the values of `doc` that the paths name; returns the paths that replaced
 * something (each once). Items that are not plain objects or arrays are left alone.
 */
export function maskDocument(doc: unknown, paths: readonly MaskPath[]): string[] {
  const hit: string[] = []
  if (!isContainer(doc)) return hit
  for (const p of paths) if (maskAt(doc, p.segments, 0)) hit.push(p.text)
  return hit
}

function maskAt(node: Record<string, unknown> | unknown[], segments: readonly string[], i: number): boolean {
  const segment = segments[i] as string
  const last = i === segments.length - 1
  let any = false
  if (Array.isArray(node)) {
    // A numeric segment or `*` names elements; any other segment looks through the array at each element.
    if (/^\d+$/.test(segment) || segment === '*') {
      const keys = segment === '*' ? node.keys() : [Number(segment)]
      for (const k of keys) {
        if (k >= node.length) continue
        if (last) {
          node[k] = MASKED
          any = true
        } else {
          const child = node[k]
          if (isContainer(child) && maskAt(child, segments, i + 1)) any = true
        }
      }
      return any
    }
    for (const el of node) if (isContainer(el) && !Array.isArray(el) && maskAt(el, segments, i)) any = true
    return any
  }
  const keys = segment === '*' ? Object.keys(node) : Object.prototype.hasOwnProperty.call(node, segment) ? [segment] : []
  for (const k of keys) {
    if (last) {
      node[k] = MASKED
      any = true
      continue
    }
    const child = node[k]
    if (isContainer(child) && maskAt(child, segments, i + 1)) any = true
  }
  return any
}
