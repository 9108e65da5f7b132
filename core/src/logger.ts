/** The gateway's structured log (pino). Secrets are redacted by key name as a second line of defence. */
import type { InjectionToken } from 'tsyringe'
import { pino, type Logger as PinoLogger, type DestinationStream } from 'pino'

export type Logger = PinoLogger
export const Logger: InjectionToken<Logger> = Symbol.for('gatehouse.Logger')

export const REDACT_PATHS = ['password', 'token', 'secret', '*.password', '*.token', '*.secret', 'upstream.password', '*.upstream.password', 'authorization', '*.authorization']

/** A log written to file descriptor `fd` (1: stdout, 2: stderr). */
export function logDestination(fd: 1 | 2): DestinationStream {
  return pino.destination({ fd, sync: false })
}

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { name: 'gatehouse' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? pino.destination({ fd: 1, sync: false }),
  )
}
