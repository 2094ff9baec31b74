/**
 * Reconnect delays: exponential with jitter, so that a fleet of agents
 * cut off together does not reconnect in lockstep when the server returns;
 * and, when the server said when to come back (`Retry-After`), that time,
 * spread over its last second.
 */
import type { JitterKind } from './config.ts'

/** Shortest wait taken on a server's `Retry-After`, in milliseconds. */
export const MIN_ASKED_MS = 100

/** Options of {@link Backoff}. */
export interface BackoffOptions {
  /** Smallest delay, in milliseconds. */
  minMs: number
  /** Largest delay, in milliseconds. */
  maxMs: number
  /** `full`: uniform in [min, min·2^attempt]; `decorrelated`: uniform in [min, 3·previous delay]. Both capped at max. */
  jitter: JitterKind
  /** Source of randomness in [0, 1); injectable for tests. */
  random?: () => number
}

/** A reconnect delay sequence. */
export class Backoff {
  readonly #min: number
  readonly #max: number
  readonly #jitter: JitterKind
  readonly #random: () => number
  #attempt = 0
  #previous: number

  constructor (options: BackoffOptions) {
    this.#min = options.minMs
    this.#max = options.maxMs
    this.#jitter = options.jitter
    this.#random = options.random ?? Math.random
    this.#previous = this.#min
  }

  /** Failed attempts since the last reset. */
  get attempt (): number {
    return this.#attempt
  }

  /** The delay before the next attempt, in milliseconds. */
  next (): number {
    this.#attempt++
    let delay: number
    if (this.#jitter === 'full') {
      const cap = Math.min(this.#max, this.#min * 2 ** Math.min(this.#attempt - 1, 30))
      delay = this.#min + this.#random() * (cap - this.#min)
    } else {
      const cap = Math.min(this.#max, this.#previous * 3)
      delay = this.#min + this.#random() * (cap - this.#min)
    }
    delay = Math.round(Math.min(this.#max, Math.max(this.#min, delay)))
    this.#previous = delay
    return delay
  }

  /**
   * The delay a server asked for with `Retry-After: seconds` (≥ 1), counted as
   * an attempt: a random point of the second before it, so the agents a server
   * sent away with the same whole number do not return in one instant; at
   * least {@link MIN_ASKED_MS}, at most the largest delay. The exponential
   * sequence is left where it was: the next failure of another kind backs off
   * as before.
   */
  asked (seconds: number): number {
    this.#attempt++
    return Math.round(Math.min(this.#max, Math.max(MIN_ASKED_MS, (seconds - this.#random()) * 1000)))
  }

  /** The largest delay, counted as an attempt: used when retrying sooner cannot help (token rejected). */
  max (): number {
    this.#attempt++
    this.#previous = this.#max
    return this.#max
  }

  /** Starts over from the smallest delay, after a connection proved stable. */
  reset (): void {
    this.#attempt = 0
    this.#previous = this.#min
  }
}
