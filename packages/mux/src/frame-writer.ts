/**
 * Outgoing half of a session: queues frames during a tick and hands them to
 * the transport in one go on the next tick.
 *
 * - Headers (and payloads of at most SMALL_PAYLOAD bytes) are written into a
 *   scratch slab, so a run of control frames or small Data frames becomes one
 *   buffer. Larger payloads are queued as they are, without a copy.
 * - A transport with `_writev` (net.Socket, Tower's ws adapter) is corked
 *   around the batch so it receives one vectored write. Any other Duplex gets
 *   the batch concatenated into one `write()`, since it would otherwise turn
 *   every 12-byte header into a separate write (a separate message on a
 *   WebSocket).
 * - Backpressure: `blocked` is true once the transport reported a full buffer
 *   (write returned false) until 'drain', or while the queued bytes would
 *   fill it. Streams do not add Data frames while blocked. Control frames are
 *   always queued, by the session and by streams alike, so the bound on them
 *   sits here: once more than `controlLimit` bytes of control frames are
 *   unflushed, the writer calls `onOverflow` (once) and drops every later
 *   frame; the session ends itself.
 *
 * Slab bytes are never reused: the transport may still hold a view of them.
 */
import type { Duplex } from 'node:stream'
import { HEADER_SIZE, SLAB_SIZE, SMALL_PAYLOAD } from './constants.ts'
import { writeHeader } from './frame.ts'

/** Queues frames for a transport. See the module header. */
export class FrameWriter {
  readonly #transport: Duplex
  readonly #vectored: boolean
  readonly #onWritable: () => void
  readonly #controlLimit: number
  readonly #maxDataFrame: number
  readonly #onOverflow: (backlog: number) => void
  #queue: Buffer[] = []
  #queued = 0
  #slab = Buffer.allocUnsafeSlow(SLAB_SIZE)
  #slabPos = 0
  #runStart = 0
  #scheduled = false
  #needDrain = false
  #wantWritable = false
  #closed = false
  readonly #flushTick = (): void => { this.flush() }

  /**
   * @param transport the byte stream frames go to.
   * @param options.onWritable called when Data frames may be queued again,
   *   after {@link waitWritable} was called while blocked.
   * @param options.controlLimit most bytes of control frames left unflushed,
   *   in bytes (the session passes CONTROL_BACKLOG_LIMIT).
   * @param options.maxDataFrame largest Data payload queued, in bytes; with the
   *   transport's high water mark it bounds the Data bytes in the backlog.
   * @param options.onOverflow called once, with the backlog in bytes, when a
   *   frame exceeds `controlLimit`; the writer drops all frames from then on.
   */
  constructor (transport: Duplex, options: { onWritable: () => void, controlLimit: number, maxDataFrame: number, onOverflow: (backlog: number) => void }) {
    this.#transport = transport
    this.#onWritable = options.onWritable
    this.#controlLimit = options.controlLimit
    this.#maxDataFrame = options.maxDataFrame
    this.#onOverflow = options.onOverflow
    this.#vectored = typeof (transport as { _writev?: unknown })._writev === 'function'
    transport.on('drain', () => {
      this.#needDrain = false
      this.#notifyWritable()
    })
  }

  /** True while Data frames must wait: the transport is full or would be with the queued bytes. */
  get blocked (): boolean {
    return this.#needDrain || this.#queued + this.#transport.writableLength >= this.#transport.writableHighWaterMark
  }

  /** Bytes queued here or in the transport and not yet flushed to the wire. */
  get backlog (): number {
    return this.#queued + this.#transport.writableLength
  }

  /** Asks for one `onWritable` call once {@link blocked} turns false. */
  waitWritable (): void {
    this.#wantWritable = true
  }

  /** Queues a frame without payload (WindowUpdate, Ping, GoAway, or an empty Data frame). */
  control (type: number, flags: number, streamId: number, length: number): void {
    if (this.#closed) return
    this.#reserve(HEADER_SIZE)
    this.#slabPos = writeHeader(this.#slab, this.#slabPos, type, flags, streamId, length)
    this.#queued += HEADER_SIZE
    this.#schedule()
    this.#checkBacklog()
  }

  /**
   * Queues a Data frame. `payload` is one buffer or several whose lengths add
   * up to `length`; they must not be modified afterwards.
   */
  data (flags: number, streamId: number, payload: Buffer | Buffer[], length: number): void {
    if (this.#closed) return
    const small = length <= SMALL_PAYLOAD
    this.#reserve(small ? HEADER_SIZE + length : HEADER_SIZE)
    this.#slabPos = writeHeader(this.#slab, this.#slabPos, 0, flags, streamId, length)
    if (small) {
      if (Buffer.isBuffer(payload)) {
        this.#slabPos += payload.copy(this.#slab, this.#slabPos)
      } else {
        for (const part of payload) this.#slabPos += part.copy(this.#slab, this.#slabPos)
      }
    } else {
      this.#closeRun()
      if (Buffer.isBuffer(payload)) {
        this.#queue.push(payload)
      } else {
        for (const part of payload) this.#queue.push(part)
      }
    }
    this.#queued += HEADER_SIZE + length
    this.#schedule()
    this.#checkBacklog()
  }

  /** Writes everything queued to the transport now. */
  flush (): void {
    this.#scheduled = false
    this.#closeRun()
    if (this.#queue.length === 0) return
    const queue = this.#queue
    this.#queue = []
    const bytes = this.#queued
    this.#queued = 0
    const t = this.#transport
    if (!t.writable) return
    let ok: boolean
    if (queue.length === 1) {
      ok = t.write(queue[0])
    } else if (this.#vectored) {
      t.cork()
      ok = true
      for (const buf of queue) ok = t.write(buf)
      t.uncork()
    } else {
      ok = t.write(Buffer.concat(queue, bytes))
    }
    if (!ok) this.#needDrain = true
    this.#notifyWritable()
  }

  /** Drops everything not yet handed to the transport, and every later frame; the session is over. */
  close (): void {
    this.#closed = true
    this.#queue = []
    this.#queued = 0
    this.#runStart = this.#slabPos
  }

  // A Data frame is only queued while the backlog is below the high water
  // mark, so Data makes up at most that mark plus one frame of the backlog;
  // the rest is control frames a peer provoked without reading the answers.
  #checkBacklog (): void {
    const backlog = this.backlog
    if (backlog <= this.#controlLimit + this.#transport.writableHighWaterMark + this.#maxDataFrame + HEADER_SIZE) return
    this.close()
    this.#onOverflow(backlog)
  }

  #notifyWritable (): void {
    if (this.#wantWritable && !this.blocked) {
      this.#wantWritable = false
      this.#onWritable()
    }
  }

  #schedule (): void {
    if (!this.#scheduled) {
      this.#scheduled = true
      process.nextTick(this.#flushTick)
    }
  }

  // Makes room for `n` contiguous bytes in the slab.
  #reserve (n: number): void {
    if (SLAB_SIZE - this.#slabPos >= n) return
    this.#closeRun()
    this.#slab = Buffer.allocUnsafeSlow(Math.max(SLAB_SIZE, n))
    this.#slabPos = 0
    this.#runStart = 0
  }

  // Queues the slab bytes written since the last run as one buffer.
  #closeRun (): void {
    if (this.#slabPos > this.#runStart) {
      this.#queue.push(this.#slab.subarray(this.#runStart, this.#slabPos))
      this.#runStart = this.#slabPos
    }
  }
}
