/**
 * The bound on payload a session drops. Frames can still arrive for a stream
 * that is gone (refused, reset or finished); their payload is dropped as it
 * arrives, never buffered. A sender never exceeds the window it was granted,
 * so once a stream is gone the peer can have at most its remaining credit in
 * flight. The budget adds that credit up over all gone streams (for a
 * refused SYN, the 256 KiB the peer assumed) and every dropped payload draws
 * from it; a peer that sends more breaks flow control. It is one number per
 * session, however many streams come and go.
 */
import { ProtocolError } from './errors.ts'

/** Payload bytes a peer may still send on streams that are gone. See the module header. */
export class DiscardBudget {
  #bytes = 0

  /** Bytes left, for tests and logs. */
  get bytes (): number { return this.#bytes }

  /** A stream is gone while the peer still held `credit` bytes of window on it. */
  add (credit: number): void {
    this.#bytes = Math.min(this.#bytes + credit, Number.MAX_SAFE_INTEGER)
  }

  /**
   * Accounts for `length` dropped payload bytes of stream `id`.
   * @throws {ProtocolError} when they exceed what is left.
   */
  take (id: number, length: number): void {
    if (length <= this.#bytes) {
      this.#bytes -= length
      return
    }
    throw new ProtocolError(`${length} bytes of data for stream ${id}: more than the peer's window left on refused or closed streams (${this.#bytes})`)
  }
}
