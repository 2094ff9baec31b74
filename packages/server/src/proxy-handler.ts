/**
 * Proxy mode, server side: a caller's request on a cluster port, already
 * TLS-terminated, is authenticated, cleaned of credentials, and sent as
 * HTTP/1.1 over a mux stream to one of the cluster's agents, which
 * re-originates it to the kube-apiserver with its own credentials.
 *
 * Streams are pooled per cluster by a keep-alive http.Agent, so a busy
 * cluster reuses streams instead of opening one per request. Upgrades
 * (exec, attach, port-forward; WebSocket or SPDY, any method) get a
 * dedicated stream and become a raw two-way relay after the 101.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Logger } from '@tower/mux'
import type { Registry } from './registry.ts'
import type { AgentTunnel, TunnelPool } from './tunnels.ts'
import { authenticateCaller, type Caller } from './caller-auth.ts'
import { addImpersonation, forwardRequestHeaders, forwardResponseHeaders } from './headers.ts'
import { splice } from '@tower/transport'
import { deliveryFailure, sendStatus, sendStatusRaw } from './status.ts'

/** Options of {@link ProxyHandler}. */
export interface ProxyHandlerOptions {
  cluster: string
  registry: Registry
  tunnels: TunnelPool
  logger: Logger
}

/**
 * An http.Agent whose "connections" are mux streams of one agent session.
 * One per session: a shared pool would hand every request to whichever
 * session holds the most recently freed stream, defeating the spreading.
 */
class TunnelHttpAgent extends http.Agent {
  readonly #open: () => Duplex

  constructor (open: () => Duplex) {
    super({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 256, scheduling: 'lifo' })
    this.#open = open
  }

  override createConnection (_options: unknown, cb: (err: Error | null, socket?: Duplex) => void): Duplex | undefined {
    try {
      const stream = this.#open()
      // The agent ends idle streams when it stops: end ours too, so the
      // stream closes and leaves the pool instead of lingering half-open.
      stream.once('end', () => { if (!stream.writableEnded) stream.end() })
      return stream
    } catch (err) {
      cb(err as Error)
      return undefined
    }
  }
}

/** Handles requests and upgrades of one cluster port in proxy mode. */
export class ProxyHandler {
  readonly #opts: ProxyHandlerOptions
  readonly #log: Logger
  readonly #pools = new Map<AgentTunnel, TunnelHttpAgent>()

  constructor (opts: ProxyHandlerOptions) {
    this.#opts = opts
    this.#log = opts.logger.child({ component: 'proxy', cluster: opts.cluster })
  }

  // The keep-alive stream pool of the next agent in turn.
  #pool (): TunnelHttpAgent {
    const tunnel = this.#opts.tunnels.pick(this.#opts.cluster)
    let pool = this.#pools.get(tunnel)
    if (pool === undefined) {
      const created = new TunnelHttpAgent(() => this.#opts.tunnels.openOn(tunnel, 'http'))
      this.#pools.set(tunnel, created)
      tunnel.session.once('close', () => { this.#pools.delete(tunnel); created.destroy() })
      pool = created
    }
    return pool
  }

  /** The `request` listener. */
  handleRequest (req: IncomingMessage, res: ServerResponse): void {
    const caller = this.#authenticate(req)
    if (!('user' in caller)) {
      sendStatus(res, 401, `tower: ${caller.reason}`)
      return
    }
    let pool: TunnelHttpAgent
    try {
      pool = this.#pool()
    } catch (err) {
      this.#refuse(res, req, err as Error)
      return
    }
    const upReq = http.request({ agent: pool, method: req.method, path: req.url, headers: this.#headers(req, caller, false), setHost: false })
    // Per-request access logs cost an object and a closure: only when asked for.
    const started = this.#log.isLevelEnabled?.('debug') === false ? 0 : performance.now()
    let callerGone = false
    res.on('close', () => {
      // The caller went away before the response finished: free the upstream at once.
      if (!res.writableFinished) {
        callerGone = true
        upReq.destroy()
      }
    })
    upReq.on('response', (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, forwardResponseHeaders(upRes.rawHeaders))
      // A streamed body (watch, logs -f) may not produce a byte for minutes:
      // send the head now. A sized body carries the head in its first write.
      if (upRes.headers['content-length'] === undefined) res.flushHeaders()
      upRes.pipe(res)
      upRes.on('error', (err) => {
        // A caller that hangs up (kubectl's ^C on a watch) is routine.
        if (callerGone) {
          this.#log.debug({ method: req.method, path: req.url }, 'caller went away before the response finished')
          return
        }
        // The tunnel broke mid-response: reset the caller, never end cleanly.
        this.#log.warn({ err, method: req.method, path: req.url }, 'response interrupted; resetting caller connection')
        res.destroy(err)
      })
      if (started !== 0) upRes.on('end', () => this.#log.debug({ method: req.method, path: req.url, status: upRes.statusCode, user: caller.user, ms: Math.round(performance.now() - started) }, 'request'))
    })
    upReq.on('error', (err) => {
      if (res.headersSent) {
        res.destroy(err)
        return
      }
      this.#refuse(res, req, err)
    })
    req.pipe(upReq)
    req.on('error', () => upReq.destroy())
  }

  /** The `upgrade` listener: exec, attach, port-forward, WebSocket watches. */
  handleUpgrade (req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', (err) => this.#log.debug({ err }, 'caller socket error during upgrade'))
    // Only upgraded connections are half-open: kubectl closing stdin must not
    // end the output direction. The listener itself stays non-half-open, so a
    // caller that hangs up before or during TLS is not left in CLOSE_WAIT.
    socket.allowHalfOpen = true
    const caller = this.#authenticate(req)
    if (!('user' in caller)) {
      sendStatusRaw(socket, 401, `tower: ${caller.reason}`)
      return
    }
    let stream: Duplex
    try {
      stream = this.#opts.tunnels.open(this.#opts.cluster, 'http')
    } catch (err) {
      this.#log.warn({ err, path: req.url }, 'upgrade not delivered')
      const { code } = deliveryFailure(err as Error)
      sendStatusRaw(socket, code, `tower: ${(err as Error).message}`)
      return
    }
    const upReq = http.request({ createConnection: () => stream, method: req.method, path: req.url, headers: this.#headers(req, caller, true), setHost: false })
    socket.once('close', () => { if (!upgraded) upReq.destroy() })
    let upgraded = false
    upReq.on('upgrade', (upRes, upSocket, upHead) => {
      upgraded = true
      const lines = [`HTTP/1.1 101 ${upRes.statusMessage || 'Switching Protocols'}`]
      const raw = upRes.rawHeaders
      for (let i = 0; i < raw.length; i += 2) lines.push(`${raw[i]}: ${raw[i + 1]}`)
      socket.write(lines.join('\r\n') + '\r\n\r\n')
      if (upHead.length > 0) socket.write(upHead)
      if (head.length > 0) upSocket.write(head)
      this.#log.debug({ method: req.method, path: req.url, protocol: upRes.headers.upgrade, user: caller.user }, 'upgraded')
      splice(socket, upSocket, (err) => this.#log.debug({ err, path: req.url }, 'upgraded connection closed'))
    })
    upReq.on('response', (upRes) => {
      // Refused upgrade (403, 400…): relay the answer, then close.
      const lines = [`HTTP/1.1 ${upRes.statusCode} ${upRes.statusMessage}`]
      const raw = forwardResponseHeaders(upRes.rawHeaders)
      for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() !== 'content-length') lines.push(`${raw[i]}: ${raw[i + 1]}`)
      socket.write(lines.join('\r\n') + '\r\nconnection: close\r\n\r\n')
      upRes.pipe(socket)
      upRes.on('error', () => socket.destroy())
    })
    upReq.on('error', (err) => {
      if (upgraded) return
      this.#log.warn({ err, path: req.url }, 'upgrade not delivered')
      if (socket.writable) sendStatusRaw(socket, 502, `tower: ${err.message}`)
      else socket.destroy()
    })
    upReq.end()
  }

  /** Closes pooled streams. */
  close (): void {
    for (const pool of this.#pools.values()) pool.destroy()
    this.#pools.clear()
  }

  #refuse (res: ServerResponse, req: IncomingMessage, err: Error): void {
    this.#log.warn({ err, method: req.method, path: req.url }, 'request not delivered')
    const { code, headers } = deliveryFailure(err)
    sendStatus(res, code, `tower: ${err.message}`, headers)
  }

  #authenticate (req: IncomingMessage): Caller | { reason: string } {
    const result = authenticateCaller(req, this.#opts.cluster, this.#opts.registry)
    if (!('user' in result)) {
      this.#log.warn({ remote: req.socket.remoteAddress, method: req.method, path: req.url, reason: result.reason }, 'caller refused')
    }
    return result
  }

  #headers (req: IncomingMessage, caller: Caller, upgrade: boolean): http.OutgoingHttpHeaders {
    const headers = forwardRequestHeaders(req.headers, upgrade)
    const cluster = this.#opts.registry.get(this.#opts.cluster)
    if (cluster.impersonate) addImpersonation(headers, caller.user, caller.groups)
    return headers
  }
}
