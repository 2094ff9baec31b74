/**
 * One logical stream of a session, as a node:stream Duplex.
 *
 * Receive side: payload pieces are pushed into the Readable buffer as they
 * arrive. The peer may only send what our window allows, so that buffer never
 * holds more than the window. Credit goes back to the peer as the consumer
 * reads: every `read()` (which flowing mode, pipe() and async iteration all go
 * through) and every push that was consumed at once re-computes the credit,
 * and a WindowUpdate is sent once at least half the window is free again.
 * A window that the consumer drains within one round trip doubles, up to
 * `maxWindow`; a reader that stalls never grows its window.
 *
 * Send side: `_write`/`_writev` cut the chunks into Data frames of at most
 * `maxFrameSize` bytes and at most the peer's remaining window, and only while
 * the session's writer is not blocked by the transport. The write callback is
 * held until every byte is framed, which is what backpressures the writer.
 *
 * Lifecycle: `end()` sends FIN after the last data; a FIN from the peer ends
 * the readable side; once both FINs have passed, the stream leaves the
 * session's table. `destroy()` sends RST. A RST from the peer destroys the
 * stream with a StreamResetError. A stream we open that gets no ACK within
 * `streamOpenTimeout` is reported to the session, which fails it and closes.
 *
 * The socket-like members (setTimeout, setNoDelay, remoteAddress, ...) exist so
 * that node:http accepts the stream as its socket.
 */
import { Duplex } from 'node:stream'
import { performance } from 'node:perf_hooks'
import type { SessionConfig } from './config.ts'
import { Flag, FrameType, MAX_UINT32, SPEC_INITIAL_WINDOW } from './constants.ts'
import { ProtocolError, SessionClosedError, StreamResetError } from './errors.ts'
import type { FrameWriter } from './frame-writer.ts'

/** What a stream needs from its session (implemented inside Session). */
export interface StreamHost {
  readonly writer: FrameWriter
  readonly config: SessionConfig
  /** Whether the session has ended. */
  isClosed (): boolean
  /** Round-trip time in milliseconds, 0 while unknown. */
  rtt (): number
  /** Records a round-trip sample in milliseconds. */
  sampleRtt (ms: number): void
  /** Asks for `[kWritable]()` once the writer accepts Data frames again. */
  waitWritable (stream: MuxStream): void
  /** The stream is finished with the session: forget it. */
  release (stream: MuxStream): void
  /** The peer did not ACK this stream within `streamOpenTimeout`. */
  openTimedOut (stream: MuxStream): void
  /** A write is waiting for the peer's window (counted by the session's `windowStall` event). */
  windowStalled (): void
}

// Session-only entry points, kept off the public surface.
/** @internal */ export const kOpen = Symbol('open')
/** @internal */ export const kAccept = Symbol('accept')
/** @internal */ export const kCanReceive = Symbol('canReceive')
/** @internal */ export const kRemoteEnded = Symbol('remoteEnded')
/** @internal */ export const kData = Symbol('data')
/** @internal */ export const kFlags = Symbol('flags')
/** @internal */ export const kWindowUpdate = Symbol('windowUpdate')
/** @internal */ export const kWritable = Symbol('writable')
/** @internal */ export const kSessionClosed = Symbol('sessionClosed')
/** @internal */ export const kCredit = Symbol('credit')

type Callback = (err?: Error | null) => void

// The chunks of no write: shared by every stream between writes (never
// mutated: #send only shifts while bytes are unsent), so an idle stream holds
// no array of its own and a finished write allocates none.
const NO_CHUNKS: Buffer[] = []

/** A stream of a {@link Session}: a Duplex with yamux flow control. See the module header. */
export class MuxStream extends Duplex {
  readonly #id: number
  readonly #host: StreamHost
  #sendWindow = SPEC_INITIAL_WINDOW
  // Credit the peer holds (including bytes of a frame still arriving), and the window it is measured against.
  #recvWindow = SPEC_INITIAL_WINDOW
  #windowSize = SPEC_INITIAL_WINDOW
  #lastUpdate = 0
  #openedAt = 0
  #openTimer: ReturnType<typeof setTimeout> | null = null
  #accepted = false
  #localFin = false
  #remoteFin = false
  #released = false
  // The write in progress: its chunks, how far into the first one we are, and its callback.
  #chunks: Buffer[] = NO_CHUNKS
  #offset = 0
  #unsent = 0
  #writeCb: Callback | null = null

  // The socket placeholders are prototype getters, not fields: five fewer
  // slots on every stream, idle ones included.
  /** Placeholder peer address for code that expects a socket. */
  get remoteAddress (): string { return '127.0.0.1' }
  /** Placeholder peer port for code that expects a socket. */
  get remotePort (): number { return 0 }
  /** Placeholder address family for code that expects a socket. */
  get remoteFamily (): string { return 'IPv4' }
  /** Placeholder local address for code that expects a socket. */
  get localAddress (): string { return '127.0.0.1' }
  /** Placeholder local port for code that expects a socket. */
  get localPort (): number { return 0 }

  /** Created by the session only: use `session.open()` or the `'stream'` event. */
  constructor (id: number, host: StreamHost) {
    super({ allowHalfOpen: true, readableHighWaterMark: host.config.initialWindow })
    this.#id = id
    this.#host = host
  }

  /** The yamux stream ID: odd when opened by the client side, even by the server side. */
  get id (): number { return this.#id }

  /** Bytes the peer currently lets us send. */
  get sendWindow (): number { return this.#sendWindow }

  /** Current receive window in bytes: the most this stream buffers for a reader that does not read. */
  get receiveWindow (): number { return this.#windowSize }

  /** No-op: a stream has no idle timer of its own. Returns `this`. */
  setTimeout (_ms: number, _callback?: () => void): this { return this }
  /** No-op, for socket compatibility. Returns `this`. */
  setNoDelay (_noDelay?: boolean): this { return this }
  /** No-op, for socket compatibility. Returns `this`. */
  setKeepAlive (_enable?: boolean, _delay?: number): this { return this }
  /** No-op, for socket compatibility. Returns `this`. */
  ref (): this { return this }
  /** No-op, for socket compatibility. Returns `this`. */
  unref (): this { return this }
  /** The placeholder local address, shaped like `net.Socket#address()`. */
  address (): { address: string, family: string, port: number } {
    return { address: this.localAddress, family: this.remoteFamily, port: this.localPort }
  }

  /** Reads like any Readable, then returns credit to the peer for what was consumed. */
  override read (size?: number): any {
    const chunk = super.read(size)
    this.#returnCredit()
    return chunk
  }

  override _read (): void {
    this.#returnCredit()
  }

  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: Callback): void {
    this.#chunks = [chunk]
    this.#begin(chunk.length, callback)
  }

  override _writev (chunks: Array<{ chunk: Buffer }>, callback: Callback): void {
    let total = 0
    const list = new Array<Buffer>(chunks.length)
    for (let i = 0; i < chunks.length; i++) {
      list[i] = chunks[i].chunk
      total += list[i].length
    }
    this.#chunks = list
    this.#begin(total, callback)
  }

  override _final (callback: Callback): void {
    if (this.#host.isClosed()) {
      callback(new SessionClosedError())
      return
    }
    this.#localFin = true
    this.#host.writer.control(FrameType.windowUpdate, Flag.fin, this.#id, 0)
    if (this.#remoteFin) this.#release()
    callback()
  }

  override _destroy (err: Error | null, callback: Callback): void {
    this.#clearOpenTimer()
    if (!this.#released) {
      if (!this.#host.isClosed() && !(this.#localFin && this.#remoteFin)) {
        this.#host.writer.control(FrameType.windowUpdate, Flag.rst, this.#id, 0)
      }
      this.#release()
    }
    const writeCb = this.#writeCb
    if (writeCb !== null) {
      this.#writeCb = null
      this.#chunks = NO_CHUNKS
      writeCb(err ?? new StreamResetError('stream destroyed before the write completed'))
    }
    callback(err)
  }

  /** Sends the SYN; the session calls it right after allocating the ID. @internal */
  [kOpen] (): void {
    this.#accepted = true
    this.#openedAt = performance.now()
    this.#host.writer.control(FrameType.windowUpdate, Flag.syn, this.#id, this.#announceWindow())
    const ms = this.#host.config.streamOpenTimeout
    if (ms > 0 && !this.destroyed) {
      this.#openTimer = setTimeout(() => {
        this.#openTimer = null
        this.#host.openTimedOut(this)
      }, ms)
      this.#openTimer.unref()
    }
  }

  /** Sends the ACK of an inbound stream when the application takes it. @internal */
  [kAccept] (): void {
    this.#host.writer.control(FrameType.windowUpdate, Flag.ack, this.#id, this.#announceWindow())
    // Set after the ACK: if queueing it ended the session, the stream was
    // never handed out and is destroyed without an error nobody listens for.
    this.#accepted = true
  }

  /** Whether a Data frame of `length` bytes fits the peer's credit. @internal */
  [kCanReceive] (length: number): boolean {
    return length <= this.#recvWindow
  }

  /**
   * Payload bytes the peer may still send us on this stream without breaking
   * its window: what it may have in flight once the stream is gone. @internal
   */
  get [kCredit] (): number { return this.#remoteFin ? 0 : this.#recvWindow }

  /** Whether the peer already sent its FIN. @internal */
  get [kRemoteEnded] (): boolean { return this.#remoteFin }

  /** A payload piece from the peer. @internal */
  [kData] (piece: Buffer): void {
    this.#recvWindow -= piece.length
    this.push(piece)
    this.#returnCredit()
  }

  /** ACK, FIN or RST from the peer. @internal */
  [kFlags] (flags: number): void {
    if ((flags & Flag.rst) !== 0) {
      this.#release()
      // A stream the application never took has no 'error' listener yet.
      this.destroy(this.#accepted ? new StreamResetError() : undefined)
      return
    }
    if ((flags & Flag.ack) !== 0 && this.#openedAt !== 0) {
      this.#clearOpenTimer()
      this.#host.sampleRtt(performance.now() - this.#openedAt)
      this.#openedAt = 0
    }
    if ((flags & Flag.fin) !== 0 && !this.#remoteFin) {
      this.#remoteFin = true
      this.push(null)
      if (this.#localFin) this.#release()
    }
  }

  /** Credit from the peer. @internal */
  [kWindowUpdate] (delta: number): void {
    if (this.#sendWindow + delta > MAX_UINT32) {
      throw new ProtocolError(`window update of ${delta} overflows the send window of stream ${this.#id}`)
    }
    this.#sendWindow += delta
    if (this.#writeCb !== null) this.#send()
  }

  /** The session's writer accepts Data frames again. @internal */
  [kWritable] (): void {
    if (this.#writeCb !== null) this.#send()
  }

  /** The session ended under this stream. @internal */
  [kSessionClosed] (err: Error): void {
    this.#released = true
    this.destroy(this.#accepted ? err : undefined)
  }

  // Raises the window from the spec's 256 KiB to the configured initial one; returns the delta.
  #announceWindow (): number {
    const delta = this.#host.config.initialWindow - SPEC_INITIAL_WINDOW
    this.#windowSize += delta
    this.#recvWindow += delta
    return delta
  }

  #begin (bytes: number, callback: Callback): void {
    this.#offset = 0
    this.#unsent = bytes
    this.#writeCb = callback
    this.#send()
  }

  // Frames as much of the current write as window and writer allow.
  #send (): void {
    const host = this.#host
    const writer = host.writer
    const maxFrame = host.config.maxFrameSize
    while (this.#unsent > 0) {
      if (host.isClosed() || this.destroyed) return
      if (this.#sendWindow === 0) {
        host.windowStalled()
        return
      }
      if (writer.blocked) {
        host.waitWritable(this)
        return
      }
      const n = Math.min(this.#unsent, this.#sendWindow, maxFrame)
      const head = this.#chunks[0]
      if (head.length - this.#offset >= n) {
        const piece = this.#offset === 0 && n === head.length ? head : head.subarray(this.#offset, this.#offset + n)
        this.#offset += n
        if (this.#offset === head.length) {
          this.#chunks.shift()
          this.#offset = 0
        }
        writer.data(0, this.#id, piece, n)
      } else {
        writer.data(0, this.#id, this.#take(n), n)
      }
      this.#sendWindow -= n
      this.#unsent -= n
    }
    const cb = this.#writeCb
    this.#chunks = NO_CHUNKS
    this.#writeCb = null
    if (cb !== null) cb()
  }

  // Removes `n` bytes spread over several chunks from the front of the write.
  #take (n: number): Buffer[] {
    const parts: Buffer[] = []
    while (n > 0) {
      const head = this.#chunks[0]
      const avail = head.length - this.#offset
      if (avail <= n) {
        parts.push(this.#offset === 0 ? head : head.subarray(this.#offset))
        this.#chunks.shift()
        this.#offset = 0
        n -= avail
      } else {
        parts.push(head.subarray(this.#offset, this.#offset + n))
        this.#offset += n
        n = 0
      }
    }
    return parts
  }

  // Sends a WindowUpdate once the consumer has freed at least half the window.
  #returnCredit (): void {
    if (this.#remoteFin || this.#released) return
    const buffered = this.readableLength
    let delta = this.#windowSize - buffered - this.#recvWindow
    if (delta < this.#windowSize / 2) return
    const config = this.#host.config
    const now = performance.now()
    const rtt = this.#host.rtt()
    // The window ran dry within a round trip: the window, not the reader, limits throughput.
    if (rtt > 0 && this.#windowSize < config.maxWindow && now - this.#lastUpdate < rtt) {
      const grown = Math.min(this.#windowSize * 2, config.maxWindow)
      delta += grown - this.#windowSize
      this.#windowSize = grown
    }
    this.#lastUpdate = now
    this.#recvWindow += delta
    this.#host.writer.control(FrameType.windowUpdate, 0, this.#id, delta)
  }

  #clearOpenTimer (): void {
    if (this.#openTimer === null) return
    clearTimeout(this.#openTimer)
    this.#openTimer = null
  }

  #release (): void {
    this.#clearOpenTimer()
    if (this.#released) return
    this.#released = true
    this.#host.release(this)
  }
}
