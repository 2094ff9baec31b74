/**
 * Proxy mode over HTTP/2 on the caller leg. client-go negotiates h2 by ALPN
 * and then carries all its requests and watches on one TLS connection; each
 * h2 stream is relayed on its own, as one HTTP/1.1 request on a pooled mux
 * stream to an agent, exactly like a request from an HTTP/1.1 caller (same
 * authentication, credential stripping, impersonation, Status answers), or
 * as one hop-frame exchange when the agent announced them (hop-client.ts).
 *
 * Pseudo-headers become the request line and `Host`; hop-by-hop headers
 * never cross (the one list is in @tower/transport), in either direction.
 * Bodies flow both ways with backpressure, so a slow h2 reader stalls only
 * its own stream: h2 flow control holds the response (body-relay.ts), which
 * holds the mux window. An idle watch is one exchange object and the
 * relay's: their listeners are shared functions, not closures. A caller's
 * RST_STREAM destroys the upstream request at once (a cancelled watch is
 * released upstream), and a response cut short by the tunnel resets the
 * stream: a truncated body never ends with a clean END_STREAM.
 *
 * Upgrades have no h2 form here: exec, attach and port-forward stay on
 * HTTP/1.1 (client-go forces it), and an h2 CONNECT is refused with a Status.
 */
import http from 'node:http'
import { constants as h2, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2'
import type { Duplex } from 'node:stream'
import type { Logger } from '@tower/mux'
import { dropSet, filterRawHeaders, sendStatusH2, withConnectionOptions } from '@tower/transport'
import type { Caller, Refusal } from './caller-auth.ts'
import type { AuditEntry } from './audit.ts'
import type { MetricsVerb } from './request-verb.ts'
import { BodyRelay, type BodyOwner } from './body-relay.ts'
import { HopPool, HopResponse, type HopRequest } from './hop-client.ts'
import { hopRequestHeaders } from './hop-headers.ts'
import type { DeliveryFailure } from './status.ts'
import { pathOnly } from './listener-guard.ts'

/** What the proxy needs to know of a caller's request, from HTTP/1.1 or from an h2 stream. */
export interface CallerRequest {
  /** The caller's TLS socket (for h2, the session's). */
  socket: Duplex
  headers: IncomingHttpHeaders
  /** Flat name/value list as received, without h2 pseudo-headers. */
  rawHeaders: string[]
  method?: string | undefined
  /** Request target (path and query). */
  url?: string | undefined
}

/** The proxy's steps a relayed h2 stream goes through; implemented by ProxyHandler. */
export interface ProxyRoute {
  /** The caller, or why it is refused (logged by the route). */
  authenticate: (req: CallerRequest) => Caller | Refusal
  /** Headers for the agent; undefined when the cluster left the registry. */
  upstreamHeaders: (req: CallerRequest, caller: Caller) => string[] | undefined
  /** The stream pool of the next agent in turn (hop frames or HTTP/1.1); throws when there is none. */
  pool: () => (http.Agent & { agentId?: string }) | HopPool
  /** How to answer an error that kept the request from an agent (logged by the route). */
  refused: (req: CallerRequest, err: Error) => DeliveryFailure
  /** The message for a cluster no longer registered. */
  goneMessage: () => string
  /** The response body is being relayed (a watch is ended cleanly when the server drains). */
  watching?: (req: CallerRequest, relay: BodyRelay) => void
  /** A stream closed (once per stream, refused or relayed): `status` sent, or undefined when no head went out; `startedAt` by performance.now(). */
  closed?: (verb: MetricsVerb, status: number | undefined, startedAt: number) => void
}

const RESPONSE_DROP = dropSet()
const NO_HEADERS: IncomingHttpHeaders = Object.freeze(Object.create(null) as IncomingHttpHeaders)
const NO_RAW: string[] = []
const CONNECT_REFUSED = 'tower: CONNECT over HTTP/2 is not supported; exec, attach and port-forward upgrade over HTTP/1.1'

/**
 * The caller's request as the proxy sees it: pseudo-headers removed, and
 * `:authority` as `Host` when the caller sent no `host` header.
 */
export function callerRequest (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, rawHeaders: readonly string[]): CallerRequest {
  const plain: string[] = []
  let host = false
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!
    if (name.startsWith(':')) continue
    if (name === 'host') host = true
    plain.push(name, rawHeaders[i + 1]!)
  }
  const authority = headers[':authority']
  if (!host && typeof authority === 'string') plain.push('host', authority)
  return {
    socket: stream.session!.socket as Duplex,
    headers,
    rawHeaders: plain,
    method: String(headers[':method'] ?? ''),
    url: String(headers[':path'] ?? '')
  }
}

/**
 * The agent's response head (a raw name/value list) as h2 headers:
 * hop-by-hop headers and those its Connection header names removed,
 * lower-case names, repeated names as arrays. Reads only the raw list, so
 * node never builds the response's `headers` object, which a watch would
 * hold for its whole life.
 */
export function h2ResponseHeaders (status: number, rawHead: readonly string[]): Record<string, string | string[] | number> {
  let connection: string[] | undefined
  for (let i = 0; i + 1 < rawHead.length; i += 2) {
    if (rawHead[i]!.toLowerCase() === 'connection') (connection ??= []).push(rawHead[i + 1]!)
  }
  const raw = filterRawHeaders(rawHead, withConnectionOptions(RESPONSE_DROP, connection))
  const out: Record<string, string | string[] | number> = Object.create(null) as Record<string, string | string[] | number>
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase()
    const value = raw[i + 1]!
    const prev = out[name]
    if (prev === undefined) out[name] = value
    else if (Array.isArray(prev)) prev.push(value)
    else out[name] = [String(prev), value]
  }
  out[':status'] = status
  return out
}

// The exchange of a stream, its upstream request and its request body's
// counter: the listeners below are shared by every exchange (a watch holds
// no closure of its own), and find theirs through this symbol.
const kExchange = Symbol('h2Exchange')
type Tagged = { [kExchange]?: H2Exchange }
const exchangeOf = (emitter: object): H2Exchange | undefined => (emitter as Tagged)[kExchange]

function onStreamError (this: ServerHttp2Stream, err: NodeJS.ErrnoException): void { exchangeOf(this)?.streamError(err) }
function onStreamClose (this: ServerHttp2Stream): void { exchangeOf(this)?.streamClosed() }
function onStreamData (this: ServerHttp2Stream, chunk: Buffer): void { exchangeOf(this)?.counted(chunk.length) }
function onResponse (this: object, upRes: http.IncomingMessage | HopResponse): void { exchangeOf(this)?.response(upRes) }
function onUpstreamError (this: object, err: Error): void { exchangeOf(this)?.upstreamError(err) }

/**
 * Relays one h2 stream through `route`. Never throws for input. The stream
 * gets one close listener for everything: the upstream request, the `audit`
 * entry (its bytes and status set, and completed), and `route.closed` with
 * `verb` (when given). The body is copied by a {@link BodyRelay}.
 */
export function relayH2Stream (route: ProxyRoute, log: Logger, stream: ServerHttp2Stream, full: CallerRequest, audit?: AuditEntry, verb?: MetricsVerb): void {
  new H2Exchange(route, log, stream, full, audit, verb).start(full)
}

/** One caller stream and its request to an agent. See {@link relayH2Stream}. */
class H2Exchange implements BodyOwner {
  readonly #route: ProxyRoute
  readonly #log: Logger
  readonly #stream: ServerHttp2Stream
  // A watch lives as long as this object: it keeps this slim view (socket,
  // method, path), not the caller's header lists.
  readonly #req: CallerRequest
  readonly #audit: AuditEntry | undefined
  readonly #verb: MetricsVerb | undefined
  readonly #startedAt = performance.now()
  #user = ''
  #agentId: string | undefined
  #upReq: http.ClientRequest | HopRequest | undefined
  #relay: BodyRelay | undefined
  #bytesIn = 0
  // The upstream has nothing left to free: the body ended, or the request failed.
  #done = false

  constructor (route: ProxyRoute, log: Logger, stream: ServerHttp2Stream, full: CallerRequest, audit: AuditEntry | undefined, verb: MetricsVerb | undefined) {
    this.#route = route
    this.#log = log
    this.#stream = stream
    this.#audit = audit
    this.#verb = verb
    this.#req = { socket: full.socket, headers: NO_HEADERS, rawHeaders: NO_RAW, method: full.method, url: full.url }
    ;(stream as Tagged)[kExchange] = this
    stream.on('error', onStreamError)
    stream.on('close', onStreamClose)
  }

  start (full: CallerRequest): void {
    const route = this.#route
    const stream = this.#stream
    const req = this.#req
    if (req.method === 'CONNECT') {
      sendStatusH2(stream, 405, CONNECT_REFUSED)
      return
    }
    const caller = route.authenticate(full)
    if (!('user' in caller)) {
      sendStatusH2(stream, 401, `tower: ${caller.reason}`)
      // As on HTTP/1.1, a refused caller loses its connection: no new streams,
      // and the session ends once the ones in flight (this answer) are done.
      stream.session?.close()
      return
    }
    this.#user = caller.user
    const headers = route.upstreamHeaders(full, caller)
    if (headers === undefined) {
      sendStatusH2(stream, 503, route.goneMessage())
      return
    }
    let pool: ReturnType<ProxyRoute['pool']>
    let upReq: http.ClientRequest | HopRequest
    // END_STREAM came with the headers: no body (a GET, a watch).
    const body = !stream.endAfterHeaders
    try {
      pool = route.pool()
      upReq = pool instanceof HopPool
        ? pool.request({ method: req.method ?? 'GET', path: req.url ?? '/', headers: hopRequestHeaders(headers), body })
        : http.request({ agent: pool, method: req.method, path: req.url, headers, setHost: false })
    } catch (err) {
      if ((err as { code?: string }).code === 'TOWER_ERR_HOP_FRAME') {
        sendStatusH2(stream, 400, `tower: the request cannot be relayed: ${(err as Error).message}`)
        return
      }
      const answer = route.refused(req, err as Error)
      sendStatusH2(stream, answer.code, answer.message, answer.headers, answer)
      return
    }
    this.#upReq = upReq
    this.#agentId = pool.agentId
    // The frame never carries Expect: the server answers it, as node:http does for HTTP/1.1 callers.
    if (pool instanceof HopPool && body && full.headers.expect === '100-continue') {
      try {
        stream.additionalHeaders({ ':status': 100 })
      } catch {
        // The stream closed in between; its close handler frees the exchange.
      }
    }
    ;(upReq as Tagged)[kExchange] = this
    upReq.on('response', onResponse)
    upReq.on('error', onUpstreamError)
    if (body && this.#audit !== undefined) stream.on('data', onStreamData)
    if (upReq instanceof http.ClientRequest) stream.pipe(upReq)
    else if (body) upReq.pipeFrom(stream)
  }

  /** @internal */
  streamError (err: NodeJS.ErrnoException): void {
    this.#log.debug({ code: err.code, path: pathOnly(this.#req.url) }, 'h2 caller stream error')
  }

  /** @internal Request body bytes from the caller (counted only for the audit record). */
  counted (n: number): void {
    this.#bytesIn += n
  }

  /** @internal RST_STREAM from the caller, its session went away, or the exchange is over. */
  streamClosed (): void {
    const stream = this.#stream
    if (!this.#done && this.#upReq !== undefined) {
      // Free the upstream now. A complete body or a failed request left nothing upstream to free.
      this.#done = true
      this.#upReq.destroy()
      this.#log.debug({ method: this.#req.method, path: pathOnly(this.#req.url) }, 'caller went away before the response finished')
    }
    this.#relay?.stop()
    const status = stream.headersSent ? Number(stream.sentHeaders[':status']) : undefined
    const audit = this.#audit
    if (audit !== undefined) {
      audit.bytesIn = this.#bytesIn
      audit.complete(status)
    }
    if (this.#verb !== undefined) this.#route.closed?.(this.#verb, status, this.#startedAt)
  }

  /** @internal The agent's response head. */
  response (upRes: http.IncomingMessage | HopResponse): void {
    const stream = this.#stream
    if (stream.destroyed) {
      upRes.destroy()
      return
    }
    try {
      stream.respond(h2ResponseHeaders(upRes.statusCode ?? 502, upRes.rawHeaders))
    } catch (err) {
      // A header value h2 cannot carry (or a stream closed in between).
      this.#log.warn({ code: (err as NodeJS.ErrnoException).code, path: pathOnly(this.#req.url) }, 'response head not valid for HTTP/2; answered 502')
      this.#audit?.responded(upRes.statusCode ?? 502, undefined, this.#agentId)
      upRes.destroy()
      sendStatusH2(stream, 502, 'tower: the response head cannot be sent over HTTP/2')
      return
    }
    if (upRes instanceof HopResponse) upRes.dropHead()
    const relay = this.#relay = new BodyRelay(upRes, stream, this)
    this.#audit?.responded(upRes.statusCode ?? 502, relay, this.#agentId)
    this.#route.watching?.(this.#req, relay)
  }

  /** @internal The request failed before its response. */
  upstreamError (err: Error): void {
    this.#done = true
    const stream = this.#stream
    if (stream.destroyed) return
    if (stream.headersSent) {
      stream.close(h2.NGHTTP2_INTERNAL_ERROR)
      return
    }
    const answer = this.#route.refused(this.#req, err)
    sendStatusH2(stream, answer.code, answer.message, answer.headers, answer)
  }

  bodyEnded (): void {
    this.#done = true
    if (this.#log.isLevelEnabled?.('debug') !== false) {
      const { method, url } = this.#req
      this.#log.debug({ method, path: pathOnly(url), status: this.#stream.sentHeaders[':status'], user: this.#user, ms: Math.round(performance.now() - this.#startedAt), proto: 'h2' }, 'request')
    }
  }

  bodyFailed (err: Error): void {
    const stream = this.#stream
    // The caller went away (logged at its close) or a drain ended the stream cleanly.
    if (stream.destroyed || stream.writableEnded) return
    // The tunnel broke mid-response: reset the stream, never end it cleanly.
    this.#log.warn({ reason: err.message, method: this.#req.method, path: pathOnly(this.#req.url) }, 'response interrupted; resetting caller stream')
    stream.close(h2.NGHTTP2_INTERNAL_ERROR)
  }
}

/**
 * Watches one caller session: a session with no stream open for
 * `idleTimeoutMs` (0 = never) is closed with GOAWAY, and its errors are
 * logged instead of escaping. Costs one timer while idle, none while busy.
 */
export function watchH2Session (session: Http2Session, idleTimeoutMs: number, log: Logger): void {
  session.on('error', (err: NodeJS.ErrnoException) => log.debug({ code: err.code }, 'h2 caller session error'))
  if (idleTimeoutMs <= 0) return
  let open = 0
  let timer: NodeJS.Timeout | undefined
  const arm = (): void => {
    timer = setTimeout(() => {
      log.debug({}, 'h2 caller session idle; closed')
      session.close()
    }, idleTimeoutMs)
    timer.unref()
  }
  // One listener for every stream of the session ('close' comes once: no once() wrapper per stream).
  const closed = (): void => {
    if (--open === 0 && !session.closed && !session.destroyed) arm()
  }
  session.on('stream', (stream: ServerHttp2Stream) => {
    open++
    if (timer !== undefined) {
      clearTimeout(timer)
      timer = undefined
    }
    stream.on('close', closed)
  })
  session.once('close', () => clearTimeout(timer))
  arm()
}
