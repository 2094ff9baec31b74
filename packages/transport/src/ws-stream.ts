/**
 * A node:stream Duplex of bytes over an upgraded WebSocket connection: the
 * socket after a 101 (see ws-handshake.ts), with Tower's own RFC 6455
 * framing (ws-frame.ts). The mux runs over it as over any byte stream.
 *
 * Why not the `ws` library's WebSocket: it delivers whole messages, so every
 * message that spans TLS records (all of them, at mux payload sizes) is
 * reassembled into a fresh buffer, and it sends one frame per `send()`, so a
 * mux header and its payload became two frames, two TLS writes and two
 * syscalls. Here a batch of mux frames (one `_writev`) is one WebSocket frame
 * and one corked socket write, and received payload is passed on as views of
 * the socket's chunks. Over one bulk bench run the server's mark-compact GCs,
 * driven by those extra buffers, went from 113 to 91 (`--trace-gc`).
 *
 * Backpressure:
 * - read side: when `push()` reports a full readable buffer the socket is
 *   paused until the consumer calls `_read` again;
 * - write side: a batch is written to the socket and the write callback waits
 *   for the socket's, so writes queue here (and `write()` returns false above
 *   the high water mark) while the socket is busy.
 * - control replies: a Pong or Close goes straight to the socket, so it is
 *   counted until the socket has flushed it, and `writableLength` includes
 *   that count. The mux bounds its own control frames by the transport's
 *   `writableLength`, so a peer's pings now weigh in that same bound (and
 *   block Data frames while unflushed; 'drain' follows when they flush).
 *   Once they reach the high water mark the socket is paused, so a peer that
 *   floods pings without reading its pongs stops being read; past
 *   `maxControlBacklog` the stream is destroyed with `WsBacklogError`.
 *
 * Close: a WebSocket cannot half-close. `end()` sends Close(1000) and waits
 * up to `closeTimeoutMs` for the peer's Close before ending TCP. A Close from
 * the peer is echoed (the parser has refused any code a peer may not send,
 * with 1002, and a reason that is not UTF-8, with 1007); codes 1000, 1001 and
 * 1005 (none given) end the readable side cleanly, and whatever follows the
 * Close is discarded unparsed (§5.5.1); any other code, a protocol
 * error, or TCP ending without a Close destroys the stream with
 * `WsClosedError` / `WsFrameError`. An error that is not the peer's framing
 * (a consumer's 'data' listener throwing) closes with 1011.
 */
import { randomBytes } from 'node:crypto'
import { Duplex } from 'node:stream'
import type { Socket } from 'node:net'
import { WS_CLOSE_NORMAL } from './constants.ts'
import { InvalidArgumentError, WsBacklogError, WsClosedError, WsFrameError } from './errors.ts'
import { applyMask, CLOSE_INTERNAL_ERROR, FrameParser, frameHeader, isSendableCloseCode, Opcode, zeroMask } from './ws-frame.ts'

/** Options of {@link wsStream}. */
export interface WsStreamOptions {
  /**
   * `client` masks the frames it sends and refuses masked ones; `server` the
   * reverse (RFC 6455 §5.1).
   */
  role: 'client' | 'server'
  /**
   * Client only: mask with a fresh random key per frame, as RFC 6455 asks.
   * Without it the key is all zero, which leaves the payload as it is:
   * masking protects cleartext intermediaries from cache poisoning, and
   * inside TLS there are none to protect. Default true; Tower's agent sets
   * it false for `wss:`.
   */
  randomMask?: boolean
  /** Bytes that arrived after the handshake's head (the `head` of an 'upgrade' event). */
  head?: Buffer
  /** Readable and writable high water mark, in bytes. Default 256 KiB. */
  highWaterMark?: number
  /** How long `end()` waits for the peer's Close frame, in milliseconds. Default 5000. */
  closeTimeoutMs?: number
  /**
   * Most bytes of control replies (Pong, Close) that may wait unflushed in
   * the socket, in bytes; past it the stream is destroyed with
   * `WsBacklogError`. Reading pauses long before, at `highWaterMark`, so only
   * one oversized burst of pings reaches it. Default 1 MiB.
   */
  maxControlBacklog?: number
}

const DEFAULT_HIGH_WATER_MARK = 256 * 1024
const DEFAULT_CLOSE_TIMEOUT = 5000
const DEFAULT_MAX_CONTROL_BACKLOG = 1024 * 1024
// Close codes after which the byte stream is complete: normal, going away,
// and "no status" (a Close frame without a code).
const CLEAN_CLOSE_CODES = new Set([1000, 1001, 1005])
const NO_STATUS = 1005

/**
 * Wraps an upgraded socket in a Duplex of bytes. See the module header.
 * @throws {InvalidArgumentError} on a size or timeout that is not a positive number.
 */
export function wsStream (socket: Socket, options: WsStreamOptions): Duplex {
  for (const name of ['highWaterMark', 'closeTimeoutMs', 'maxControlBacklog'] as const) {
    const v = options[name]
    if (v !== undefined && !(typeof v === 'number' && v > 0 && Number.isFinite(v))) {
      throw new InvalidArgumentError(`wsStream: ${name} must be a positive number, got ${String(v)}`)
    }
  }
  return new WsStream(socket, options)
}

// Duplex's own `writableLength` getter, which WsStream extends.
const baseWritableLength = ((): () => number => {
  for (let proto: object | null = Duplex.prototype; proto !== null; proto = Object.getPrototypeOf(proto)) {
    const get = Object.getOwnPropertyDescriptor(proto, 'writableLength')?.get
    if (get !== undefined) return get as () => number
  }
  throw new Error('node:stream Duplex has no writableLength getter')
})()

class WsStream extends Duplex {
  readonly #socket: Socket
  readonly #client: boolean
  readonly #randomMask: boolean
  readonly #closeTimeoutMs: number
  readonly #parser: FrameParser
  readonly #hwm: number
  readonly #maxControlBacklog: number
  #closeSent = false
  #closeReceived = false
  // The peer closed with a clean code: it reads nothing more, so late writes are dropped, not errors.
  #peerDone = false
  #onPeerClose: (() => void) | undefined
  // bytes of Pong/Close frames written to the socket and not yet flushed
  #controlQueued = 0
  // why the socket is paused: the reader is full, or control replies are
  #readPaused = false
  #controlPaused = false
  // writableLength reached the high water mark through control replies, so
  // 'drain' is owed once they flush
  #controlFull = false

  // `writableLength` counts the unflushed control replies too (module header).
  // An accessor, because @types/node declares it a property of Duplex.
  static {
    Object.defineProperty(this.prototype, 'writableLength', {
      configurable: true,
      get (this: WsStream): number { return baseWritableLength.call(this) + this.#controlQueued }
    })
  }

  constructor (socket: Socket, options: WsStreamOptions) {
    const hwm = options.highWaterMark ?? DEFAULT_HIGH_WATER_MARK
    super({ highWaterMark: hwm, allowHalfOpen: false, decodeStrings: true })
    this.#socket = socket
    this.#hwm = hwm
    this.#maxControlBacklog = options.maxControlBacklog ?? DEFAULT_MAX_CONTROL_BACKLOG
    this.#client = options.role === 'client'
    this.#randomMask = this.#client && options.randomMask !== false
    this.#closeTimeoutMs = options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT
    this.#parser = new FrameParser({
      onData: (piece) => {
        if (this.#closeReceived || this.destroyed) return
        if (!this.push(piece)) {
          this.#readPaused = true
          socket.pause()
        }
      },
      onControl: (opcode, payload) => { this.#control(opcode, payload) }
    }, !this.#client)

    socket.setNoDelay(true)
    socket.on('data', (chunk: Buffer) => { this.#receive(chunk) })
    socket.on('end', () => { this.#socketGone('connection ended without a close frame') })
    socket.on('close', () => { this.#socketGone('connection closed without a close frame') })
    socket.on('error', (err: Error) => {
      if (!this.destroyed) this.destroy(new WsClosedError(1006, err.message))
    })
    if (options.head !== undefined && options.head.length > 0) this.#receive(options.head)
  }

  override _read (): void {
    this.#readPaused = false
    this.#resumeSocket()
  }

  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.#sendData([chunk], chunk.length, callback)
  }

  override _writev (chunks: Array<{ chunk: Buffer }>, callback: (err?: Error | null) => void): void {
    const bufs = new Array<Buffer>(chunks.length)
    let length = 0
    for (let i = 0; i < chunks.length; i++) {
      bufs[i] = chunks[i].chunk
      length += bufs[i].length
    }
    this.#sendData(bufs, length, callback)
  }

  override _final (callback: (err?: Error | null) => void): void {
    this.#sendClose(WS_CLOSE_NORMAL)
    if (this.#closeReceived || this.#socket.destroyed) {
      this.#socket.end()
      callback()
      return
    }
    const timer = setTimeout(() => { this.#onPeerClose?.() }, this.#closeTimeoutMs)
    timer.unref()
    this.#onPeerClose = () => {
      this.#onPeerClose = undefined
      clearTimeout(timer)
      this.#socket.end()
      callback()
    }
  }

  override _destroy (err: Error | null, callback: (err?: Error | null) => void): void {
    const socket = this.#socket
    if (socket.writableEnded && !socket.destroyed) {
      // a Close frame is on its way: give it a moment to flush
      setTimeout(() => socket.destroy(), 1000).unref()
    } else {
      socket.destroy()
    }
    callback(err)
  }

  #receive (chunk: Buffer): void {
    if (this.destroyed) return
    try {
      this.#parser.push(chunk)
    } catch (err) {
      // a throw that is not the peer's framing is ours (say, a 'data'
      // listener's): still close with a code that may be sent
      this.#sendClose(err instanceof WsFrameError ? err.closeCode : CLOSE_INTERNAL_ERROR)
      this.#socket.end()
      this.destroy(err as Error)
    }
  }

  #resumeSocket (): void {
    if (!this.#readPaused && !this.#controlPaused && this.#socket.isPaused()) this.#socket.resume()
  }

  #sendData (bufs: Buffer[], length: number, callback: (err?: Error | null) => void): void {
    const socket = this.#socket
    if (this.#peerDone) {
      // A frame queued before the peer's clean Close arrived (a mux Pong or
      // window update racing the peer's GoAway): no one is left to read it,
      // and reporting it as an abnormal close would tell the operator a lie.
      callback()
      return
    }
    if (this.#closeSent || !socket.writable) {
      callback(new WsClosedError(1006, 'write after close'))
      return
    }
    if (length === 0) {
      callback()
      return
    }
    let header: Buffer
    if (!this.#client) {
      header = frameHeader(Opcode.binary, length)
    } else if (!this.#randomMask) {
      header = frameHeader(Opcode.binary, length, zeroMask())
    } else {
      const mask = randomBytes(4)
      header = frameHeader(Opcode.binary, length, mask)
      // the caller's buffers stay untouched: mask a copy
      const copy = Buffer.concat(bufs, length)
      applyMask(copy, mask, 0)
      bufs = [copy]
    }
    socket.cork()
    socket.write(header)
    const last = bufs.length - 1
    for (let i = 0; i < last; i++) socket.write(bufs[i])
    socket.write(bufs[last], (err) => { callback(err ?? null) })
    socket.uncork()
  }

  #sendControl (opcode: number, payload: Buffer): void {
    const socket = this.#socket
    if (!socket.writable || this.destroyed) return
    const mask = this.#client ? (this.#randomMask ? randomBytes(4) : zeroMask()) : undefined
    const body = Buffer.from(payload)
    if (mask !== undefined && mask !== zeroMask()) applyMask(body, mask, 0)
    const header = frameHeader(opcode, body.length, mask)
    const size = header.length + body.length
    const flushed = (): void => { this.#controlFlushed(size) }
    this.#controlQueued += size
    socket.cork()
    if (body.length > 0) {
      socket.write(header)
      socket.write(body, flushed)
    } else {
      socket.write(header, flushed)
    }
    socket.uncork()
    if (this.#controlQueued > this.#maxControlBacklog) {
      this.destroy(new WsBacklogError(this.#controlQueued, this.#maxControlBacklog))
      return
    }
    if (this.#controlQueued >= this.#hwm && !this.#controlPaused) {
      this.#controlPaused = true
      socket.pause()
    }
    if (this.writableLength >= this.writableHighWaterMark) this.#controlFull = true
  }

  #controlFlushed (size: number): void {
    this.#controlQueued -= size
    if (this.destroyed) return
    // resume at half the mark, so a steady flood does not flap the socket
    if (this.#controlPaused && this.#controlQueued < this.#hwm / 2) {
      this.#controlPaused = false
      this.#resumeSocket()
    }
    if (this.#controlFull && this.writableLength < this.writableHighWaterMark) {
      this.#controlFull = false
      this.emit('drain')
    }
  }

  #sendClose (code: number): void {
    if (this.#closeSent) return
    this.#closeSent = true
    const payload = Buffer.alloc(2)
    payload.writeUInt16BE(isSendableCloseCode(code) ? code : CLOSE_INTERNAL_ERROR)
    this.#sendControl(Opcode.close, payload)
  }

  #control (opcode: number, payload: Buffer): void {
    if (this.destroyed) return
    if (opcode === Opcode.ping) {
      if (!this.#closeSent) this.#sendControl(Opcode.pong, payload)
      return
    }
    if (opcode !== Opcode.close || this.#closeReceived) return
    this.#closeReceived = true
    // frames after a Close are discarded, even malformed ones
    this.#parser.stop()
    const code = payload.length >= 2 ? payload.readUInt16BE(0) : NO_STATUS
    const reason = payload.length > 2 ? payload.subarray(2).toString('utf8') : ''
    // echo the code (§5.5.1; the parser let through only codes a peer may
    // send); "no status" is answered with a normal close
    this.#sendClose(code === NO_STATUS ? WS_CLOSE_NORMAL : code)
    const waiting = this.#onPeerClose
    if (waiting !== undefined) {
      waiting()
    } else if (this.writableFinished || !CLEAN_CLOSE_CODES.has(code)) {
      this.#socket.end()
    }
    if (CLEAN_CLOSE_CODES.has(code)) {
      this.#peerDone = true
      this.push(null)
    } else {
      this.destroy(new WsClosedError(code, reason))
    }
  }

  #socketGone (why: string): void {
    if (this.destroyed) return
    if (this.#closeReceived) {
      // the close handshake is done; TCP ending is expected
      this.#onPeerClose?.()
      if (!this.writableFinished && !this.writableEnded) this.end()
      return
    }
    this.destroy(new WsClosedError(1006, why))
  }
}
