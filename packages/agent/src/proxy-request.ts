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
 * goes through proxy-request-h2.ts instead, with the same guarantees. Both
 * serve an {@link Exchange} (exchange.ts), so the two hops (HTTP/1.1 text and
 * hop frames) share them.
 */
import type { IncomingMessage, ClientRequest } from 'node:http'
import type { LogLimiter, Logger } from '@tower/mux'
import type { Upstream } from './upstream.ts'
import type { Exchange } from './exchange.ts'
import { downstreamResponseHeaders, plainRequestHeaders } from './headers.ts'
import { proxyRequestH2 } from './proxy-request-h2.ts'
import { answerUnreachable, badRequestTarget } from './status.ts'

/** Re-originates one plain request from either hop to the upstream. */
export function proxyRequest (ex: Exchange, upstream: Upstream, log: Logger, warnings: LogLimiter): void {
  const { req, res } = ex
  const bad = badRequestTarget(req.path)
  if (bad !== undefined) {
    warnings.warn('bad-target', { method: req.method }, 'request target is not a path; answering 400')
    req.discard()
    res.sendStatus(400, bad)
    return
  }
  const pool = upstream.h2
  if (pool?.h2 === true) {
    proxyRequestH2(ex, pool, upstream, log, warnings, proxyRequestH1)
    return
  }
  proxyRequestH1(ex, upstream, log, warnings)
}

function proxyRequestH1 ({ req, res }: Exchange, upstream: Upstream, log: Logger, warnings: LogLimiter): void {
  let upReq: ClientRequest
  try {
    upReq = upstream.request({ method: req.method, path: req.path, headers: plainRequestHeaders(req) }, false)
  } catch (err) {
    // e.g. a header value node refuses to send
    req.discard()
    answerUnreachable(res, err as Error, warnings)
    return
  }

  res.onAbort({ aborted: () => upReq.destroy() })
  if (!req.hasBody) {
    // no body (GET, watch, DELETE without one): skip pipe()'s listener setup
    upReq.end()
    req.discard()
  } else {
    const body = req.body()
    body.once('error', () => upReq.destroy())
    body.pipe(upReq)
  }

  upReq.once('response', (upRes: IncomingMessage) => {
    if (res.destroyed) {
      upRes.destroy()
      return
    }
    // Bodies of known length carry the head in their first write.
    res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, downstreamResponseHeaders(upRes), upRes.headers['content-length'] === undefined)
    upRes.on('error', (err: Error) => {
      log.debug({ method: req.method, reason: err.message }, 'upstream response aborted; resetting the tunnel stream')
      res.destroy(err)
    })
    upRes.once('close', () => {
      // ended without error but incomplete: still a truncation, so reset
      if (!upRes.complete && !res.destroyed) res.destroy()
    })
    res.pipeFrom(upRes)
  })

  upReq.once('error', (err: Error) => {
    if (req.hasBody) req.body().unpipe(upReq)
    if (res.headersSent || res.destroyed) {
      res.destroy(err)
      return
    }
    answerUnreachable(res, err, warnings)
  })
}
