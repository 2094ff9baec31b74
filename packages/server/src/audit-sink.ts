/**
 * Where audit records go: one JSON object per line, to a stream (stdout) or
 * to a file rotated by size.
 *
 * Both sinks are bounded. A record is never waited for: it is queued, and
 * when the queue is full (the disk or the reader of stdout cannot keep up)
 * it is dropped and counted, with a rate-limited warning, so a slow sink
 * costs records, never memory or request latency.
 *
 * Both gather lines for up to {@link AUDIT_FLUSH_MS} (or until
 * {@link AUDIT_BATCH_BYTES} are gathered) and write them in one go. A write
 * per record cost the server a thread-pool round trip per request: a worker
 * thread woken for the write, and the event loop woken again for its
 * completion (`bench/README.md`, "Serial latency"). `close()` writes what is
 * gathered; a process killed outright loses at most the last interval's
 * records.
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
/** Longest a record waits to be written together with the ones after it, in milliseconds. */
export const AUDIT_FLUSH_MS = 100
/** Bytes of gathered lines that are written at once, without waiting for {@link AUDIT_FLUSH_MS}. */
export const AUDIT_BATCH_BYTES = 64 * 1024

/**
 * When a sink writes what it gathered: {@link AUDIT_FLUSH_MS} after the
 * first line of a batch, or at once when the batch reaches
 * {@link AUDIT_BATCH_BYTES} (or when the delay is 0). One unref'd timer per
 * batch, so an idle server holds none and a pending batch never keeps the
 * process alive.
 */
class FlushTimer {
  readonly #flush: () => void
  readonly #delayMs: number
  #timer: NodeJS.Timeout | undefined
  readonly #fire = (): void => {
    this.#timer = undefined
    this.#flush()
  }

  constructor (flush: () => void, delayMs: number) {
    if (!Number.isSafeInteger(delayMs) || delayMs < 0) throw new InvalidArgumentError('flushMs: a whole number of milliseconds, 0 or more')
    this.#flush = flush
    this.#delayMs = delayMs
  }

  /** A line was gathered; `bytes` are gathered now. */
  gathered (bytes: number): void {
    if (bytes >= AUDIT_BATCH_BYTES || this.#delayMs === 0) {
      this.now()
      return
    }
    if (this.#timer !== undefined) return
    this.#timer = setTimeout(this.#fire, this.#delayMs)
    this.#timer.unref()
  }

  /** Flushes now (and forgets the timer). */
  now (): void {
    this.cancel()
    this.#flush()
  }

  /** Forgets the timer. */
  cancel (): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
  }
}

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
  /** Longest a line waits to be written with the next ones, in milliseconds; 0 writes each at once. Default {@link AUDIT_FLUSH_MS}. */
  flushMs?: number
  logger: Logger
}

/**
 * Audit lines to a stream, gathered into batches; once the stream reports
 * full, at most `maxQueueBytes` more (written or gathered) until it drains.
 */
export class StreamAuditSink implements AuditSink {
  readonly #stream: LineStream
  readonly #max: number
  readonly #warn: LogLimiter
  readonly #timer: FlushTimer
  #dropped = 0
  #batch = ''
  // Bytes handed to the stream since it last said it was full; undefined while it is not.
  #pending: number | undefined
  #drained: Promise<void> = Promise.resolve()

  constructor (opts: StreamAuditSinkOptions) {
    this.#max = positive(opts.maxQueueBytes ?? DEFAULT_AUDIT_QUEUE_BYTES, 'maxQueueBytes')
    this.#stream = opts.stream
    this.#timer = new FlushTimer(() => { this.#flush() }, opts.flushMs ?? AUDIT_FLUSH_MS)
    const log = opts.logger.child({ component: 'audit' })
    this.#warn = new LogLimiter(log, { burst: 1, windowMs: AUDIT_DROP_WARN_INTERVAL_MS })
  }

  get dropped (): number { return this.#dropped }

  write (line: string): boolean {
    const bytes = line.length + 1
    if (this.#pending !== undefined && this.#pending + this.#batch.length + bytes > this.#max) {
      this.#dropped++
      this.#warn.warn('dropped', { dropped: this.#dropped }, 'audit record dropped: the audit stream is not keeping up')
      return false
    }
    this.#batch += line + '\n'
    this.#timer.gathered(this.#batch.length)
    return true
  }

  async close (): Promise<void> {
    this.#timer.now()
    this.#warn.flush()
    await this.#drained
  }

  // Whole lines in one write: the destination never splits one.
  #flush (): void {
    const text = this.#batch
    if (text === '') return
    this.#batch = ''
    const more = this.#stream.write(text)
    if (this.#pending !== undefined) {
      this.#pending += text.length
    } else if (!more) {
      this.#pending = 0
      this.#drained = new Promise((resolve) => this.#stream.once('drain', () => {
        this.#pending = undefined
        resolve()
      }))
    }
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
  /** Longest a line waits to be written with the next ones, in milliseconds; 0 writes as soon as the file is free. Default {@link AUDIT_FLUSH_MS}. */
  flushMs?: number
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
  readonly #timer: FlushTimer
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
    this.#timer = new FlushTimer(() => { if (this.#queue.length > 0) this.#writing ??= this.#flush() }, opts.flushMs ?? AUDIT_FLUSH_MS)
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
    // a batch being written takes the line with it when it is done
    if (this.#writing === undefined) this.#timer.gathered(this.#queued)
    return true
  }

  async close (): Promise<void> {
    this.#closed = true
    this.#timer.now()
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
