/**
 * A keyed work queue, the shape client-go's workqueue has and client-node
 * lacks: a key is at most once in the queue however often it is added; a key
 * added while its handler runs is queued again once that run ends (so the
 * newest state is always seen); a failed key comes back after an exponential
 * per-key backoff, reset by its next success; at most `concurrency` handlers
 * run at once. Keys are cluster names, so their number is bounded by
 * `maxKeys`; a key over the limit is dropped and logged (the periodic resync
 * brings it back).
 */
import { InvalidArgumentError, silentLogger, type Logger } from '@tower/mux'

/** What a handler may ask for after a successful run. */
export interface WorkResult {
  /** Run the key again after this many milliseconds (e.g. a certificate renewal); absent = not before the next add. */
  requeueAfterMs?: number
}

/** Options of {@link WorkQueue}. */
export interface WorkQueueOptions {
  /** Processes one key; a rejection is a failure (backoff), a result may ask for a later run. */
  handler: (key: string) => Promise<WorkResult | undefined | void>
  /** Handlers running at once. Default 4. */
  concurrency?: number
  /** Backoff after a key's first failure, in milliseconds; doubled on each further failure. Default 200. */
  baseBackoffMs?: number
  /** Longest backoff, in milliseconds. Default 30 000. */
  maxBackoffMs?: number
  /** Most distinct keys queued, running or waiting on a timer at once. Default 10 000. */
  maxKeys?: number
  logger?: Logger
}

/** Defaults of {@link WorkQueueOptions}. */
export const WORK_QUEUE_DEFAULTS = {
  concurrency: 4,
  baseBackoffMs: 200,
  maxBackoffMs: 30_000,
  maxKeys: 10_000
} as const

/** See the module comment. */
export class WorkQueue {
  readonly #handler: WorkQueueOptions['handler']
  readonly #concurrency: number
  readonly #baseBackoffMs: number
  readonly #maxBackoffMs: number
  readonly #maxKeys: number
  readonly #log: Logger
  /** Keys waiting to run, in order; mirrored by #queuedSet. */
  readonly #queue: string[] = []
  readonly #queuedSet = new Set<string>()
  /** Keys whose handler runs now. */
  readonly #running = new Set<string>()
  /** Running keys that were added again meanwhile. */
  readonly #dirty = new Set<string>()
  /** Delayed adds: key -> timer and when it fires (ms since epoch). */
  readonly #timers = new Map<string, { timer: NodeJS.Timeout, at: number }>()
  /** Consecutive failures per key. */
  readonly #failures = new Map<string, number>()
  readonly #inFlight = new Set<Promise<void>>()
  #stopped = false
  #dropWarned = false

  constructor (opts: WorkQueueOptions) {
    if (typeof opts?.handler !== 'function') throw new InvalidArgumentError('WorkQueue: handler must be a function')
    this.#handler = opts.handler
    this.#concurrency = positiveInt('concurrency', opts.concurrency ?? WORK_QUEUE_DEFAULTS.concurrency)
    this.#baseBackoffMs = positiveInt('baseBackoffMs', opts.baseBackoffMs ?? WORK_QUEUE_DEFAULTS.baseBackoffMs)
    this.#maxBackoffMs = positiveInt('maxBackoffMs', opts.maxBackoffMs ?? WORK_QUEUE_DEFAULTS.maxBackoffMs)
    this.#maxKeys = positiveInt('maxKeys', opts.maxKeys ?? WORK_QUEUE_DEFAULTS.maxKeys)
    this.#log = (opts.logger ?? silentLogger).child({ component: 'work-queue' })
  }

  /** Keys queued or running (not those waiting on a timer). */
  get length (): number {
    return this.#queue.length + this.#running.size
  }

  /** True when nothing is queued, running or waiting on a timer. */
  get idle (): boolean {
    return this.#queue.length === 0 && this.#running.size === 0 && this.#timers.size === 0
  }

  /** Queues `key` now; a no-op when it is queued already, or after stop(). */
  add (key: string): void {
    if (this.#stopped) return
    const t = this.#timers.get(key)
    if (t !== undefined) {
      clearTimeout(t.timer)
      this.#timers.delete(key)
    }
    if (this.#running.has(key)) {
      this.#dirty.add(key)
      return
    }
    if (this.#queuedSet.has(key)) return
    if (!this.#admit(key)) return
    this.#queue.push(key)
    this.#queuedSet.add(key)
    this.#pump()
  }

  /** Queues `key` after `delayMs` milliseconds; an earlier pending delay for the key wins. */
  addAfter (key: string, delayMs: number): void {
    if (this.#stopped) return
    if (!(delayMs > 0)) {
      this.add(key)
      return
    }
    const at = Date.now() + delayMs
    const t = this.#timers.get(key)
    if (t !== undefined) {
      if (t.at <= at) return
      clearTimeout(t.timer)
      this.#timers.delete(key)
    }
    if (!this.#admit(key)) return
    const timer = setTimeout(() => {
      this.#timers.delete(key)
      this.add(key)
    }, Math.min(delayMs, 2 ** 31 - 1))
    timer.unref()
    this.#timers.set(key, { timer, at })
  }

  /** Stops taking keys, cancels delayed ones and resolves when every running handler has ended. */
  async stop (): Promise<void> {
    this.#stopped = true
    for (const t of this.#timers.values()) clearTimeout(t.timer)
    this.#timers.clear()
    this.#queue.length = 0
    this.#queuedSet.clear()
    this.#dirty.clear()
    await Promise.all([...this.#inFlight])
  }

  /** False (and a warning, once per burst) when `key` is new and the key limit is reached. */
  #admit (key: string): boolean {
    const known = this.#queuedSet.has(key) || this.#running.has(key) || this.#timers.has(key)
    if (known || this.#queuedSet.size + this.#running.size + this.#timers.size < this.#maxKeys) {
      this.#dropWarned = false
      return true
    }
    if (!this.#dropWarned) {
      this.#dropWarned = true
      this.#log.warn({ maxKeys: this.#maxKeys }, 'work queue full; dropping new keys until the next resync')
    }
    return false
  }

  #pump (): void {
    while (!this.#stopped && this.#running.size < this.#concurrency && this.#queue.length > 0) {
      const key = this.#queue.shift() as string
      this.#queuedSet.delete(key)
      this.#running.add(key)
      const run = this.#run(key).finally(() => { this.#inFlight.delete(run) })
      this.#inFlight.add(run)
    }
  }

  async #run (key: string): Promise<void> {
    let result: WorkResult | undefined | void
    let failed = false
    try {
      result = await this.#handler(key)
    } catch (err) {
      failed = true
      const n = (this.#failures.get(key) ?? 0) + 1
      this.#failures.set(key, n)
      const delay = this.backoffMs(n)
      this.#log.warn({ err, key, failures: n, retryInMs: delay }, 'work item failed; retrying after a backoff')
      this.#running.delete(key)
      // A newer add beats the backoff: the state that failed may already be fixed.
      if (this.#dirty.delete(key)) this.add(key)
      else this.addAfter(key, delay)
    }
    if (!failed) {
      this.#failures.delete(key)
      this.#running.delete(key)
      if (this.#dirty.delete(key)) this.add(key)
      else if (result?.requeueAfterMs !== undefined) this.addAfter(key, result.requeueAfterMs)
    }
    this.#pump()
  }

  /** Backoff after the `failures`-th consecutive failure of a key, in milliseconds. */
  backoffMs (failures: number): number {
    return Math.min(this.#maxBackoffMs, this.#baseBackoffMs * 2 ** Math.min(30, Math.max(0, failures - 1)))
  }
}

function positiveInt (name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(`WorkQueue: ${name} must be a positive integer, got ${String(v)}`)
  return v
}
