/**
 * The plain-HTTP health and metrics listener both the server and the agent
 * run on `--metrics-listen`, so that kubelet probes and Prometheus need no
 * client certificate:
 *
 *   GET /livez    200 "ok": the process is alive and its event loop turns
 *   GET /readyz   200 "ok", or 503 with one line per reason it is not ready
 *   GET /metrics  the Prometheus exposition text
 *
 * HEAD is answered like GET without a body; other methods get 405, other
 * paths 404. The listener is bounded like every Tower port: a head timeout,
 * a whole-request timeout, a keep-alive timeout and a connection cap. It
 * knows nothing of prom-client: the owner passes a function that renders
 * the metrics.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import type { Logger } from '@tower/mux'

/** Whether the process is ready to serve, and if not, why. */
export interface Readiness {
  ready: boolean
  /** Why it is not ready, one short phrase each (empty when ready). */
  reasons: string[]
}

/** Options of {@link HealthServer}. */
export interface HealthServerOptions {
  /** Address to bind. */
  host: string
  /** Port to bind; 0 lets the OS choose. */
  port: number
  /** Renders the metrics: the exposition text and its content type. */
  metrics: () => Promise<{ contentType: string, body: string }>
  /** Answers `/readyz`. */
  readiness: () => Readiness
  logger: Logger
  /** Time for a client to send its request head, and the whole request, in milliseconds. Default 10000. */
  headersTimeoutMs?: number
  /** Idle keep-alive time between requests, in milliseconds. Default 5000. */
  keepAliveTimeoutMs?: number
  /** Connections open at once; beyond it new ones are closed at accept. Default 64. */
  maxConnections?: number
}

/** See the module header. */
export class HealthServer {
  readonly #o: HealthServerOptions
  readonly #log: Logger
  readonly #server: http.Server

  constructor (o: HealthServerOptions) {
    this.#o = o
    this.#log = o.logger.child({ component: 'health-server' })
    const headersTimeout = o.headersTimeoutMs ?? 10_000
    this.#server = http.createServer({
      maxHeaderSize: 8 * 1024,
      headersTimeout,
      requestTimeout: headersTimeout,
      keepAliveTimeout: o.keepAliveTimeoutMs ?? 5000,
      connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(headersTimeout / 4)))
    }, (req, res) => {
      try {
        this.#handle(req, res)
      } catch (err) {
        this.#log.error({ err }, 'health request failed; answered 500')
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' })
        res.end()
      }
    })
    this.#server.maxConnections = o.maxConnections ?? 64
    this.#server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      this.#log.debug({ code: err.code }, 'bad request on the health listener; closed')
      socket.destroy()
    })
  }

  /** The bound port, once listening. */
  get port (): number {
    return (this.#server.address() as AddressInfo | null)?.port ?? 0
  }

  /** Binds the listener; resolves once it listens. */
  async listen (): Promise<number> {
    this.#server.listen({ host: this.#o.host, port: this.#o.port })
    await Promise.race([once(this.#server, 'listening'), once(this.#server, 'error').then(([err]) => { throw err })])
    this.#log.info({ host: this.#o.host, port: this.port }, 'metrics and health listening')
    return this.port
  }

  /** Stops listening and closes every connection. */
  async close (): Promise<void> {
    if (!this.#server.listening) return
    const closed = once(this.#server, 'close')
    this.#server.close()
    this.#server.closeAllConnections()
    await closed
  }

  #handle (req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? ''
    const q = url.indexOf('?')
    const path = q < 0 ? url : url.slice(0, q)
    if (path !== '/livez' && path !== '/readyz' && path !== '/metrics') {
      text(res, 404, 'not found: /livez, /readyz, /metrics\n')
      return
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD')
      text(res, 405, 'method not allowed\n')
      return
    }
    const head = req.method === 'HEAD'
    if (path === '/livez') {
      text(res, 200, 'ok\n', head)
      return
    }
    if (path === '/readyz') {
      const r = this.#o.readiness()
      text(res, r.ready ? 200 : 503, r.ready ? 'ok\n' : r.reasons.map((reason) => `not ready: ${reason}\n`).join(''), head)
      return
    }
    this.#o.metrics().then(({ contentType, body }) => {
      res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) })
      res.end(head ? undefined : body)
    }, (err: unknown) => {
      this.#log.error({ err }, 'cannot render metrics; answered 500')
      text(res, 500, 'cannot render metrics\n', head)
    })
  }
}

function text (res: ServerResponse, code: number, body: string, head = false): void {
  if (res.headersSent) return
  res.writeHead(code, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' })
  res.end(head ? undefined : body)
}
