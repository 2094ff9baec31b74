/**
 * A node:stream Duplex over a `ws` WebSocket, carrying bytes in binary
 * messages. The mux runs over it as over any byte stream.
 *
 * Why not ws's own `createWebSocketStream`: it sends one message per write.
 * The mux writes many small pieces (12-byte headers, window updates), so this
 * adapter merges queued small writes into one message (`_writev`), sends
 * large ones (payloads) as they are, without a copy, and splits writes
 * larger than {@link MAX_MESSAGE_SIZE}, which also bounds the `maxPayload`
 * both ends need independently of the mux frame size. It also tells an
 * abnormal close (a dropped TCP connection, 1006) from a clean one, so the
 * session above can log why it ended.
 *
 * Backpressure:
 * - read side: when `push()` reports a full readable buffer the WebSocket (and
 *   so its TCP socket) is paused until the consumer calls `_read` again;
 * - write side: a batch is handed to `ws.send` and the write callback waits for
 *   ws's callback, which fires once the socket has flushed the bytes. Meanwhile
 *   writes queue in the Duplex, and `write()` returns false above the high
 *   water mark.
 *
 * Half-close: a WebSocket cannot half-close. `end()` sends a close frame
 * (1000) and finishes once the close handshake is done; the peer's duplex then
 * ends. `destroy()` terminates the socket at once.
 */
import { Duplex } from 'node:stream'
import type { WebSocket } from 'ws'
import { MAX_MESSAGE_SIZE, WS_CLOSE_NORMAL } from './constants.ts'
import { ProtocolError, WsClosedError } from './errors.ts'

/** Options of {@link wsDuplex}. */
export interface WsDuplexOptions {
  /** Readable and writable high water mark, in bytes. Default 256 KiB. */
  highWaterMark?: number
  /** Largest message sent, in bytes; must not exceed the peer's `maxPayload`. Default {@link MAX_MESSAGE_SIZE}. */
  maxMessageSize?: number
}

const DEFAULT_HIGH_WATER_MARK = 256 * 1024

// readyState values, spelled out so this module needs no runtime import of ws.
const CONNECTING = 0
const OPEN = 1
const CLOSED = 3

// Close codes after which the byte stream is complete: normal, going away,
// and "no status" (a close frame without a code).
const CLEAN_CLOSE_CODES = new Set([1000, 1001, 1005])

const SEND_OPTIONS = { binary: true, compress: false, fin: true } as const

// Writes at least this large are sent without merging (and so without a copy).
const NO_COPY_BYTES = 16 * 1024

/** Wraps an open (or connecting) WebSocket in a Duplex of bytes. See the module header. */
export function wsDuplex (ws: WebSocket, options: WsDuplexOptions = {}): Duplex {
  return new WsDuplex(ws, options)
}

class WsDuplex extends Duplex {
  readonly #ws: WebSocket
  readonly #maxMessage: number

  constructor (ws: WebSocket, options: WsDuplexOptions) {
    const hwm = options.highWaterMark ?? DEFAULT_HIGH_WATER_MARK
    super({ highWaterMark: hwm, allowHalfOpen: false, decodeStrings: true })
    this.#ws = ws
    this.#maxMessage = options.maxMessageSize ?? MAX_MESSAGE_SIZE
    ws.binaryType = 'nodebuffer'

    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (this.destroyed) return
      if (!isBinary) {
        this.destroy(new ProtocolError('text message on a binary tower transport'))
        return
      }
      if (!this.push(data)) ws.pause()
    })
    ws.on('close', (code: number, reason: Buffer) => {
      if (this.destroyed) return
      if (CLEAN_CLOSE_CODES.has(code)) {
        this.push(null)
      } else {
        this.destroy(new WsClosedError(code, reason.toString('utf8')))
      }
    })
    // Always listened to: an unhandled 'error' on the ws would crash the process.
    ws.on('error', (err: Error) => {
      if (!this.destroyed) this.destroy(err)
    })
  }

  override _read (): void {
    if (this.#ws.isPaused) this.#ws.resume()
  }

  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.#whenOpen(callback, () => this.#send([chunk], callback))
  }

  override _writev (chunks: Array<{ chunk: Buffer }>, callback: (err?: Error | null) => void): void {
    this.#whenOpen(callback, () => this.#send(chunks.map((c) => c.chunk), callback))
  }

  override _final (callback: (err?: Error | null) => void): void {
    this.#whenOpen(callback, () => {
      const ws = this.#ws
      if (ws.readyState === CLOSED) {
        callback()
        return
      }
      ws.once('close', () => callback())
      ws.close(WS_CLOSE_NORMAL)
    })
  }

  override _destroy (err: Error | null, callback: (err?: Error | null) => void): void {
    const ws = this.#ws
    if (ws.readyState === CLOSED) {
      callback(err)
      return
    }
    ws.once('close', () => callback(err))
    ws.terminate()
  }

  // Runs `fn` once the ws is open; fails the callback if it never opens.
  #whenOpen (callback: (err?: Error | null) => void, fn: () => void): void {
    const ws = this.#ws
    if (ws.readyState !== CONNECTING) {
      fn()
      return
    }
    const onOpen = (): void => { ws.off('close', onClose); fn() }
    const onClose = (): void => { ws.off('open', onOpen); callback(new WsClosedError(1006, 'closed before open')) }
    ws.once('open', onOpen)
    ws.once('close', onClose)
  }

  // Sends the chunks as few messages of at most maxMessage bytes each. Only
  // the last send carries the callback: ws flushes in order, and a failed
  // socket fails every queued callback including the last.
  #send (chunks: Buffer[], callback: (err?: Error | null) => void): void {
    const ws = this.#ws
    const max = this.#maxMessage
    const messages: Buffer[] = []
    let pending: Buffer[] = []
    let pendingBytes = 0
    const flush = (): void => {
      if (pendingBytes === 0) return
      messages.push(pending.length === 1 ? pending[0] : Buffer.concat(pending, pendingBytes))
      pending = []
      pendingBytes = 0
    }
    for (let chunk of chunks) {
      if (chunk.length >= NO_COPY_BYTES && chunk.length <= max) {
        // Large pieces (mux payloads) go out as messages of their own: copying
        // them into a merged message cost more CPU and GC than the extra
        // message header does.
        flush()
        messages.push(chunk)
        continue
      }
      while (chunk.length > 0) {
        const room = max - pendingBytes
        if (chunk.length <= room) {
          pending.push(chunk)
          pendingBytes += chunk.length
          break
        }
        pending.push(chunk.subarray(0, room))
        pendingBytes += room
        chunk = chunk.subarray(room)
        flush()
      }
    }
    flush()
    if (messages.length === 0) {
      callback()
      return
    }
    if (ws.readyState !== OPEN) {
      callback(new WsClosedError(1006, 'write after close'))
      return
    }
    const last = messages.length - 1
    for (let i = 0; i < last; i++) ws.send(messages[i], SEND_OPTIONS)
    ws.send(messages[last], SEND_OPTIONS, (err) => callback(err ?? null))
  }
}
