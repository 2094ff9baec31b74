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
 * Bodies are piped both ways, so a slow h2 reader stalls only its own stream:
 * h2 flow control holds the response, which holds the mux window. A caller's
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
  /** The response head of agent `agentId` arrived (for the audit log). */
  responded?: (stream: ServerHttp2Stream, upRes: http.IncomingMessage | HopResponse, agentId: string | undefined) => void
  /** The response body is being relayed (a watch is ended cleanly when the server drains). */
  watching?: (req: CallerRequest, upRes: http.IncomingMessage | HopResponse, sink: ServerHttp2Stream) => void
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

/** Relays one h2 stream through `route`. Never throws for input. */
export function relayH2Stream (route: ProxyRoute, log: Logger, stream: ServerHttp2Stream, full: CallerRequest): void {
  // A watch's closures live as long as the watch: they keep this slim view
  // (socket, method, path), not the caller's header lists.
  const req: CallerRequest = { socket: full.socket, headers: NO_HEADERS, rawHeaders: NO_RAW, method: full.method, url: full.url }
  stream.on('error', (err: NodeJS.ErrnoException) => log.debug({ code: err.code, path: pathOnly(req.url) }, 'h2 caller stream error'))
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
  // The frame never carries Expect: the server answers it, as node:http does for HTTP/1.1 callers.
  if (pool instanceof HopPool && body && full.headers.expect === '100-continue') {
    try {
      stream.additionalHeaders({ ':status': 100 })
    } catch {
      // The stream closed in between; its close handler frees the exchange.
    }
  }
  const started = log.isLevelEnabled?.('debug') === false ? 0 : performance.now()
  let done = false
  stream.once('close', () => {
    // RST_STREAM from the caller, or its session went away: free the upstream now.
    // A complete body or a failed request left nothing upstream to free.
    if (done) return
    done = true
    upReq.destroy()
    log.debug({ method: req.method, path: pathOnly(req.url) }, 'caller went away before the response finished')
  })
  upReq.on('response', (upRes: http.IncomingMessage | HopResponse) => {
    if (stream.destroyed) {
      upRes.destroy()
      return
    }
    route.responded?.(stream, upRes, pool.agentId)
    try {
      stream.respond(h2ResponseHeaders(upRes.statusCode ?? 502, upRes.rawHeaders))
    } catch (err) {
      // A header value h2 cannot carry (or a stream closed in between).
      log.warn({ code: (err as NodeJS.ErrnoException).code, path: pathOnly(req.url) }, 'response head not valid for HTTP/2; answered 502')
      upRes.destroy()
      sendStatusH2(stream, 502, 'tower: the response head cannot be sent over HTTP/2')
      return
    }
    if (upRes instanceof HopResponse) upRes.dropHead()
    upRes.pipe(stream)
    route.watching?.(req, upRes, stream)
    upRes.once('end', () => {
      done = true
      if (started !== 0) log.debug({ method: req.method, path: pathOnly(req.url), status: upRes.statusCode, user: caller.user, ms: Math.round(performance.now() - started), proto: 'h2' }, 'request')
    })
    upRes.on('error', (err) => {
      // The caller went away (logged at its close) or a drain ended the stream cleanly.
      if (stream.destroyed || stream.writableEnded) return
      // The tunnel broke mid-response: reset the stream, never end it cleanly.
      log.warn({ reason: err.message, method: req.method, path: pathOnly(req.url) }, 'response interrupted; resetting caller stream')
      stream.close(h2.NGHTTP2_INTERNAL_ERROR)
    })
  })
  upReq.on('error', (err) => {
    done = true
    if (stream.destroyed) return
    if (stream.headersSent) {
      stream.close(h2.NGHTTP2_INTERNAL_ERROR)
      return
    }
    const answer = route.refused(req, err)
    sendStatusH2(stream, answer.code, answer.message, answer.headers, answer)
  })
  if (upReq instanceof http.ClientRequest) stream.pipe(upReq)
  else if (body) upReq.pipeFrom(stream)
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
  session.on('stream', (stream: ServerHttp2Stream) => {
    open++
    if (timer !== undefined) {
      clearTimeout(timer)
      timer = undefined
    }
    stream.once('close', () => {
      if (--open === 0 && !session.closed && !session.destroyed) arm()
    })
  })
  session.once('close', () => clearTimeout(timer))
  arm()
}
