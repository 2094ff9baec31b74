/**
 * Pings of a session: `ping()` for callers, and the keepalive loop that pings
 * every `interval` milliseconds and declares the peer dead when a reply takes
 * longer than `timeout`. One keepalive ping is outstanding at a time, so a
 * slow peer is not flooded.
 */
import { performance } from 'node:perf_hooks'
import { Flag, MAX_UINT32 } from './constants.ts'
import { KeepAliveTimeoutError } from './errors.ts'

/** Options of {@link Pinger}. */
export interface PingerOptions {
  /** Keepalive interval in milliseconds; 0 for no keepalive. */
  interval: number
  /** How long a ping waits for its reply, in milliseconds. */
  timeout: number
  /** Sends a Ping frame with these flags and opaque value. */
  send (flags: number, value: number): void
  /** A round-trip sample in milliseconds. */
  onRtt (ms: number): void
  /** A keepalive ping went unanswered. */
  onDead (err: KeepAliveTimeoutError): void
}

interface Pending {
  start: number
  timer: ReturnType<typeof setTimeout>
  resolve: (ms: number) => void
  reject: (err: Error) => void
}

/** Ping bookkeeping of one session. See the module header. */
export class Pinger {
  readonly #opts: PingerOptions
  readonly #pending = new Map<number, Pending>()
  #value = 0
  #interval: ReturnType<typeof setInterval> | null = null
  #outstanding = false

  constructor (opts: PingerOptions) {
    this.#opts = opts
  }

  /** Starts the keepalive loop, if an interval is configured. */
  start (): void {
    if (this.#opts.interval === 0) return
    this.#interval = setInterval(() => { this.#keepAlive() }, this.#opts.interval)
    this.#interval.unref()
  }

  /** Stops the loop and fails every pending ping with `err`. */
  stop (err: Error): void {
    if (this.#interval !== null) clearInterval(this.#interval)
    this.#interval = null
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer)
      pending.reject(err)
    }
    this.#pending.clear()
  }

  /** Sends a ping; resolves with the round trip in milliseconds. */
  async ping (): Promise<number> {
    this.#value = this.#value === MAX_UINT32 ? 1 : this.#value + 1
    const value = this.#value
    return await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(value)
        reject(new KeepAliveTimeoutError(this.#opts.timeout))
      }, this.#opts.timeout)
      timer.unref()
      this.#pending.set(value, { start: performance.now(), timer, resolve, reject })
      this.#opts.send(Flag.syn, value)
    })
  }

  /** A ping reply carrying `value` arrived; unknown values are ignored. */
  reply (value: number): void {
    const pending = this.#pending.get(value)
    if (pending === undefined) return
    this.#pending.delete(value)
    clearTimeout(pending.timer)
    const ms = performance.now() - pending.start
    this.#opts.onRtt(ms)
    pending.resolve(ms)
  }

  #keepAlive (): void {
    if (this.#outstanding) return
    this.#outstanding = true
    this.ping().then(() => {
      this.#outstanding = false
    }, (err: unknown) => {
      this.#outstanding = false
      if (err instanceof KeepAliveTimeoutError) this.#opts.onDead(err)
    })
  }
}
