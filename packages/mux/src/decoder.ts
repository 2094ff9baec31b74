/**
 * Incremental frame parser. The transport may split the byte stream anywhere,
 * even inside a header, so the decoder keeps a 12-byte scratch header and the
 * count of payload bytes still owed by the current Data frame.
 *
 * Payloads are handed on in pieces as they arrive, as views of the transport
 * chunk: no copy and no reassembly on the hot path. A view keeps its whole
 * backing buffer alive, so a piece much smaller than its backing buffer is
 * copied; that bounds the memory a slow reader pins to a small multiple of
 * its window even when a peer interleaves tiny frames with large ones.
 */
import { FrameType, HEADER_SIZE, PROTOCOL_VERSION } from './constants.ts'
import { ProtocolError } from './errors.ts'
import { isKnownType } from './frame.ts'

/** Receives what the decoder parses. */
export interface FrameHandler {
  /** A complete header. For a Data frame with `length > 0`, payload pieces follow. */
  onHeader (type: number, flags: number, streamId: number, length: number): void
  /** A piece of the current Data frame's payload. */
  onPayload (piece: Buffer): void
  /** The last payload byte of the current Data frame has been passed on. */
  onPayloadEnd (): void
}

// A piece is copied when its backing buffer is more than this many times larger.
const RETAIN_FACTOR = 4

/** Parses frames out of arbitrarily split chunks. See the module header. */
export class FrameDecoder {
  readonly #handler: FrameHandler
  readonly #maxPayload: number
  readonly #scratch = Buffer.alloc(HEADER_SIZE)
  #scratchFill = 0
  #owed = 0
  #stopped = false

  /**
   * @param handler receives headers and payload pieces.
   * @param maxPayload largest Data payload accepted, in bytes; more is a protocol error.
   */
  constructor (handler: FrameHandler, maxPayload: number) {
    this.#handler = handler
    this.#maxPayload = maxPayload
  }

  /** Stops parsing: the rest of the current chunk and every later one is ignored. */
  stop (): void {
    this.#stopped = true
  }

  /**
   * Parses `chunk`, calling the handler for everything complete in it.
   * @throws {ProtocolError} on a bad version, an unknown type or an oversized Data frame.
   */
  push (chunk: Buffer): void {
    const end = chunk.length
    let off = 0
    while (off < end && !this.#stopped) {
      if (this.#owed > 0) {
        const n = Math.min(this.#owed, end - off)
        let piece = chunk.subarray(off, off + n)
        if (n * RETAIN_FACTOR < piece.buffer.byteLength) piece = Buffer.from(piece)
        off += n
        this.#owed -= n
        this.#handler.onPayload(piece)
        if (this.#owed === 0 && !this.#stopped) this.#handler.onPayloadEnd()
        continue
      }
      let buf: Buffer
      let at: number
      if (this.#scratchFill === 0 && end - off >= HEADER_SIZE) {
        buf = chunk
        at = off
        off += HEADER_SIZE
      } else {
        const n = Math.min(HEADER_SIZE - this.#scratchFill, end - off)
        chunk.copy(this.#scratch, this.#scratchFill, off, off + n)
        this.#scratchFill += n
        off += n
        if (this.#scratchFill < HEADER_SIZE) return
        this.#scratchFill = 0
        buf = this.#scratch
        at = 0
      }
      this.#header(buf, at)
    }
  }

  #header (buf: Buffer, at: number): void {
    const version = buf[at]
    if (version !== PROTOCOL_VERSION) {
      throw new ProtocolError(`unsupported protocol version ${version}`)
    }
    const type = buf[at + 1]
    if (!isKnownType(type)) {
      throw new ProtocolError(`unknown frame type ${type}`)
    }
    const flags = buf.readUInt16BE(at + 2)
    const streamId = buf.readUInt32BE(at + 4)
    const length = buf.readUInt32BE(at + 8)
    if (type === FrameType.data && length > this.#maxPayload) {
      throw new ProtocolError(`data frame of ${length} bytes on stream ${streamId} exceeds the largest window ${this.#maxPayload}`)
    }
    this.#handler.onHeader(type, flags, streamId, length)
    if (type === FrameType.data && length > 0) this.#owed = length
  }
}
