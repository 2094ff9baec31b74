/**
 * One plain request as the re-originating code sees it, whatever carried it
 * across the tunnel: HTTP/1.1 text parsed by node:http (stream kind `http`,
 * {@link httpExchange}) or hop frames (kind `hframe`, hop-exchange.ts). The
 * upstream legs (proxy-request.ts over HTTP/1.1, proxy-request-h2.ts over
 * h2) are written once against these two interfaces, so header mapping,
 * credentials, GOAWAY replay and the Status answers are one implementation
 * for both hops.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
import { sendStatus } from '@tower/transport'

/** The tunnel side's request. */
export interface TunnelRequest {
  /** The HTTP method. */
  readonly method: string
  /** Path and query, as received (validated with `badRequestTarget` before use). */
  readonly path: string
  /** Flat raw header list `[name, value, ...]` as received, names in any case. */
  readonly rawHeaders: readonly string[]
  /** The Connection header's value(s), naming more headers to drop. */
  readonly connection: string | string[] | undefined
  /** Whether a body follows. */
  readonly hasBody: boolean
  /** The body's Content-Length when it has one and is not chunked; NaN otherwise. */
  readonly contentLength: number
  /** The body has no declared length: an HTTP/1.1 upstream gets it chunked. */
  readonly chunked: boolean
  /** The body as a stream; only meaningful when {@link hasBody}. Same object on every call. */
  body (): Readable
  /** No body will be read: let it drain (or end the exchange's request side). */
  discard (): void
}

/**
 * Told when the tunnel side goes away before the response finished. An
 * object rather than a callback, so that a long-lived request registers
 * itself and holds no closure for it.
 */
export interface AbortListener {
  aborted (): void
}

/** The tunnel side's response. */
export interface TunnelResponse {
  /** The status line has been sent: an error now can only reset. */
  readonly headersSent: boolean
  /** The tunnel side is gone or reset. */
  readonly destroyed: boolean
  /** The whole response was handed on. */
  readonly finished: boolean
  /** Calls `l.aborted()` once if the tunnel side goes away before the response finished. */
  onAbort (l: AbortListener): void
  /** Forgets `l` (the request moves to another leg, which registers its own). */
  offAbort (l: AbortListener): void
  /** Sends the head; `flush` sends it at once (a watch's first event may come minutes later). */
  writeHead (status: number, reason: string | undefined, headers: string[], flush: boolean): void
  /** Streams `src` as the body with backpressure, and ends the response when `src` ends. */
  pipeFrom (src: Readable): void
  /** Resets the tunnel side: a truncated body must never end cleanly. */
  destroy (err?: Error): void
  /** Answers with a Kubernetes Status failure (or resets when the head is already out). */
  sendStatus (code: number, message: string): void
}

/** A request and its response. */
export interface Exchange {
  readonly req: TunnelRequest
  readonly res: TunnelResponse
}

/** The `http`-kind hop: node:http's request and response as an {@link Exchange}. */
export function httpExchange (req: IncomingMessage, res: ServerResponse): Exchange {
  const te = req.headers['transfer-encoding']
  const cl = req.headers['content-length']
  let aborts: Map<AbortListener, () => void> | undefined
  return {
    req: {
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      rawHeaders: req.rawHeaders,
      connection: req.headers.connection,
      hasBody: cl !== undefined || te !== undefined,
      contentLength: te === undefined && cl !== undefined ? Number(cl) : Number.NaN,
      chunked: te !== undefined,
      body: () => req,
      discard: () => { req.resume() }
    },
    res: {
      get headersSent () { return res.headersSent },
      get destroyed () { return res.destroyed },
      get finished () { return res.writableFinished },
      onAbort (l) {
        const onClose = (): void => { if (!res.writableFinished) l.aborted() }
        ;(aborts ??= new Map()).set(l, onClose)
        res.once('close', onClose)
      },
      offAbort (l) {
        const onClose = aborts?.get(l)
        if (onClose === undefined) return
        aborts!.delete(l)
        res.off('close', onClose)
      },
      writeHead (status, reason, headers, flush) {
        res.writeHead(status, reason, headers)
        if (flush) res.flushHeaders()
      },
      // pipe() rather than pipeline(): pipeline allocates an AbortController and
      // a DOMException per call, a measurable share of the agent's CPU per request.
      pipeFrom (src) { src.pipe(res) },
      destroy (err) { res.destroy(err) },
      sendStatus (code, message) { sendStatus(res, code, message, { connection: 'close' }) }
    }
  }
}
