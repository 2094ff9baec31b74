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
import type { ClientHttp2Stream, IncomingHttpHeaders, IncomingHttpStatusHeader, OutgoingHttpHeaders } from 'node:http2'
import type { LogLimiter, Logger } from '@tower/mux'
import { dropSet, filterRawHeaders, withConnectionOptions } from '@tower/transport'
import type { H2Pool } from './h2-pool.ts'
import { H2Session } from './h2-session.ts'
import type { Exchange, TunnelRequest } from './exchange.ts'
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

/**
 * Serves one request over h2, or calls `fallback` (before anything was read
 * or sent) when the pool says HTTP/1.1.
 */
export function proxyRequestH2 ({ req, res }: Exchange, pool: H2Pool, upstream: H2Upstream, log: Logger,
  warnings: LogLimiter, fallback: () => void): void {
  const hasBody = req.hasBody
  // a small body of known length is kept (until the response begins) so that a refused request can be replayed
  const length = req.contentLength
  let kept: Buffer[] | undefined = hasBody && length <= REPLAY_BODY_LIMIT ? [] : undefined
  let headers: OutgoingHttpHeaders | undefined
  let current: ClientHttp2Stream | undefined
  let aborted = false
  let bodySent = false
  let attempts = 0
  // the stream the body is piped into
  let previous: ClientHttp2Stream | undefined
  const keep = (chunk: Buffer): void => { kept?.push(chunk) }
  const offAbort = res.onAbort(() => {
    aborted = true
    if (current !== undefined) H2Session.cancel(current)
  })

  const attempt = (): void => pool.acquire((err, session) => {
    if (aborted) return
    if (err !== undefined) {
      if (attempts === 0) req.discard()
      answerUnreachable(res, err, warnings)
      return
    }
    if (session === null) {
      if (bodySent) {
        // a replay with part of the body read already cannot move to HTTP/1.1
        answerUnreachable(res, new Error('the upstream refused the request (GOAWAY) and no HTTP/2 session was free for its replay'), warnings)
        return
      }
      offAbort()
      fallback()
      return
    }
    let stream: ClientHttp2Stream
    try {
      headers ??= h2RequestHeaders(req, upstream)
      stream = session.open(headers, !hasBody)
    } catch (e) {
      // e.g. a header value node refuses to send
      if (attempts === 0) req.discard()
      answerUnreachable(res, e as Error, warnings)
      return
    }
    pool.opened(attempts > 0)
    attempts++
    current = stream
    relay(stream, session)
  })

  const relay = (stream: ClientHttp2Stream, session: H2Session): void => {
    let responded = false
    let streamErr: Error | undefined
    stream.on('error', (e: Error) => {
      streamErr = e
      log.debug({ method: req.method, reason: e.message }, 'upstream h2 stream error')
    })
    stream.once('response', (h: IncomingHttpHeaders & IncomingHttpStatusHeader) => {
      responded = true
      if (kept !== undefined) {
        kept = undefined
        req.body().off('data', keep)
      }
      if (res.destroyed) {
        H2Session.cancel(stream)
        return
      }
      // A watch may send its first event minutes later; the caller needs the status now.
      res.writeHead(h[':status'] ?? 502, undefined, h1ResponseHeaders(h), h['content-length'] === undefined)
      res.pipeFrom(stream)
    })
    stream.once('close', () => {
      if (current === stream) current = undefined
      if (aborted || res.destroyed) return
      if (responded) {
        // closed without END_STREAM: a truncation, so reset the tunnel stream
        if (!stream.readableEnded) {
          log.debug({ method: req.method, rstCode: stream.rstCode }, 'upstream h2 stream ended mid-response; resetting the tunnel stream')
          res.destroy(streamErr)
        }
        return
      }
      if (session.unprocessed(stream)) {
        if ((!bodySent || kept !== undefined) && attempts < 2) {
          log.debug({ method: req.method, rstCode: stream.rstCode }, 'upstream did not process the request (GOAWAY / REFUSED_STREAM); replaying it once')
          attempt()
          return
        }
        const why = bodySent && kept === undefined
          ? 'the upstream closed its HTTP/2 session before processing the request, and its body was already sent'
          : 'the upstream refused the request twice (GOAWAY / REFUSED_STREAM)'
        answerUnreachable(res, new Error(why), warnings)
        return
      }
      answerUnreachable(res, streamErr ?? new Error(`the upstream reset the request (HTTP/2 error code ${stream.rstCode ?? 'unknown'})`), warnings)
    })
    if (!hasBody) {
      if (attempts === 1) req.discard()
      return
    }
    const body = req.body()
    if (attempts === 1) {
      body.once('error', () => { if (current !== undefined) H2Session.cancel(current) })
      if (kept !== undefined) body.on('data', keep)
    } else {
      // a replay: what the first stream was sent goes again, then the rest
      if (previous !== undefined) body.unpipe(previous)
      for (const chunk of kept ?? []) stream.write(chunk)
      if (body.readableEnded) {
        stream.end()
        return
      }
    }
    bodySent = true
    previous = stream
    body.pipe(stream)
  }

  attempt()
}

/** The h2 request header block: pseudo-headers, then the caller's fields (lower case, repeated ones as arrays) and the credential. */
function h2RequestHeaders (req: TunnelRequest, upstream: H2Upstream): OutgoingHttpHeaders {
  const raw = filterRawHeaders(req.rawHeaders, withConnectionOptions(REQUEST_DROP, req.connection))
  const out: OutgoingHttpHeaders = Object.create(null) as OutgoingHttpHeaders
  out[':method'] = req.method
  out[':path'] = req.path
  out[':scheme'] = 'https'
  out[':authority'] = upstream.authority
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase()
    // an HTTP/1.1 field name cannot start with ':', but never let one become a pseudo-header
    if (name.startsWith(':')) continue
    const value = raw[i + 1]!
    const prev = out[name]
    if (prev === undefined) out[name] = value
    else if (Array.isArray(prev)) prev.push(value)
    else out[name] = [String(prev), value]
  }
  const auth = upstream.authorization()
  if (auth !== undefined) out.authorization = auth
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
