/**
 * The hop frame, server side: plain proxy requests to an agent that
 * announced `hframe` cross the tunnel as compact binary frames (the codec
 * and wire format are in @tower/transport, `packages/mux/spec.md` §7.3)
 * instead of HTTP/1.1 text, so neither end runs an HTTP parser or keeps
 * node:http's request and response objects for the life of a watch.
 *
 * One {@link HopPool} per agent session keeps the mux streams (kind
 * `hframe`) that finished an exchange, LIFO, at most {@link HOP_MAX_IDLE}.
 * A stream runs one exchange at a time: REQUEST_HEAD, DATA*, END one way,
 * RESPONSE_HEAD, DATA*, END the other. It goes back to the pool only when
 * both ENDs have passed; anything else (a reset, a FIN, a frame out of
 * order) fails the exchange and the stream is destroyed, never reused.
 *
 * An idle stream holds no decoder, buffer, timer or closure: shared
 * listeners destroy it if the agent sends anything on it, or close it when
 * the agent ends it (as an agent does when it stops).
 *
 * {@link HopRequest} looks enough like a ClientRequest for the proxy's code
 * (events `response`, `error`, `drain`; `write`, `end`, `destroy`), and its
 * {@link HopResponse} is a node Readable with `statusCode` and `rawHeaders`,
 * so the drain's watch tracking and the audit log take it unchanged. The
 * response's push() returning false pauses the mux stream, which stops
 * returning window credit to the agent: a slow caller stalls only its own
 * stream, and at most one window is buffered.
 */
import { EventEmitter } from 'node:events'
import { Readable } from 'node:stream'
import type { MuxStream } from '@tower/mux'
import {
  HOP_MAX_DATA,
  HopDecoder,
  HopFrameError,
  StreamResetError,
  encodeDataHeader,
  encodeEnd,
  encodeRequestHead,
  type HopLimits,
  type HopMessage
} from '@tower/transport'

const NO_HEADERS: string[] = []

// The exchange a stream carries now, for the shared listeners.
const kExchange = Symbol('hopExchange')

/** Most idle streams kept per agent session; more are closed when their exchange ends. */
export const HOP_MAX_IDLE = 256

/** One request for {@link HopPool.request}. */
export interface HopRequestOptions {
  method: string
  /** Request target: path and query. */
  path: string
  /** Flat name/value list, names lower case, no hop-by-hop headers. */
  headers: string[]
  /** A body follows (written with `write` and completed with `end`); false sends END at once. */
  body: boolean
}

// Shared listeners of idle streams, so an idle stream costs no closure.
// Anything from the agent between exchanges is a protocol error.
function idleData (this: MuxStream): void { this.destroy() }
// The agent ends idle streams when it stops: end ours too, so the stream closes.
function idleEnd (this: MuxStream): void { if (!this.writableEnded) this.end() }
function idleError (): void {}

function toIdle (stream: MuxStream): void {
  stream.on('data', idleData)
  stream.on('end', idleEnd)
  stream.on('error', idleError)
}

function fromIdle (stream: MuxStream): void {
  stream.off('data', idleData)
  stream.off('end', idleEnd)
  stream.off('error', idleError)
}

function reusable (stream: MuxStream): boolean {
  return !stream.destroyed && !stream.readableEnded && !stream.writableEnded
}

/** The hop-frame streams of one agent session. See the module header. */
export class HopPool {
  /** The agent whose session the streams are on. */
  readonly agentId: string
  readonly #open: () => MuxStream
  readonly #limits: HopLimits | undefined
  readonly #idle: MuxStream[] = []
  #closed = false

  /**
   * `open` opens a stream of kind `hframe` on the agent's session (preamble
   * written); `limits` bound what the agent may send in a response head.
   */
  constructor (agentId: string, open: () => MuxStream, limits?: HopLimits) {
    this.agentId = agentId
    this.#open = open
    this.#limits = limits
  }

  /** Idle streams kept now. */
  get idle (): number { return this.#idle.length }

  /**
   * Starts an exchange on an idle stream, or a new one. Throws HopFrameError
   * (TOWER_ERR_HOP_FRAME) when the head cannot be encoded, before any stream
   * is touched, and whatever opening a stream throws (no session, stream limit).
   */
  request (opts: HopRequestOptions): HopRequest {
    const head = encodeRequestHead({ method: opts.method, path: opts.path, headers: opts.headers, body: opts.body }, this.#limits)
    let stream: MuxStream | undefined
    while (stream === undefined && this.#idle.length > 0) {
      const s = this.#idle.pop()!
      fromIdle(s)
      if (reusable(s)) stream = s
      else s.destroy()
    }
    stream ??= this.#open()
    return new HopRequest(this, stream, head, opts.body, this.#limits)
  }

  /** Takes back a stream whose exchange completed in both directions. @internal */
  release (stream: MuxStream): void {
    if (this.#closed || !reusable(stream)) {
      stream.destroy()
      return
    }
    if (this.#idle.length >= HOP_MAX_IDLE) this.#compact()
    if (this.#idle.length >= HOP_MAX_IDLE) {
      stream.end()
      stream.resume()
      stream.on('error', idleError)
      return
    }
    toIdle(stream)
    this.#idle.push(stream)
  }

  /** Closes the idle streams (a draining server: they would keep its sessions open). */
  dropIdle (): void {
    for (const s of this.#idle.splice(0)) {
      fromIdle(s)
      s.destroy()
    }
  }

  /** Closes the idle streams and every stream released from now on. */
  destroy (): void {
    this.#closed = true
    this.dropIdle()
  }

  // Streams the agent ended or reset while idle leave the list.
  #compact (): void {
    let n = 0
    for (const s of this.#idle) {
      if (reusable(s)) this.#idle[n++] = s
      else fromIdle(s)
    }
    this.#idle.length = n
  }
}

/**
 * The response of one exchange: a Readable of the body, with the agent's
 * status and raw header list. Destroying it before its end resets the
 * exchange (the agent cancels the upstream request).
 */
export class HopResponse extends Readable {
  /** HTTP status from the agent, 200..599. */
  readonly statusCode: number
  #rawHeaders: string[]
  readonly #exchange: HopRequest

  /** Created by HopRequest only. */
  constructor (exchange: HopRequest, statusCode: number, rawHeaders: string[]) {
    super()
    this.#exchange = exchange
    this.statusCode = statusCode
    this.#rawHeaders = rawHeaders
  }

  /** Flat name/value list from the agent, names lower case; empty after {@link dropHead}. */
  get rawHeaders (): string[] { return this.#rawHeaders }

  /** Forgets the header list once the head went to the caller: a watch would hold it for its whole life. */
  dropHead (): void { this.#rawHeaders = NO_HEADERS }

  override _read (): void {
    this.#exchange.resumeStream()
  }

  override _destroy (err: Error | null, callback: (err?: Error | null) => void): void {
    this.#exchange.responseDestroyed()
    callback(err)
  }
}

/**
 * One exchange on one stream, shaped like a ClientRequest for the proxy:
 * `response` (a {@link HopResponse}), `error` (only before the response:
 * afterwards the response itself errors), `drain` after `write` returned false.
 */
export class HopRequest extends EventEmitter {
  /** The agent whose session carries the exchange. */
  readonly agentId: string
  readonly #pool: HopPool
  readonly #stream: MuxStream
  readonly #body: boolean
  #decoder: HopDecoder | undefined
  #response: HopResponse | undefined
  #responseBody = false
  #sentEnd = false
  #gotEnd = false
  // Finished (stream released) or failed (stream destroyed): no more events.
  #done = false

  // The stream's listeners are shared by every exchange (an idle watch
  // keeps no closure of its own): they find theirs through the stream.
  static #of (stream: MuxStream): HopRequest | undefined {
    return (stream as MuxStream & { [kExchange]?: HopRequest })[kExchange]
  }

  static readonly #onData = function (this: MuxStream, chunk: Buffer): void {
    const x = HopRequest.#of(this)
    if (x !== undefined) x.#data(chunk)
  }

  static readonly #onEnd = function (this: MuxStream): void {
    const x = HopRequest.#of(this)
    if (x !== undefined) x.#remoteEnd()
  }

  static readonly #onError = function (this: MuxStream, err: Error): void {
    const x = HopRequest.#of(this)
    if (x !== undefined) x.#fail(err)
  }

  static readonly #onClose = function (this: MuxStream): void {
    const x = HopRequest.#of(this)
    if (x !== undefined) x.#fail(new StreamResetError('the tunnel stream closed mid-exchange'))
  }

  static readonly #onDrain = function (this: MuxStream): void {
    HopRequest.#of(this)?.emit('drain')
  }

  /** Created by {@link HopPool.request}: writes the encoded head (and END when there is no body). */
  constructor (pool: HopPool, stream: MuxStream, head: Buffer, body: boolean, limits?: HopLimits) {
    super()
    this.agentId = pool.agentId
    this.#pool = pool
    this.#stream = stream
    this.#body = body
    this.#decoder = new HopDecoder(limits)
    ;(stream as MuxStream & { [kExchange]?: HopRequest })[kExchange] = this
    stream.on('data', HopRequest.#onData)
    stream.on('end', HopRequest.#onEnd)
    stream.on('error', HopRequest.#onError)
    stream.on('close', HopRequest.#onClose)
    if (body) {
      stream.on('drain', HopRequest.#onDrain)
      stream.write(head)
    } else {
      stream.cork()
      stream.write(head)
      stream.write(encodeEnd())
      stream.uncork()
      this.#sentEnd = true
    }
  }

  /**
   * Sends `chunk` of the request body as DATA frames of at most HOP_MAX_DATA
   * bytes. Returns false when the stream's buffer is full ('drain' follows).
   * Ignored after `end`, after a failure, or when the head said no body.
   */
  write (chunk: Buffer): boolean {
    if (this.#done || this.#sentEnd || !this.#body || chunk.length === 0) return true
    let ok = true
    const stream = this.#stream
    stream.cork()
    for (let off = 0; off < chunk.length; off += HOP_MAX_DATA) {
      const piece = chunk.subarray(off, off + HOP_MAX_DATA)
      stream.write(encodeDataHeader(piece.length))
      ok = stream.write(piece)
    }
    stream.uncork()
    return ok
  }

  /**
   * Sends `source` as the request body, pausing it while the stream's buffer
   * is full, and END when it ends. Only for a request whose head said body.
   */
  pipeFrom (source: Readable): void {
    const onDrain = (): void => { source.resume() }
    source.on('data', (chunk: Buffer) => {
      if (!this.write(chunk)) {
        source.pause()
        this.once('drain', onDrain)
      }
    })
    source.once('end', () => this.end())
  }

  /** Completes the request body (END). */
  end (): void {
    if (this.#done || this.#sentEnd) return
    this.#sentEnd = true
    this.#stream.write(encodeEnd())
    this.#finishIfDone()
  }

  /**
   * Aborts the exchange: the stream is reset (the agent cancels the upstream
   * request) and the response, if any, is destroyed. No-op once finished.
   */
  destroy (err?: Error): void {
    if (this.#done) return
    this.#done = true
    this.#detach()
    this.#stream.destroy()
    this.#response?.destroy(err)
  }

  /** The response wants more: resume a stream paused by a full response buffer. @internal */
  resumeStream (): void {
    if (!this.#done && this.#stream.isPaused()) this.#stream.resume()
  }

  /** The response was destroyed: abort unless the exchange finished. @internal */
  responseDestroyed (): void {
    if (this.#done) return
    this.#done = true
    this.#detach()
    this.#stream.destroy()
  }

  #data (chunk: Buffer): void {
    let messages: HopMessage[]
    try {
      messages = this.#decoder!.push(chunk)
    } catch (err) {
      this.#fail(err as Error)
      return
    }
    for (const m of messages) {
      if (this.#done) return
      this.#message(m)
    }
  }

  #message (m: HopMessage): void {
    if (this.#gotEnd) {
      this.#fail(new HopFrameError(`${m.type} after the response END`))
      return
    }
    switch (m.type) {
      case 'response-head': {
        if (this.#response !== undefined) {
          this.#fail(new HopFrameError('a second RESPONSE_HEAD in one exchange'))
          return
        }
        this.#responseBody = m.head.body
        this.#response = new HopResponse(this, m.head.status, m.head.headers)
        this.emit('response', this.#response)
        return
      }
      case 'data': {
        if (this.#response === undefined || !this.#responseBody) {
          this.#fail(new HopFrameError(this.#response === undefined ? 'DATA before the RESPONSE_HEAD' : 'DATA in a response without a body'))
          return
        }
        if (!this.#response.push(m.chunk)) this.#stream.pause()
        return
      }
      case 'end': {
        if (this.#response === undefined) {
          this.#fail(new HopFrameError('END before the RESPONSE_HEAD'))
          return
        }
        this.#gotEnd = true
        this.#decoder = undefined
        this.#response.push(null)
        this.#finishIfDone()
        return
      }
      default:
        this.#fail(new HopFrameError(`${m.type} from the agent`))
    }
  }

  #remoteEnd (): void {
    if (this.#done) return
    // The response is complete; only the rest of the request body is lost
    // (the agent discards it anyway): the exchange succeeded, the stream is spent.
    if (this.#gotEnd) {
      this.#done = true
      this.#detach()
      this.#stream.destroy()
      return
    }
    this.#fail(new StreamResetError('the agent ended the tunnel stream mid-exchange'))
  }

  #fail (err: Error): void {
    if (this.#done) return
    this.#done = true
    this.#detach()
    this.#stream.on('error', idleError)
    this.#stream.destroy()
    const res = this.#response
    // A response already complete stays complete; before the head, the caller gets a Status.
    if (res === undefined) this.emit('error', err)
    else if (!this.#gotEnd) res.destroy(err)
  }

  #finishIfDone (): void {
    if (this.#done || !this.#sentEnd || !this.#gotEnd) return
    this.#done = true
    this.#detach()
    this.#pool.release(this.#stream)
  }

  #detach (): void {
    const s = this.#stream
    ;(s as MuxStream & { [kExchange]?: HopRequest })[kExchange] = undefined
    s.off('data', HopRequest.#onData)
    s.off('end', HopRequest.#onEnd)
    s.off('error', HopRequest.#onError)
    s.off('close', HopRequest.#onClose)
    if (this.#body) s.off('drain', HopRequest.#onDrain)
    if (s.isPaused()) s.resume()
  }
}
