/**
 * Rate limit for warnings that a peer can trigger once per request (a
 * refused caller, a cluster without an agent, an unreachable upstream): the
 * first of a kind in an interval is a warn line, the rest go to debug and
 * are counted, and the next warn line says how many it stood for. Anyone
 * who can reach a port must not be able to flood the operator's log.
 */
import type { Logger } from '@tower/mux'

/** Options of {@link WarnLimiter}. */
export interface WarnLimiterOptions {
  /** Shortest time between two warn lines of one kind, in milliseconds. */
  intervalMs: number
  /** Most kinds tracked at once; past it the table starts over (bounded memory). */
  maxKinds?: number
}

/** Decides per kind whether a warning is logged at warn or at debug. */
export class WarnLimiter {
  readonly #intervalMs: number
  readonly #maxKinds: number
  readonly #kinds = new Map<string, { last: number, suppressed: number }>()

  constructor (opts: WarnLimiterOptions) {
    this.#intervalMs = opts.intervalMs
    this.#maxKinds = opts.maxKinds ?? 256
  }

  /**
   * For one occurrence of `kind`: the number of occurrences suppressed since
   * the last warn line (0 or more) when this one is to be logged at warn,
   * or `undefined` when it is to go to debug.
   */
  take (kind: string, now: number = Date.now()): number | undefined {
    const entry = this.#kinds.get(kind)
    if (entry !== undefined && now - entry.last < this.#intervalMs) {
      entry.suppressed++
      return undefined
    }
    if (entry === undefined && this.#kinds.size >= this.#maxKinds) this.#kinds.clear()
    const suppressed = entry?.suppressed ?? 0
    this.#kinds.set(kind, { last: now, suppressed: 0 })
    return suppressed
  }

  /**
   * Logs one occurrence of `kind`: at warn if {@link take} allows, with
   * `suppressed` when earlier ones went to debug, else at debug.
   */
  warn (log: Logger, kind: string, fields: Record<string, unknown>, msg: string): void {
    const suppressed = this.take(kind)
    if (suppressed === undefined) log.debug(fields, msg)
    else log.warn(suppressed > 0 ? { ...fields, suppressed } : fields, msg)
  }
}
