/**
 * Graceful shutdown on SIGINT/SIGTERM: run the stop function once, exit 0;
 * a second signal, or a stop that hangs, exits at once.
 */
import type { Logger } from 'pino'

/** Calls `stop` on the first SIGINT or SIGTERM, then exits. */
export function onShutdown (log: Logger, stop: () => Promise<void>, graceMs = 10_000): void {
  let stopping = false
  const handler = (signal: string): void => {
    if (stopping) {
      log.warn({ signal }, 'second signal, exiting now')
      process.exit(1)
    }
    stopping = true
    log.info({ signal }, 'shutting down')
    setTimeout(() => { log.error({ graceMs }, 'shutdown took too long, exiting'); process.exit(1) }, graceMs).unref()
    stop().then(() => { log.flush(); process.exit(0) }, (err) => { log.error({ err }, 'error during shutdown'); process.exit(1) })
  }
  process.on('SIGINT', () => handler('SIGINT'))
  process.on('SIGTERM', () => handler('SIGTERM'))
}
