/**
 * One TCP port per member cluster. In proxy mode it is an HTTPS server that
 * authenticates callers (ProxyHandler); in passthrough mode it relays raw
 * bytes to the agent, which relays them to the kube-apiserver, so TLS runs
 * end to end and the tunnel only sees ciphertext.
 *
 * Both modes cap the connections open at once and close stalled ones (see
 * ListenerLimits). A passthrough caller cannot be authenticated here, so it
 * costs no mux stream until it sends its first byte, and is half-open only
 * from then on.
 */
import https from 'node:https'
import net from 'node:net'
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
import { guarded, headCheckInterval, ListenerSockets, socketOf } from './listener-guard.ts'

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
  logger: Logger
}

/** A listening cluster port. */
export class ClusterListener {
  /** Cluster name. */
  readonly name: string
  /** Mode the port was opened with. */
  readonly mode: ClusterRecord['mode']
  readonly #server: net.Server
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
      const proxy = new ProxyHandler({ cluster: this.name, registry: opts.registry, tunnels: opts.tunnels, logger: opts.logger, limits })
      const server = https.createServer({
        cert: opts.tls.certPem,
        key: opts.tls.keyPem,
        ca: opts.caPem,
        requestCert: true,
        rejectUnauthorized: false,
        maxHeaderSize: limits.maxHeaderBytes,
        ALPNProtocols: ['http/1.1'],
        handshakeTimeout: limits.tlsHandshakeTimeoutMs,
        connectionsCheckingInterval: headCheckInterval(limits.headersTimeoutMs)
      })
      server.on('request', guarded(this.#log, 'request', socketOf.request, (req: IncomingMessage, res: ServerResponse) => proxy.handleRequest(req, res)))
      server.on('upgrade', guarded(this.#log, 'upgrade', socketOf.upgrade, (req: IncomingMessage, socket: Duplex, head: Buffer) => {
        // exec and attach sessions may sit idle for hours: no idle timeout once upgraded.
        (socket as net.Socket).setTimeout(0)
        proxy.handleUpgrade(req, socket, head)
      }))
      server.headersTimeout = limits.headersTimeoutMs
      // Watches and exec sessions last hours: no whole-request timeout.
      server.requestTimeout = 0
      server.keepAliveTimeout = limits.keepAliveTimeoutMs
      server.timeout = limits.idleTimeoutMs
      this.#server = server
      this.#proxy = proxy
      this.#sockets = new ListenerSockets(server, this.#log, { tls: true, maxHeaderBytes: limits.maxHeaderBytes })
    } else {
      this.#server = net.createServer({ noDelay: true }, guarded(this.#log, 'connection', socketOf.connection, (socket: net.Socket) => this.#passthrough(socket)))
      this.#sockets = new ListenerSockets(this.#server, this.#log, { tls: false })
    }
    this.#server.maxConnections = limits.maxConnections
  }

  /** Sockets open on the port now. */
  get connections (): number { return this.#sockets.size }

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
    if (this.#server instanceof https.Server) this.#server.setSecureContext({ cert: tls.certPem, key: tls.keyPem, ca: this.#opts.caPem })
  }

  /** Stops accepting and closes open connections. */
  async close (): Promise<void> {
    this.#proxy?.close()
    const closed = once(this.#server, 'close')
    this.#server.close()
    this.#sockets.destroyAll()
    await closed
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
      socket.setTimeout(limits.idleTimeoutMs)
      let stream
      try {
        stream = this.#opts.tunnels.open(this.name, 'tcp')
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
