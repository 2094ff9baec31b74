/**
 * The orchestrator's handle on the load client child (bench/load.ts): one
 * long-lived process, jobs sent over IPC, one at a time, each with a deadline.
 */
import type { ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { forkReady, stopChild } from './proc.ts'
import type { Job } from '../load.ts'

const LOAD = fileURLToPath(new URL('../load.ts', import.meta.url))

/** A running load client process. */
export class LoadClient {
  #child: ChildProcess
  #next = 1
  /** Its pid (for the report). */
  readonly pid: number

  private constructor (child: ChildProcess, pid: number) {
    this.#child = child
    this.pid = pid
  }

  /** Forks bench/load.ts and waits for it to be ready. Output goes to `logFile`. */
  static async start (logFile: string): Promise<LoadClient> {
    const { child, ready } = await forkReady<{ pid: number }>(LOAD, [], logFile, 30_000, ['--max-old-space-size=4096'])
    return new LoadClient(child, ready.pid)
  }

  /** Runs one job; rejects with the child's error, or after `deadlineMs`. */
  run<T = any> (job: Job, deadlineMs: number): Promise<T> {
    const id = this.#next++
    return new Promise<T>((resolve, reject) => {
      const onMsg = (m: { id: number, result?: T, error?: string }): void => {
        if (m.id !== id) return
        cleanup()
        if (m.error !== undefined) reject(new Error(m.error))
        else resolve(m.result as T)
      }
      const onExit = (code: number | null): void => { cleanup(); reject(new Error(`load client exited (${code})`)) }
      const timer = setTimeout(() => { cleanup(); reject(new Error(`${job.kind} job exceeded ${deadlineMs} ms`)) }, deadlineMs)
      const cleanup = (): void => {
        clearTimeout(timer)
        this.#child.off('message', onMsg)
        this.#child.off('exit', onExit)
      }
      this.#child.on('message', onMsg)
      this.#child.once('exit', onExit)
      this.#child.send({ id, job })
    })
  }

  /** Stops the child. */
  async stop (): Promise<void> {
    await stopChild(this.#child)
  }
}
