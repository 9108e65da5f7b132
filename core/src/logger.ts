/** The gateway's structured log (pino). Secrets are redacted by key name as a second line of defence. */
import type { InjectionToken } from 'tsyringe'
import { isatty } from 'node:tty'
import { pino, type Logger as PinoLogger, type DestinationStream } from 'pino'
import { PinoPretty } from 'pino-pretty'

export type Logger = PinoLogger
export const Logger: InjectionToken<Logger> = Symbol.for('gatehouse.Logger')

export const REDACT_PATHS = ['password', 'token', 'secret', '*.password', '*.token', '*.secret', 'upstream.password', '*.upstream.password', 'authorization', '*.authorization']

/** A log written to file descriptor `fd` (1: stdout, 2: stderr). */
export function logDestination(fd: 1 | 2): DestinationStream {
  return pino.destination({ fd, sync: false })
}

export type LogFormat = 'auto' | 'json' | 'pretty'

/**
 * A logger at `level`. JSON lines, unless `format` asks for text (`pretty`), or leaves it to the
 * output (`auto`: text when the log goes to a terminal, so an operator at a shell reads it, and JSON
 * for everything that collects logs). Text is formatted in process and written synchronously.
 */
export function createLogger(level: string, destination?: DestinationStream, format: LogFormat = 'json'): Logger {
  const fd = (destination as { fd?: number } | undefined)?.fd ?? 1
  const pretty = format === 'pretty' || (format === 'auto' && isatty(fd))
  return pino(
    {
      level,
      base: { name: 'gatehouse' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pretty ? PinoPretty({ destination: fd, sync: true, colorize: isatty(fd), translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,name' }) : (destination ?? pino.destination({ fd: 1, sync: false })),
  )
}
