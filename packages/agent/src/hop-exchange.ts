/**
 * One exchange on a hop-frame stream (kind `hframe`, spec.md section 7.3),
 * as an {@link Exchange}: the same object is the request (from the
 * REQUEST_HEAD, its DATA and END) and the response (written back as
 * RESPONSE_HEAD, DATA and END), so an idle watch holds this one object, its
 * head's strings and the upstream stream, and nothing of node:http.
 *
 * - Request body: DATA is pushed into a Readable created only when the body
 *   flag is set; when it is full the mux stream is paused, so a slow
 *   upstream stops the server through the mux window.
 * - Response body: each chunk of the upstream response is written as DATA;
 *   when the mux stream's buffer is full the upstream is paused until
 *   'drain', so a slow tunnel reader stops the upstream.
 * - A declared Content-Length must match the DATA received: more, or an END
 *   with fewer, resets the stream, since an upstream given a short body of
 *   declared length would wait for the rest (or read the next request as it).
 * - A response finished before the request END cancels the upstream request
 *   and drops the rest of the request body, as the contract says.
 */
import { Readable } from 'node:stream'
import { encodeDataHeader, encodeEnd, encodeResponseHead, HOP_MAX_DATA, statusBody, type HopRequestHead } from '@tower/transport'
import type { AbortListener, Exchange, TunnelRequest, TunnelResponse } from './exchange.ts'

/** What an exchange needs of the stream it runs on. */
export interface HopExchangeHost {
  /** Writes bytes to the mux stream; false when its buffer is full. */
  write (chunk: Buffer): boolean
  /** Calls `cb` once on the mux stream's next 'drain'. */
  onceDrain (cb: () => void): void
  /** Resumes reading the mux stream (paused while a request body was full). */
  resumeInput (): void
  /** Resets the mux stream (RST): the exchange failed. */
  reset (why: string): void
  /** The response END was written. */
  responded (): void
  /** Logs at debug, for the refused heads below. */
  debug (fields: object, msg: string): void
}

// The exchange whose response body a source is, for the shared listeners.
const kExchange = Symbol('hopExchange')
type Tagged = { [kExchange]?: HopExchange }

// Small DATA payloads go out as one buffer with their header: one mux write.
const COALESCE = 4096

// Response state.
const NONE = 0
const HEAD_SENT = 1
const FINISHED = 2

/** One exchange on a hop-frame stream. */
export class HopExchange implements Exchange, TunnelRequest, TunnelResponse {
  /** This object, as the request. */
  readonly req: TunnelRequest = this
  /** This object, as the response. */
  readonly res: TunnelResponse = this
  /** The HTTP method. */
  readonly method: string
  /** Path and query. */
  readonly path: string
  /** The head's headers, names lower-case; Content-Length dropped when there is no body. */
  readonly rawHeaders: readonly string[]
  /** Always undefined: the server never sends Connection on the hop, and it is dropped anyway. */
  readonly connection: string | string[] | undefined = undefined
  /** The body flag of the REQUEST_HEAD. */
  readonly hasBody: boolean
  /** The declared Content-Length, or NaN. */
  readonly contentLength: number
  /** A body without a declared length. */
  readonly chunked: boolean
  readonly #host: HopExchangeHost
  #body: Readable | undefined
  #received = 0
  #requestEnded = false
  #discarding = false
  #state = NONE
  // the head was refused and a 502 sent instead: the upstream body is unwanted
  #refused = false
  #aborted = false
  #abortListeners: AbortListener[] | undefined

  constructor (head: HopRequestHead, host: HopExchangeHost) {
    this.#host = host
    this.method = head.method
    this.path = head.path
    this.hasBody = head.body
    let length = Number.NaN
    const h = head.headers
    for (let i = 0; i < h.length; i += 2) {
      if (h[i] !== 'content-length') continue
      // one decimal value only; anything else is a request the upstream must not guess at
      length = /^\d{1,15}$/.test(h[i + 1]!) && Number.isNaN(length) ? Number(h[i + 1]) : -1
    }
    if (length === -1) {
      this.rawHeaders = []
      this.contentLength = Number.NaN
      this.chunked = false
      host.reset('invalid or repeated content-length')
      this.#aborted = true
      return
    }
    this.rawHeaders = head.body || Number.isNaN(length) ? h : h.filter((_, i) => h[i - (i % 2)] !== 'content-length')
    this.contentLength = head.body ? length : Number.NaN
    this.chunked = head.body && Number.isNaN(length)
    if (head.body) this.#body = new Readable({ read: () => { host.resumeInput() } })
  }

  // --- request side ---

  /** The request body stream (only with a body). */
  body (): Readable {
    this.#body ??= new Readable({ read () { this.push(null) } })
    return this.#body
  }

  /** The request body will not be read: drop what arrives until the END. */
  discard (): void {
    this.#discarding = true
    this.#body?.resume()
  }

  /** A DATA piece of the request body; false asks the stream to pause. */
  pushBody (chunk: Buffer): boolean {
    if (this.#discarding || this.#aborted || this.#body === undefined) return true
    this.#received += chunk.length
    if (this.#received > this.contentLength) {
      this.#host.reset('request body longer than its content-length')
      return true
    }
    return this.#body.push(chunk)
  }

  /** The request END. */
  endBody (): void {
    this.#requestEnded = true
    if (this.#aborted) return
    if (!this.#discarding && this.#body !== undefined && this.#received < this.contentLength) {
      this.#host.reset('request body shorter than its content-length')
      return
    }
    this.#body?.push(null)
  }

  /** Whether the request END has passed. */
  get requestEnded (): boolean { return this.#requestEnded }

  // --- response side ---

  /** The head is sent. */
  get headersSent (): boolean { return this.#state !== NONE }
  /** The stream was reset or closed under the exchange. */
  get destroyed (): boolean { return this.#aborted }
  /** The response END is sent. */
  get finished (): boolean { return this.#state === FINISHED }

  /** Calls `l.aborted()` once if the exchange fails before the response finished. */
  onAbort (l: AbortListener): void {
    (this.#abortListeners ??= []).push(l)
  }

  /** Forgets `l`. */
  offAbort (l: AbortListener): void {
    const ls = this.#abortListeners
    const i = ls?.indexOf(l) ?? -1
    if (i >= 0) ls!.splice(i, 1)
  }

  /** Writes the RESPONSE_HEAD; the head always goes at once, so `flush` needs nothing more. */
  writeHead (status: number, _reason: string | undefined, headers: string[], _flush: boolean): void {
    if (this.#aborted || this.#state !== NONE) return
    for (let i = 0; i < headers.length; i += 2) headers[i] = headers[i]!.toLowerCase()
    const body = !(this.method === 'HEAD' || status === 204 || status === 304)
    let frame: Buffer
    try {
      frame = encodeResponseHead({ status, headers, body })
    } catch (err) {
      // a status or header the hop cannot carry (e.g. 1xx, a value with a control character)
      this.#host.debug({ status, reason: (err as Error).message }, 'upstream response head cannot cross the hop; answering 502')
      this.sendStatus(502, `tower agent: the upstream's response head cannot be relayed: ${(err as Error).message}`)
      this.#refused = true
      return
    }
    this.#state = HEAD_SENT
    this.#host.write(frame)
    if (!body) this.#finish()
  }

  /** Streams `src` as DATA frames, pausing it while the mux stream is full, then END. */
  pipeFrom (src: Readable): void {
    if (this.#state !== HEAD_SENT) {
      // no body to send (HEAD, 204, 304): let the upstream finish, keeping its connection;
      // a refused head or a failed exchange: the upstream body is not wanted
      if (this.#state === FINISHED && !this.#refused && !this.#aborted) src.resume()
      else src.destroy()
      return
    }
    ;(src as Tagged)[kExchange] = this
    src.on('data', HopExchange.#onData)
    src.on('end', HopExchange.#onEnd)
  }

  // The response body's listeners, shared by every exchange (an idle watch
  // holds no closure for them): each finds its exchange through the source.
  static readonly #onData = function (this: Readable, chunk: Buffer): void {
    const ex = (this as Tagged)[kExchange]
    if (ex === undefined || ex.#state !== HEAD_SENT) return
    if (!ex.#writeData(chunk)) {
      this.pause()
      ex.#host.onceDrain(() => { this.resume() })
    }
  }

  static readonly #onEnd = function (this: Readable): void {
    const ex = (this as Tagged)[kExchange]
    if (ex === undefined || ex.#state !== HEAD_SENT) return
    ex.#host.write(encodeEnd())
    ex.#finish()
  }

  /** Resets the stream unless the response already finished cleanly. */
  destroy (_err?: Error): void {
    if (this.#state === FINISHED || this.#aborted) return
    this.#host.reset('the upstream response failed')
  }

  /** Answers with a Status failure as RESPONSE_HEAD, DATA, END; resets if the head is out. */
  sendStatus (code: number, message: string): void {
    if (this.#aborted) return
    if (this.#state !== NONE) {
      this.destroy()
      return
    }
    const body = Buffer.from(statusBody(code, message), 'utf8')
    this.#state = HEAD_SENT
    this.#host.write(Buffer.concat([
      encodeResponseHead({ status: code, headers: ['content-type', 'application/json', 'content-length', String(body.length)], body: true }),
      encodeDataHeader(body.length), body, encodeEnd()
    ]))
    this.#finish()
  }

  /** The stream failed (RST, FIN or close mid-exchange): cancel the upstream. */
  abort (): void {
    if (this.#aborted) return
    this.#aborted = true
    this.#body?.destroy()
    if (this.#state !== FINISHED) this.#fireAbort()
  }

  #fireAbort (): void {
    const ls = this.#abortListeners
    this.#abortListeners = undefined
    if (ls !== undefined) for (const l of ls) l.aborted()
  }

  #writeData (chunk: Buffer): boolean {
    const host = this.#host
    let ok = true
    for (let at = 0; at < chunk.length; at += HOP_MAX_DATA) {
      const piece = chunk.length - at <= HOP_MAX_DATA ? (at === 0 ? chunk : chunk.subarray(at)) : chunk.subarray(at, at + HOP_MAX_DATA)
      const header = encodeDataHeader(piece.length)
      if (piece.length <= COALESCE) {
        ok = host.write(Buffer.concat([header, piece], header.length + piece.length))
      } else {
        host.write(header)
        ok = host.write(piece)
      }
    }
    return ok
  }

  #finish (): void {
    this.#state = FINISHED
    if (!this.#requestEnded && this.hasBody) {
      // answered before the whole request arrived: the upstream request is
      // cancelled (its connection cannot be reused half-sent) and the rest dropped
      this.#discarding = true
      this.#fireAbort()
      this.#body?.destroy()
      this.#host.resumeInput()
    }
    this.#abortListeners = undefined
    this.#host.responded()
  }
}
