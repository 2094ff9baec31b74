/**
 * A token bucket for agent admissions: after a server restart, a thousand
 * agents must not all run their TLS handshakes at once. Refused agents get 503
 * with Retry-After and retry with jittered backoff.
 */
export class AdmissionLimiter {
  readonly #rate: number
  readonly #burst: number
  #tokens: number
  #last = performance.now()

  /** `rate` admissions per second on average, `burst` at once. 0 disables the limit. */
  constructor (rate: number, burst: number) {
    this.#rate = rate
    this.#burst = Math.max(1, burst)
    this.#tokens = this.#burst
  }

  /** Takes one admission; false when none is left now. */
  take (): boolean {
    if (this.#rate <= 0) return true
    const now = performance.now()
    this.#tokens = Math.min(this.#burst, this.#tokens + (now - this.#last) / 1000 * this.#rate)
    this.#last = now
    if (this.#tokens < 1) return false
    this.#tokens -= 1
    return true
  }
}
