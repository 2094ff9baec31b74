/**
 * The root logger. Only the cli creates one; every component gets a child.
 * Credentials are redacted by exact path (pino cannot match wildcards in the
 * middle cheaply), so code never logs whole header objects.
 */
import { pino, type Logger } from 'pino'

/** Paths whose values are replaced by "[redacted]". */
export const REDACT_PATHS = [
  'token', '*.token', 'password', '*.password',
  'authorization', 'headers.authorization', 'req.headers.authorization', 'req.headers["proxy-authorization"]',
  'headers["proxy-authorization"]', 'agentToken', 'callerToken', 'keyPem', '*.keyPem'
]

/** Log levels accepted by --log-level. */
export const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const

/** Creates the root logger writing JSON lines to `destination` (stdout by default). */
export function createRootLogger (level: string, destination?: NodeJS.WritableStream): Logger {
  return pino({
    level,
    base: { pid: process.pid },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime
  }, (destination ?? pino.destination({ fd: 1, sync: false })) as pino.DestinationStream)
}
