/**
 * ClusterController: the writing half of the kubernetes backend. Every
 * replica runs one; only the one that leads (holds the Lease, or every one
 * when leader election is off) reconciles. Cache events (a Cluster, or one
 * of Tower's Secrets or Services changed) queue the cluster's name in a
 * keyed work queue, which dedupes, retries with backoff and bounds the
 * concurrency; a periodic resync and taking the lead queue every cluster.
 *
 * report() receives what the server knows about its agents. It only stores
 * the report and queues the clusters whose view changed, at most once per
 * cluster per second, so a flapping agent costs one write a second, not one
 * per event.
 */
import { InvalidArgumentError, type Logger } from '@tower/mux'
import { parsePortRange, type AgentStatus, type ClusterRegistry, type ClusterRuntimeStatus, type ServerStatusReport } from '@tower/server'
import type { ResourceCache } from './cache.ts'
import type { ReplicaSettings } from './endpoint-slices.ts'
import { FederationSync, type FederationSettings } from './federation-sync.ts'
import type { KubeContext } from './kube-context.ts'
import { LeaderElector } from './leader-election.ts'
import { CLUSTER_LABEL } from './names.ts'
import { PortAllocator } from './port-allocator.ts'
import { Reconciler, type RuntimeView } from './reconciler.ts'
import { SecretWriter } from './secrets.ts'
import { StatusWriter } from './status-writer.ts'
import { WorkQueue } from './work-queue.ts'

/** Settings of the controller (from the CLI's flags). */
export interface ControllerSettings {
  /** --port-range: cluster ports are allocated from it (e.g. 6000-6999; not the ephemeral 0). */
  portRange: string
  /** --kubesphere-compat: also write the caller kubeconfig into spec.connection.kubeconfig. */
  kubesphereCompat: boolean
  /** --leader-elect: act only while holding the Lease; false = act at once (one replica, tests). */
  leaderElect: boolean
  /** This replica's identity in the Lease (the Pod name). */
  identity: string
  /** Lease duration, in milliseconds (whole seconds, at least 3000). */
  leaseDurationMs: number
  /** Validity of the issued caller kubeconfig's client certificate, in days. */
  kubeconfigValidityDays: number
  /** Every cluster is queued again this often, in milliseconds. Default 300 000. */
  resyncIntervalMs?: number
  /** Reconciles running at once. Default 4. */
  concurrency?: number
  /** Where this replica runs, for its EndpointSlices (read by the registry's claimServer). */
  replica?: ReplicaSettings
  /** The federation join (--join-kubefed, --join-karmada); off when absent. */
  federation?: FederationSettings
}

/** Options of {@link ClusterController}. */
export interface ClusterControllerOptions {
  context: KubeContext
  cache: ResourceCache
  registry: ClusterRegistry
  settings: ControllerSettings
  /** Agents the other replicas hold (their EndpointSlices); absent: this replica's report is the whole view. */
  peers?: PeerAgents
  logger: Logger
}

/**
 * The other replicas' agents, for AgentAvailable and the agents annotation:
 * the leader's own report alone would call a cluster unavailable whenever
 * its agents happen to sit on another replica.
 */
export interface PeerAgents {
  /** Agents other live replicas hold for the cluster. */
  agents: (cluster: string) => AgentStatus[]
  /** Calls `listener` with a cluster's name when another replica's view of it changed; returns the unsubscribe. */
  subscribe: (listener: (cluster: string) => void) => () => void
}

/** Shortest gap between two report-driven reconciles of one cluster, in milliseconds. */
const REPORT_MIN_INTERVAL_MS = 1000
/** Default of ControllerSettings.resyncIntervalMs. */
const DEFAULT_RESYNC_MS = 300_000
/** How soon to look again while the cache has not listed everything once, in milliseconds. */
const UNSYNCED_RETRY_MS = 1000
/** Most clusters whose runtime view is kept. */
const MAX_RUNTIME_VIEWS = 10_000

/** See the module comment. */
export class ClusterController {
  readonly #cache: ResourceCache
  readonly #log: Logger
  readonly #elector: LeaderElector | undefined
  readonly #queue: WorkQueue
  readonly #reconciler: Reconciler
  readonly #resyncMs: number
  readonly #federation: FederationSync | undefined
  /** The last report's view per cluster; undefined until the first report. */
  #runtime: Map<string, RuntimeView> | undefined
  /** When each cluster was last queued because of a report (ms since epoch). */
  readonly #reportQueuedAt = new Map<string, number>()
  #resync: NodeJS.Timeout | undefined
  #started = false
  readonly #peers: PeerAgents | undefined
  #unsubscribePeers: (() => void) | undefined
  /** The orphan clean-up of the last resync, while it runs. */
  #collecting: Promise<void> | undefined
  readonly #onCluster = (name: string): void => { this.#queue.add(name) }
  readonly #onOwned = (kind: 'secret' | 'service') => (name: string): void => {
    const obj = kind === 'secret' ? this.#cache.secret(name) : this.#cache.service(name)
    const labels = obj?.metadata?.labels
    // Deleted objects are gone from the cache; their Cluster's next event or the resync repairs them.
    if (labels !== undefined && Object.hasOwn(labels, CLUSTER_LABEL)) this.#queue.add(String(labels[CLUSTER_LABEL]))
  }

  readonly #onSecret = this.#onOwned('secret')
  readonly #onService = this.#onOwned('service')

  constructor (opts: ClusterControllerOptions) {
    const s = opts.settings
    const range = parsePortRange(s.portRange)
    if (range.first === 0) throw new InvalidArgumentError('--port-range 0 (ports the OS chooses) does not work with --registry kubernetes: each cluster\'s Service needs its port up front; give a range such as 6000-6999')
    if (!Number.isSafeInteger(s.kubeconfigValidityDays) || s.kubeconfigValidityDays < 1 || s.kubeconfigValidityDays > 3650) {
      throw new InvalidArgumentError(`kubeconfigValidityDays must be an integer in 1-3650, got ${String(s.kubeconfigValidityDays)}`)
    }
    this.#resyncMs = s.resyncIntervalMs ?? DEFAULT_RESYNC_MS
    if (!Number.isSafeInteger(this.#resyncMs) || this.#resyncMs < 1000) throw new InvalidArgumentError('resyncIntervalMs must be an integer of at least 1000')
    this.#cache = opts.cache
    this.#peers = opts.peers
    this.#log = opts.logger.child({ component: 'cluster-controller' })
    const reserved = new Set<number>()
    const listenPort = opts.registry.settings.listenPort
    if (typeof listenPort === 'number' && listenPort > 0) reserved.add(listenPort)
    const federation = s.federation === undefined ? undefined
      : new FederationSync({ hostKc: opts.context.kc, registry: opts.registry, settings: s.federation, onChange: (name) => { this.#queue.add(name) }, logger: opts.logger })
    this.#federation = federation?.enabled === true ? federation : undefined
    this.#reconciler = new Reconciler({
      context: opts.context,
      cache: opts.cache,
      registry: opts.registry,
      ports: new PortAllocator({ context: opts.context, range, reserved, logger: opts.logger }),
      status: new StatusWriter({ context: opts.context, logger: opts.logger }),
      secrets: new SecretWriter(opts.context),
      kubesphereCompat: s.kubesphereCompat,
      kubeconfigValidityDays: s.kubeconfigValidityDays,
      runtime: (name) => this.#runtimeOf(name),
      onPortFreed: () => { this.#queueAll() },
      federation: this.#federation,
      logger: opts.logger
    })
    this.#queue = new WorkQueue({ handler: (key) => this.#handle(key), concurrency: s.concurrency, logger: opts.logger })
    if (s.leaderElect) {
      this.#elector = new LeaderElector({ context: opts.context, identity: s.identity, leaseDurationMs: s.leaseDurationMs, logger: opts.logger })
      this.#elector.on('leading', () => { this.#queueAll() })
      this.#elector.on('lost', () => { this.#log.warn({}, 'lost the lease; reconciling stops until it is won again') })
    }
  }

  /** True while this replica writes (holds the Lease, or leader election is off). */
  get leading (): boolean {
    return this.#started && (this.#elector === undefined || this.#elector.leading)
  }

  /** Starts watching the cache and (once leading) reconciling. The cache must be started by the caller. */
  async start (): Promise<void> {
    if (this.#started) return
    this.#started = true
    this.#cache.on('cluster', this.#onCluster)
    this.#cache.on('secret', this.#onSecret)
    this.#cache.on('service', this.#onService)
    this.#unsubscribePeers = this.#peers?.subscribe((name) => { if (this.leading) this.#queue.add(name) })
    this.#resync = setInterval(() => { this.#resyncNow() }, this.#resyncMs)
    this.#resync.unref()
    this.#federation?.start()
    if (this.#elector !== undefined) this.#elector.start()
    else this.#queueAll()
    this.#log.info({ leaderElect: this.#elector !== undefined }, 'cluster controller started')
  }

  /** Stops reconciling, waits for running reconciles, then releases the Lease. */
  async stop (): Promise<void> {
    if (!this.#started) return
    this.#cache.off('cluster', this.#onCluster)
    this.#cache.off('secret', this.#onSecret)
    this.#cache.off('service', this.#onService)
    this.#unsubscribePeers?.()
    clearInterval(this.#resync)
    await this.#queue.stop()
    await this.#federation?.stop()
    await this.#collecting
    await this.#elector?.stop()
    this.#started = false
  }

  /** The running server's report: AgentAvailable, kubernetesVersion and the agents annotation follow it. */
  report (status: ServerStatusReport): void {
    // A stopping server reports its agents gone; the replica that takes over will report its own.
    if (typeof status !== 'object' || status === null || status.stoppedAt !== undefined) return
    const clusters = typeof status.clusters === 'object' && status.clusters !== null ? status.clusters : {}
    const next = new Map<string, RuntimeView>()
    for (const name of Object.keys(clusters)) {
      if (next.size >= MAX_RUNTIME_VIEWS) break
      next.set(name, viewOf(clusters[name] as ClusterRuntimeStatus))
    }
    const prev = this.#runtime
    this.#runtime = next
    const changed = new Set<string>()
    for (const [name, view] of next) {
      if (prev === undefined || JSON.stringify(prev.get(name)) !== JSON.stringify(view)) changed.add(name)
    }
    for (const name of prev?.keys() ?? []) if (!next.has(name)) changed.add(name)
    if (prev === undefined) for (const c of this.#cache.clusters()) changed.add(nameOf(c))
    const now = Date.now()
    for (const name of changed) {
      if (name === '') continue
      const last = this.#reportQueuedAt.get(name) ?? 0
      // A run is already scheduled (at `last`): it reads the newest view then.
      if (last > now) continue
      const wait = last + REPORT_MIN_INTERVAL_MS - now
      if (wait > 0) {
        this.#queue.addAfter(name, wait)
        this.#reportQueuedAt.set(name, last + REPORT_MIN_INTERVAL_MS)
      } else {
        this.#queue.add(name)
        this.#reportQueuedAt.set(name, now)
      }
    }
    if (this.#reportQueuedAt.size > MAX_RUNTIME_VIEWS) {
      for (const [name, at] of this.#reportQueuedAt) if (at + REPORT_MIN_INTERVAL_MS < now) this.#reportQueuedAt.delete(name)
    }
  }

  #runtimeOf (name: string): RuntimeView | undefined {
    const all = this.#runtime
    if (all === undefined) return undefined
    const own = all.get(name) ?? { agents: [] }
    return withPeers(own, this.#peers?.agents(name) ?? [])
  }

  #resyncNow (): void {
    this.#queueAll()
    if (!this.leading || this.#collecting !== undefined) return
    this.#collecting = this.#reconciler.collectOrphans()
      .catch((err: unknown) => { this.#log.warn({ err }, 'orphan clean-up failed; the next resync retries') })
      .finally(() => { this.#collecting = undefined })
  }

  #queueAll (): void {
    if (!this.leading) return
    for (const c of this.#cache.clusters()) {
      const name = nameOf(c)
      if (name !== '') this.#queue.add(name)
    }
  }

  async #handle (name: string): Promise<{ requeueAfterMs?: number } | undefined> {
    if (!this.leading) return undefined
    // Never act on a partial view: a cluster missing from an unsynced cache is not a deleted one.
    if (!this.#cache.synced) return { requeueAfterMs: UNSYNCED_RETRY_MS }
    return await this.#reconciler.reconcile(name)
  }
}

function nameOf (obj: object): string {
  const n = (obj as { metadata?: { name?: unknown } }).metadata?.name
  return typeof n === 'string' ? n : ''
}

/**
 * A cluster's view across replicas: this replica's agents plus the others'
 * (deduplicated by agent id). With any agent anywhere, no "last agent left".
 */
export function withPeers (own: RuntimeView, peers: readonly AgentStatus[]): RuntimeView {
  if (peers.length === 0) return own
  const ids = new Set(own.agents.map((a) => a.id))
  const agents = [...own.agents]
  for (const a of peers) {
    if (agents.length >= 64) break
    if (!ids.has(a.id)) { ids.add(a.id); agents.push(a) }
  }
  const view: RuntimeView = { agents }
  if (own.kubernetesVersion !== undefined) view.kubernetesVersion = own.kubernetesVersion
  return view
}

function viewOf (s: ClusterRuntimeStatus | undefined): RuntimeView {
  const agents = Array.isArray(s?.agents) ? s.agents.slice(0, 64) : []
  const view: RuntimeView = { agents: agents.map((a) => ({ id: String(a.id), remote: String(a.remote), since: String(a.since) })) }
  if (typeof s?.kubernetesVersion === 'string') view.kubernetesVersion = s.kubernetesVersion.slice(0, 64)
  if (typeof s?.lastAgentLeftAt === 'string') view.lastAgentLeftAt = s.lastAgentLeftAt.slice(0, 64)
  return view
}
