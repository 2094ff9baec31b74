/**
 * One response body, from the agent to the caller: the source is what the
 * tunnel delivers (a HopResponse, or node:http's IncomingMessage from an
 * older agent), the sink is the caller's side (an h2 stream or a
 * ServerResponse).
 *
 * It does what `source.pipe(sink)` did, plus what the audit log and the
 * drain needed listeners of their own for:
 * - it counts the body's bytes (the audit record's `bytesOut`);
 * - it remembers the last byte, so that a drain can end a watch only after
 *   an event's newline (see {@link BodyRelay.drainEnd}).
 *
 * A watch lives for hours, so its relay is one object with three listeners
 * on the source. The listeners are shared by every relay, and find theirs
 * through a symbol on the source. `pipe()` made nine closures and two
 * `once` wrappers per body. The sink gets a `drain` listener only the first
 * time it pushes back. A slow caller pauses only its own source, and so
 * only its own tunnel stream: the mux window does the rest.
 */
import type { Readable, Writable } from 'node:stream'

/** How long a watch may take to finish the event it is in the middle of when the drain ends it, in milliseconds. */
export const EVENT_FINISH_MS = 5000

const NEWLINE = 10

// States: copying; cutting (drained mid-event: relaying up to the next
// newline); cut (ended by the drain); done (the source ended or failed).
const COPYING = 0
const CUTTING = 1
const CUT = 2
const DONE = 3

/** What the relay tells the request's owner. */
export interface BodyOwner {
  /** The source ended: the body is complete (the sink was ended, unless a drain ended it first). */
  bodyEnded (): void
  /** The source failed before its end. The sink is left to the owner: reset it unless it already ended. */
  bodyFailed (err: Error): void
}

/** Where a relay registers as a watch that a drain may end. */
export interface WatchRegistry {
  add (relay: BodyRelay): void
  delete (relay: BodyRelay): void
}

const kRelay = Symbol('bodyRelay')
type Tagged = { [kRelay]?: BodyRelay }

function relayOf (emitter: object): BodyRelay | undefined {
  return (emitter as Tagged)[kRelay]
}

function onData (this: Readable, chunk: Buffer): void { relayOf(this)?.data(chunk) }
function onEnd (this: Readable): void { relayOf(this)?.ended() }
function onError (this: Readable, err: Error): void { relayOf(this)?.failed(err) }
function onSinkDrain (this: Writable): void { relayOf(this)?.resume() }

/** See the module header. */
export class BodyRelay {
  readonly #source: Readable
  readonly #sink: Writable
  readonly #owner: BodyOwner
  #bytes = 0
  #lastByte = NEWLINE
  #state = COPYING
  #sinkHooked = false
  #watches: WatchRegistry | undefined
  #timer: NodeJS.Timeout | undefined

  /** Starts copying `source` into `sink`, which it ends when `source` ends. */
  constructor (source: Readable, sink: Writable, owner: BodyOwner) {
    this.#source = source
    this.#sink = sink
    this.#owner = owner
    ;(source as Tagged)[kRelay] = this
    source.on('data', onData)
    source.on('end', onEnd)
    source.on('error', onError)
  }

  /** Body bytes relayed so far. */
  get bytes (): number { return this.#bytes }

  /** Registers the body as a watch that `watches` may end (a draining server). */
  watch (watches: WatchRegistry): void {
    if (this.#state !== COPYING) return
    this.#watches = watches
    watches.add(this)
  }

  /** The caller's side closed: nothing more is relayed, and a drain no longer needs to end it. */
  stop (): void {
    if (this.#state === DONE) return
    this.#finish()
  }

  /**
   * Ends the body cleanly for a drain: at once if the last byte relayed was
   * a newline, otherwise after the rest of the event in progress, within
   * {@link EVENT_FINISH_MS} (then both sides are reset: a truncated event
   * must never look complete). The source is destroyed once the sink has
   * finished, which resets its tunnel stream, so the agent ends its watch.
   */
  drainEnd (): void {
    if (this.#state !== COPYING) return
    this.#watches = undefined
    const sink = this.#sink
    if (sink.writableEnded || sink.destroyed) return
    if (this.#lastByte === NEWLINE) {
      this.#cut()
      return
    }
    this.#state = CUTTING
    this.#timer = setTimeout(() => {
      this.#source.destroy()
      sink.destroy()
    }, EVENT_FINISH_MS)
    this.#timer.unref()
    this.#source.resume()
  }

  /** @internal A chunk from the source. */
  data (chunk: Buffer): void {
    const sink = this.#sink
    if (this.#state > CUTTING || sink.destroyed || sink.writableEnded || chunk.length === 0) return
    this.#bytes += chunk.length
    if (this.#state === CUTTING) {
      const nl = chunk.indexOf(NEWLINE)
      if (nl < 0) {
        sink.write(chunk)
        return
      }
      sink.write(nl === chunk.length - 1 ? chunk : chunk.subarray(0, nl + 1))
      this.#cut()
      return
    }
    this.#lastByte = chunk[chunk.length - 1]!
    if (sink.write(chunk)) return
    this.#source.pause()
    if (!this.#sinkHooked) {
      this.#sinkHooked = true
      ;(sink as Tagged)[kRelay] = this
      sink.on('drain', onSinkDrain)
    }
  }

  /** @internal The sink drained. */
  resume (): void {
    if (this.#state <= CUTTING) this.#source.resume()
  }

  /** @internal The source ended. */
  ended (): void {
    if (this.#state === DONE) return
    const sink = this.#sink
    if (this.#state !== CUT && !sink.destroyed && !sink.writableEnded) sink.end()
    this.#finish()
    this.#owner.bodyEnded()
  }

  /** @internal The source failed. */
  failed (err: Error): void {
    if (this.#state === DONE) return
    this.#finish()
    this.#owner.bodyFailed(err)
  }

  #cut (): void {
    this.#state = CUT
    clearTimeout(this.#timer)
    const source = this.#source
    const sink = this.#sink
    sink.end()
    sink.once('finish', () => { source.destroy() })
  }

  #finish (): void {
    this.#state = DONE
    clearTimeout(this.#timer)
    this.#watches?.delete(this)
    this.#watches = undefined
  }
}
