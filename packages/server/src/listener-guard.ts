/**
 * The one guard around every event handler of a listening server (agent
 * endpoint, proxy and passthrough cluster ports), and the guards every port
 * shares against peers that connect and then stall.
 *
 * Handlers: a handler that throws costs the connection it was handling
 * (destroyed, the error logged), never the process. Node runs 'request',
 * 'upgrade', 'connection' and the error events synchronously from the
 * socket's data callbacks, where an exception would otherwise be uncaught.
 *
 * Stalled peers: every accepted socket is tracked until it closes, so
 * `destroyAll()` on shutdown reaches callers stuck before or during TLS. A
 * socket that errors before its TLS handshake finished is destroyed: an
 * HTTP answer cannot be written to it (it would sit in the TLS layer,
 * unflushed, and the socket would stay in CLOSE-WAIT for good). A parse
 * error on a secured socket gets a Status answer that destroys the socket
 * once flushed or after a short linger. Parse errors are logged by code
 * only: the error's `rawPacket` holds the request bytes, credentials
 * included.
 *
 * Unauthenticated connections: every accepted socket takes a slot of its
 * source (source-cap.ts) until it closes or the port's handler calls
 * {@link authenticated} on it (agent endpoint: the agent's token verified;
 * proxy port: a caller authenticated; passthrough port: the caller's first
 * byte). A source with no slot left has its new connection destroyed at
 * accept. Handlers see the TLS socket (or, for h2, node's proxy of it), not
 * the accepted TCP socket, so the release is attached to both, looked up by
 * the remote address and port the two share.
 */
import type net from 'node:net'
import type tls from 'node:tls'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { LogLimiter, type Logger } from '@tower/mux'
import { sendStatusRaw } from '@tower/transport'
import { SourceCap, sourceKey } from './source-cap.ts'

// The release of a socket's unauthenticated slot, as a property of the socket
// (a symbol: node's h2 socket proxy forwards symbol reads to the TLS socket).
const kAuthenticated = Symbol('tower.authenticated')

/**
 * `socket` (accepted TCP socket, TLS socket, or an h2 session's socket) has
 * authenticated: its source's unauthenticated slot is given back. Idempotent;
 * a socket not tracked by a {@link ListenerSockets} is ignored.
 */
export function authenticated (socket: object | null | undefined): void {
  const release: unknown = socket == null ? undefined : (socket as Record<symbol, unknown>)[kAuthenticated]
  if (typeof release === 'function') release()
}

/** Options of {@link ListenerSockets}. */
export interface ListenerSocketsOptions {
  /** Whether the server terminates TLS (https, http2 secure). */
  tls: boolean
  /** The request head limit in bytes, named in the 431 answer. */
  maxHeaderBytes?: number
  /** Unauthenticated connections one source may hold at once (see the module header); absent: no cap. */
  maxUnauthenticatedPerSource?: number
  /** Called for every connection refused by that cap (the metric). */
  refusedUnauthenticated?: () => void
}

/**
 * Wraps `fn` so that a throw is logged and destroys the socket the event was
 * about (`socketOf`), instead of escaping into the event loop.
 */
export function guarded<A extends any[]> (log: Logger, event: string, socketOf: (args: unknown[]) => Duplex | undefined, fn: (...args: A) => void): (...args: A) => void {
  return (...args: A): void => {
    try {
      fn(...args)
    } catch (err) {
      let socket: Duplex | undefined
      try { socket = socketOf(args) } catch { socket = undefined }
      log.error({ err, event }, `${event} handler failed; connection closed`)
      socket?.destroy()
    }
  }
}

/** Where the socket is among the arguments of each server event, for {@link guarded}. */
export const socketOf = {
  request: (args: unknown[]): Duplex => (args[0] as IncomingMessage).socket,
  upgrade: (args: unknown[]): Duplex => args[1] as Duplex,
  connection: (args: unknown[]): Duplex => args[0] as Duplex,
  clientError: (args: unknown[]): Duplex => args[1] as Duplex
} as const

/** Sockets of one listening server; see the module header. */
export class ListenerSockets {
  readonly #sockets = new Set<net.Socket>()
  readonly #secured = new WeakSet<object>()
  readonly #cap: SourceCap | undefined
  // Releases of unauthenticated slots by `address|port`, to find a TLS socket's.
  readonly #pending = new Map<string, () => void>()
  // Bytes of sockets already closed (for the traffic counters).
  #closedReceived = 0
  #closedSent = 0

  /**
   * Tracks the sockets of `server` (guarded 'connection' handler). For a TLS
   * server, also records which sockets finished their handshake and answers
   * `clientError` (with `tooLarge` naming the 431 message), destroying
   * sockets that never finished TLS. With `maxUnauthenticatedPerSource`,
   * caps each source's unauthenticated connections (module header).
   */
  constructor (server: net.Server, log: Logger, opts: ListenerSocketsOptions) {
    const cap = this.#cap = opts.maxUnauthenticatedPerSource === undefined ? undefined : new SourceCap(opts.maxUnauthenticatedPerSource)
    // One flooding source must not flood the log either.
    const refusals = new LogLimiter(log, { burst: 5, windowMs: 10_000 })
    server.on('connection', guarded(log, 'connection', socketOf.connection, (socket: net.Socket) => {
      const source = sourceKey(socket.remoteAddress)
      if (cap !== undefined && !cap.take(source)) {
        refusals.warn('unauthenticated-per-source', { remote: socket.remoteAddress, source, limit: cap.limit }, 'too many unauthenticated connections from one source; new connection closed')
        opts.refusedUnauthenticated?.()
        socket.destroy()
        return
      }
      this.#sockets.add(socket)
      const key = `${socket.remoteAddress}|${socket.remotePort}`
      let release: (() => void) | undefined
      if (cap !== undefined) {
        let held = true
        release = () => {
          if (!held) return
          held = false
          cap.release(source)
          if (this.#pending.get(key) === release) this.#pending.delete(key)
        }
        Object.defineProperty(socket, kAuthenticated, { value: release, configurable: true })
        this.#pending.set(key, release)
      }
      socket.once('close', () => {
        release?.()
        this.#sockets.delete(socket)
        this.#closedReceived += socket.bytesRead
        this.#closedSent += socket.bytesWritten
      })
    }))
    if (!opts.tls) return
    server.on('secureConnection', (socket: tls.TLSSocket) => {
      this.#secured.add(socket)
      const release = this.#pending.get(`${socket.remoteAddress}|${socket.remotePort}`)
      if (release !== undefined) Object.defineProperty(socket, kAuthenticated, { value: release, configurable: true })
    })
    // https.Server forwards 'tlsClientError' (handshake failure or timeout) to 'clientError'.
    server.on('clientError', guarded(log, 'clientError', socketOf.clientError, (err: NodeJS.ErrnoException, socket: Duplex) => {
      const remote = (socket as net.Socket).remoteAddress
      if (!this.#secured.has(socket) || !socket.writable) {
        log.debug({ code: err.code, remote }, 'connection failed before TLS was established; destroyed')
        socket.destroy()
        return
      }
      const tooLarge = err.code === 'HPE_HEADER_OVERFLOW'
      log.debug({ code: err.code, remote }, tooLarge ? 'request header too large (431)' : 'bad request (400)')
      const limit = opts.maxHeaderBytes === undefined ? '' : ` of ${opts.maxHeaderBytes} bytes`
      sendStatusRaw(socket, tooLarge ? 431 : 400, tooLarge ? `tower: request headers exceed the limit${limit}` : 'tower: malformed request')
    }))
  }

  /** Sockets open now (accepted and not yet closed). */
  get size (): number { return this.#sockets.size }

  /** Sources holding unauthenticated connections now (0 without a cap). */
  get unauthenticatedSources (): number { return this.#cap?.sources ?? 0 }

  /** Bytes received and sent on the wire (TLS included) by every socket so far; walks the open ones. */
  get traffic (): { received: number, sent: number } {
    let received = this.#closedReceived
    let sent = this.#closedSent
    for (const socket of this.#sockets) {
      received += socket.bytesRead
      sent += socket.bytesWritten
    }
    return { received, sent }
  }

  /**
   * Resolves once every open socket has closed, or after `ms` milliseconds,
   * whichever comes first. Shutdown waits here so that WebSocket close
   * handshakes already under way can finish before {@link destroyAll}.
   */
  async settled (ms: number): Promise<void> {
    if (this.#sockets.size === 0) return
    await new Promise<void>((resolve) => {
      const timer = setTimeout(finish, ms)
      const pending = new Set(this.#sockets)
      function finish (): void {
        clearTimeout(timer)
        resolve()
      }
      for (const socket of pending) {
        socket.once('close', () => {
          pending.delete(socket)
          if (pending.size === 0) finish()
        })
      }
    })
  }

  /** Destroys every open socket (shutdown). */
  destroyAll (): void {
    for (const socket of this.#sockets) socket.destroy()
  }
}

/** The request path without its query: queries may carry credentials and stay out of logs. */
export function pathOnly (url: string | undefined): string {
  const s = url ?? ''
  const q = s.search(/[?#]/)
  return (q < 0 ? s : s.slice(0, q)).slice(0, 256)
}

/**
 * How often node:http checks its head timeout, in milliseconds. Node's
 * default (30 s) would let a peer that trickles its request head hold the
 * socket for up to 30 s past the timeout; check at a quarter of it, at most
 * once a second, at least every 100 ms.
 */
export function headCheckInterval (headersTimeoutMs: number): number {
  return Math.max(100, Math.min(1000, Math.floor(headersTimeoutMs / 4)))
}
