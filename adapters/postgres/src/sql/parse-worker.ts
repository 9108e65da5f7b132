/**
 * The worker thread behind BackgroundParser: parses SQL texts too large to parse on the event
 * loop every session shares, one at a time, and answers with their bounds and facts.
 */
import { parentPort } from 'node:worker_threads'
import { loadSqlParser, parseSql } from './analyze.js'

interface Task {
  readonly id: number
  readonly input: string
}

const port = parentPort
if (port) {
  const ready = loadSqlParser()
  void ready.then(() => port.postMessage({ ready: true }))
  port.on('message', (task: Task) => {
    void ready.then(() => {
      let result: ReturnType<typeof parseSql>
      try {
        result = parseSql(task.input)
      } catch (err) {
        result = { error: (err as Error).message || 'analysis failed' }
      }
      port.postMessage({ id: task.id, result })
    })
  })
}
