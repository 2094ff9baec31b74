/**
 * Removing what Tower made for a cluster: its port entry, Service mc-<name>
 * and three Secrets. The finalizer path does it when a Cluster is deleted;
 * collectOrphans does it, at resync, for Clusters that went without their
 * finalizer running (someone removed it by hand, or the Cluster was deleted
 * while no controller ran and the finalizer was forced off).
 *
 * An owner seen in tower-ports but absent from the cache is only an orphan
 * when a GET of its Cluster answers 404: a cluster left out of the cache
 * (too large), or not seen yet, is never cleaned up by mistake.
 */
import { silentLogger, type Logger } from '@tower/mux'
import type { ResourceCache } from './cache.ts'
import { kubeApiError, statusOf } from './errors.ts'
import type { KubeContext } from './kube-context.ts'
import { callersSecretName, CLUSTER_GROUP, CLUSTER_PLURAL, CLUSTER_VERSION, joinSecretName, kubeconfigSecretName, PORTS_CONFIGMAP, serviceName } from './names.ts'
import { readPortTable, type PortAllocator } from './port-allocator.ts'
import type { SecretWriter } from './secrets.ts'

/** What the clean-up needs. */
export interface CleanupDeps {
  context: KubeContext
  ports: PortAllocator
  secrets: SecretWriter
  logger?: Logger
}

/** Most orphans confirmed (one GET each) per collection; the next resync takes the rest. */
const MAX_ORPHANS_PER_RUN = 50

/** Releases the port and deletes the Service and Secrets of cluster `name`; missing ones are fine. */
export async function deleteClusterObjects (deps: CleanupDeps, name: string): Promise<void> {
  const { ports, secrets, context } = deps
  await ports.release(name)
  try {
    await context.core.deleteNamespacedService({ name: serviceName(name), namespace: context.namespace })
  } catch (err) {
    if (statusOf(err) !== 404) throw kubeApiError(`deleting Service ${serviceName(name)}`, err)
  }
  for (const s of [joinSecretName(name), callersSecretName(name), kubeconfigSecretName(name)]) await secrets.delete(s)
}

/** Cleans up after Clusters that are gone (GET 404) but still own a port; returns their names. Needs a synced cache. */
export async function collectOrphans (deps: CleanupDeps, cache: ResourceCache): Promise<string[]> {
  if (!cache.synced) return []
  const log = (deps.logger ?? silentLogger).child({ component: 'cluster-cleanup' })
  const owners = new Set<string>()
  for (const entry of readPortTable(cache.configMap(PORTS_CONFIGMAP)?.data).values()) {
    if ('cluster' in entry && cache.cluster(entry.cluster) === undefined) owners.add(entry.cluster)
  }
  const gone: string[] = []
  for (const name of [...owners].slice(0, MAX_ORPHANS_PER_RUN)) {
    try {
      await deps.context.custom.getClusterCustomObject({ group: CLUSTER_GROUP, version: CLUSTER_VERSION, plural: CLUSTER_PLURAL, name })
      continue
    } catch (err) {
      if (statusOf(err) !== 404) throw kubeApiError(`reading Cluster ${name}`, err)
    }
    await deleteClusterObjects(deps, name)
    gone.push(name)
    log.info({ cluster: name }, 'Cluster gone without its finalizer: port released, Service and Secrets deleted')
  }
  return gone
}
