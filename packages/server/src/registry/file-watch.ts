/**
 * Watches a state directory for state.json being replaced by another
 * process (the CLI writes it with a rename, which fs.watch reports on the
 * directory, not on the old file). Bursts of events are debounced into one
 * reload; a state.json that cannot be read keeps the previous state.
 */
import fs from 'node:fs'
import type { Logger } from '@tower/mux'

/** Quiet time after the last event before reloading, in milliseconds. */
export const WATCH_DEBOUNCE_MS = 50

/** Calls `reload` after state.json in `dir` changed; errors from it are logged. */
export class StateWatcher {
  readonly #dir: string
  readonly #reload: () => void
  readonly #log: Logger
  #watcher: fs.FSWatcher | undefined
  #debounce: NodeJS.Timeout | undefined

  constructor (dir: string, reload: () => void, log: Logger) {
    this.#dir = dir
    this.#reload = reload
    this.#log = log
  }

  /** True while watching. */
  get active (): boolean { return this.#watcher !== undefined }

  /** Starts watching; a second call does nothing. */
  start (): void {
    if (this.#watcher !== undefined) return
    this.#watcher = fs.watch(this.#dir, (_event, file) => {
      if (file !== 'state.json') return
      clearTimeout(this.#debounce)
      this.#debounce = setTimeout(() => {
        try {
          this.#reload()
        } catch (err) {
          this.#log.error({ err }, 'state.json changed but cannot be read; keeping the previous state')
        }
      }, WATCH_DEBOUNCE_MS)
      this.#debounce.unref()
    })
    this.#watcher.on('error', (err) => { this.#log.error({ err }, 'watching the state directory failed; changes by other processes are seen at the next write here') })
    this.#watcher.unref()
  }

  /** Stops watching and drops a pending reload. */
  stop (): void {
    this.#watcher?.close()
    this.#watcher = undefined
    clearTimeout(this.#debounce)
    this.#debounce = undefined
  }
}
