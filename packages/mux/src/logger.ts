/**
 * The logger mux needs: a subset of pino's API, so mux does not depend on
 * pino. Per-frame logs go at `trace`.
 */
export interface Logger {
  trace (obj: object, msg?: string): void
  debug (obj: object, msg?: string): void
  info (obj: object, msg?: string): void
  warn (obj: object, msg?: string): void
  error (obj: object, msg?: string): void
  child (bindings: Record<string, unknown>): Logger
  /** Whether `level` is logged (pino has it); lets hot paths skip building log objects. */
  isLevelEnabled? (level: string): boolean
}

/** A logger that drops everything; the default when none is given. */
export const silentLogger: Logger = {
  trace () {},
  debug () {},
  info () {},
  warn () {},
  error () {},
  child () { return silentLogger },
  isLevelEnabled () { return false }
}
