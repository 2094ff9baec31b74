/**
 * One TCP port per member cluster. In proxy mode it is an HTTPS server that
 * authenticates callers (ProxyHandler); in passthrough mode it relays raw
 * bytes to the agent, which relays them to the kube-apiserver, so TLS runs
 * end to end and the tunnel only sees ciphertext.
 */
import https from 'node:https'
import net from 'node:net'
import { once } from 'node:events'
import type { Logger } from '@tower/mux'
import type { Registry } from './registry.ts'
import type { ClusterRecord } from './state-store.ts'
import type { TunnelPool } from './tunnels.ts'
import type { CallerLimits } from './config.ts'
import { ProxyHandler } from './proxy-handler.ts'
import { splice } from '@tower/transport'
import { statusBody } from './status.ts'

/** Options of {@link ClusterListener}. */
export interface ClusterListenerOptions {
  cluster: ClusterRecord
  registry: Registry
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
  readonly #sockets = new Set<net.Socket>()

  constructor (opts: ClusterListenerOptions) {
    this.#opts = opts
    this.name = opts.cluster.name
    this.mode = opts.cluster.mode
    this.#log = opts.logger.child({ component: 'cluster-listener', cluster: this.name })
    if (this.mode === 'proxy') {
      const proxy = new ProxyHandler({ cluster: this.name, registry: opts.registry, tunnels: opts.tunnels, logger: opts.logger })
      const server = https.createServer({
        cert: opts.tls.certPem,
        key: opts.tls.keyPem,
        ca: opts.caPem,
        requestCert: true,
        rejectUnauthorized: false,
        maxHeaderSize: opts.limits.maxHeaderBytes,
        ALPNProtocols: ['http/1.1']
      }, (req, res) => proxy.handleRequest(req, res))
      server.on('upgrade', (req, socket, head) => proxy.handleUpgrade(req, socket, head))
      server.headersTimeout = opts.limits.headersTimeoutMs
      // Watches and exec sessions last hours: no whole-request timeout.
      server.requestTimeout = 0
      server.keepAliveTimeout = opts.limits.keepAliveTimeoutMs
      server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
        const tooLarge = err.code === 'HPE_HEADER_OVERFLOW'
        this.#log.warn({ code: err.code, remote: (socket as net.Socket).remoteAddress }, tooLarge ? 'request header too large (431)' : 'malformed request (400)')
        if (!socket.writable) { socket.destroy(); return }
        const code = tooLarge ? 431 : 400
        const body = statusBody(code, tooLarge ? `tower: request headers exceed ${opts.limits.maxHeaderBytes} bytes` : 'tower: malformed request')
        socket.end(`HTTP/1.1 ${code} ${tooLarge ? 'Request Header Fields Too Large' : 'Bad Request'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
      })
      server.on('tlsClientError', (err) => this.#log.debug({ err }, 'TLS handshake failed'))
      this.#server = server
      this.#proxy = proxy
    } else {
      this.#server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.#passthrough(socket))
    }
    // 'connection' (TCP accept), not 'secureConnection': a caller stuck in or
    // before the TLS handshake must be closed on shutdown too.
    this.#server.on('connection', (socket: net.Socket) => {
      this.#sockets.add(socket)
      socket.once('close', () => this.#sockets.delete(socket))
    })
  }

  /** Binds the port (the record's, or an OS-chosen one when 0) and returns it. */
  async listen (): Promise<number> {
    this.#server.listen({ host: this.#opts.host, port: this.#opts.cluster.port })
    await Promise.race([once(this.#server, 'listening'), once(this.#server, 'error').then(([err]) => { throw err })])
    const port = (this.#server.address() as net.AddressInfo).port
    this.#log.info({ port, mode: this.mode }, 'cluster listener ready')
    return port
  }

  /** Stops accepting and closes open connections. */
  async close (): Promise<void> {
    this.#proxy?.close()
    const closed = once(this.#server, 'close')
    this.#server.close()
    for (const socket of this.#sockets) socket.destroy()
    await closed
  }

  #passthrough (socket: net.Socket): void {
    socket.on('error', (err) => this.#log.debug({ err }, 'passthrough caller socket error'))
    let stream
    try {
      stream = this.#opts.tunnels.open(this.name, 'tcp')
    } catch (err) {
      this.#log.warn({ err, remote: socket.remoteAddress }, 'passthrough connection refused')
      socket.destroy()
      return
    }
    splice(socket, stream, (err) => { if (err !== undefined) this.#log.debug({ err }, 'passthrough connection ended with error') })
  }
}
