/**
 * Rate limit for warnings a peer can provoke once per frame (a refused SYN,
 * say). Each kind of event gets a window: its first `burst` events in the
 * window are logged at warn, the rest at debug and counted. When the window
 * ends, one warn line reports how many were suppressed, and the next event
 * opens a new window. Unlike a limiter that reports the count on its next
 * warn line, the count is not lost when the flood stops. `flush()` reports at once and stops the timers (the session calls
 * it when it ends).
 *
 * Kinds are a small fixed set chosen by the caller, never peer input, so the
 * table of windows stays bounded.
 */
import type { Logger } from './logger.ts'

/** Options of {@link LogLimiter}. */
export interface LogLimiterOptions {
  /** Events of one kind logged per window; later ones are counted. */
  burst: number
  /** Length of a window, in milliseconds. */
  windowMs: number
}

interface Window {
  logged: number
  suppressed: number
  msg: string
  timer: ReturnType<typeof setTimeout>
}

/** Per-kind warning limiter of one session. See the module header. */
export class LogLimiter {
  readonly #log: Logger
  readonly #burst: number
  readonly #windowMs: number
  readonly #windows = new Map<string, Window>()

  constructor (log: Logger, options: LogLimiterOptions) {
    this.#log = log
    this.#burst = options.burst
    this.#windowMs = options.windowMs
  }

  /**
   * Logs `msg` at warn, or at debug (counted) when `kind` already used its
   * burst in this window.
   * @param kind a fixed label such as `'stream-refused'`; logged with the summary.
   */
  warn (kind: string, obj: object, msg: string): void {
    let window = this.#windows.get(kind)
    if (window === undefined) {
      const timer = setTimeout(() => { this.#end(kind) }, this.#windowMs)
      timer.unref()
      window = { logged: 0, suppressed: 0, msg, timer }
      this.#windows.set(kind, window)
    }
    if (window.logged < this.#burst) {
      window.logged++
      this.#log.warn(obj, msg)
    } else {
      window.suppressed++
      this.#log.debug(obj, msg)
    }
  }

  /** Reports every suppressed count now and stops the timers. */
  flush (): void {
    for (const kind of [...this.#windows.keys()]) this.#end(kind)
  }

  #end (kind: string): void {
    const window = this.#windows.get(kind)
    if (window === undefined) return
    clearTimeout(window.timer)
    this.#windows.delete(kind)
    if (window.suppressed > 0) {
      this.#log.warn({ kind, suppressed: window.suppressed, windowMs: this.#windowMs },
        `suppressed ${window.suppressed} more warnings like "${window.msg}"`)
    }
  }
}
