/**
 * ClusterController: reconciles every proxy Cluster of the host cluster
 * (see reconciler.ts) while this replica leads. Stub with the final
 * signature; the body follows.
 */
import type { Logger } from '@tower/mux'
import type { ClusterRegistry, ServerStatusReport } from '@tower/server'
import type { ResourceCache } from './cache.ts'
import type { KubeContext } from './kube-context.ts'

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
  /** Lease duration, in milliseconds (whole seconds). */
  leaseDurationMs: number
  /** Validity of the issued caller kubeconfig's client certificate, in days. */
  kubeconfigValidityDays: number
}

/** Options of {@link ClusterController}. */
export interface ClusterControllerOptions {
  context: KubeContext
  cache: ResourceCache
  registry: ClusterRegistry
  settings: ControllerSettings
  logger: Logger
}

/** See the module comment. */
export class ClusterController {
  readonly #log: Logger

  constructor (opts: ClusterControllerOptions) {
    this.#log = opts.logger.child({ component: 'cluster-controller' })
  }

  /** Starts watching the cache and (once leading) reconciling. */
  async start (): Promise<void> {
    this.#log.debug({}, 'controller stub started')
  }

  /** Stops reconciling, waits for running reconciles and releases the Lease. */
  async stop (): Promise<void> {}

  /** The running server's report: AgentAvailable, kubernetesVersion and the agents annotation follow it. */
  report (_status: ServerStatusReport): void {}

  /** True while this replica writes (holds the Lease, or leader election is off). */
  get leading (): boolean { return false }
}
