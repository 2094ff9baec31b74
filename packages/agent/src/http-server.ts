/**
 * The agent's internal HTTP/1.1 server. It never listens: each `http` tunnel
 * stream is handed to it with `emit('connection', stream)`, and node:http
 * parses keep-alive requests and upgrades from it as from a TCP socket.
 *
 * Timeouts: the mux stream's setTimeout is a no-op, so idle keep-alive
 * streams live until the server side closes them (it owns their lifecycle);
 * `requestTimeout` is 0 because watches and exec sessions last for hours.
 */
import http from 'node:http'
import type { Duplex } from 'node:stream'
import { LogLimiter, type Logger } from '@tower/mux'
import { sendStatusRaw } from '@tower/transport'
import type { Upstream } from './upstream.ts'
import { proxyRequest } from './proxy-request.ts'
import { httpExchange } from './exchange.ts'
import { relayUpgrade } from './upgrade-relay.ts'

/** Options of {@link createTunnelHttpServer}. */
export interface TunnelHttpServerOptions {
  upstream: Upstream
  logger: Logger
  /** Largest request head, in bytes; larger is answered 431. */
  maxHeaderSize: number
  /** Time allowed for a request head, in milliseconds. */
  headersTimeoutMs: number
}

/** The internal server and its idle-stream bookkeeping. */
export interface TunnelHttpServer {
  /** The never-listening server; hand it streams with `emit('connection', stream)`. */
  readonly server: http.Server
  /**
   * Ends (FIN) every stream that has no request in flight, now and as soon as
   * busy ones finish; used on stop so that idle keep-alive streams do not hold
   * the session open until the stop timeout.
   */
  closeIdle (): void
}

// Requests in flight per stream; upgraded streams count as always busy.
const UPGRADED = Number.POSITIVE_INFINITY

/** Shortest time between two warn lines of one kind (upstream down, bad target), in milliseconds. */
export const AGENT_WARN_INTERVAL_MS = 10_000

// Socket errors node:http reports through clientError: a tunnel stream
// reset or closed under the parser (the server hung up, the session ended at
// shutdown). Routine, not a malformed request, and there is no one to answer.
const STREAM_GONE = new Set(['ECONNRESET', 'EPIPE', 'ERR_STREAM_DESTROYED', 'ERR_STREAM_PREMATURE_CLOSE', 'TOWER_ERR_STREAM_RESET', 'TOWER_ERR_SESSION_CLOSED'])

/** Creates the internal server that re-originates tunnel requests to the upstream. */
export function createTunnelHttpServer (o: TunnelHttpServerOptions): TunnelHttpServer {
  const log = o.logger
  const warnings = new LogLimiter(log, { burst: 1, windowMs: AGENT_WARN_INTERVAL_MS })
  const inFlight = new Map<Duplex, number>()
  let closing = false
  const server = http.createServer({
    maxHeaderSize: o.maxHeaderSize,
    requestTimeout: 0,
    headersTimeout: o.headersTimeoutMs,
    keepAliveTimeout: 0,
    // Keep duplicate headers (Impersonate-Group may repeat) as they came.
    joinDuplicateHeaders: false
  })
  // A client may FIN right after its request (HTTP/1.0 style, or a relay
  // passing on its caller's half-close). By default node:http then aborts
  // the request it is serving; with this long-standing (if undocumented)
  // switch it finishes the response and ends the stream after it.
  ;(server as http.Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true
  // node:http enforces headersTimeout only on a listening server; this one
  // never listens, so a stream's first request head gets its own timer.
  const firstHead = new Map<Duplex, NodeJS.Timeout>()
  const headArrived = (socket: Duplex): void => {
    const timer = firstHead.get(socket)
    if (timer === undefined) return
    clearTimeout(timer)
    firstHead.delete(socket)
  }
  server.on('connection', (socket: Duplex) => {
    inFlight.set(socket, 0)
    const timer = setTimeout(() => {
      firstHead.delete(socket)
      log.debug({}, 'no request head on a tunnel stream in time; resetting it')
      socket.destroy()
    }, o.headersTimeoutMs)
    timer.unref()
    firstHead.set(socket, timer)
    socket.once('close', () => {
      inFlight.delete(socket)
      headArrived(socket)
    })
  })
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const socket = req.socket as Duplex
    headArrived(socket)
    inFlight.set(socket, (inFlight.get(socket) ?? 0) + 1)
    res.once('close', () => {
      const n = (inFlight.get(socket) ?? 1) - 1
      if (!inFlight.has(socket)) return
      inFlight.set(socket, n)
      if (closing && n === 0) socket.end()
    })
    proxyRequest(httpExchange(req, res), o.upstream, log, warnings)
  })
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    headArrived(socket)
    inFlight.set(socket, UPGRADED)
    relayUpgrade(req, socket, head, o.upstream, log, warnings)
  })
  server.on('clientError', (err: Error & { code?: string }, socket: Duplex) => {
    if (!socket.writable || (err.code !== undefined && STREAM_GONE.has(err.code))) {
      log.debug({ reason: err.message, code: err.code }, 'tunnel stream closed under the request parser')
      socket.destroy()
      return
    }
    const tooLarge = err.code === 'HPE_HEADER_OVERFLOW'
    log.debug({ reason: err.message, code: err.code }, 'malformed request on a tunnel stream')
    sendStatusRaw(socket, tooLarge ? 431 : 400, tooLarge ? `tower agent: request headers exceed ${o.maxHeaderSize} bytes` : 'tower agent: malformed request')
  })
  return {
    server,
    closeIdle () {
      closing = true
      for (const [socket, n] of inFlight) {
        if (n === 0) socket.end()
      }
    }
  }
}
