/**
 * The worker thread behind the kubernetes adapter's YAML bodies: YAML is read at about a
 * microsecond a byte, so a large body read on the event loop would hold up every session. Core's
 * BackgroundPool runs this with a time budget; the answer is the decoded body (facts, and the JSON
 * to forward) or the refusal.
 */
import { parentPort } from 'node:worker_threads'
import { decodeBody, type DecodedBody } from './body.js'

const port = parentPort
if (port) {
  port.postMessage({ ready: true })
  port.on('message', (task: { id: number; input: { type: string; body: Uint8Array } }) => {
    let result: DecodedBody
    try {
      result = decodeBody(task.input.type, Buffer.from(task.input.body))
    } catch (err) {
      result = { ok: false, status: 400, reason: `the request body could not be read: ${(err as Error).message}` }
    }
    port.postMessage({ id: task.id, result })
  })
}
