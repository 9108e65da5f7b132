/**
 * Runs a built gateway until SIGTERM/SIGINT, then shuts down gracefully and exits 0. SIGHUP
 * reloads the config file (`Gateway.reload`); `gatehouse reload` sends it and reads the result.
 *
 * The running gateway's pid is in `<dataDir>/gatehouse.pid`, and the result of each reload in
 * `<dataDir>/reload.json` (`seq` counts reloads since start): that is how `gatehouse reload`
 * finds the gateway and learns what happened, without a network listener.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { loadConfigFile } from '../config/load.js'
import { ConfigError } from '../config/validate.js'
import type { Gateway } from '../gateway.js'

export interface ReloadStatus {
  readonly seq: number
  readonly pid: number
  readonly at: string
  readonly ok: boolean
  /** The errors, as `gatehouse validate` prints them, when the reload was refused. */
  readonly errors?: readonly string[]
  /** Sessions ended because their credential is no longer accepted. */
  readonly sessionsEnded?: number
}

export const pidFile = (dataDir: string) => join(dataDir, 'gatehouse.pid')
export const reloadFile = (dataDir: string) => join(dataDir, 'reload.json')

export function readReloadStatus(dataDir: string): ReloadStatus | undefined {
  try {
    return JSON.parse(readFileSync(reloadFile(dataDir), 'utf8')) as ReloadStatus
  } catch {
    return undefined
  }
}

/** The lines `gatehouse validate` prints for an error. */
export function errorLines(err: unknown): string[] {
  if (err instanceof ConfigError) return err.issues.map((i) => `${i.path}: ${i.message}`)
  return [err instanceof Error ? err.message : String(err)]
}

export async function runUntilSignal(gateway: Gateway, onReady?: () => void, opts: { configFile?: string } = {}): Promise<void> {
  let signals = 0
  const dataDir = gateway.config.dataDir
  const stop = (signal: NodeJS.Signals) => {
    signals++
    if (signals > 1) {
      gateway.logger.warn({ signal }, 'second signal: exiting now')
      process.exit(1)
    }
    gateway.logger.info({ signal }, 'signal received')
    gateway.shutdown().then(
      () => {
        rmSync(pidFile(dataDir), { force: true })
        setTimeout(() => process.exit(0), 50)
      },
      (err: unknown) => {
        gateway.logger.error({ err: String(err) }, 'shutdown failed')
        process.exit(1)
      },
    )
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  let seq = 0
  const configFile = opts.configFile
  if (configFile !== undefined) {
    process.on('SIGHUP', () => {
      gateway.logger.info({ config: configFile }, 'SIGHUP: reloading the configuration')
      const n = ++seq
      const report = (status: Omit<ReloadStatus, 'seq' | 'pid' | 'at'>) => writeFileSync(reloadFile(dataDir), `${JSON.stringify({ seq: n, pid: process.pid, at: new Date().toISOString(), ...status })}\n`)
      Promise.resolve()
        .then(() => gateway.reload(loadConfigFile(configFile)))
        .then(
          (r) => report({ ok: true, sessionsEnded: r.ended }),
          (err: unknown) => {
            gateway.logger.error({ errors: errorLines(err) }, 'reload refused: the configuration in force is unchanged')
            report({ ok: false, errors: errorLines(err) })
          },
        )
        .catch((err: unknown) => gateway.logger.error({ err: String(err) }, 'could not write the reload status'))
    })
  }
  try {
    await gateway.start()
  } catch (err) {
    process.stderr.write(`gatehouse: cannot start: ${(err as Error).message}\n`)
    process.exit(1)
  }
  writeFileSync(pidFile(dataDir), `${process.pid}\n`)
  rmSync(reloadFile(dataDir), { force: true })
  gateway.logger.info('gateway ready')
  onReady?.()
}
