/**
 * The worker thread behind the SSH adapter's command analysis: analyses command lines off the
 * event loop every session shares, one at a time (core's BackgroundPool runs it with a time
 * budget, and replaces it if tree-sitter's WebAssembly module aborts).
 */
import { parentPort } from 'node:worker_threads'
import { analyzeCommand, loadShellParser, type CommandAnalysis } from './programs.js'

const port = parentPort
if (port) {
  const ready = loadShellParser()
  void ready.then(() => port.postMessage({ ready: true }))
  port.on('message', (task: { id: number; input: string }) => {
    void ready.then(() => {
      let result: CommandAnalysis
      try {
        result = analyzeCommand(task.input)
      } catch (err) {
        result = { ok: false, error: `the command line could not be analysed: ${(err as Error).message}` }
      }
      port.postMessage({ id: task.id, result })
    })
  })
}
