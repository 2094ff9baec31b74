/**
 * One TCP port per member cluster. In proxy mode it is an HTTPS server that
 * authenticates callers (ProxyHandler) and offers ALPN `h2` and `http/1.1`
 * on the same port: node:http2's server with `allowHTTP1` hands HTTP/1.1
 * connections to node:http's own connection handling (same parser, same
 * timeouts, upgrades), and h2 sessions to the stream relay (h2-relay.ts).
 * HTTP/1.1 'request' events stay; h2 streams go to 'stream' directly,
 * without node's compatibility objects (an idle watch holds less). In
 * passthrough mode it relays raw
 * bytes to the agent, which relays them to the kube-apiserver, so TLS runs
 * end to end and the tunnel only sees ciphertext.
 *
 * Both modes cap the connections open at once and close stalled ones (see
 * ListenerLimits). A passthrough caller cannot be authenticated here, so it
 * costs no mux stream until it sends its first byte, and is half-open only
 * from then on.
 */
import type { WatchDrain } from './drain.ts'
import http2, { type Http2SecureServer, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2'
import net from 'node:net'
import { Server as TlsServer } from 'node:tls'
import { once } from 'node:events'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Logger } from '@tower/mux'
import { splice } from '@tower/transport'
import type { ClusterRegistry } from './registry/api.ts'
import type { ClusterRecord } from './state-store.ts'
import type { TunnelPool } from './tunnels.ts'
import type { CallerLimits } from './config.ts'
import { ProxyHandler } from './proxy-handler.ts'
import type { ServerMetrics } from './metrics.ts'
import type { AuditLog } from './audit.ts'
import { authenticated, guarded, headCheckInterval, ListenerSockets, socketOf } from './listener-guard.ts'
import { DEFAULT_H2_LIMITS, h2ServerOptions, verifyH2Limits, type H2Limits } from './h2-limits.ts'
import { watchH2Session } from './h2-relay.ts'

// What node:http's connection handling reads from its server; set on the
// h2 server for its HTTP/1.1 connections.
interface Http1ServerOptions {
  maxHeaderSize: number
  headersTimeout: number
  connectionsCheckingInterval: number
  requestTimeout: number
  keepAliveTimeout: number
}

/** Options of {@link ClusterListener}. */
export interface ClusterListenerOptions {
  cluster: ClusterRecord
  registry: ClusterRegistry
  tunnels: TunnelPool
  /** Serving certificate (proxy mode). */
  tls: { certPem: string, keyPem: string }
  /** Tower CA, the only issuer of accepted client certificates. */
  caPem: string
  host: string
  limits: CallerLimits
  /** HTTP/2 limits of a proxy-mode port (verifyH2Limits); when absent, the defaults with `limits.h2MaxConcurrentStreams`. */
  h2?: H2Limits
  /** Counts the port's caller requests and refusals. */
  metrics?: ServerMetrics
  /** Writes an audit record per request (proxy) or per connection (passthrough). */
  audit?: AuditLog | undefined
  /** Ends this port's watches cleanly when the server drains. */
  watches?: WatchDrain | undefined
  logger: Logger
}

/** A listening cluster port. */
export class ClusterListener {
  /** Cluster name. */
  readonly name: string
  /** Mode the port was opened with. */
  readonly mode: ClusterRecord['mode']
  readonly #server: net.Server | Http2SecureServer
  readonly #proxy: ProxyHandler | undefined
  readonly #log: Logger
  readonly #opts: ClusterListenerOptions
  // Upgraded and passthrough sockets leave the HTTP server's bookkeeping, so track them all.
  readonly #sockets: ListenerSockets

  constructor (opts: ClusterListenerOptions) {
    this.#opts = opts
    this.name = opts.cluster.name
    this.mode = opts.cluster.mode
    this.#log = opts.logger.child({ component: 'cluster-listener', cluster: this.name })
    const limits = opts.limits
    if (this.mode === 'proxy') {
      const proxy = new ProxyHandler({ cluster: this.name, registry: opts.registry, tunnels: opts.tunnels, logger: opts.logger, limits, metrics: opts.metrics, audit: opts.audit, watches: opts.watches })
      const server = http2.createSecureServer({
        ...h2ServerOptions(opts.h2 ?? verifyH2Limits({ maxConcurrentStreams: limits.h2MaxConcurrentStreams ?? DEFAULT_H2_LIMITS.maxConcurrentStreams }), limits.maxHeaderBytes),
        cert: opts.tls.certPem,
        key: opts.tls.keyPem,
        ca: opts.caPem,
        requestCert: true,
        rejectUnauthorized: false,
        allowHTTP1: true,
        handshakeTimeout: limits.tlsHandshakeTimeoutMs
      })
      server.on('request', guarded(this.#log, 'request', socketOf.request, (req: IncomingMessage, res: ServerResponse) => proxy.handleRequest(req, res)))
      // Adding a 'request' listener makes node:http2 also turn every h2
      // stream into compatibility request/response objects ('stream'
      // listener). Drop that one: h2 streams are relayed by handleStream.
      server.removeAllListeners('stream')
      server.on('stream', guarded(this.#log, 'stream', (args) => args[0] as Duplex, (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => proxy.handleStream(stream, headers, rawHeaders)))
      server.on('session', (session: ServerHttp2Session) => watchH2Session(session, limits.idleTimeoutMs, this.#log))
      server.on('upgrade', guarded(this.#log, 'upgrade', socketOf.upgrade, (req: IncomingMessage, socket: Duplex, head: Buffer) => {
        // exec and attach sessions may sit idle for hours: no idle timeout once upgraded.
        (socket as net.Socket).setTimeout(0)
        proxy.handleUpgrade(req, socket, head)
      }))
      // The HTTP/1.1 side reads node:http's options from the server object
      // (node's types leave them out of Http2SecureServer).
      const http1: Http1ServerOptions = {
        maxHeaderSize: limits.maxHeaderBytes,
        headersTimeout: limits.headersTimeoutMs,
        connectionsCheckingInterval: headCheckInterval(limits.headersTimeoutMs),
        // Watches and exec sessions last hours: no whole-request timeout.
        requestTimeout: 0,
        keepAliveTimeout: limits.keepAliveTimeoutMs
      }
      Object.assign(server, http1)
      // Socket inactivity for HTTP/1.1 connections and h2 sessions alike.
      server.setTimeout(limits.idleTimeoutMs)
      this.#server = server
      this.#proxy = proxy
      this.#sockets = new ListenerSockets(server, this.#log, { tls: true, maxHeaderBytes: limits.maxHeaderBytes, ...this.#sourceCap() })
    } else {
      this.#server = net.createServer({ noDelay: true }, guarded(this.#log, 'connection', socketOf.connection, (socket: net.Socket) => this.#passthrough(socket)))
      this.#sockets = new ListenerSockets(this.#server, this.#log, { tls: false, ...this.#sourceCap() })
    }
    this.#server.maxConnections = limits.maxConnections
  }

  /** Sockets open on the port now. */
  get connections (): number { return this.#sockets.size }

  /** Bytes received from and sent to callers on this port so far (TLS included). */
  get traffic (): { received: number, sent: number } { return this.#sockets.traffic }

  /** Binds the port (the record's, or an OS-chosen one when 0) and returns it. */
  async listen (): Promise<number> {
    this.#server.listen({ host: this.#opts.host, port: this.#opts.cluster.port })
    await Promise.race([once(this.#server, 'listening'), once(this.#server, 'error').then(([err]) => { throw err })])
    const port = (this.#server.address() as net.AddressInfo).port
    this.#log.info({ port, mode: this.mode }, 'cluster listener ready')
    return port
  }

  /** Serves a renewed certificate to new connections (proxy mode; passthrough has none). */
  setCertificate (tls: { certPem: string, keyPem: string }): void {
    if (this.#server instanceof TlsServer) this.#server.setSecureContext({ cert: tls.certPem, key: tls.keyPem, ca: this.#opts.caPem })
  }

  /** Closes idle pooled streams to the agents (drain). */
  dropIdleStreams (): void {
    this.#proxy?.dropIdleStreams()
  }

  /** Stops accepting and closes open connections. */
  async close (): Promise<void> {
    this.#proxy?.close()
    const closed = once(this.#server, 'close')
    this.#server.close()
    this.#sockets.destroyAll()
    await closed
  }

  // A cap per source on connections not yet authenticated (listener-guard.ts).
  #sourceCap (): { maxUnauthenticatedPerSource?: number, refusedUnauthenticated: () => void } {
    return { maxUnauthenticatedPerSource: this.#opts.limits.maxUnauthenticatedPerSource, refusedUnauthenticated: () => this.#opts.metrics?.unauthenticatedRefused('cluster') }
  }

  #passthrough (socket: net.Socket): void {
    const limits = this.#opts.limits
    socket.on('error', (err: NodeJS.ErrnoException) => this.#log.debug({ code: err.code }, 'passthrough caller socket error'))
    // Until the caller speaks, the "handshake" timeout applies; then the idle one.
    socket.setTimeout(limits.tlsHandshakeTimeoutMs)
    socket.on('timeout', () => {
      this.#log.debug({ remote: socket.remoteAddress }, 'passthrough connection timed out; closed')
      socket.destroy()
    })
    socket.once('readable', guarded(this.#log, 'readable', () => socket, (): void => {
      if (socket.readableLength === 0) { socket.destroy(); return }
      // Tower cannot authenticate a passthrough caller (the member does): its first byte ends the handshake phase.
      authenticated(socket)
      socket.setTimeout(limits.idleTimeoutMs)
      const audit = this.#opts.audit?.connection(this.name, socket)
      let stream
      try {
        const tunnel = this.#opts.tunnels.pick(this.name)
        audit?.agent(tunnel.agentId)
        stream = this.#opts.tunnels.openOn(tunnel, 'tcp')
      } catch (err) {
        this.#log.warn({ code: (err as { code?: string }).code, reason: (err as Error).message, remote: socket.remoteAddress }, 'passthrough connection refused')
        socket.destroy()
        return
      }
      // Half-close is part of the relayed protocol, once there is one.
      socket.allowHalfOpen = true
      splice(socket, stream, (err) => { if (err !== undefined) this.#log.debug({ code: (err as { code?: string }).code, reason: err.message }, 'passthrough connection ended with error') })
    }))
  }
}
