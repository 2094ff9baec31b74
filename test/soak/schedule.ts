/**
 * The order of faults: every kind once per seeded shuffle, repeated until the run's time is up and every
 * kind has run at least once. No server fault in the last third once each server kind has run, so the
 * final server processes carry a third of the soak for the RSS/fd check.
 */
import type { Rng } from './rng.ts'

/** When the schedule ends and when server faults stop (ms since the epoch). */
export interface ScheduleTimes {
  /** No new fault at or after this time, once every kind has run. */
  lastFaultBy: number
  /** Server faults (kinds starting with `server`) stop at this time, once each has run. */
  serverFaultsUntil: number
}

/** A seeded fault schedule over `kinds`. */
export class FaultSchedule<K extends string> {
  #rng: Rng
  #kinds: readonly K[]
  #times: ScheduleTimes
  #queue: K[] = []
  /** Kinds that have run. */
  readonly seen = new Set<K>()

  constructor (rng: Rng, kinds: readonly K[], times: ScheduleTimes) {
    if (!kinds.some((k) => !k.startsWith('server'))) throw new Error('the schedule needs a kind that is not a server fault')
    this.#rng = rng
    this.#kinds = kinds
    this.#times = times
  }

  /** The next fault to inject at `now`, or undefined when the schedule is over. */
  next (now: number): K | undefined {
    if (now >= this.#times.lastFaultBy && this.seen.size === this.#kinds.length) return undefined
    for (;;) {
      if (this.#queue.length === 0) this.#queue = this.#rng.shuffle(this.#kinds)
      const kind = this.#queue.shift()!
      if (kind.startsWith('server') && now > this.#times.serverFaultsUntil && this.seen.has(kind)) continue
      this.seen.add(kind)
      return kind
    }
  }
}
