/**
 * Agent admissions: after a server restart, thousands of agents must neither
 * run their TLS handshakes at once nor come back in waves.
 *
 * A token bucket admits `rate` agents per second, `burst` at once. An agent
 * the server sends away (the bucket is empty, or the server drains) is given
 * a turn: the turns follow one another at the admission rate, so the
 * `Retry-After` of the k-th agent sent away in a crowd is about k ÷ rate
 * seconds, and the crowd comes back spread over the time the server needs to
 * admit it, not on the agents' exponential backoff. The agent waits a random
 * part of the second before that (see the agent's backoff), so a second's
 * turns do not arrive together.
 *
 * Turns are advice, not reservations: whoever finds a token when it arrives
 * is admitted, and an agent refused again gets a later turn. No turn is more
 * than {@link MAX_RETRY_AFTER_S} away, so a flood of authenticated dials (a
 * rogue agent holds a valid token too) can push the others back by a minute
 * at most, and the agent caps any wait at its own `--reconnect-max-ms`.
 */

/** Most seconds a refused agent is told to wait, however long the backlog. */
export const MAX_RETRY_AFTER_S = 60

/** Token bucket plus the queue of turns handed to the agents it sent away. */
export class AdmissionLimiter {
  readonly #rate: number
  readonly #burst: number
  readonly #now: () => number
  #tokens: number
  #last: number
  // when the next turn handed out starts (a #now() time); in the past while nobody waits
  #nextTurn = 0

  /**
   * `rate` admissions per second on average, `burst` at once. 0 disables the
   * limit (then a turn is always one second away). `now` is injectable for tests.
   */
  constructor (rate: number, burst: number, now: () => number = () => performance.now()) {
    this.#rate = rate
    this.#burst = Math.max(1, burst)
    this.#now = now
    this.#tokens = this.#burst
    this.#last = now()
  }

  /** Takes one admission; false when none is left now. */
  take (): boolean {
    if (this.#rate <= 0) return true
    this.#refill(this.#now())
    if (this.#tokens < 1) return false
    this.#tokens -= 1
    return true
  }

  /**
   * Hands the next turn to an agent sent away now, and returns the whole
   * seconds until it (the `Retry-After`): at least 1, at most
   * {@link MAX_RETRY_AFTER_S}.
   */
  turn (): number {
    if (this.#rate <= 0) return 1
    const now = this.#now()
    this.#refill(now)
    const slotMs = 1000 / this.#rate
    // the first turn starts when the bucket next holds a token
    const start = Math.max(this.#nextTurn, now + Math.max(0, 1 - this.#tokens) * slotMs)
    this.#nextTurn = Math.min(start + slotMs, now + MAX_RETRY_AFTER_S * 1000)
    return Math.min(MAX_RETRY_AFTER_S, Math.max(1, Math.ceil((start - now) / 1000)))
  }

  #refill (now: number): void {
    this.#tokens = Math.min(this.#burst, this.#tokens + (now - this.#last) / 1000 * this.#rate)
    this.#last = now
  }
}
