/**
 * TowerServer: the agent endpoint plus one listener per registered cluster,
 * kept in step with the registry. Clusters added or removed with the CLI
 * while the server runs are picked up from the state directory.
 */
import { once } from 'node:events'
import type https from 'node:https'
import type { AddressInfo } from 'node:net'
import type { Logger } from '@tower/mux'
import { createAgentEndpoint } from './agent-endpoint.ts'
import { ClusterListener } from './cluster-listener.ts'
import { verifyServerConfig, type ServerOptions } from './config.ts'
import type { Registry } from './registry.ts'
import { TunnelPool } from './tunnels.ts'

/** Runs the Tower server on a registry. */
export class TowerServer {
  readonly #opts: ServerOptions
  readonly #registry: Registry
  readonly #log: Logger
  readonly #tunnels = new TunnelPool()
  readonly #listeners = new Map<string, ClusterListener>()
  readonly #ports = new Map<string, number>()
  #endpoint: https.Server | undefined
  #syncing: Promise<void> = Promise.resolve()
  #statusTimer: NodeJS.Timeout | undefined
  #stopped = false

  constructor (registry: Registry, opts: Partial<ServerOptions> & { logger: Logger }) {
    this.#opts = verifyServerConfig(opts)
    this.#registry = registry
    this.#log = this.#opts.logger.child({ component: 'server' })
  }

  /** The live tunnels (for tests and metrics). */
  get tunnels (): TunnelPool { return this.#tunnels }

  /** Port of the agent endpoint, once started. */
  get agentPort (): number {
    return (this.#endpoint?.address() as AddressInfo | null)?.port ?? 0
  }

  /** Bound port of a cluster, once its listener is up. */
  clusterPort (name: string): number | undefined {
    return this.#ports.get(name)
  }

  /** Resolves once listeners match the registry as of now (after an add or remove). */
  async synced (): Promise<void> {
    this.#syncing = this.#syncing.then(() => this.#sync())
    await this.#syncing
  }

  /** Binds the agent endpoint and every cluster port. */
  async start (): Promise<void> {
    const tls = this.#registry.serverCertificate()
    this.#endpoint = createAgentEndpoint({ registry: this.#registry, tunnels: this.#tunnels, tls, limits: this.#opts.agentEndpoint, logger: this.#opts.logger })
    this.#endpoint.listen({ host: this.#opts.listenHost, port: this.#opts.listenPort })
    await Promise.race([once(this.#endpoint, 'listening'), once(this.#endpoint, 'error').then(([err]) => { throw err })])
    this.#log.info({ host: this.#opts.listenHost, port: this.agentPort }, 'agent endpoint listening')
    await this.#sync()
    this.#registry.on('change', () => { this.#syncing = this.#syncing.then(() => this.#sync()) })
    this.#registry.watch()
    this.#tunnels.on('change', () => this.#scheduleStatus())
    this.#writeStatus()
  }

  /** Closes every session, listener and the endpoint. */
  async stop (): Promise<void> {
    this.#stopped = true
    this.#registry.close()
    await this.#syncing
    clearTimeout(this.#statusTimer)
    // Listeners first: that ends caller connections and pooled streams, so
    // the sessions' GoAway finds little left to drain.
    await Promise.all([...this.#listeners.values()].map((l) => l.close()))
    this.#listeners.clear()
    await this.#tunnels.closeAll(this.#opts.drainTimeoutMs)
    if (this.#endpoint !== undefined) {
      const closed = once(this.#endpoint, 'close')
      this.#endpoint.close()
      this.#endpoint.closeAllConnections()
      await closed
    }
    this.#log.info({}, 'server stopped')
  }

  async #sync (): Promise<void> {
    if (this.#stopped) return
    const wanted = new Map(this.#registry.clusters().map((c) => [c.name, c]))
    for (const [name, listener] of this.#listeners) {
      const c = wanted.get(name)
      if (c === undefined || c.mode !== listener.mode || (c.port !== 0 && c.port !== this.#ports.get(name))) {
        this.#listeners.delete(name)
        this.#ports.delete(name)
        await listener.close()
        if (c === undefined) {
          this.#tunnels.closeCluster(name)
          this.#log.info({ cluster: name }, 'cluster removed; listener and agents closed')
        }
      }
    }
    const tls = this.#registry.serverCertificate()
    for (const c of wanted.values()) {
      if (this.#listeners.has(c.name)) continue
      const listener = new ClusterListener({ cluster: c, registry: this.#registry, tunnels: this.#tunnels, tls, caPem: this.#registry.ca.certPem, host: this.#opts.clusterHost, limits: this.#opts.caller, logger: this.#opts.logger })
      try {
        const port = await listener.listen()
        this.#listeners.set(c.name, listener)
        this.#ports.set(c.name, port)
        if (c.port === 0) this.#registry.recordPort(c.name, port)
      } catch (err) {
        this.#log.error({ err, cluster: c.name, port: c.port }, 'cannot open cluster port; the cluster is unreachable until this is fixed')
      }
    }
    this.#scheduleStatus()
  }

  #scheduleStatus (): void {
    if (this.#statusTimer !== undefined || this.#stopped) return
    this.#statusTimer = setTimeout(() => { this.#statusTimer = undefined; this.#writeStatus() }, 100)
    this.#statusTimer.unref()
  }

  #writeStatus (): void {
    const clusters: Record<string, unknown> = {}
    for (const c of this.#registry.clusters()) {
      clusters[c.name] = {
        port: this.#ports.get(c.name) ?? null,
        listening: this.#listeners.has(c.name),
        agents: this.#tunnels.tunnels(c.name).map((t) => ({ id: t.agentId, remote: t.remote, since: new Date(t.since).toISOString() }))
      }
    }
    try {
      this.#registry.writeStatus({ pid: process.pid, updatedAt: new Date().toISOString(), agentPort: this.agentPort, clusters })
    } catch (err) {
      this.#log.warn({ err }, 'cannot write status.json')
    }
  }
}
