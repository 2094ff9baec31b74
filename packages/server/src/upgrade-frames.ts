/**
 * Frame boundaries of an upgraded connection, followed as bytes pass, so a
 * drain can end an exec, attach or port-forward session between two frames
 * instead of in the middle of one.
 *
 * Only frame headers are read: a tracker keeps the few header bytes it has
 * seen of the current frame and a count of payload bytes still owed, never
 * the payload. Two framings are known:
 * - WebSocket (RFC 6455): 2 to 14 header bytes, a 7/16/64-bit length. A
 *   point between frames is a boundary only outside a fragmented message,
 *   because a frame injected there must start a new message;
 * - SPDY/3 (kubectl's `Upgrade: SPDY/3.1`): an 8-byte header whose last 3
 *   bytes are the payload length, for control and data frames alike.
 * A header no valid stream can carry (a reserved WebSocket opcode, a 64-bit
 * length with its top bit set) marks the tracker broken: no boundary is
 * trusted from then on, and the drain resets the connection.
 */

/** Follows frame boundaries in one direction of an upgraded connection. */
export interface FrameTracker {
  /** True between two frames (and, for WebSocket, outside a fragmented message). */
  readonly atBoundary: boolean
  /** True once a header no valid stream can carry was seen. */
  readonly broken: boolean
  /** Frames completed so far. */
  readonly frames: number
  /**
   * Follows `chunk` and returns how many of its bytes were consumed: all of
   * them, or with `untilBoundary` only up to the first boundary reached
   * (0 if the tracker is at one already). A broken tracker consumes nothing.
   */
  scan (chunk: Buffer, untilBoundary?: boolean): number
}

/**
 * The scan loop both framings share: header bytes go one at a time to
 * `header`, which calls `startPayload` once the header is complete; the
 * payload is only counted (and offered to `payload`), never kept.
 */
abstract class HeaderThenPayload implements FrameTracker {
  // header bytes seen of the current frame; -1 while its payload is read
  protected headFill = 0
  #owed = 0
  #frames = 0

  abstract get atBoundary (): boolean
  get broken (): boolean { return false }
  get frames (): number { return this.#frames }

  scan (chunk: Buffer, untilBoundary = false): number {
    let off = 0
    while (off < chunk.length && !this.broken) {
      if (untilBoundary && this.atBoundary) return off
      if (this.headFill >= 0) {
        this.header(chunk[off]!)
        off++
        continue
      }
      const n = Math.min(this.#owed, chunk.length - off)
      this.payload(chunk, off, n)
      this.#owed -= n
      off += n
      if (this.#owed === 0) this.endFrame()
    }
    return this.broken ? 0 : off
  }

  /** One header byte: headers are short, and a chunk boundary may fall anywhere inside one. */
  protected abstract header (b: number): void

  /** `n` payload bytes of the current frame, at `chunk[off]`. */
  protected payload (_chunk: Buffer, _off: number, _n: number): void {}

  /** Ends the header: `length` payload bytes follow. */
  protected startPayload (length: number): void {
    this.headFill = -1
    this.#owed = length
    if (length === 0) this.endFrame()
  }

  protected endFrame (): void {
    this.headFill = 0
    this.#frames++
  }
}

/** WebSocket frames (RFC 6455 §5.2), in either direction (masked or not). */
export class WsFrameTracker extends HeaderThenPayload {
  #byte1 = 0
  #need = 2
  #length = 0
  #fin = false
  #control = false
  #inMessage = false
  #broken = false

  get atBoundary (): boolean { return this.headFill === 0 && !this.#inMessage && !this.#broken }
  override get broken (): boolean { return this.#broken }

  protected header (b: number): void {
    const at = this.headFill++
    if (at === 0) {
      const opcode = b & 0x0f
      this.#fin = (b & 0x80) !== 0
      this.#control = opcode >= 0x8
      const known = opcode <= 0x2 || (opcode >= 0x8 && opcode <= 0xa)
      if (!known || (b & 0x70) !== 0 || (this.#control && !this.#fin)) { this.#broken = true; return }
      if (opcode === 0x0 ? !this.#inMessage : (!this.#control && this.#inMessage)) { this.#broken = true; return }
      return
    }
    if (at === 1) {
      this.#byte1 = b
      const len7 = b & 0x7f
      this.#need = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + ((b & 0x80) !== 0 ? 4 : 0)
      this.#length = len7 < 126 ? len7 : 0
      if (this.#control && len7 > 125) { this.#broken = true; return }
    } else {
      const len7 = this.#byte1 & 0x7f
      const lengthBytes = len7 === 126 ? 2 : len7 === 127 ? 8 : 0
      if (at < 2 + lengthBytes) {
        if (at === 2 && len7 === 127 && b > 0x1f) { this.#broken = true; return }
        this.#length = this.#length * 256 + b
      }
    }
    if (this.headFill === this.#need) this.startPayload(this.#length)
  }

  protected override endFrame (): void {
    super.endFrame()
    if (!this.#control) this.#inMessage = !this.#fin
  }
}

/**
 * SPDY/3 frames: an 8-byte header whose bytes 5-7 are the payload length.
 * It also notes the stream id of the first SYN_STREAM (control frame type
 * 1, whose payload opens with the 31-bit stream id): followed on the
 * caller's side, that is the stream a client-go exec or attach opens first,
 * its error stream.
 */
export class SpdyFrameTracker extends HeaderThenPayload {
  #b0 = 0
  #type = 0
  #length = 0
  // bytes of the first SYN_STREAM's stream id still to read; -1 once read or not wanted
  #synWant = 0
  #synId = 0
  #firstSyn: number | undefined

  get atBoundary (): boolean { return this.headFill === 0 }
  /** Stream id of the first SYN_STREAM seen, if any. */
  get firstSynStream (): number | undefined { return this.#firstSyn }

  protected header (b: number): void {
    const at = this.headFill++
    if (at === 0) {
      this.#b0 = b
      this.#type = 0
      this.#length = 0
    } else if (at === 2 || at === 3) {
      this.#type = this.#type * 256 + b
    } else if (at >= 5) {
      this.#length = this.#length * 256 + b
    }
    if (this.headFill < 8) return
    // Control bit set, type 1: SYN_STREAM.
    if (this.#firstSyn === undefined && this.#synWant === 0 && (this.#b0 & 0x80) !== 0 && this.#type === 1 && this.#length >= 4) {
      this.#synWant = 4
      this.#synId = 0
    }
    this.startPayload(this.#length)
  }

  protected override payload (chunk: Buffer, off: number, n: number): void {
    for (let i = 0; i < n && this.#synWant > 0; i++, this.#synWant--) {
      this.#synId = this.#synId * 256 + chunk[off + i]!
      if (this.#synWant === 1) this.#firstSyn = this.#synId % 0x8000_0000
    }
  }

  protected override endFrame (): void {
    super.endFrame()
    if (this.#synWant > 0) this.#synWant = 0
  }
}
