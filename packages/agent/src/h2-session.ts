/**
 * One HTTP/2 session to the upstream, as the pool sees it: how many streams
 * it carries against the peer's SETTINGS_MAX_CONCURRENT_STREAMS, whether it
 * still takes new ones (not after GOAWAY), and a liveness check.
 *
 * - Admission is counted here, never left to nghttp2: past the peer's limit
 *   nghttp2 queues a new stream's HEADERS unseen until another stream ends,
 *   and a watch queued behind long watches would wait forever.
 * - GOAWAY: the session takes no new streams and closes once its streams are
 *   done. A stream the peer did not process (id above its lastStreamID, or
 *   reset with REFUSED_STREAM, RFC 9113 §8.7) is reported by
 *   {@link H2Session.unprocessed} so that the caller may replay it.
 * - Liveness: one timer per session, never per stream. At each tick a session
 *   that read nothing since the last one is sent a PING; no answer within the
 *   timeout destroys it, and every stream on it errors (callers then reset
 *   their tunnel stream: never a truncated success). A session idle through a
 *   whole interval is closed when the pool has another one.
 */
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from 'node:http2'
import type { TLSSocket } from 'node:tls'
import type { Logger } from '@tower/mux'
import { UpstreamError } from './errors.ts'

const { NGHTTP2_REFUSED_STREAM, NGHTTP2_CANCEL } = http2.constants

/** Tuning of every session, from the agent options. */
export interface H2SessionOptions {
  /** `host:port`, sent as `:authority`. */
  authority: string
  logger: Logger
  /** Time between liveness checks, in milliseconds. */
  pingIntervalMs: number
  /** Time a PING may take to be answered before the session is destroyed, in milliseconds. */
  pingTimeoutMs: number
  /** Largest receive window of one stream, in bytes (what a paused reader may have buffered). */
  streamWindowBytes: number
  /** Receive window of the whole session, in bytes. */
  sessionWindowBytes: number
  /** nghttp2's memory cap per session, in megabytes (new streams are refused above it). */
  maxSessionMemoryMb: number
}

/** Callbacks from a session to its pool. */
export interface H2SessionEvents {
  /** A stream ended or the peer raised its limit: a waiting request may fit now. */
  onSlot: (s: H2Session) => void
  /** The session is gone (closed, destroyed, or its socket died). */
  onClose: (s: H2Session) => void
  /** True when this idle session may be closed (the pool keeps another). */
  canRetire: (s: H2Session) => boolean
}

// A session takes no stream before the peer's first SETTINGS (see start()):
// its limit is unknown until then, and guessing high would queue streams in nghttp2.
const LIMIT_BEFORE_SETTINGS = 0

/** A pooled HTTP/2 session. Create with {@link H2Session.start}. */
export class H2Session {
  readonly #session: ClientHttp2Session
  readonly #socket: TLSSocket
  readonly #o: H2SessionOptions
  readonly #events: H2SessionEvents
  readonly #log: Logger
  readonly #streams = new Set<ClientHttp2Stream>()
  #limit = LIMIT_BEFORE_SETTINGS
  #ready = false
  #draining = false
  #closed = false
  // GOAWAY's lastStreamID; streams above it were not processed
  #lastStreamId = Number.POSITIVE_INFINITY
  #timer: NodeJS.Timeout | undefined
  #pingTimer: NodeJS.Timeout | undefined
  #lastBytesRead = 0
  #idleTicks = 0
  // One close listener for all of the session's streams ('close' comes once: no once() wrapper, no closure per stream).
  readonly #streamClosed: (this: ClientHttp2Stream) => void

  private constructor (socket: TLSSocket, o: H2SessionOptions, events: H2SessionEvents) {
    this.#socket = socket
    this.#o = o
    this.#events = events
    this.#log = o.logger
    this.#streamClosed = H2Session.#closeListener(this)
    this.#session = http2.connect(`https://${o.authority}`, {
      createConnection: () => socket,
      maxSessionMemory: o.maxSessionMemoryMb,
      settings: { enablePush: false, initialWindowSize: o.streamWindowBytes }
    })
    const s = this.#session
    s.on('error', (err: Error) => this.#log.debug({ reason: err.message }, 'upstream h2 session error'))
    s.on('frameError', (type: number, code: number) => this.#log.debug({ type, code }, 'upstream h2 frame error'))
    s.on('remoteSettings', (settings) => {
      const limit = settings.maxConcurrentStreams ?? Number.POSITIVE_INFINITY
      const more = limit > this.#limit || !this.#ready
      this.#limit = limit
      this.#ready = true
      if (more) this.#events.onSlot(this)
    })
    s.on('goaway', (code: number, lastStreamID: number) => {
      this.#draining = true
      this.#lastStreamId = lastStreamID
      this.#log.debug({ code, lastStreamID, streams: this.#streams.size }, 'upstream sent GOAWAY; no new streams on this session')
    })
    s.once('close', () => this.#gone())
    s.once('connect', () => {
      try {
        s.setLocalWindowSize(o.sessionWindowBytes)
      } catch {
        // a session destroyed under us: 'close' follows
      }
    })
    this.#timer = setInterval(() => this.#tick(), o.pingIntervalMs)
    this.#timer.unref()
  }

  static #closeListener (session: H2Session): (this: ClientHttp2Stream) => void {
    return function (this: ClientHttp2Stream) {
      session.#streams.delete(this)
      if (!session.draining) session.#events.onSlot(session)
    }
  }

  /**
   * Starts a session on a TLS socket that negotiated h2 and resolves once the
   * peer's first SETTINGS arrived (its stream limit is known), or rejects when
   * the session fails first or `timeoutMs` milliseconds pass.
   */
  static start (socket: TLSSocket, o: H2SessionOptions, events: H2SessionEvents, timeoutMs: number): Promise<H2Session> {
    return new Promise((resolve, reject) => {
      let settled = false
      const pending: H2SessionEvents = {
        onSlot: (s) => {
          if (!settled) {
            settled = true
            clearTimeout(timer)
            resolve(s)
            return
          }
          events.onSlot(s)
        },
        onClose: (s) => {
          if (!settled) {
            settled = true
            clearTimeout(timer)
            reject(new UpstreamError(`upstream ${o.authority} closed the HTTP/2 session before its SETTINGS`))
            return
          }
          events.onClose(s)
        },
        canRetire: events.canRetire
      }
      const session = new H2Session(socket, o, pending)
      const timer = setTimeout(() => {
        session.destroy(new UpstreamError(`connect to ${o.authority} timed out after ${timeoutMs} ms (no HTTP/2 SETTINGS)`))
      }, timeoutMs)
      timer.unref()
    })
  }

  /** True when a new stream may be opened now. */
  get available (): boolean {
    return this.#ready && !this.#draining && !this.#closed && this.#streams.size < this.#limit
  }

  /** True once GOAWAY arrived or the session closed. */
  get draining (): boolean {
    return this.#draining || this.#closed
  }

  /** Open streams. */
  get streams (): number {
    return this.#streams.size
  }

  /** The peer's SETTINGS_MAX_CONCURRENT_STREAMS (Infinity when it sent none). */
  get limit (): number {
    return this.#limit
  }

  /**
   * Opens a stream. Throws what node:http2 throws (a header it refuses, a
   * session that is closing); the caller decides whether to retry elsewhere.
   */
  open (headers: OutgoingHttpHeaders | readonly string[], endStream: boolean): ClientHttp2Stream {
    const stream = this.#session.request(headers, { endStream })
    this.#streams.add(stream)
    this.#idleTicks = 0
    stream.on('close', this.#streamClosed)
    return stream
  }

  /**
   * True when the peer said it did not process `stream`: reset with
   * REFUSED_STREAM, or above the lastStreamID of a GOAWAY (also a stream
   * whose HEADERS never left, which has no id). Such a request may be replayed.
   */
  unprocessed (stream: ClientHttp2Stream): boolean {
    if (stream.rstCode === NGHTTP2_REFUSED_STREAM) return true
    if (this.#lastStreamId === Number.POSITIVE_INFINITY) return false
    return stream.id === undefined || stream.id > this.#lastStreamId
  }

  /** Resets one stream (RST_STREAM CANCEL): the upstream drops the request at once. */
  static cancel (stream: ClientHttp2Stream): void {
    if (!stream.closed && !stream.destroyed) stream.close(NGHTTP2_CANCEL)
  }

  /** Graceful close: no new streams; the session ends when its streams do. */
  close (): void {
    this.#draining = true
    if (!this.#session.closed) this.#session.close()
  }

  /** Destroys the session; its streams error with `err`. */
  destroy (err?: Error): void {
    this.#session.destroy(err)
    // nghttp2 may wait for the socket; the session is over for the pool now
    this.#gone()
  }

  #gone (): void {
    if (this.#closed) return
    this.#closed = true
    clearInterval(this.#timer)
    clearTimeout(this.#pingTimer)
    if (!this.#socket.destroyed) this.#socket.destroy()
    this.#events.onClose(this)
  }

  #tick (): void {
    if (this.#closed || this.#pingTimer !== undefined) return
    if (this.#streams.size === 0 && !this.#draining) {
      // idle for a whole interval: closed unless it is the pool's last session
      if (++this.#idleTicks >= 2 && this.#events.canRetire(this)) {
        this.#log.debug({}, 'closing an idle upstream h2 session')
        this.close()
        return
      }
    }
    const read = this.#socket.bytesRead
    if (read !== this.#lastBytesRead) {
      // the peer sent something since the last tick: it is alive
      this.#lastBytesRead = read
      return
    }
    const sent = this.#session.ping((err) => {
      clearTimeout(this.#pingTimer)
      this.#pingTimer = undefined
      this.#lastBytesRead = this.#socket.bytesRead
      if (err !== null) this.#log.debug({ reason: err.message }, 'upstream h2 PING failed')
    })
    if (!sent) return
    this.#pingTimer = setTimeout(() => {
      this.#pingTimer = undefined
      const err = new UpstreamError(`upstream ${this.#o.authority} did not answer an HTTP/2 PING within ${this.#o.pingTimeoutMs} ms`)
      this.#log.warn({ streams: this.#streams.size, reason: err.message }, 'upstream h2 session is dead; destroying it and resetting its streams')
      this.destroy(err)
    }, this.#o.pingTimeoutMs)
    this.#pingTimer.unref()
  }
}
