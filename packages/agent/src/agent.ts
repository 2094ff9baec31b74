/**
 * The agent: dials out to the server, serves the mux session the server
 * drives, and reconnects forever with exponential backoff and jitter.
 *
 * Lifecycle of one connection: dial (TLS + token) → `Session` over the
 * WebSocket, as the yamux *server* (the tower server opens the streams) →
 * each inbound stream is dispatched by its preamble → the session ends
 * (GoAway, keepalive timeout, dropped socket) → backoff → dial again. A
 * connection that stayed up for `stableAfterMs` resets the backoff; a
 * rejected token waits the maximum delay, since retrying sooner cannot help
 * but the token may be rotated on the server meanwhile; a 503 or 429 with
 * `Retry-After` (a busy or draining server pacing its agents) waits what the
 * server asked, within the maximum delay.
 */
import { EventEmitter, once } from 'node:events'
import type { IncomingHttpHeaders } from 'node:http'
import type { Socket } from 'node:net'
import { HttpsProxyAgent } from 'https-proxy-agent'
import { Registry } from 'prom-client'
import { Session, type Logger } from '@tower/mux'
import { HEADER_MAX_STREAMS, SESSION_DEFAULTS, sessionOptions, wsStream } from '@tower/transport'
import { opt, resolveAgentOptions, type AgentOptions, type ResolvedAgentOptions } from './config.ts'
import { Backoff } from './backoff.ts'
import { dialServer, type Connection, type Dial } from './dial.ts'
import { NoProxy } from './no-proxy.ts'
import { createUpstream, type Upstream } from './upstream.ts'
import type { H2PoolStats } from './h2-pool.ts'
import { AGENT_WARN_INTERVAL_MS, createTunnelHttpServer, type TunnelHttpServer } from './http-server.ts'
import { createHopHandler, type HopHandler } from './hop-handler.ts'
import { createStreamHandler } from './stream-handler.ts'
import { TowerError } from './errors.ts'
import { AgentMetrics } from './metrics.ts'

/**
 * How long `stop()` waits, after the session ended, for the WebSocket close
 * handshake and TCP to finish before destroying the socket, in milliseconds.
 */
const CLOSE_HANDSHAKE_MS = 2000

/** Events of {@link Agent}. */
export interface AgentEvents {
  /** A session with the server is up. */
  connected: []
  /** The session ended; the error says why, when it was not a clean close. */
  disconnected: [err: Error | undefined]
}

/** After a clean close of a session that lived, the reconnect waits a random 0 to this many milliseconds. */
const CLEAN_CLOSE_SPREAD_MS = 250

/** A Tower agent. `new Agent(options).start()`; `await agent.stop()`. */
export class Agent extends EventEmitter<AgentEvents> {
  readonly #o: ResolvedAgentOptions
  // cluster and agent id, no component: each component's logger is a child of
  // this one, because pino prints a key once per child that binds it
  readonly #base: Logger
  readonly #log: Logger
  readonly #backoff: Backoff
  readonly #metrics: AgentMetrics
  #state: 'new' | 'running' | 'stopped' = 'new'
  #stopping: Promise<void> | undefined
  #loop: Promise<void> | undefined
  #upstream: Upstream | undefined
  #httpServer: TunnelHttpServer | undefined
  #hopHandler: HopHandler | undefined
  #proxyAgent: HttpsProxyAgent<string> | undefined
  #dial: Dial | undefined
  #session: Session | undefined
  // Sessions the server sent GoAway on (it drains): they finish their streams while the next one is dialled.
  readonly #retiring = new Set<Session>()
  // the upgraded socket under the current (or last) session
  #socket: Socket | undefined
  #wait: { timer: NodeJS.Timeout, resolve: () => void } | undefined
  // the server's streams-per-agent limit last warned about, so that reconnects do not repeat it
  #warnedMaxStreams: number | undefined

  /** Validates `options`; throws `InvalidArgumentError` naming a bad option. Nothing is read or dialled yet. */
  constructor (options: AgentOptions) {
    super()
    this.#o = resolveAgentOptions(options)
    this.#base = this.#o.logger.child({ cluster: this.#o.cluster, agentId: this.#o.agentId })
    this.#log = this.#base.child({ component: 'agent' })
    this.#backoff = new Backoff({ minMs: this.#o.reconnectMinMs, maxMs: this.#o.reconnectMaxMs, jitter: this.#o.reconnectJitter })
    this.#metrics = new AgentMetrics(options.metricsRegistry ?? new Registry())
    this.#metrics.bind({ connected: () => this.connected, streams: () => this.#session?.numStreams ?? 0, h2: () => this.upstreamH2 })
  }

  /** The agent's metrics (its prom-client Registry is `metrics.registry`). */
  get metrics (): AgentMetrics { return this.#metrics }

  /**
   * Ready: the tunnel has been up at least once and the agent is not
   * stopping. A tunnel down later is a metric, not readiness: restarting
   * the pod would not bring the server back.
   */
  readiness (): { ready: boolean, reasons: string[] } {
    const reasons: string[] = []
    if (this.#state === 'stopped') reasons.push('stopping')
    if (this.#metrics.connects === 0) reasons.push('tunnel never connected')
    return { ready: reasons.length === 0, reasons }
  }

  /** This instance's id, as sent to the server. */
  get agentId (): string {
    return this.#o.agentId
  }

  /**
   * The upstream HTTP/2 pool's counters (protocol ALPN chose, sessions,
   * streams, requests sent over h2, replays), or undefined when h2 is off,
   * the upstream is http://, or the agent has not started.
   */
  get upstreamH2 (): H2PoolStats | undefined {
    return this.#upstream?.h2?.stats()
  }

  /** True while a session with the server is up (readiness). */
  get connected (): boolean {
    return this.#session !== undefined && !this.#session.closed
  }

  /**
   * Reads the upstream configuration (kubeconfig, token and CA files; throws
   * `TOWER_ERR_KUBECONFIG` / `TOWER_ERR_CREDENTIALS` on a problem) and starts
   * connecting in the background. Listen for `'connected'` to know when it is up.
   */
  start (): void {
    if (this.#state !== 'new') throw new TowerError('agent already started', 'TOWER_ERR_AGENT_STATE')
    const o = this.#o
    this.#upstream = createUpstream(o.upstream, {
      logger: this.#base.child({ component: 'upstream' }),
      credentialRefreshMs: o.credentialRefreshMs,
      maxSockets: o.upstreamMaxSockets,
      connectTimeoutMs: o.upstreamConnectTimeoutMs,
      http2: o.upstreamHttp2,
      h2MaxSessions: o.upstreamH2MaxSessions,
      h2PingIntervalMs: o.upstreamH2PingIntervalMs,
      h2PingTimeoutMs: o.upstreamH2PingTimeoutMs,
      metrics: this.#metrics
    })
    this.#httpServer = createTunnelHttpServer({
      upstream: this.#upstream,
      logger: this.#log,
      maxHeaderSize: o.maxHeaderSize,
      headersTimeoutMs: o.headersTimeoutMs
    })
    this.#hopHandler = createHopHandler({ upstream: this.#upstream, logger: this.#log, warnIntervalMs: AGENT_WARN_INTERVAL_MS })
    if (o.httpsProxy !== undefined && !new NoProxy(o.noProxy).bypass(o.serverUrl)) {
      this.#proxyAgent = new HttpsProxyAgent(o.httpsProxy)
    }
    this.#state = 'running'
    this.#log.info({ server: o.serverUrl.host, upstream: this.#upstream.authority, proxy: this.#proxyAgent !== undefined }, 'agent starting')
    this.#loop = this.#run()
  }

  /**
   * Stops reconnecting and closes the session: GoAway, then open streams get
   * `stopTimeoutMs` to finish before they are reset, then WebSocket Close; it
   * resolves once the server has answered the Close and TCP is closed (at
   * most 2 s more). Idempotent.
   */
  stop (): Promise<void> {
    if (this.#stopping !== undefined) return this.#stopping
    const wasRunning = this.#state === 'running'
    this.#state = 'stopped'
    this.#stopping = (async () => {
      if (!wasRunning) return
      this.#wait?.resolve()
      this.#dial?.abort()
      const session = this.#session
      const socket = this.#socket
      if (session !== undefined && !session.closed) {
        const closed = once(session, 'close')
        const timer = setTimeout(() => session.destroy(), this.#o.stopTimeoutMs)
        timer.unref()
        session.close()
        this.#httpServer?.closeIdle()
        this.#hopHandler?.closeIdle()
        await closed
        clearTimeout(timer)
      }
      await this.#closeRetiring()
      // The session ends the WebSocket with Close(1000). Resolve only once the
      // close handshake and TCP are done: the cli exits right after, and a
      // socket torn down by the exit reaches the server as an abnormal 1006.
      if (socket !== undefined && !socket.destroyed) {
        const gone = new Promise((resolve) => socket.once('close', resolve))
        const timer = setTimeout(() => socket.destroy(), CLOSE_HANDSHAKE_MS)
        timer.unref()
        await gone
        clearTimeout(timer)
      }
      await this.#loop
      this.#upstream?.close()
      this.#proxyAgent?.destroy()
      this.#log.info({}, 'agent stopped')
    })()
    return this.#stopping
  }

  async #run (): Promise<void> {
    const o = this.#o
    const secure = o.serverUrl.protocol === 'wss:'
    while (this.#state === 'running') {
      if (!secure) this.#log.warn({}, 'connecting over cleartext ws://: the join token and all traffic are readable on the network')
      else if (o.insecureSkipVerify) this.#log.warn({}, 'server certificate is NOT verified (insecureSkipVerify): anyone on the path can pose as the server and steal the join token')

      const dial = dialServer(o, this.#proxyAgent)
      this.#dial = dial
      let conn: Connection
      try {
        conn = await dial.opened
      } catch (err) {
        this.#dial = undefined
        if (this.#state !== 'running') break
        await this.#retryAfterFailure(err as Error & { statusCode?: number })
        continue
      }
      this.#dial = undefined
      if (this.#state !== 'running') {
        conn.socket.destroy()
        break
      }

      const since = Date.now()
      const err = await this.#serve(conn, secure)
      if (this.#state !== 'running') break
      const upMs = Date.now() - since
      if (upMs >= o.stableAfterMs) this.#backoff.reset()
      // A server that drains (GoAway, then Close) wants its agents on another replica now: after a
      // session that lived, a clean close reconnects at once, spread over a moment so a drained
      // replica's agents do not all dial in one instant. A session closed as soon as it opened backs off.
      const cleanAfterUse = err === undefined && upMs >= o.reconnectMinMs
      if (cleanAfterUse) this.#backoff.reset()
      const delay = cleanAfterUse ? Math.round(Math.random() * CLEAN_CLOSE_SPREAD_MS) : this.#backoff.next()
      // a clean close (GoAway, WebSocket Close) is a server restart or drain, not a fault
      const level = err === undefined ? 'info' : 'warn'
      this.#log[level]({ retryInMs: delay, reason: err === undefined ? 'closed by the server' : this.#redact(err.message) }, `disconnected from server; reconnecting in ${seconds(delay)}`)
      await this.#sleep(delay)
    }
  }

  async #retryAfterFailure (err: Error & { statusCode?: number, retryAfterS?: number }): Promise<void> {
    this.#metrics.serverDialFailed(err)
    const status = err.statusCode
    const rejected = status === 401 || status === 403
    // A busy or draining server says when this agent's turn comes; 0 or none: our own backoff.
    const asked = (status === 503 || status === 429) && err.retryAfterS !== undefined && err.retryAfterS > 0 ? err.retryAfterS : undefined
    const delay = rejected ? this.#backoff.max() : asked !== undefined ? this.#backoff.asked(asked) : this.#backoff.next()
    const attempt = this.#backoff.attempt
    if (rejected) {
      this.#log.error({ attempt, status, retryInMs: delay }, `agent token rejected by server (${status}); retrying in ${seconds(delay)}`)
    } else if (asked !== undefined) {
      // the server pacing its agents is load shedding, not a fault
      const reason = this.#redact(err.message)
      this.#log.info({ attempt, status, retryAfterS: asked, retryInMs: delay, reason }, `server asked to come back later (${reason}); retrying in ${seconds(delay)}`)
    } else {
      const reason = this.#redact(err.message)
      this.#log.warn({ attempt, status, retryInMs: delay, reason }, `cannot connect to server (attempt ${attempt}): ${reason}; retrying in ${seconds(delay)}`)
    }
    await this.#sleep(delay)
  }

  #serve (conn: Connection, secure: boolean): Promise<Error | undefined> {
    const o = this.#o
    this.#socket = conn.socket
    this.#checkServerMaxStreams(conn.headers)
    // an upstream found without h2 is probed again after each reconnect
    this.#upstream?.h2?.recheck()
    // Over wss the mask key is all zero (see wsStream's randomMask).
    const transport = wsStream(conn.socket, { role: 'client', head: conn.head, randomMask: !secure })
    const session = new Session(transport, {
      ...sessionOptions({
        ...o.session,
        // a stream beyond the upstream pool would wait unseen for a connection; refused, the server answers 503
        maxStreams: Math.min(o.session.maxStreams ?? SESSION_DEFAULTS.maxStreams, o.upstreamMaxSockets),
        // the mux binds its own component ('mux') and side
        logger: this.#base
      }),
      client: false
    })
    this.#session = session
    const closed = new Promise<Error | undefined>((resolve) => {
      session.once('close', (err?: Error) => {
        this.#retiring.delete(session)
        if (this.#session === session) this.#session = undefined
        this.emit('disconnected', err)
        resolve(err)
      })
      // Make before break: a server that drains sends GoAway and opens no more streams here. The next
      // session is dialled now (through the Service, to a replica that serves), while the streams in
      // flight (a download, an exec session) finish on this one until the server closes it.
      session.once('goaway', () => {
        if (this.#state !== 'running' || session.closed) return
        this.#retiring.add(session)
        if (this.#session === session) this.#session = undefined
        if (this.#socket === conn.socket) this.#socket = undefined
        this.#log.info({ streams: session.numStreams }, 'server sent GoAway; connecting again while the open streams finish')
        resolve(undefined)
      })
    })
    session.on('stream', createStreamHandler({
      upstream: this.#upstream as Upstream,
      httpServer: (this.#httpServer as TunnelHttpServer).server,
      hopHandler: this.#hopHandler as HopHandler,
      logger: this.#log,
      preambleTimeoutMs: o.preambleTimeoutMs,
      connectTimeoutMs: o.upstreamConnectTimeoutMs
    }))
    this.#metrics.connected(session)
    this.#log.info({ server: o.serverUrl.host }, 'connected to server')
    this.emit('connected')
    return closed
  }

  // On stop, sessions still finishing after a GoAway get stopTimeoutMs, then are destroyed.
  async #closeRetiring (): Promise<void> {
    const left = [...this.#retiring].filter((s) => !s.closed)
    if (left.length === 0) return
    const timer = setTimeout(() => { for (const s of left) s.destroy() }, this.#o.stopTimeoutMs)
    timer.unref()
    await Promise.all(left.map((s) => once(s, 'close')))
    clearTimeout(timer)
  }

  // The two processes must agree on the streams per agent: warn once when this agent takes fewer.
  #checkServerMaxStreams (headers: IncomingHttpHeaders): void {
    const serverMax = advertisedMaxStreams(headers)
    const own = this.#o.upstreamMaxSockets
    if (serverMax === undefined || serverMax <= own || this.#warnedMaxStreams === serverMax) return
    this.#warnedMaxStreams = serverMax
    this.#log.warn({ serverMaxStreams: serverMax, upstreamMaxSockets: own },
      `the server allows ${serverMax} streams per agent, but this agent keeps at most ${own} upstream connections: streams beyond ${own} ` +
      `are refused and answered 503 by the server; raise ${opt('upstreamMaxSockets')} to ${serverMax}, or lower the server's --max-streams-per-agent`)
  }

  // A refusal quotes the server's (or a proxy's) body, which may echo the request: never log the join token.
  #redact (text: string): string {
    return text.split(this.#o.token).join('[redacted]')
  }

  // A cancellable delay: stop() resolves it early.
  #sleep (ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#wait = undefined
        resolve()
      }, ms)
      this.#wait = {
        timer,
        resolve: () => {
          clearTimeout(timer)
          this.#wait = undefined
          resolve()
        }
      }
    })
  }
}

/** The server's `tower-max-streams` from the 101; undefined when absent or not a plain positive integer. */
function advertisedMaxStreams (headers: IncomingHttpHeaders): number | undefined {
  const v = headers[HEADER_MAX_STREAMS]
  if (typeof v !== 'string') return undefined
  const text = v.trim()
  return /^[1-9][0-9]{0,9}$/.test(text) ? Number(text) : undefined
}

function seconds (ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`
}
