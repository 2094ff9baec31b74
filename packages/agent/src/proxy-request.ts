/**
 * Proxy mode, plain requests: re-originate one request from the tunnel to the
 * upstream with the agent's own credentials, streaming both bodies.
 *
 * - Backpressure: bodies flow through pipe(), so a slow reader on
 *   the server side stops reads from the apiserver socket (the mux window
 *   fills, the response write returns false, the upstream response pauses).
 * - A client abort (the tunnel stream closes before the response finished)
 *   destroys the upstream request at once, releasing the apiserver's watch.
 * - An upstream that breaks mid-response destroys the tunnel side (RST),
 *   never ends it cleanly: a truncated body must look like an error.
 * - Only a path goes upstream (see badRequestTarget): whatever the server
 *   sends, the agent talks to its configured upstream and nothing else.
 *
 * This file holds the HTTP/1.1 leg; when the upstream speaks h2 the request
 * goes through proxy-request-h2.ts instead, with the same guarantees.
 */
import type { IncomingMessage, ServerResponse, ClientRequest } from 'node:http'
import type { LogLimiter, Logger } from '@tower/mux'
import { sendStatus } from '@tower/transport'
import type { Upstream } from './upstream.ts'
import { downstreamResponseHeaders, upstreamRequestHeaders } from './headers.ts'
import { proxyRequestH2 } from './proxy-request-h2.ts'
import { answerUnreachable, badRequestTarget } from './status.ts'

/** Handles one request arriving on the agent's internal HTTP server. */
export function proxyRequest (req: IncomingMessage, res: ServerResponse, upstream: Upstream, log: Logger, warnings: LogLimiter): void {
  const bad = badRequestTarget(req.url)
  if (bad !== undefined) {
    warnings.warn('bad-target', { method: req.method }, 'request target is not a path; answering 400')
    req.resume()
    sendStatus(res, 400, bad, { connection: 'close' })
    return
  }
  const pool = upstream.h2
  if (pool?.h2 === true) {
    proxyRequestH2(req, res, pool, upstream, log, warnings, () => proxyRequestH1(req, res, upstream, log, warnings))
    return
  }
  proxyRequestH1(req, res, upstream, log, warnings)
}

function proxyRequestH1 (req: IncomingMessage, res: ServerResponse, upstream: Upstream, log: Logger, warnings: LogLimiter): void {
  let upReq: ClientRequest
  try {
    upReq = upstream.request({ method: req.method ?? 'GET', path: req.url ?? '/', headers: upstreamRequestHeaders(req, false) }, false)
  } catch (err) {
    // e.g. a header value node refuses to send
    answerUnreachable(res, err as Error, warnings)
    return
  }

  res.once('close', () => {
    if (!res.writableFinished) upReq.destroy()
  })
  req.once('error', () => upReq.destroy())
  if (req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined) {
    // no body (GET, watch, DELETE without one): skip pipe()'s listener setup
    upReq.end()
    req.resume()
  } else {
    req.pipe(upReq)
  }

  upReq.once('response', (upRes: IncomingMessage) => {
    if (res.destroyed) {
      upRes.destroy()
      return
    }
    res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, downstreamResponseHeaders(upRes))
    // A watch may send its first event minutes later; the caller needs the
    // status now. Bodies of known length carry the head in their first write.
    if (upRes.headers['content-length'] === undefined) res.flushHeaders()
    // pipe() rather than pipeline(): pipeline allocates an AbortController and
    // a DOMException per call, a measurable share of the agent's CPU per request.
    upRes.on('error', (err: Error) => {
      log.debug({ method: req.method, reason: err.message }, 'upstream response aborted; resetting the tunnel stream')
      res.destroy(err)
    })
    upRes.once('close', () => {
      // ended without error but incomplete: still a truncation, so reset
      if (!upRes.complete && !res.destroyed) res.destroy()
    })
    upRes.pipe(res)
  })

  upReq.once('error', (err: Error) => {
    req.unpipe(upReq)
    if (res.headersSent || res.destroyed) {
      res.destroy(err)
      return
    }
    answerUnreachable(res, err, warnings)
  })
}
