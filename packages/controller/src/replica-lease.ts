/**
 * Replica Leases: every replica renews Lease <ns>/tower-replica-<identity>
 * while it runs, so the others can tell a live replica from one that was
 * SIGKILLed or lost its node. The elected replica (the tower-controller
 * Lease holder) then deletes the dead replica's EndpointSlices, which no
 * owner reference would remove in time (the Pod object may outlive its
 * process, and in tests there is no Pod at all), and the dead Lease itself.
 *
 * A Lease counts as expired when this replica has seen its record unchanged
 * for the Lease's own leaseDurationSeconds, on this replica's clock, as
 * leader election does: the renewTime another machine wrote is never
 * compared with this clock, so clock skew cannot kill a live replica. A
 * slice whose Lease is absent is dead once the Lease has stayed absent for
 * one lease duration (a replica creates its Lease before its first slice).
 */
import { createHash } from 'node:crypto'
import { V1MicroTime, type V1Lease } from '@kubernetes/client-node'
import type { Logger } from '@tower/mux'
import type { EndpointSlicePublisher } from './endpoint-slices.ts'
import { kubeApiError, statusOf } from './errors.ts'
import type { KubeContext } from './kube-context.ts'
import { CLUSTER_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, REPLICA_IDENTITY_ANNOTATION, REPLICA_LABEL, REPLICA_LEASE_ANNOTATION, REPLICA_LEASE_LABEL, replicaLeaseName } from './names.ts'

/** Options of {@link ReplicaLease}. */
export interface ReplicaLeaseOptions {
  context: KubeContext
  /** This replica's identity (the Pod name). */
  identity: string
  /** The replica's label key (replicaKey(identity)). */
  replicaKey: string
  /** How long the Lease lasts without renewal, in milliseconds (whole seconds, at least 1000). */
  leaseDurationMs: number
  /** This replica's slices and the view of the others'. */
  slices: EndpointSlicePublisher
  /** True while this replica is the elected one (it then cleans up after dead replicas). */
  leading: () => boolean
  logger: Logger
}

/** Most replica Leases tracked. */
const MAX_TRACKED = 1024
const DNS_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/

/** The Lease name for an identity: the identity itself when it is a DNS name that fits, else a hash. */
export function leaseNameFor (identity: string): string {
  const name = replicaLeaseName(identity)
  if (name.length <= 253 && DNS_NAME.test(identity)) return name
  return replicaLeaseName(createHash('sha256').update(identity).digest('hex').slice(0, 16))
}

interface Seen { record: string, changedAt: number, durationMs: number, resourceVersion: string | undefined }

/** See the module comment. */
export class ReplicaLease {
  readonly #o: ReplicaLeaseOptions
  readonly #log: Logger
  readonly #name: string
  readonly #seen = new Map<string, Seen>()
  readonly #missingSince = new Map<string, number>()
  #timer: NodeJS.Timeout | undefined
  #running: Promise<void> | undefined
  #stopped = false

  constructor (opts: ReplicaLeaseOptions) {
    this.#o = opts
    this.#name = leaseNameFor(opts.identity)
    this.#log = opts.logger.child({ component: 'replica-lease' })
  }

  /** This replica's Lease name. */
  get name (): string { return this.#name }

  /** Renews once now (so the Lease exists before any slice), then every third of the duration. */
  async start (): Promise<void> {
    await this.#tick()
    const every = Math.max(Math.floor(this.#o.leaseDurationMs / 3), 300)
    this.#timer = setInterval(() => {
      if (this.#running === undefined) this.#running = this.#tick().finally(() => { this.#running = undefined })
    }, every)
    this.#timer.unref()
  }

  /** Stops renewing; with `release`, deletes the Lease (a graceful exit: nothing is left to clean up). */
  async stop (release: boolean): Promise<void> {
    this.#stopped = true
    clearInterval(this.#timer)
    await this.#running
    if (!release) return
    try {
      await this.#o.context.coordination.deleteNamespacedLease({ name: this.#name, namespace: this.#o.context.namespace })
    } catch (err) {
      if (statusOf(err) !== 404) this.#log.warn({ err: kubeApiError(`deleting Lease ${this.#name}`, err) }, 'cannot delete this replica\'s Lease; the leader removes it once it expires')
    }
  }

  /**
   * False for a Lease seen expired, or found absent by two leader passes in a
   * row; a Lease never looked up counts as alive. A replica creates its Lease
   * before its first slice and deletes it after its last, so a slice whose
   * Lease is gone is an orphan: waiting a whole lease duration for it would
   * keep its agents counted (AgentAvailable True) after they left. One pass
   * is not enough, because a new replica's Lease may appear between the list
   * and the slice.
   */
  alive (leaseName: string, now = Date.now()): boolean {
    if (leaseName === this.#name) return true
    const seen = this.#seen.get(leaseName)
    if (seen !== undefined) return now - seen.changedAt <= seen.durationMs
    const missing = this.#missingSince.get(leaseName)
    return missing === undefined || now - missing < this.#o.leaseDurationMs / 6
  }

  async #tick (): Promise<void> {
    if (this.#stopped) return
    try {
      await this.#renew()
    } catch (err) {
      this.#log.warn({ err }, 'cannot renew this replica\'s Lease; retrying at the next period')
    }
    if (!this.#o.leading() || this.#stopped) return
    try {
      await this.#collect()
    } catch (err) {
      this.#log.warn({ err }, 'cleaning up after dead replicas failed; the next period retries')
    }
  }

  async #renew (): Promise<void> {
    const { coordination, namespace } = this.#o.context
    const now = new V1MicroTime()
    const spec = { holderIdentity: this.#o.identity.slice(0, 253), leaseDurationSeconds: Math.ceil(this.#o.leaseDurationMs / 1000), renewTime: now }
    let current: V1Lease | undefined
    try {
      current = await coordination.readNamespacedLease({ name: this.#name, namespace })
    } catch (err) {
      if (statusOf(err) !== 404) throw kubeApiError(`reading Lease ${this.#name}`, err)
    }
    try {
      if (current === undefined) {
        await coordination.createNamespacedLease({
          namespace,
          body: {
            apiVersion: 'coordination.k8s.io/v1',
            kind: 'Lease',
            metadata: {
              name: this.#name,
              namespace,
              labels: { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE, [REPLICA_LEASE_LABEL]: 'true', [REPLICA_LABEL]: this.#o.replicaKey },
              annotations: { [REPLICA_IDENTITY_ANNOTATION]: this.#o.identity }
            },
            spec: { ...spec, acquireTime: now }
          }
        })
      } else {
        await coordination.replaceNamespacedLease({ name: this.#name, namespace, body: { ...current, spec: { ...current.spec, ...spec } } })
      }
    } catch (err) {
      // 409: another write (the leader deleting it as expired, or a second process of one identity) won; next period retries.
      throw kubeApiError(`renewing Lease ${this.#name}`, err)
    }
  }

  // The leader's pass: observe every replica Lease, delete the slices of dead replicas, then their Leases.
  async #collect (): Promise<void> {
    const { coordination, namespace } = this.#o.context
    const now = Date.now()
    const list = await coordination.listNamespacedLease({ namespace, labelSelector: `${REPLICA_LEASE_LABEL}=true` })
    const present = new Set<string>()
    for (const lease of list.items.slice(0, MAX_TRACKED)) {
      const name = lease.metadata?.name
      if (typeof name !== 'string' || name === this.#name) continue
      present.add(name)
      this.#missingSince.delete(name)
      const record = JSON.stringify([lease.spec?.holderIdentity, String(lease.spec?.renewTime), lease.spec?.leaseDurationSeconds])
      const d = lease.spec?.leaseDurationSeconds
      const durationMs = typeof d === 'number' && Number.isSafeInteger(d) && d >= 1 && d <= 3600 ? d * 1000 : this.#o.leaseDurationMs
      const seen = this.#seen.get(name)
      if (seen === undefined || seen.record !== record) this.#seen.set(name, { record, changedAt: now, durationMs, resourceVersion: lease.metadata?.resourceVersion })
    }
    for (const name of this.#seen.keys()) if (!present.has(name)) this.#seen.delete(name)
    for (const slice of this.#o.slices.peerSlices()) {
      const lease = slice.metadata?.annotations?.[REPLICA_LEASE_ANNOTATION]
      const name = slice.metadata?.name
      if (typeof lease !== 'string' || typeof name !== 'string') continue
      if (!present.has(lease) && !this.#missingSince.has(lease) && this.#missingSince.size < MAX_TRACKED) this.#missingSince.set(lease, now)
      if (this.alive(lease, now)) continue
      await this.#o.slices.deleteSlice(name)
      this.#log.warn({ slice: name, cluster: slice.metadata?.labels?.[CLUSTER_LABEL], replica: slice.metadata?.annotations?.[REPLICA_IDENTITY_ANNOTATION], lease }, 'EndpointSlice of a replica whose Lease expired deleted')
    }
    for (const [name, seen] of this.#seen) {
      if (now - seen.changedAt <= seen.durationMs) continue
      try {
        await coordination.deleteNamespacedLease({ name, namespace, body: { preconditions: { resourceVersion: seen.resourceVersion } } })
        this.#log.info({ lease: name }, 'expired replica Lease deleted')
      } catch (err) {
        const status = statusOf(err)
        if (status !== 404 && status !== 409) throw kubeApiError(`deleting Lease ${name}`, err)
      }
      this.#seen.delete(name)
    }
    for (const [lease, since] of this.#missingSince) if (now - since > 10 * this.#o.leaseDurationMs) this.#missingSince.delete(lease)
  }
}
