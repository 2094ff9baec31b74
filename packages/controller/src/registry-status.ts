/**
 * readStatus() of the kubernetes backend: the running server's view as the
 * leader last wrote it onto the Clusters (the agents annotation, the
 * AgentAvailable condition, status.kubernetesVersion), which is what
 * `tower cluster list` shows in controller mode.
 *
 * A server counts as running when this process is it, or when the
 * controller Lease is held and was renewed within its duration; with
 * neither there is no live server and the answer is undefined.
 */
import type { Logger } from '@tower/mux'
import type { ClusterRecord, ClusterRuntimeStatus, ServerStatusReport } from '@tower/server'
import type { ResourceCache } from './cache.ts'
import { parseCluster } from './cluster-resource.ts'
import { statusOf } from './errors.ts'
import type { KubeContext } from './kube-context.ts'
import { ConditionType, CONTROLLER_LEASE } from './names.ts'

/** Options of readRegistryStatus. */
export interface StatusReadOptions {
  /** This process is the server (claimServer was called). */
  self: boolean
  /** The agent endpoint's port, when known. */
  agentPort: number | null
  log: Logger
}

/** True when the controller Lease has a holder that renewed it within its duration. */
export async function leaseLive (ctx: KubeContext, now = Date.now()): Promise<boolean> {
  try {
    const lease = await ctx.coordination.readNamespacedLease({ name: CONTROLLER_LEASE, namespace: ctx.namespace })
    const spec = lease.spec
    const holder = spec?.holderIdentity
    const renewed = spec?.renewTime instanceof Date ? spec.renewTime.getTime() : Date.parse(String(spec?.renewTime ?? ''))
    const duration = spec?.leaseDurationSeconds
    if (typeof holder !== 'string' || holder === '' || Number.isNaN(renewed) || typeof duration !== 'number') return false
    return renewed + duration * 1000 > now
  } catch (err) {
    if (statusOf(err) === 404) return false
    throw err
  }
}

/** Builds the report; undefined when no server runs. Never throws (failures are logged and read as "none"). */
export async function readRegistryStatus (ctx: KubeContext, cache: ResourceCache, records: ClusterRecord[], opts: StatusReadOptions): Promise<ServerStatusReport | undefined> {
  let live = opts.self
  if (!live) {
    try {
      live = await leaseLive(ctx)
    } catch (err) {
      opts.log.warn({ err }, 'cannot read the controller Lease; reporting no running server')
      return undefined
    }
  }
  if (!live) return undefined
  const clusters: Record<string, ClusterRuntimeStatus> = Object.create(null) as Record<string, ClusterRuntimeStatus>
  for (const r of records) {
    const parsed = parseCluster(cache.cluster(r.name))
    if (!parsed.ok) continue
    const status: ClusterRuntimeStatus = { port: r.port !== 0 ? r.port : null, listening: r.port !== 0, agents: parsed.agents }
    if (parsed.kubernetesVersion !== undefined) status.kubernetesVersion = parsed.kubernetesVersion
    const available = parsed.conditions.find((c) => c.type === ConditionType.AgentAvailable)
    if (parsed.agents.length === 0 && available?.status === 'False' && available.lastTransitionTime !== undefined) {
      status.lastAgentLeftAt = available.lastTransitionTime
    }
    clusters[r.name] = status
  }
  return { pid: opts.self ? process.pid : 0, updatedAt: new Date().toISOString(), agentPort: opts.agentPort, clusters }
}
