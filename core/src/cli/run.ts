/** Runs a built gateway until SIGTERM/SIGINT, then shuts down gracefully and exits 0. */
import type { Gateway } from '../gateway.js'

export async function runUntilSignal(gateway: Gateway, onReady?: () => void): Promise<void> {
  let signals = 0
  const stop = (signal: NodeJS.Signals) => {
    signals++
    if (signals > 1) {
      gateway.logger.warn({ signal }, 'second signal: exiting now')
      process.exit(1)
    }
    gateway.logger.info({ signal }, 'signal received')
    gateway.shutdown().then(
      () => setTimeout(() => process.exit(0), 50),
      (err: unknown) => {
        gateway.logger.error({ err: String(err) }, 'shutdown failed')
        process.exit(1)
      },
    )
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  try {
    await gateway.start()
  } catch (err) {
    process.stderr.write(`gatehouse: cannot start: ${(err as Error).message}\n`)
    process.exit(1)
  }
  gateway.logger.info('gateway ready')
  onReady?.()
}
