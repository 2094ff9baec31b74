/**
 * The root logger. Only the cli creates one; every component gets a child.
 * Credentials are redacted by exact path (pino cannot match wildcards in the
 * middle cheaply), so code never logs whole header objects.
 */
import { pino, type Logger } from 'pino'

/**
 * Paths whose values are replaced by "[redacted]": every field name under
 * which the code base holds a secret (grep for them when adding one), at the
 * top level and one or two levels down. Join tokens (`token`, `agentToken`,
 * the `authorization` header), caller tokens (`callerToken`, bearer headers),
 * upstream credentials (`bearerToken`, `password`, a kubeconfig user's
 * `token`) and private keys (`keyPem`, `clientKeyPem`, `clientKeyData`,
 * `clientKey`, `privateKey`, a TLS options `key`).
 */
const SECRET_FIELDS = [
  'token', 'agentToken', 'callerToken', 'upstreamToken', 'joinToken', 'bearerToken', 'password',
  'authorization', 'cookie', 'keyPem', 'clientKeyPem', 'clientKeyData', 'clientKey', 'privateKey', 'key'
]

/** The pino redact paths built from SECRET_FIELDS, plus header names that need brackets. */
export const REDACT_PATHS = [
  ...SECRET_FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`]),
  'headers["proxy-authorization"]', 'req.headers["proxy-authorization"]', '*.headers["proxy-authorization"]'
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
