/**
 * RFC 6455 framing, as much as a binary byte-stream transport needs.
 *
 * Tower's WebSocket carries one byte stream (the mux). Message boundaries mean
 * nothing to it, so the parser does not reassemble messages: it hands on each
 * piece of a Binary or Continuation frame's payload as it arrives, as a view
 * of the socket chunk. No copy, no per-message buffer, no message size limit
 * to tune; memory is bounded by the reader's backpressure instead.
 *
 * Control frames (Ping, Pong, Close) are at most 125 bytes (§5.5) and are
 * collected whole, then reported. Everything a binary transport does not use
 * is a protocol error with the RFC close code to send: Text frames (1003),
 * reserved bits or opcodes (1002, no extension is ever negotiated), a
 * fragmented or oversized control frame (1002), a length with the top bit
 * set (1002), and a frame masked the wrong way for its direction (1002: the
 * server requires masked frames, the client refuses them, §5.1).
 *
 * A Close frame is checked before it is reported (§5.5.1, §7.4): a 1-byte
 * body, or a code a peer may not send (1004, 1005, 1006, 1015, anything
 * outside 1000-1014 and 3000-4999), is 1002; a reason that is not valid
 * UTF-8 is 1007. So the code a sink sees is always one it may echo.
 */
import { isUtf8 } from 'node:buffer'
import { WsFrameError } from './errors.ts'

/** Frame opcodes (RFC 6455 §5.2). */
export const Opcode = {
  continuation: 0x0,
  text: 0x1,
  binary: 0x2,
  close: 0x8,
  ping: 0x9,
  pong: 0xa
} as const

/** Largest control frame payload (RFC 6455 §5.5). */
export const MAX_CONTROL_PAYLOAD = 125

/** Close code: protocol error (RFC 6455 §7.4.1). */
export const CLOSE_PROTOCOL_ERROR = 1002
/** Close code: data of a type the endpoint cannot accept, here text. */
export const CLOSE_UNSUPPORTED_DATA = 1003
/** Close code: data inconsistent with its type, here a close reason that is not UTF-8. */
export const CLOSE_INVALID_DATA = 1007
/** Close code: the endpoint failed in a way that is not the peer's framing. */
export const CLOSE_INTERNAL_ERROR = 1011

/**
 * True for a close code an endpoint may put on the wire (RFC 6455 §7.4.1 and
 * the IANA registry): 1000-1003 and 1007-1014 (1004 is reserved; 1005, 1006
 * and 1015 are for reporting only), and 3000-4999 (registered and private).
 */
export function isSendableCloseCode (code: number): boolean {
  if (code >= 3000 && code <= 4999) return true
  return code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006
}

const FIN = 0x80
const MASK_BIT = 0x80
// The mask key for frames sent over TLS; see frameHeader().
const ZERO_MASK = Buffer.alloc(4)

/**
 * The header of one frame carrying `length` payload bytes. A client frame
 * (`mask` given) has the mask bit and key; the caller masks the payload with
 * {@link applyMask} unless the key is all zero.
 */
export function frameHeader (opcode: number, length: number, mask?: Buffer): Buffer {
  const masked = mask !== undefined
  const extra = length < 126 ? 0 : length < 0x10000 ? 2 : 8
  const header = Buffer.allocUnsafe(2 + extra + (masked ? 4 : 0))
  header[0] = FIN | opcode
  let at = 2
  if (extra === 0) {
    header[1] = length
  } else if (extra === 2) {
    header[1] = 126
    header.writeUInt16BE(length, 2)
    at = 4
  } else {
    header[1] = 127
    header.writeUInt32BE(Math.floor(length / 0x1_0000_0000), 2)
    header.writeUInt32BE(length >>> 0, 6)
    at = 10
  }
  if (masked) {
    header[1] |= MASK_BIT
    mask.copy(header, at)
  }
  return header
}

/** The all-zero mask key: a masked frame whose payload bytes are unchanged. */
export function zeroMask (): Buffer {
  return ZERO_MASK
}

// Byte order of this host, for the 32-bit key in applyMask.
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1
// Below this many bytes the byte loop is as fast as setting up a word view.
const WORD_MASK_MIN = 32

/**
 * XORs `data` in place with `mask`, starting at byte `offset` of the frame
 * payload. Four bytes at a time on the 4-byte-aligned middle of `data` (a
 * Uint32Array view over the same memory, no copy), byte by byte at the ends.
 */
export function applyMask (data: Buffer, mask: Buffer, offset: number): void {
  const n = data.length
  let i = 0
  if (n >= WORD_MASK_MIN) {
    const lead = (4 - (data.byteOffset & 3)) & 3
    for (; i < lead; i++) data[i] ^= mask[(offset + i) & 3]
    const words = (n - i) >>> 2
    const k = (offset + i) & 3
    const b0 = mask[k]
    const b1 = mask[(k + 1) & 3]
    const b2 = mask[(k + 2) & 3]
    const b3 = mask[(k + 3) & 3]
    // the key bytes in the order they meet data[i], data[i+1], ... read as one native word
    const key = LITTLE_ENDIAN ? (b0 | (b1 << 8) | (b2 << 16) | (b3 << 24)) : ((b0 << 24) | (b1 << 16) | (b2 << 8) | b3)
    const u32 = new Uint32Array(data.buffer, data.byteOffset + i, words)
    for (let w = 0; w < words; w++) u32[w] ^= key
    i += words * 4
  }
  for (; i < n; i++) data[i] ^= mask[(offset + i) & 3]
}

/** Receives what {@link FrameParser} parses. */
export interface FrameSink {
  /** A piece of a Binary (or Continuation) frame's payload, unmasked. */
  onData (piece: Buffer): void
  /** A complete Ping, Pong or Close frame. */
  onControl (opcode: number, payload: Buffer): void
}

/** Parses frames from arbitrarily split chunks. See the module header. */
export class FrameParser {
  readonly #sink: FrameSink
  readonly #expectMasked: boolean
  // header being collected (at most 2 + 8 + 4 bytes); #headFill is -1 while
  // the payload of a frame with a complete header is being read
  readonly #head = Buffer.alloc(14)
  #headFill = 0
  // the current frame once its header is complete
  #opcode = 0
  #owed = 0
  #maskKey: Buffer | undefined
  #maskOffset = 0
  #control: Buffer[] = []
  // true between a Binary frame without FIN and the Continuation with FIN
  #inMessage = false
  // set by stop(): all further input is ignored
  #stopped = false

  /**
   * @param sink receives payload pieces and control frames.
   * @param expectMasked true on the server side (frames from a client must be
   *   masked), false on the client side (frames from a server must not be).
   */
  constructor (sink: FrameSink, expectMasked: boolean) {
    this.#sink = sink
    this.#expectMasked = expectMasked
  }

  /**
   * Parses `chunk`. Payload pieces are views of it, unmasked in place.
   * @throws {WsFrameError} on anything listed in the module header.
   */
  push (chunk: Buffer): void {
    let off = 0
    const end = chunk.length
    while (off < end && !this.#stopped) {
      if (this.#headFill >= 0) {
        off = this.#readHeader(chunk, off)
        continue
      }
      const n = Math.min(this.#owed, end - off)
      const piece = chunk.subarray(off, off + n)
      off += n
      this.#owed -= n
      if (this.#maskKey !== undefined) {
        applyMask(piece, this.#maskKey, this.#maskOffset)
        this.#maskOffset += n
      }
      if (this.#opcode >= Opcode.close) {
        this.#control.push(piece)
        if (this.#owed === 0) this.#endControl()
      } else {
        if (this.#owed === 0) this.#headFill = 0
        this.#sink.onData(piece)
      }
    }
  }

  /**
   * Ignores all input from now on, the rest of the chunk being parsed
   * included: after a Close frame nothing more may follow (RFC 6455 §5.5.1).
   */
  stop (): void {
    this.#stopped = true
  }

  // Collects header bytes from chunk at off; returns the new offset. Once the
  // header is complete, validates it and sets up the payload state.
  #readHeader (chunk: Buffer, off: number): number {
    const head = this.#head
    if (this.#headFill < 2) {
      const n = Math.min(2 - this.#headFill, chunk.length - off)
      chunk.copy(head, this.#headFill, off, off + n)
      this.#headFill += n
      off += n
      if (this.#headFill < 2) return off
    }
    const len7 = head[1] & 0x7f
    const need = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + ((head[1] & MASK_BIT) !== 0 ? 4 : 0)
    if (this.#headFill < need) {
      const n = Math.min(need - this.#headFill, chunk.length - off)
      chunk.copy(head, this.#headFill, off, off + n)
      this.#headFill += n
      off += n
      if (this.#headFill < need) return off
    }
    this.#startFrame(len7)
    return off
  }

  #startFrame (len7: number): void {
    const head = this.#head
    const b0 = head[0]
    const fin = (b0 & FIN) !== 0
    const opcode = b0 & 0x0f
    if ((b0 & 0x70) !== 0) throw new WsFrameError('reserved bits set; no extension was negotiated', CLOSE_PROTOCOL_ERROR)
    const masked = (head[1] & MASK_BIT) !== 0
    if (masked !== this.#expectMasked) {
      throw new WsFrameError(this.#expectMasked ? 'unmasked frame from a client' : 'masked frame from a server', CLOSE_PROTOCOL_ERROR)
    }
    let length = len7
    let at = 2
    if (len7 === 126) {
      length = head.readUInt16BE(2)
      at = 4
    } else if (len7 === 127) {
      const hi = head.readUInt32BE(2)
      if (hi > 0x1f_ffff) throw new WsFrameError('frame length beyond 2^53', CLOSE_PROTOCOL_ERROR)
      length = hi * 0x1_0000_0000 + head.readUInt32BE(6)
      at = 10
    }
    switch (opcode) {
      case Opcode.binary:
        if (this.#inMessage) throw new WsFrameError('new message before the previous one finished', CLOSE_PROTOCOL_ERROR)
        this.#inMessage = !fin
        break
      case Opcode.continuation:
        if (!this.#inMessage) throw new WsFrameError('continuation frame outside a message', CLOSE_PROTOCOL_ERROR)
        this.#inMessage = !fin
        break
      case Opcode.text:
        throw new WsFrameError('text frame on a binary transport', CLOSE_UNSUPPORTED_DATA)
      case Opcode.close:
      case Opcode.ping:
      case Opcode.pong:
        if (!fin) throw new WsFrameError('fragmented control frame', CLOSE_PROTOCOL_ERROR)
        if (length > MAX_CONTROL_PAYLOAD) throw new WsFrameError(`control frame of ${length} bytes (at most ${MAX_CONTROL_PAYLOAD})`, CLOSE_PROTOCOL_ERROR)
        break
      default:
        throw new WsFrameError(`reserved opcode ${opcode}`, CLOSE_PROTOCOL_ERROR)
    }
    this.#opcode = opcode
    this.#owed = length
    this.#maskOffset = 0
    this.#maskKey = masked && (head[at] | head[at + 1] | head[at + 2] | head[at + 3]) !== 0
      ? Buffer.from(head.subarray(at, at + 4))
      : undefined
    this.#headFill = -1
    if (length === 0) {
      if (opcode >= Opcode.close) this.#endControl()
      else this.#headFill = 0
    }
  }

  #endControl (): void {
    const payload = this.#control.length === 1 ? this.#control[0] : Buffer.concat(this.#control)
    this.#control = []
    this.#headFill = 0
    if (this.#opcode === Opcode.close) checkClose(payload)
    this.#sink.onControl(this.#opcode, payload)
  }
}

// Throws the WsFrameError a malformed Close payload calls for.
function checkClose (payload: Buffer): void {
  if (payload.length === 0) return
  if (payload.length === 1) throw new WsFrameError('close frame with a 1-byte body', CLOSE_PROTOCOL_ERROR)
  const code = payload.readUInt16BE(0)
  if (!isSendableCloseCode(code)) throw new WsFrameError(`close code ${code} may not be sent`, CLOSE_PROTOCOL_ERROR)
  if (payload.length > 2 && !isUtf8(payload.subarray(2))) throw new WsFrameError('close reason is not valid UTF-8', CLOSE_INVALID_DATA)
}
