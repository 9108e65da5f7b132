/**
 * Runs a built gateway until SIGTERM/SIGINT, then shuts down gracefully and exits 0. SIGHUP
 * reloads the config file (`Gateway.reload`); `gatehouse reload` sends it and reads the result.
 *
 * The running gateway's pid is in `<dataDir>/gatehouse.pid`, and the result of each reload in
 * `<dataDir>/reload.json` (`seq` counts reloads since start): that is how `gatehouse reload`
 * finds the gateway and learns what happened, without a network listener.
 */
import { createHash } from 'node:crypto'
import { readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { parseConfig } from '../config/load.js'
import type { GatewayConfig } from '../config/schema.js'
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
  /** The file the gateway read, and the sha256 of the bytes it read. */
  readonly config?: { readonly path: string; readonly sha256: string }
}

/** A config file read once: its real path, the digest of the bytes read, and the config they hold. */
export function readConfigFile(file: string): { path: string; sha256: string; config: GatewayConfig } {
  let path: string
  let text: Buffer
  try {
    path = realpathSync(file)
    text = readFileSync(path)
  } catch (err) {
    throw new ConfigError([{ path: file, message: `cannot read config: ${(err as NodeJS.ErrnoException).code ?? String(err)}` }])
  }
  return { path, sha256: createHash('sha256').update(text).digest('hex'), config: parseConfig(text.toString('utf8'), { baseDir: dirname(path) }) }
}

/** Writes a file the gateway owns in its data directory: replaced, never followed through a link, readable by its owner only. */
function writeOwnFile(path: string, text: string): void {
  rmSync(path, { force: true })
  writeFileSync(path, text, { flag: 'wx', mode: 0o600 })
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
  try {
    await gateway.start()
  } catch (err) {
    process.stderr.write(`gatehouse: cannot start: ${(err as Error).message}\n`)
    process.exit(1)
  }
  let seq = 0
  const configFile = opts.configFile
  if (configFile === undefined) {
    process.on('SIGHUP', () => gateway.logger.warn('SIGHUP: this gateway was not started from a config file; nothing to reload'))
  } else {
    process.on('SIGHUP', () => {
      gateway.logger.info({ config: configFile }, 'SIGHUP: reloading the configuration')
      const n = ++seq
      let read: { path: string; sha256: string } | undefined
      const report = (status: Omit<ReloadStatus, 'seq' | 'pid' | 'at'>) => writeOwnFile(reloadFile(dataDir), `${JSON.stringify({ seq: n, pid: process.pid, at: new Date().toISOString(), ...status, ...(read ? { config: read } : {}) })}\n`)
      Promise.resolve()
        .then(() => {
          const file = readConfigFile(configFile)
          read = { path: file.path, sha256: file.sha256 }
          return gateway.reload(file.config)
        })
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
  writeOwnFile(pidFile(dataDir), `${process.pid}\n`)
  rmSync(reloadFile(dataDir), { force: true })
  gateway.logger.info('gateway ready')
  onReady?.()
}

/**
 * The pid of the gateway running on `dataDir`, or why there is none. The pid file is checked, not
 * trusted: a whole number above 1 (0 and -1 would signal a process group or every process), alive,
 * and, where /proc tells, a `start` command (a stale file may name a pid reused by another program).
 */
export function runningGateway(dataDir: string): { pid: number } | { error: string } {
  let text: string
  try {
    text = readFileSync(pidFile(dataDir), 'utf8').trim()
  } catch {
    return { error: `no gateway is running on ${dataDir} (no ${pidFile(dataDir)})` }
  }
  const pid = Number(text)
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(pid) || pid <= 1) return { error: `${pidFile(dataDir)} does not hold a process id` }
  try {
    process.kill(pid, 0)
  } catch {
    return { error: `no gateway is running on ${dataDir} (pid ${pid} from ${pidFile(dataDir)} is gone)` }
  }
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
    if (!argv.includes('start')) return { error: `pid ${pid} from ${pidFile(dataDir)} is not a running \`gatehouse start\` (${argv.filter(Boolean).join(' ')})` }
  } catch {
    // no /proc here: the liveness check is all there is
  }
  return { pid }
}
