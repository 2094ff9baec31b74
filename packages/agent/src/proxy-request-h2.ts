/**
 * Proxy mode, plain requests over HTTP/2: the request from the tunnel (either
 * hop, exchange.ts) becomes one h2 stream on a pooled session (h2-pool.ts).
 *
 * - Headers: the hop-by-hop list of @tower/transport and what the Connection
 *   header names are dropped (h2 forbids connection-specific fields), and so
 *   are Host (it becomes `:authority`), Authorization (the agent's own
 *   credential replaces it) and Expect (the tunnel side already had its 100).
 *   Impersonate-* pass, repeated ones as repeated fields.
 * - Bodies stream both ways through pipe(): a slow tunnel reader pauses the
 *   h2 stream, whose window then stops the peer.
 * - A tunnel-side abort resets the h2 stream (RST_STREAM CANCEL): the
 *   apiserver releases a watch at once.
 * - A stream that ends without END_STREAM after its response began (RST,
 *   GOAWAY, a session destroyed by a failed PING) destroys the tunnel side:
 *   never a clean end on a truncated body.
 * - A stream the peer says it did not process (GOAWAY above lastStreamID,
 *   REFUSED_STREAM) is replayed once on another session when it had no body,
 *   or a body of known length up to REPLAY_BODY_LIMIT, whose bytes are kept
 *   until the response begins; otherwise the caller gets a 502 Status saying why.
 */
import type { ClientHttp2Stream, IncomingHttpHeaders, IncomingHttpStatusHeader } from 'node:http2'
import type { LogLimiter, Logger } from '@tower/mux'
import { dropSet, filterRawHeaders, withConnectionOptions } from '@tower/transport'
import type { H2Pool } from './h2-pool.ts'
import { H2Session } from './h2-session.ts'
import type { AbortListener, Exchange, TunnelRequest } from './exchange.ts'
import type { Upstream } from './upstream.ts'
import { answerUnreachable } from './status.ts'

// Host becomes :authority, Authorization the agent's, Expect was answered by
// the tunnel side; http2-settings is h2c's and illegal in h2.
const REQUEST_DROP = dropSet(['host', 'authorization', 'expect', 'http2-settings'])
const RESPONSE_DROP = dropSet()

/** Largest request body (by Content-Length) kept for a replay after GOAWAY, in bytes; kubectl apply's objects fit. */
export const REPLAY_BODY_LIMIT = 64 * 1024

/** What the h2 path needs of the upstream. */
export interface H2Upstream {
  /** `host:port` for `:authority`. */
  readonly authority: string
  /** The current credential, as an Authorization value. */
  authorization (): string | undefined
}

/** The HTTP/1.1 leg, for a request the pool sends there (proxy-request.ts). */
export type Http1Leg = (ex: Exchange, upstream: Upstream, log: Logger, warnings: LogLimiter) => void

/**
 * Serves one request over h2, or hands it to `fallback` (before anything was
 * read or sent) when the pool says HTTP/1.1.
 */
export function proxyRequestH2 (ex: Exchange, pool: H2Pool, upstream: Upstream, log: Logger, warnings: LogLimiter, fallback: Http1Leg): void {
  new H2Request(ex, pool, upstream, log, warnings, fallback).attempt()
}

// The request an upstream stream belongs to, for the shared listeners.
const kRequest = Symbol('h2Request')
type Tagged = { [kRequest]?: H2Request }

/**
 * One request and its h2 stream (or two: a replay). A watch lives as long as
 * this object; the stream's listeners are shared by every request and find
 * theirs through the stream, so it holds no closure of its own.
 */
class H2Request implements AbortListener {
  readonly #ex: Exchange
  readonly #pool: H2Pool
  readonly #upstream: Upstream
  readonly #log: Logger
  readonly #warnings: LogLimiter
  readonly #fallback: Http1Leg
  // a small body of known length is kept (until the response begins) so that a refused request can be replayed
  #kept: Buffer[] | undefined
  #keep: ((chunk: Buffer) => void) | undefined
  #headers: string[] | undefined
  #current: ClientHttp2Stream | undefined
  // the stream the body is piped into
  #previous: ClientHttp2Stream | undefined
  // the current stream's session (for the replay decision at its close), whether its response began, its error
  #session: H2Session | undefined
  #responded = false
  #streamErr: Error | undefined
  #aborted = false
  #bodySent = false
  #attempts = 0

  constructor (ex: Exchange, pool: H2Pool, upstream: Upstream, log: Logger, warnings: LogLimiter, fallback: Http1Leg) {
    this.#ex = ex
    this.#pool = pool
    this.#upstream = upstream
    this.#log = log
    this.#warnings = warnings
    this.#fallback = fallback
    const req = ex.req
    if (req.hasBody && req.contentLength <= REPLAY_BODY_LIMIT) this.#kept = []
    ex.res.onAbort(this)
  }

  aborted (): void {
    this.#aborted = true
    if (this.#current !== undefined) H2Session.cancel(this.#current)
  }

  attempt (): void {
    this.#pool.acquire((err, session) => { this.#acquired(err, session) })
  }

  #acquired (err: Error | undefined, session: H2Session | null): void {
    if (this.#aborted) return
    const { req, res } = this.#ex
    if (err !== undefined) {
      if (this.#attempts === 0) req.discard()
      answerUnreachable(res, err, this.#warnings)
      return
    }
    if (session === null) {
      if (this.#bodySent) {
        // a replay with part of the body read already cannot move to HTTP/1.1
        answerUnreachable(res, new Error('the upstream refused the request (GOAWAY) and no HTTP/2 session was free for its replay'), this.#warnings)
        return
      }
      res.offAbort(this)
      this.#fallback(this.#ex, this.#upstream, this.#log, this.#warnings)
      return
    }
    let stream: ClientHttp2Stream
    try {
      this.#headers ??= h2RequestHeaders(req, this.#upstream)
      stream = session.open(this.#headers, !req.hasBody)
    } catch (e) {
      // e.g. a header value node refuses to send
      if (this.#attempts === 0) req.discard()
      answerUnreachable(res, e as Error, this.#warnings)
      return
    }
    this.#pool.opened(this.#attempts > 0)
    this.#attempts++
    this.#current = stream
    this.#relay(stream, session)
  }

  // The stream's listeners, shared by every request.
  static readonly #listeners = {
    error (this: ClientHttp2Stream, e: Error): void {
      const r = H2Request.#of(this)
      if (r === undefined) return
      if (r.#current === this) r.#streamErr = e
      r.#log.debug({ method: r.#ex.req.method, reason: e.message }, 'upstream h2 stream error')
    },
    response (this: ClientHttp2Stream, h: IncomingHttpHeaders & IncomingHttpStatusHeader): void {
      const r = H2Request.#of(this)
      if (r !== undefined) r.#response(this, h)
    },
    close (this: ClientHttp2Stream): void {
      const r = H2Request.#of(this)
      if (r !== undefined) r.#closed(this)
    }
  }

  static #of (stream: ClientHttp2Stream): H2Request | undefined {
    return (stream as Tagged)[kRequest]
  }

  #relay (stream: ClientHttp2Stream, session: H2Session): void {
    const req = this.#ex.req
    this.#session = session
    this.#responded = false
    this.#streamErr = undefined
    ;(stream as Tagged)[kRequest] = this
    const on = H2Request.#listeners
    stream.on('error', on.error)
    stream.on('response', on.response)
    stream.on('close', on.close)
    if (!req.hasBody) {
      if (this.#attempts === 1) req.discard()
      return
    }
    const body = req.body()
    if (this.#attempts === 1) {
      body.once('error', () => { if (this.#current !== undefined) H2Session.cancel(this.#current) })
      if (this.#kept !== undefined) body.on('data', this.#keep = (chunk: Buffer) => { this.#kept?.push(chunk) })
    } else {
      // a replay: what the first stream was sent goes again, then the rest
      if (this.#previous !== undefined) body.unpipe(this.#previous)
      for (const chunk of this.#kept ?? []) stream.write(chunk)
      if (body.readableEnded) {
        stream.end()
        return
      }
    }
    this.#bodySent = true
    this.#previous = stream
    body.pipe(stream)
  }

  #response (stream: ClientHttp2Stream, h: IncomingHttpHeaders & IncomingHttpStatusHeader): void {
    if (stream !== this.#current) return
    this.#responded = true
    // no replay once the response began: node keeps its own copy of the header block for the stream
    this.#headers = undefined
    const { req, res } = this.#ex
    if (this.#kept !== undefined) {
      this.#kept = undefined
      if (this.#keep !== undefined) req.body().off('data', this.#keep)
      this.#keep = undefined
    }
    if (res.destroyed) {
      H2Session.cancel(stream)
      return
    }
    // A watch may send its first event minutes later; the caller needs the status now.
    res.writeHead(h[':status'] ?? 502, undefined, h1ResponseHeaders(h), h['content-length'] === undefined)
    res.pipeFrom(stream)
  }

  #closed (stream: ClientHttp2Stream): void {
    if (stream !== this.#current) return
    this.#current = undefined
    const { req, res } = this.#ex
    if (this.#aborted || res.destroyed) return
    if (this.#responded) {
      // closed without END_STREAM: a truncation, so reset the tunnel stream
      if (!stream.readableEnded) {
        this.#log.debug({ method: req.method, rstCode: stream.rstCode }, 'upstream h2 stream ended mid-response; resetting the tunnel stream')
        res.destroy(this.#streamErr)
      }
      return
    }
    const warnings = this.#warnings
    if (this.#session!.unprocessed(stream)) {
      if ((!this.#bodySent || this.#kept !== undefined) && this.#attempts < 2) {
        this.#log.debug({ method: req.method, rstCode: stream.rstCode }, 'upstream did not process the request (GOAWAY / REFUSED_STREAM); replaying it once')
        this.attempt()
        return
      }
      const why = this.#bodySent && this.#kept === undefined
        ? 'the upstream closed its HTTP/2 session before processing the request, and its body was already sent'
        : 'the upstream refused the request twice (GOAWAY / REFUSED_STREAM)'
      answerUnreachable(res, new Error(why), warnings)
      return
    }
    answerUnreachable(res, this.#streamErr ?? new Error(`the upstream reset the request (HTTP/2 error code ${stream.rstCode ?? 'unknown'})`), warnings)
  }
}

/**
 * The h2 request header block as a flat name/value list: pseudo-headers,
 * then the caller's fields (lower case, repeated ones repeated) and the
 * credential. node:http2 keeps a list as it is for the stream's life, where
 * it copies a header object into a dictionary of its own: a watch holds one
 * compact array instead of two dictionaries.
 */
function h2RequestHeaders (req: TunnelRequest, upstream: H2Upstream): string[] {
  const raw = filterRawHeaders(req.rawHeaders, withConnectionOptions(REQUEST_DROP, req.connection))
  const out = [':method', req.method, ':path', req.path, ':scheme', 'https', ':authority', upstream.authority]
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase()
    // an HTTP/1.1 field name cannot start with ':', but never let one become a pseudo-header
    if (name.startsWith(':')) continue
    out.push(name, raw[i + 1]!)
  }
  const auth = upstream.authorization()
  if (auth !== undefined) out.push('authorization', auth)
  return out
}

/** The h2 response fields as a flat HTTP/1.1 raw list, without pseudo-headers and hop-by-hop ones. */
function h1ResponseHeaders (h: IncomingHttpHeaders): string[] {
  const drop = withConnectionOptions(RESPONSE_DROP, h.connection)
  const out: string[] = []
  for (const name of Object.keys(h)) {
    if (name.startsWith(':') || drop.has(name)) continue
    const value = h[name]
    if (Array.isArray(value)) {
      for (const v of value) out.push(name, v)
    } else if (value !== undefined) {
      out.push(name, String(value))
    }
  }
  return out
}
