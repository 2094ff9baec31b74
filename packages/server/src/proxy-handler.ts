/**
 * Proxy mode, server side: a caller's request on a cluster port, already
 * TLS-terminated, is authenticated, cleaned of credentials, and sent as
 * HTTP/1.1 over a mux stream to one of the cluster's agents, which
 * re-originates it to the kube-apiserver with its own credentials.
 *
 * Streams are pooled per agent session by a keep-alive http.Agent, so a busy
 * cluster reuses streams instead of opening one per request. An agent that
 * announced the hop frame gets plain requests as compact frames instead
 * (hop-client.ts, its own pool per session), never parsed as HTTP. Upgrades
 * (exec, attach, port-forward; WebSocket or SPDY, any method) get a
 * dedicated stream and become a raw two-way relay after the 101 (the shared
 * relay in @tower/transport).
 *
 * HTTP/2 callers (client-go negotiates h2 by ALPN) take the same steps
 * stream by stream (h2-relay.ts): each h2 stream becomes one such request.
 *
 * Every answer Tower writes itself goes through the one Status writer. A
 * refused caller's connection is closed after its 401. Refusals are logged
 * one line each, no stack, the path without its query, and rate-limited per
 * kind, because anyone who can reach the port can cause them.
 */
import { isWatchRequest, type WatchDrain } from './drain.ts'
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2'
import type { Duplex } from 'node:stream'
import { LogLimiter, type Logger } from '@tower/mux'
import { relayUpgrade, sendStatus, sendStatusH2, sendStatusRaw } from '@tower/transport'
import type { CallerLimits } from './config.ts'
import type { ClusterRegistry } from './registry/api.ts'
import type { AgentTunnel, TunnelPool } from './tunnels.ts'
import { authenticateCaller, type Caller, type Refusal } from './caller-auth.ts'
import { authenticated, pathOnly } from './listener-guard.ts'
import { addImpersonation, forwardRequestHeaders, forwardResponseHeaders } from './headers.ts'
import { DEFAULT_OFFLINE_GRACE_MS, deliveryFailure, type DeliveryFailure } from './status.ts'
import { callerRequest, relayH2Stream, type CallerRequest, type ProxyRoute } from './h2-relay.ts'
import type { ServerMetrics } from './metrics.ts'
import { setAuditIdHeader, type AuditLog } from './audit.ts'
import { BodyRelay } from './body-relay.ts'
import { HopPool, HopResponse, type HopRequest } from './hop-client.ts'
import { hasContentLength, hasRequestBody, hopRequestHeaders, hopResponseHeaders } from './hop-headers.ts'

/** Options of {@link ProxyHandler}. */
export interface ProxyHandlerOptions {
  cluster: string
  registry: ClusterRegistry
  tunnels: TunnelPool
  logger: Logger
  /** Limits of the cluster port; `offlineGraceMs` tells a reconnecting agent from an offline cluster. */
  limits?: CallerLimits
  /** Counts requests by verb and code, and refused callers. */
  metrics?: ServerMetrics | undefined
  /** Writes each request's audit record. */
  audit?: AuditLog | undefined
  /** Ends watches cleanly when the server drains. */
  watches?: WatchDrain | undefined
}

/** Shortest time between two warn lines of one kind of refusal, in milliseconds. */
export const REFUSAL_WARN_INTERVAL_MS = 10_000

/**
 * An http.Agent whose "connections" are mux streams of one agent session.
 * One per session: a shared pool would hand every request to whichever
 * session holds the most recently freed stream, defeating the spreading.
 */
class TunnelHttpAgent extends http.Agent {
  /** The agent whose session the streams are on. */
  readonly agentId: string
  readonly #open: () => Duplex

  constructor (agentId: string, open: () => Duplex) {
    super({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 256, scheduling: 'lifo' })
    this.agentId = agentId
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
  readonly #hops = new Map<AgentTunnel, HopPool>()
  readonly #warnings: LogLimiter
  readonly #route: ProxyRoute

  constructor (opts: ProxyHandlerOptions) {
    this.#opts = opts
    this.#log = opts.logger.child({ component: 'proxy', cluster: opts.cluster })
    this.#warnings = new LogLimiter(this.#log, { burst: 1, windowMs: REFUSAL_WARN_INTERVAL_MS })
    this.#route = {
      authenticate: (req) => this.#authenticate(req),
      upstreamHeaders: (req, caller) => this.#headers(req, caller, false),
      pool: () => this.#pool(),
      refused: (req, err) => this.#refused(req, err),
      goneMessage: () => this.#goneMessage(),
      watching: (req, relay) => { if (this.#opts.watches !== undefined && isWatchRequest(req.url)) relay.watch(this.#opts.watches) },
      closed: (verb, status, startedAt) => this.#opts.metrics?.countStream(this.#opts.cluster, verb, status, startedAt)
    }
  }

  // The stream pool of the next agent in turn: hop frames when it announced
  // them, the keep-alive http.Agent otherwise.
  #pool (): TunnelHttpAgent | HopPool {
    const tunnel = this.#opts.tunnels.pick(this.#opts.cluster)
    if (tunnel.hopFrames === true) return this.#hopPool(tunnel)
    let pool = this.#pools.get(tunnel)
    if (pool === undefined) {
      const created = new TunnelHttpAgent(tunnel.agentId, () => this.#opts.tunnels.openOn(tunnel, 'http'))
      this.#pools.set(tunnel, created)
      tunnel.session.once('close', () => { this.#pools.delete(tunnel); created.destroy() })
      pool = created
    }
    return pool
  }

  #hopPool (tunnel: AgentTunnel): HopPool {
    let pool = this.#hops.get(tunnel)
    if (pool === undefined) {
      // The codec's default limits: the agent decodes with the same ones.
      const created = new HopPool(tunnel.agentId, () => this.#opts.tunnels.openOn(tunnel, 'hframe'))
      this.#hops.set(tunnel, created)
      tunnel.session.once('close', () => { this.#hops.delete(tunnel); created.destroy() })
      pool = created
    }
    return pool
  }

  /** The `request` listener. A bug in it costs this request, never the process. */
  handleRequest (req: IncomingMessage, res: ServerResponse): void {
    this.#opts.metrics?.observeRequest(this.#opts.cluster, req, res)
    this.#opts.audit?.request(this.#opts.cluster, req, res)
    try {
      this.#request(req, res)
    } catch (err) {
      this.#log.error({ err, method: req.method, path: pathOnly(req.url) }, 'proxy request failed')
      sendStatus(res, 500, 'tower: internal error', { connection: 'close' })
    }
  }

  /** The h2 `stream` listener: one request per stream. A bug in it costs this stream, never the session. */
  handleStream (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, rawHeaders: string[]): void {
    try {
      const view = callerRequest(stream, headers, rawHeaders)
      relayH2Stream(this.#route, this.#log, stream, view, this.#opts.audit?.stream(this.#opts.cluster, view), this.#opts.metrics?.streamVerb(headers))
    } catch (err) {
      this.#log.error({ err, method: headers[':method'], path: pathOnly(headers[':path']) }, 'proxy h2 stream failed')
      sendStatusH2(stream, 500, 'tower: internal error')
    }
  }

  /** The `upgrade` listener: exec, attach, port-forward, WebSocket watches. */
  handleUpgrade (req: IncomingMessage, socket: Duplex, head: Buffer): void {
    // node:http stopped watching the socket when it handed it over.
    socket.on('error', (err) => this.#log.debug({ reason: err.message }, 'caller socket error during upgrade'))
    this.#opts.metrics?.observeUpgrade(this.#opts.cluster, req, socket)
    this.#opts.audit?.upgrade(this.#opts.cluster, req, socket)
    try {
      this.#upgrade(req, socket, head)
    } catch (err) {
      this.#log.error({ err, method: req.method, path: pathOnly(req.url) }, 'proxy upgrade failed')
      sendStatusRaw(socket, 500, 'tower: internal error')
    }
  }

  /** Closes the keep-alive streams no request uses now (a draining server: they would keep its sessions open). */
  dropIdleStreams (): void {
    for (const pool of this.#pools.values()) {
      for (const list of Object.values(pool.freeSockets)) for (const s of list ?? []) s.destroy()
    }
    for (const pool of this.#hops.values()) pool.dropIdle()
  }

  /** Closes pooled streams. */
  close (): void {
    for (const pool of this.#pools.values()) pool.destroy()
    this.#pools.clear()
    for (const pool of this.#hops.values()) pool.destroy()
    this.#hops.clear()
    this.#warnings.flush()
  }

  #request (req: IncomingMessage, res: ServerResponse): void {
    const caller = this.#authenticate(req)
    if (!('user' in caller)) {
      sendStatus(res, 401, `tower: ${caller.reason}`, { connection: 'close' })
      return
    }
    const headers = this.#headers(req, caller, false)
    if (headers === undefined) {
      sendStatus(res, 503, this.#goneMessage(), { connection: 'close' })
      return
    }
    let pool: TunnelHttpAgent | HopPool
    let upReq: http.ClientRequest | HopRequest
    const hopBody = hasRequestBody(req.headers)
    try {
      pool = this.#pool()
      upReq = pool instanceof HopPool
        ? pool.request({ method: req.method ?? 'GET', path: req.url ?? '/', headers: hopRequestHeaders(headers), body: hopBody })
        : http.request({ agent: pool, method: req.method, path: req.url, headers, setHost: false })
    } catch (err) {
      if ((err as { code?: string }).code === 'TOWER_ERR_HOP_FRAME') {
        // Node's parser let it through, but it cannot cross as a frame (a path byte, a head too large).
        sendStatus(res, 400, `tower: the request cannot be relayed: ${(err as Error).message}`, { connection: 'close' })
        return
      }
      const answer = this.#refused(req, err as Error)
      sendStatus(res, answer.code, answer.message, answer.headers, answer)
      return
    }
    // Per-request access logs cost an object and a closure: only when asked for.
    const started = this.#log.isLevelEnabled?.('debug') === false ? 0 : performance.now()
    let callerGone = false
    let relay: BodyRelay | undefined
    res.on('close', () => {
      relay?.stop()
      // The caller went away before the response finished: free the upstream at once.
      if (!res.writableFinished) {
        callerGone = true
        upReq.destroy()
        this.#log.debug({ method: req.method, path: pathOnly(req.url) }, 'caller went away before the response finished')
      }
    })
    upReq.on('response', (upRes: IncomingMessage | HopResponse) => {
      const audit = this.#opts.audit?.entryOf(req)
      if (upRes instanceof HopResponse) {
        try {
          res.writeHead(upRes.statusCode, hopResponseHeaders(upRes.rawHeaders))
        } catch (err) {
          // The codec checks names and values as node does; this is the last line, not the plan.
          this.#log.warn({ code: (err as NodeJS.ErrnoException).code, path: pathOnly(req.url) }, 'response head not valid for HTTP/1.1; answered 502')
          audit?.responded(upRes.statusCode, undefined, pool.agentId)
          upRes.destroy()
          sendStatus(res, 502, 'tower: the agent sent a response head that cannot be relayed')
          return
        }
        if (!hasContentLength(upRes.rawHeaders)) res.flushHeaders()
        upRes.dropHead()
      } else {
        res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, forwardResponseHeaders(upRes))
        // A streamed body (watch, logs -f) may not produce a byte for minutes:
        // send the head now. A sized body carries the head in its first write.
        if (upRes.headers['content-length'] === undefined) res.flushHeaders()
      }
      relay = new BodyRelay(upRes, res, {
        bodyEnded: () => {
          if (started !== 0) this.#log.debug({ method: req.method, path: pathOnly(req.url), status: upRes.statusCode, user: caller.user, ms: Math.round(performance.now() - started) }, 'request')
        },
        bodyFailed: (err) => {
          // A caller that hangs up (kubectl's ^C on a watch) is routine; a drain ended the response cleanly.
          if (callerGone) return
          if (res.writableEnded) {
            this.#log.debug({ method: req.method, path: pathOnly(req.url) }, 'response already ended (drain) before the tunnel stream closed')
            return
          }
          // The tunnel broke mid-response: reset the caller, never end cleanly.
          this.#log.warn({ reason: err.message, method: req.method, path: pathOnly(req.url) }, 'response interrupted; resetting caller connection')
          res.destroy(err)
        }
      })
      audit?.responded(upRes.statusCode ?? 502, relay, pool.agentId)
      if (this.#opts.watches !== undefined && isWatchRequest(req.url)) relay.watch(this.#opts.watches)
    })
    upReq.on('error', (err) => {
      if (res.headersSent) {
        res.destroy(err)
        return
      }
      const answer = this.#refused(req, err)
      sendStatus(res, answer.code, answer.message, answer.headers, answer)
    })
    if (upReq instanceof http.ClientRequest) req.pipe(upReq)
    else if (hopBody) upReq.pipeFrom(req)
    req.on('error', () => upReq.destroy())
  }

  #upgrade (req: IncomingMessage, socket: Duplex, head: Buffer): void {
    // The socket stays non-half-open until the caller is authenticated and
    // the 101 is through (the relay switches it): a peer that FINs before
    // must not leave it in CLOSE_WAIT.
    const caller = this.#authenticate(req)
    if (!('user' in caller)) {
      sendStatusRaw(socket, 401, `tower: ${caller.reason}`)
      return
    }
    const headers = this.#headers(req, caller, true)
    if (headers === undefined) {
      sendStatusRaw(socket, 503, this.#goneMessage())
      return
    }
    let stream: Duplex
    try {
      const tunnel = this.#opts.tunnels.pick(this.#opts.cluster)
      this.#opts.audit?.entryOf(req)?.agent(tunnel.agentId)
      stream = this.#opts.tunnels.openOn(tunnel, 'http')
    } catch (err) {
      const answer = this.#refused(req, err as Error)
      sendStatusRaw(socket, answer.code, answer.message, answer.headers, answer)
      return
    }
    const path = pathOnly(req.url)
    relayUpgrade({
      socket,
      head,
      request: http.request({ createConnection: () => stream, method: req.method, path: req.url, headers, setHost: false }),
      onUpgrade: (res) => this.#log.debug({ method: req.method, path, protocol: res.headers.upgrade, user: caller.user }, 'upgraded'),
      onSpliced: (res, upstream) => this.#opts.watches?.trackUpgrade(res, socket, upstream),
      onError: (err) => {
        const answer = this.#refused(req, err)
        sendStatusRaw(socket, answer.code, answer.message, answer.headers, answer)
      },
      onClose: (err) => this.#log.debug({ reason: err?.message, path }, 'upgraded connection closed')
    })
  }

  // One line per refusal, no stack: warn for the first of its kind in an
  // interval, debug for the rest, and a summary line counts those.
  #refused (req: CallerRequest, err: Error): DeliveryFailure {
    const answer = deliveryFailure(err, this.#opts.limits?.offlineGraceMs ?? DEFAULT_OFFLINE_GRACE_MS, Date.now(), this.#opts.registry.kind === 'kubernetes')
    const code = (err as { code?: string }).code ?? 'unknown'
    const fields = { code, status: answer.code, reason: err.message, method: req.method, path: pathOnly(req.url) }
    this.#warnings.warn(`delivery:${code}`, fields, 'request not delivered')
    return answer
  }

  #authenticate (req: CallerRequest): Caller | Refusal {
    // authenticateCaller reads only the socket and the headers, which an h2 stream's view has too.
    const result = authenticateCaller(req as IncomingMessage, this.#opts.cluster, this.#opts.registry)
    if ('user' in result) {
      authenticated(req.socket)
      this.#opts.audit?.entryOf(req)?.caller(result.user, result.groups)
    }
    if (!('user' in result)) {
      // The query may carry anything; the path is enough to tell what was tried.
      const fields = { remote: (req.socket as { remoteAddress?: string }).remoteAddress, method: req.method, path: pathOnly(req.url), reason: result.reason }
      this.#warnings.warn('caller refused', fields, 'caller refused')
      this.#opts.metrics?.authFailure(this.#opts.cluster, result.kind)
    }
    return result
  }

  // undefined when the cluster left the registry while its port is still
  // open (between a reload and the listener's close).
  #headers (req: CallerRequest, caller: Caller, upgrade: boolean): string[] | undefined {
    const cluster = this.#opts.registry.find(this.#opts.cluster)
    if (cluster === undefined) return undefined
    // forwardRequestHeaders reads rawHeaders and headers.connection only.
    const headers = forwardRequestHeaders(req as IncomingMessage, upgrade)
    if (cluster.impersonate) addImpersonation(headers, caller.user, caller.groups)
    const audit = this.#opts.audit?.entryOf(req)
    if (audit !== undefined) setAuditIdHeader(headers, audit.auditID)
    return headers
  }

  #goneMessage (): string {
    this.#log.debug({}, 'request for a cluster no longer registered')
    return `tower: cluster "${this.#opts.cluster}" is no longer registered on this server`
  }
}
