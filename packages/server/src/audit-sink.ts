/**
 * Where audit records go: one JSON object per line, to a stream (stdout) or
 * to a file rotated by size.
 *
 * Both sinks are bounded. A record is never waited for: it is queued, and
 * when the queue is full (the disk or the reader of stdout cannot keep up)
 * it is dropped and counted, with a rate-limited warning, so a slow sink
 * costs records, never memory or request latency.
 *
 * The file sink writes whole lines only, in batches, from one writer at a
 * time. Before a batch would take the file past its maximum size, the file
 * rotates by rename (FILE.<n-1> -> FILE.<n> … FILE -> FILE.1; the oldest
 * beyond the backup count is removed), so no line is ever split across
 * files.
 */
import { open, rename, rm, stat, type FileHandle } from 'node:fs/promises'
import { InvalidArgumentError, LogLimiter, type Logger } from '@tower/mux'

/** Takes audit lines. */
export interface AuditSink {
  /** Queues one line (no newline); false when it was dropped. Never throws. */
  write: (line: string) => boolean
  /** Records dropped so far because the queue was full or the file failed. */
  readonly dropped: number
  /** Writes what is queued and releases the sink. */
  close: () => Promise<void>
}

/** Default largest audit file before it rotates, in bytes (100 MiB). */
export const DEFAULT_AUDIT_MAX_SIZE = 100 * 1024 * 1024
/** Default number of rotated audit files kept (FILE.1 … FILE.5). */
export const DEFAULT_AUDIT_MAX_BACKUPS = 5
/** Default bytes of audit lines queued in memory before new ones are dropped (8 MiB). */
export const DEFAULT_AUDIT_QUEUE_BYTES = 8 * 1024 * 1024
/** Shortest time between two warnings about dropped records, in milliseconds. */
export const AUDIT_DROP_WARN_INTERVAL_MS = 10_000

/**
 * A line-oriented destination: a Node Writable, or the logger's own
 * destination (pino's SonicBoom), whose `write` returns false when full and
 * which emits `drain` when it is not any more.
 */
export interface LineStream {
  write: (chunk: string) => boolean
  once: (event: 'drain', listener: () => void) => unknown
}

/** Options of {@link StreamAuditSink}. */
export interface StreamAuditSinkOptions {
  /**
   * Where lines go. Sharing the logger's destination when audit and logs
   * both go to stdout keeps one writer on the fd, so a long log line and a
   * record never interleave in a pipe.
   */
  stream: LineStream
  /** Bytes written past the point where the stream said it was full before new lines are dropped. */
  maxQueueBytes?: number
  logger: Logger
}

/** Audit lines to a stream; once it reports full, at most `maxQueueBytes` more until it drains. */
export class StreamAuditSink implements AuditSink {
  readonly #stream: LineStream
  readonly #max: number
  readonly #warn: LogLimiter
  #dropped = 0
  // Bytes handed to the stream since it last said it was full; undefined while it is not.
  #pending: number | undefined
  #drained: Promise<void> = Promise.resolve()

  constructor (opts: StreamAuditSinkOptions) {
    this.#max = positive(opts.maxQueueBytes ?? DEFAULT_AUDIT_QUEUE_BYTES, 'maxQueueBytes')
    this.#stream = opts.stream
    const log = opts.logger.child({ component: 'audit' })
    this.#warn = new LogLimiter(log, { burst: 1, windowMs: AUDIT_DROP_WARN_INTERVAL_MS })
  }

  get dropped (): number { return this.#dropped }

  write (line: string): boolean {
    const bytes = line.length + 1
    if (this.#pending !== undefined && this.#pending + bytes > this.#max) {
      this.#dropped++
      this.#warn.warn('dropped', { dropped: this.#dropped }, 'audit record dropped: the audit stream is not keeping up')
      return false
    }
    // One write per line: the destination never splits it.
    const more = this.#stream.write(line + '\n')
    if (this.#pending !== undefined) {
      this.#pending += bytes
    } else if (!more) {
      this.#pending = 0
      this.#drained = new Promise((resolve) => this.#stream.once('drain', () => {
        this.#pending = undefined
        resolve()
      }))
    }
    return true
  }

  async close (): Promise<void> {
    this.#warn.flush()
    await this.#drained
  }
}

/** Options of {@link FileAuditSink}. */
export interface FileAuditSinkOptions {
  /** The audit file; rotated files are `<path>.1` (newest) … `<path>.<maxBackups>`. */
  path: string
  /** Size at which the file rotates, in bytes. */
  maxSizeBytes?: number
  /** Rotated files kept; 0 = none (the file is truncated by removal on rotation). */
  maxBackups?: number
  /** Bytes of lines queued in memory before new ones are dropped (besides the batch being written). */
  maxQueueBytes?: number
  logger: Logger
}

/** Audit lines appended to a file, rotated by size. */
export class FileAuditSink implements AuditSink {
  readonly #path: string
  readonly #maxSize: number
  readonly #backups: number
  readonly #maxQueue: number
  readonly #log: Logger
  readonly #warn: LogLimiter
  #queue: string[] = []
  #queued = 0
  #dropped = 0
  #file: FileHandle | undefined
  #size = 0
  #writing: Promise<void> | undefined
  #closed = false

  constructor (opts: FileAuditSinkOptions) {
    if (typeof opts.path !== 'string' || opts.path === '') throw new InvalidArgumentError('path: the audit file must be a non-empty path')
    this.#path = opts.path
    this.#maxSize = positive(opts.maxSizeBytes ?? DEFAULT_AUDIT_MAX_SIZE, 'maxSizeBytes')
    this.#backups = opts.maxBackups ?? DEFAULT_AUDIT_MAX_BACKUPS
    if (!Number.isInteger(this.#backups) || this.#backups < 0 || this.#backups > 1000) throw new InvalidArgumentError('maxBackups: an integer from 0 to 1000')
    this.#maxQueue = positive(opts.maxQueueBytes ?? DEFAULT_AUDIT_QUEUE_BYTES, 'maxQueueBytes')
    this.#log = opts.logger.child({ component: 'audit' })
    this.#warn = new LogLimiter(this.#log, { burst: 1, windowMs: AUDIT_DROP_WARN_INTERVAL_MS })
  }

  get dropped (): number { return this.#dropped }

  /** Opens (or creates) the file, so a path that cannot be written fails at start-up rather than silently. */
  async open (): Promise<void> {
    this.#file = await open(this.#path, 'a', 0o600)
    this.#size = (await this.#file.stat()).size
  }

  write (line: string): boolean {
    const bytes = Buffer.byteLength(line) + 1
    if (this.#closed || this.#queued + bytes > this.#maxQueue) {
      this.#drop('the audit file is not keeping up')
      return false
    }
    this.#queue.push(line)
    this.#queued += bytes
    this.#writing ??= this.#flush()
    return true
  }

  async close (): Promise<void> {
    this.#closed = true
    await this.#writing
    await this.#file?.close()
    this.#file = undefined
    this.#warn.flush()
  }

  // One writer at a time: takes what is queued, in batches that fit the file.
  async #flush (): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const lines = this.#queue
        this.#queue = []
        this.#queued = 0
        let batch: string[] = []
        let batchBytes = 0
        for (const line of lines) {
          const bytes = Buffer.byteLength(line) + 1
          if (batch.length > 0 && this.#size + batchBytes + bytes > this.#maxSize) {
            await this.#append(batch, batchBytes)
            batch = []
            batchBytes = 0
          }
          batch.push(line)
          batchBytes += bytes
        }
        if (batch.length > 0) await this.#append(batch, batchBytes)
      }
    } finally {
      this.#writing = undefined
    }
  }

  async #append (batch: string[], bytes: number): Promise<void> {
    try {
      // A line never straddles a rotation: the file rotates before a batch that would not fit.
      if (this.#size > 0 && this.#size + bytes > this.#maxSize) await this.#rotate()
      this.#file ??= await open(this.#path, 'a', 0o600)
      await this.#file.write(batch.join('\n') + '\n')
      this.#size += bytes
    } catch (err) {
      this.#dropped += batch.length
      this.#log.error({ err, dropped: this.#dropped }, 'audit write failed; these records are lost, the next ones are tried again')
      await this.#file?.close().catch(() => {})
      this.#file = undefined
      this.#size = await stat(this.#path).then((s) => s.size, () => 0)
    }
  }

  async #rotate (): Promise<void> {
    await this.#file?.close()
    this.#file = undefined
    if (this.#backups === 0) {
      await rm(this.#path, { force: true })
    } else {
      await rm(`${this.#path}.${this.#backups}`, { force: true })
      for (let n = this.#backups - 1; n >= 1; n--) await renameIfPresent(`${this.#path}.${n}`, `${this.#path}.${n + 1}`)
      await renameIfPresent(this.#path, `${this.#path}.1`)
    }
    this.#size = 0
  }

  #drop (reason: string): void {
    this.#dropped++
    this.#warn.warn('dropped', { reason, dropped: this.#dropped }, 'audit record dropped')
  }
}

async function renameIfPresent (from: string, to: string): Promise<void> {
  try {
    await rename(from, to)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
}

function positive (v: number, name: string): number {
  if (!Number.isSafeInteger(v) || v <= 0) throw new InvalidArgumentError(`${name}: a positive integer number of bytes`)
  return v
}
