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

/**
 * pino's error serializer appends every cause's message to the error's own.
 * Tower's wrapping errors already quote their cause ("transport error:
 * <cause>"), which printed the cause twice; keep such a message as written.
 * The cause's stack is still logged ("caused by: …").
 */
export function serializeErr (err: Error): ReturnType<typeof pino.stdSerializers.err> {
  const out = pino.stdSerializers.err(err)
  const cause = (err as { cause?: unknown }).cause
  if (err instanceof Error && cause instanceof Error && cause.message !== '' && err.message.endsWith(cause.message)) out.message = err.message
  return out
}

/** Creates the root logger writing JSON lines to `destination` (stdout by default). */
export function createRootLogger (level: string, destination?: NodeJS.WritableStream): Logger {
  return pino({
    level,
    base: { pid: process.pid },
    serializers: { err: serializeErr },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime
  }, (destination ?? pino.destination({ fd: 1, sync: false })) as pino.DestinationStream)
}
