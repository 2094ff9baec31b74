/**
 * TowerServer: the agent endpoint plus one listener per registered cluster,
 * kept in step with the registry. Clusters added or removed with the CLI
 * while the server runs are picked up from the state directory.
 *
 * On every registry change the listeners are synced (one sync at a time; a
 * failed sync is logged and the next still runs) and tunnels whose join
 * token no longer holds are destroyed: a removed cluster's at once, a
 * rotated-away token's once its grace (if any) is over. The server
 * certificate is checked for renewal periodically and on every change (a
 * backend whose SANs grow with its clusters re-issues it then), and a
 * renewed one is loaded into every running TLS listener.
 *
 * When the first agent of a proxy-mode cluster connects, its Kubernetes
 * version is read through the tunnel (VersionProbe). What the server knows
 * (ports, agents, versions, when the last agent left) goes to the registry's
 * reportStatus, debounced.
 */
import { once } from 'node:events'
import type https from 'node:https'
import { Registry } from 'prom-client'
import type { AddressInfo } from 'node:net'
import type { Logger } from '@tower/mux'
import { agentEndpoint } from './agent-endpoint.ts'
import { ClusterListener } from './cluster-listener.ts'
import { verifyServerConfig, type ServerOptions } from './config.ts'
import type { ListenerSockets } from './listener-guard.ts'
import type { ClusterRegistry, ClusterRuntimeStatus, ServerStatusReport } from './registry/api.ts'
import { TunnelPool } from './tunnels.ts'
import { ServerMetrics } from './metrics.ts'
import type { Readiness } from '@tower/transport'
import { VersionProbe } from './version-probe.ts'
import { WatchDrain } from './drain.ts'

/** Least time between two writes of status.json, in milliseconds. */
const STATUS_MIN_INTERVAL_MS = 100

/** status.json is written at most once per this many times the last write took. */
const STATUS_WRITE_SHARE = 20

/** While draining, how often the open streams are counted, in milliseconds. */
const DRAIN_POLL_MS = 100

/** What a drain did, for the log line and the tests. */
export interface DrainResult {
  /** From the start of the drain to the end of stop(), in milliseconds. */
  ms: number
  /** Agent sessions sent GoAway. */
  sessions: number
  /** Watches ended cleanly. */
  watches: number
  /** Streams still open at the deadline (reset), upgraded connections ended cleanly not included. */
  reset: number
  /** Upgraded connections (exec, attach, port-forward) open at the deadline and ended at a frame boundary. */
  upgrades: number
  /** Of those, how many got the drain Status on their error channel (Kubernetes channel protocols). */
  upgradesWithStatus: number
  /** Upgraded connections reset at the deadline (unknown or broken framing, or a frame that did not complete in time). */
  upgradesReset: number
}

/** On stop, how long closed agent sessions may finish their WebSocket close handshake, in milliseconds (the mux's own grace for a transport to close). */
const CLOSE_HANDSHAKE_GRACE_MS = 2000

/** Runs the Tower server on a registry. */
export class TowerServer {
  readonly #opts: ServerOptions
  readonly #registry: ClusterRegistry
  readonly #log: Logger
  readonly #tunnels = new TunnelPool()
  readonly #listeners = new Map<string, ClusterListener>()
  readonly #ports = new Map<string, number>()
  readonly #probe: VersionProbe
  // Per cluster: the Kubernetes version last read, and the agent count last seen (to tell a connect).
  readonly #versions = new Map<string, string>()
  readonly #agentCounts = new Map<string, number>()
  #endpoint: https.Server | undefined
  #endpointSockets: ListenerSockets | undefined
  #certPem = ''
  #syncing: Promise<void> = Promise.resolve()
  #statusTimer: NodeJS.Timeout | undefined
  #certTimer: NodeJS.Timeout | undefined
  readonly #metrics: ServerMetrics
  #claimed = false
  #stopped = false
  #draining = false
  // how long the last status.json write took, in milliseconds
  #statusWriteMs = 0
  readonly #watches = new WatchDrain()
  #firstSync = false
  readonly #onChange = (): void => {
    this.#evictInvalid()
    this.#checkCertificate()
    void this.#queueSync()
  }

  readonly #onTunnels = (cluster: string): void => {
    this.#probeConnected(cluster)
    this.#scheduleStatus()
  }

  constructor (registry: ClusterRegistry, opts: Partial<ServerOptions> & { logger: Logger }) {
    this.#opts = verifyServerConfig(opts)
    this.#registry = registry
    this.#log = this.#opts.logger.child({ component: 'server' })
    this.#metrics = new ServerMetrics(this.#opts.metricsRegistry ?? new Registry())
    this.#metrics.bind({
      clusters: () => this.#registry.clusters().map((c) => c.name),
      tunnels: this.#tunnels,
      clusterTraffic: (name) => this.#listeners.get(name)?.traffic,
      agentEndpointUp: () => this.#endpoint?.listening === true,
      clusterListeners: () => this.#listeners.size,
      registrySynced: () => this.#registrySynced(),
      draining: () => this.#draining
    })
    this.#probe = new VersionProbe({
      tunnels: this.#tunnels,
      timeoutMs: this.#opts.versionProbeTimeoutMs,
      logger: this.#opts.logger,
      onVersion: (cluster, version) => {
        if (this.#stopped || this.#registry.find(cluster) === undefined) return
        this.#versions.set(cluster, version)
        this.#scheduleStatus()
      }
    })
  }

  /** The server's metrics (its prom-client Registry is `metrics.registry`). */
  get metrics (): ServerMetrics { return this.#metrics }

  /**
   * Marks the server draining (or not): `/readyz` then answers 503, so it is
   * taken out of Service endpoints. Called by the drain on SIGTERM.
   */
  setDraining (draining: boolean): void {
    this.#draining = draining
  }

  /**
   * Ready: the agent endpoint listens, the cluster ports have been opened
   * once (a port that failed to bind is logged and counted, not readiness),
   * the registry is synced, and the server is neither draining nor stopped.
   * One member's tunnel state is never readiness.
   */
  readiness (): Readiness {
    const reasons: string[] = []
    if (this.#stopped) reasons.push('stopped')
    if (this.#endpoint?.listening !== true) reasons.push('agent endpoint not listening')
    if (!this.#firstSync) reasons.push('cluster ports not opened yet')
    if (!this.#registrySynced()) reasons.push('registry not synced')
    if (this.#draining) reasons.push('draining')
    return { ready: reasons.length === 0, reasons }
  }

  /** The live tunnels (for tests and metrics). */
  get tunnels (): TunnelPool { return this.#tunnels }

  /** Port of the agent endpoint, once started. */
  get agentPort (): number {
    return (this.#endpoint?.address() as AddressInfo | null)?.port ?? 0
  }

  /** Sockets open on the agent endpoint now, agent sessions included (for tests and metrics). */
  get agentEndpointConnections (): number { return this.#endpointSockets?.size ?? 0 }

  /** Bound port of a cluster, once its listener is up. */
  clusterPort (name: string): number | undefined {
    return this.#ports.get(name)
  }

  /** Sockets open on a cluster's port now (for tests and metrics). */
  clusterConnections (name: string): number | undefined {
    return this.#listeners.get(name)?.connections
  }

  /** Resolves once listeners match the registry as of now (after an add or remove). */
  async synced (): Promise<void> {
    await this.#queueSync()
  }

  /**
   * Claims the state directory (TOWER_ERR_SERVER_RUNNING when another live
   * server holds it), then binds the agent endpoint and every cluster port.
   */
  async start (): Promise<void> {
    await this.#registry.claimServer()
    this.#claimed = true
    try {
      const tls = this.#registry.serverCertificate()
      this.#certPem = tls.certPem
      const endpoint = agentEndpoint({ registry: this.#registry, tunnels: this.#tunnels, tls, limits: this.#opts.agentEndpoint, metrics: this.#metrics, draining: () => this.#draining, logger: this.#opts.logger })
      this.#endpoint = endpoint.server
      this.#endpointSockets = endpoint.sockets
      this.#endpoint.listen({ host: this.#opts.listenHost, port: this.#opts.listenPort })
      await Promise.race([once(this.#endpoint, 'listening'), once(this.#endpoint, 'error').then(([err]) => { throw err })])
    } catch (err) {
      this.#endpoint?.close()
      this.#endpoint = undefined
      await this.#registry.releaseServer()
      this.#claimed = false
      throw err
    }
    this.#log.info({ host: this.#opts.listenHost, port: this.agentPort }, 'agent endpoint listening')
    await this.#queueSync()
    this.#firstSync = true
    this.#registry.on('change', this.#onChange)
    this.#tunnels.on('change', this.#onTunnels)
    this.#certTimer = setInterval(() => this.#checkCertificate(), this.#opts.certCheckIntervalMs)
    this.#certTimer.unref()
    this.#writeStatus()
  }

  /**
   * Graceful drain (SIGTERM), then stop():
   *  1. draining: /readyz says so, new agents get 503, and the report says
   *     draining, so this replica's EndpointSlices turn not ready;
   *  2. GoAway on every agent session: the agents reconnect at once through
   *     the Service to another replica, while the streams already open go on;
   *  3. in-flight requests finish, until only watches and upgraded
   *     connections are left or the drain timeout (drainTimeoutMs) is reached;
   *  4. watches end cleanly (chunked terminator, END_STREAM), so informers
   *     re-watch from their resourceVersion on another replica;
   *  5. requests and upgraded connections (exec, port-forward) go on until
   *     they end or the deadline, when upgraded connections are ended at a
   *     frame boundary, with a Status where the protocol allows
   *     (upgrade-drain.ts);
   *  6. stop(): streams still open are reset at once.
   */
  async drain (): Promise<DrainResult> {
    const started = Date.now()
    if (this.#stopped) return { ms: 0, sessions: 0, watches: 0, reset: 0, upgrades: 0, upgradesWithStatus: 0, upgradesReset: 0 }
    this.setDraining(true)
    this.#writeStatus()
    const sessions = this.#tunnels.clusters().flatMap((c) => this.#tunnels.tunnels(c)).map((t) => t.session)
    this.#log.info({ sessions: sessions.length, watches: this.#watches.size, upgrades: this.#watches.upgrades, timeoutMs: this.#opts.drainTimeoutMs }, 'draining: agents sent elsewhere, in-flight requests finishing')
    for (const s of sessions) if (!s.closed) s.close()
    const deadline = started + this.#opts.drainTimeoutMs
    // Idle keep-alive streams count as open but serve nothing: closed at every look.
    const open = (): number => {
      for (const l of this.#listeners.values()) l.dropIdleStreams()
      return sessions.reduce((n, s) => n + (s.closed ? 0 : s.numStreams), 0)
    }
    // An exec may run to the deadline: the watches need not wait for it.
    while (Date.now() < deadline && open() > this.#watches.size + this.#watches.upgrades) await new Promise((resolve) => setTimeout(resolve, DRAIN_POLL_MS))
    const watches = this.#watches.endAll()
    while (Date.now() < deadline && open() > 0) await new Promise((resolve) => setTimeout(resolve, DRAIN_POLL_MS))
    const ups = this.#watches.upgrades > 0 ? await this.#watches.endUpgrades() : { ended: 0, withStatus: 0, reset: 0 }
    const reset = open()
    await this.stop()
    const result = { ms: Date.now() - started, sessions: sessions.length, watches, reset, upgrades: ups.ended, upgradesWithStatus: ups.withStatus, upgradesReset: ups.reset }
    this.#log.info(result, reset + ups.reset > 0 ? 'drained; streams still open at the deadline were reset' : 'drained')
    return result
  }

  /** Closes every session, listener and the endpoint, and gives up the state directory. */
  async stop (): Promise<void> {
    if (this.#stopped) return
    this.#stopped = true
    this.#registry.off('change', this.#onChange)
    this.#tunnels.off('change', this.#onTunnels)
    this.#probe.close()
    clearInterval(this.#certTimer)
    await this.#syncing
    clearTimeout(this.#statusTimer)
    // Listeners first: that ends caller connections and pooled streams, so
    // the sessions' GoAway finds little left to drain. After drain() the
    // deadline has passed: what is left is reset at once.
    await Promise.all([...this.#listeners.values()].map((l) => l.close()))
    this.#listeners.clear()
    this.#ports.clear()
    await this.#tunnels.closeAll(this.#draining ? 0 : this.#opts.drainTimeoutMs)
    if (this.#endpoint !== undefined) {
      const closed = once(this.#endpoint, 'close')
      this.#endpoint.close()
      this.#endpoint.closeAllConnections()
      // Closed sessions are still exchanging WebSocket Close frames: let them
      // finish (bounded), so agents see a clean close and not a 1006.
      await this.#endpointSockets?.settled(CLOSE_HANDSHAKE_GRACE_MS)
      this.#endpointSockets?.destroyAll()
      await closed
    }
    if (this.#claimed) {
      this.#writeStatus(true)
      await this.#registry.releaseServer()
      this.#claimed = false
    }
    await this.#registry.close()
    this.#log.info({}, 'server stopped')
  }

  // Chains one sync after the previous; a failure is logged and never breaks the chain.
  #queueSync (): Promise<void> {
    this.#syncing = this.#syncing.then(() => this.#sync()).catch((err: unknown) => {
      this.#log.error({ err }, 'cannot bring the cluster ports in line with the registry; retrying at the next change')
    })
    return this.#syncing
  }

  // Tunnels whose cluster is gone or whose token no longer holds are destroyed at once.
  #evictInvalid (): void {
    if (this.#stopped) return
    const evicted = this.#tunnels.evict((cluster, t) => !this.#registry.agentCredentialValid(cluster, t.credential))
    for (const { cluster, tunnel } of evicted) {
      const reason = this.#registry.find(cluster) === undefined ? 'cluster removed' : 'join token rotated'
      this.#log.warn({ cluster, agentId: tunnel.agentId, remote: tunnel.remote, reason }, 'agent disconnected: its join token is no longer valid')
    }
  }

  async #sync (): Promise<void> {
    if (this.#stopped) return
    const wanted = new Map(this.#registry.clusters().map((c) => [c.name, c]))
    this.#metrics.setClusters(wanted.keys())
    for (const name of [...this.#versions.keys(), ...this.#agentCounts.keys()]) {
      if (!wanted.has(name)) this.#forget(name)
    }
    // Removed or changed listeners close first and together, before anything that may fail.
    const closing: Array<Promise<void>> = []
    for (const [name, listener] of this.#listeners) {
      const c = wanted.get(name)
      if (c === undefined || c.mode !== listener.mode || (c.port !== 0 && c.port !== this.#ports.get(name))) {
        this.#listeners.delete(name)
        this.#ports.delete(name)
        closing.push(listener.close().then(() => {
          if (c === undefined) this.#log.info({ cluster: name }, 'cluster removed; listener closed')
        }))
      }
    }
    await Promise.all(closing)
    if ([...wanted.keys()].every((name) => this.#listeners.has(name))) {
      this.#scheduleStatus()
      return
    }
    const tls = this.#registry.serverCertificate()
    const caPem = this.#registry.ca.certPem
    const chosen = new Map<string, number>()
    for (const c of wanted.values()) {
      if (this.#listeners.has(c.name) || this.#stopped) continue
      const listener = new ClusterListener({ cluster: c, registry: this.#registry, tunnels: this.#tunnels, tls, caPem, host: this.#opts.clusterHost, limits: this.#opts.caller, metrics: this.#metrics, audit: this.#opts.audit, watches: this.#watches, logger: this.#opts.logger })
      try {
        const port = await listener.listen()
        this.#listeners.set(c.name, listener)
        this.#ports.set(c.name, port)
        if (c.port === 0) chosen.set(c.name, port)
      } catch (err) {
        this.#log.error({ err, cluster: c.name, port: c.port }, 'cannot open cluster port; the cluster is unreachable until this is fixed')
      }
    }
    if (chosen.size > 0) this.#registry.recordPorts(chosen)
    this.#scheduleStatus()
  }

  #registrySynced (): boolean {
    return this.#claimed && (this.#registry.synced?.() ?? true)
  }

  // A cluster that left the registry: nothing about it is kept.
  #forget (name: string): void {
    this.#versions.delete(name)
    this.#agentCounts.delete(name)
    this.#tunnels.forget(name)
  }

  // Probes a proxy-mode cluster whose agent count went up from zero, or went
  // up while its version is still unknown (an earlier probe failed). Only the
  // cluster that changed is looked at: with thousands of agents connecting,
  // a scan of every cluster per connect took 15 % of the server's CPU.
  #probeConnected (name: string): void {
    if (this.#stopped) return
    const n = this.#tunnels.count(name)
    const before = this.#agentCounts.get(name) ?? 0
    if (n === 0) this.#agentCounts.delete(name)
    else this.#agentCounts.set(name, n)
    if (n <= before) return
    if (this.#registry.find(name)?.mode !== 'proxy') return
    if (before === 0 || !this.#versions.has(name)) this.#probe.probe(name)
  }

  // Loads a renewed server certificate into every running TLS listener.
  #checkCertificate (): void {
    if (this.#stopped) return
    try {
      const tls = this.#registry.serverCertificate()
      if (tls.certPem === this.#certPem) return
      this.#endpoint?.setSecureContext({ cert: tls.certPem, key: tls.keyPem })
      for (const listener of this.#listeners.values()) listener.setCertificate(tls)
      this.#certPem = tls.certPem
      this.#log.info({ listeners: this.#listeners.size + 1 }, 'server certificate reloaded')
    } catch (err) {
      this.#log.error({ err }, 'cannot renew or reload the server certificate; listeners keep the current one')
    }
  }

  // Coalesces status writes: at most one per STATUS_MIN_INTERVAL_MS, and never
  // more than one per STATUS_WRITE_SHARE × the last write's duration, so that
  // with thousands of clusters changing (a fleet reconnecting) the file costs
  // the event loop at most about 5 %.
  #scheduleStatus (): void {
    if (this.#statusTimer !== undefined || this.#stopped) return
    const delay = Math.max(STATUS_MIN_INTERVAL_MS, this.#statusWriteMs * STATUS_WRITE_SHARE)
    this.#statusTimer = setTimeout(() => {
      this.#statusTimer = undefined
      const started = performance.now()
      this.#writeStatus()
      this.#statusWriteMs = performance.now() - started
    }, delay)
    this.#statusTimer.unref()
  }

  #writeStatus (stopped = false): void {
    const clusters: Record<string, ClusterRuntimeStatus> = Object.create(null)
    for (const c of this.#registry.clusters()) {
      const status: ClusterRuntimeStatus = {
        port: stopped ? null : this.#ports.get(c.name) ?? null,
        listening: !stopped && this.#listeners.has(c.name),
        agents: stopped ? [] : this.#tunnels.tunnels(c.name).map((t) => ({ id: t.agentId, remote: t.remote, since: new Date(t.since).toISOString() }))
      }
      const version = this.#versions.get(c.name)
      if (version !== undefined) status.kubernetesVersion = version
      const left = this.#tunnels.lastLeftAt(c.name)
      if (left !== undefined && status.agents.length === 0) status.lastAgentLeftAt = new Date(left).toISOString()
      clusters[c.name] = status
    }
    const now = new Date().toISOString()
    const report: ServerStatusReport = { pid: process.pid, updatedAt: now, agentPort: stopped ? null : this.agentPort, ...(stopped ? { stoppedAt: now } : {}), ...(this.#draining ? { draining: true } : {}), clusters }
    this.#registry.reportStatus(report)
  }
}
