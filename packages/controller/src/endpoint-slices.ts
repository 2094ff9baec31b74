/**
 * Routing by EndpointSlices: each cluster's Service mc-<name> has no
 * selector; instead every replica that holds at least one agent session for
 * the cluster writes and owns one EndpointSlice for it, with one endpoint
 * (the replica's address, the cluster's port). Kubernetes then sends callers
 * only to replicas that can serve the cluster, with no mesh between servers.
 *
 * A replica's slice also carries its agents (annotation
 * tower.kubesphere.io/agents), which is how the leader counts agents across
 * replicas for AgentAvailable: it merges its own report with the slices of
 * the other replicas whose Lease is alive (replica-lease.ts).
 *
 * Writes are driven by the server's status reports, coalesced (one flush at
 * a time, at most every FLUSH_DELAY_MS), compared with an informer's copy
 * first, and carry the resourceVersion read (409: the next flush re-reads).
 * A failed flush is retried with backoff. While draining, the slices stay
 * but say ready: false, so kube-proxy stops sending new connections.
 */
import { EventEmitter } from 'node:events'
import { createHash } from 'node:crypto'
import { isIP } from 'node:net'
import { DiscoveryV1Api, makeInformer, type Informer, type KubernetesListObject, type ObjectCache, type V1EndpointSlice } from '@kubernetes/client-node'
import type { Logger } from '@tower/mux'
import type { AgentStatus, ServerStatusReport } from '@tower/server'
import { kubeApiError, statusOf } from './errors.ts'
import type { KubeContext } from './kube-context.ts'
import {
  AGENTS_ANNOTATION, CLUSTER_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, REPLICA_IDENTITY_ANNOTATION, REPLICA_LABEL, REPLICA_LEASE_ANNOTATION,
  SERVICE_KUBE_API_PORT_NAME, serviceName, SLICE_MANAGED_BY_LABEL, SLICE_MANAGED_BY_VALUE, SLICE_SERVICE_LABEL, sliceName
} from './names.ts'

/** The operations and results counted by the write hook (the server's tower_server_endpointslice_writes_total). */
export type SliceWriteHook = (operation: 'create' | 'update' | 'delete', result: 'ok' | 'conflict' | 'error') => void

/** Where a server replica runs (the CLI's --pod-ip, --pod-name, --pod-uid, from the downward API). */
export interface ReplicaSettings {
  /** IPv4 or IPv6 address callers reach this replica at; absent: --advertise-host when that is an IP. */
  address?: string
  /** The replica's Pod, the owner of its EndpointSlices; absent (tests): no owner reference. */
  pod?: { name: string, uid: string }
}

/** Where this replica runs: what its slices point at and are owned by. */
export interface ReplicaIdentity {
  /** The replica's identity (the Pod name in Kubernetes); its slices carry it. */
  identity: string
  /** IPv4 or IPv6 address callers reach this replica at (the Pod IP, or --advertise-host in tests). */
  address: string
  /** The Pod, for the slices' owner reference (downward API); absent: no owner reference. */
  pod?: { name: string, uid: string }
  /** Name of the replica's Lease (replica-lease.ts), recorded on each slice. */
  leaseName: string
}

/** Options of {@link EndpointSlicePublisher}. */
export interface EndpointSlicePublisherOptions {
  context: KubeContext
  replica: ReplicaIdentity
  logger: Logger
  /** Counts each write. */
  onWrite?: SliceWriteHook
}

/** Coalescing delay between a report and the writes it causes, in milliseconds. */
const FLUSH_DELAY_MS = 100
/** First and largest retry delay after a failed flush or informer, in milliseconds. */
const RETRY_MIN_MS = 500
const RETRY_MAX_MS = 30_000
/** Most clusters this replica publishes slices for. */
const MAX_SLICES = 10_000
/** Most agents listed on one slice, and the longest agents annotation read from a peer's slice (bytes). */
const MAX_SLICE_AGENTS = 16
const MAX_AGENTS_JSON = 16 * 1024

/** A short, stable, label-safe key of a replica identity. */
export function replicaKey (identity: string): string {
  return createHash('sha256').update(identity).digest('hex').slice(0, 10)
}

interface Wanted { port: number, agents: AgentStatus[] }

/** See the module comment. Emits `peers` (cluster name) when another replica's slice for a cluster changes. */
export class EndpointSlicePublisher extends EventEmitter {
  readonly #ctx: KubeContext
  readonly #api: DiscoveryV1Api
  readonly #replica: ReplicaIdentity
  readonly #key: string
  readonly #log: Logger
  readonly #onWrite: SliceWriteHook | undefined
  readonly #informer: Informer<V1EndpointSlice> & ObjectCache<V1EndpointSlice>
  #wanted = new Map<string, Wanted>()
  #draining = false
  #listed = false
  #stopped = false
  #timer: NodeJS.Timeout | undefined
  #informerTimer: NodeJS.Timeout | undefined
  #flushing: Promise<void> | undefined
  #again = false
  #retryMs = RETRY_MIN_MS
  #informerRetryMs = RETRY_MIN_MS

  constructor (opts: EndpointSlicePublisherOptions) {
    super()
    this.#ctx = opts.context
    this.#api = opts.context.kc.makeApiClient(DiscoveryV1Api)
    this.#replica = opts.replica
    this.#key = replicaKey(opts.replica.identity)
    this.#log = opts.logger.child({ component: 'endpoint-slices' })
    this.#onWrite = opts.onWrite
    const ns = opts.context.namespace
    const selector = `${SLICE_MANAGED_BY_LABEL}=${SLICE_MANAGED_BY_VALUE}`
    const list = async (): Promise<KubernetesListObject<V1EndpointSlice>> => {
      const result = await this.#api.listNamespacedEndpointSlice({ namespace: ns, labelSelector: selector })
      this.#informerRetryMs = RETRY_MIN_MS
      if (!this.#listed) {
        this.#listed = true
        setImmediate(() => { this.#schedule(0) })
      }
      return result
    }
    this.#informer = makeInformer(opts.context.kc, `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices`, list, selector)
    const onSlice = (s: V1EndpointSlice): void => {
      const labels = s?.metadata?.labels ?? {}
      const cluster = Object.hasOwn(labels, CLUSTER_LABEL) ? labels[CLUSTER_LABEL] : undefined
      if (typeof cluster !== 'string') return
      if (labels[REPLICA_LABEL] === this.#key) {
        // Someone else changed or deleted our slice: put it back as we want it.
        if (this.#wanted.has(cluster)) this.#schedule(FLUSH_DELAY_MS)
        return
      }
      this.emit('peers', cluster)
    }
    this.#informer.on('add', onSlice)
    this.#informer.on('update', onSlice)
    this.#informer.on('delete', onSlice)
    this.#informer.on('error', (err: unknown) => { this.#informerFailed(err) })
  }

  /** The replica key its slices and Lease are labelled with. */
  get key (): string { return this.#key }

  /** Starts the informer on Tower's slices. Slices are written once it has listed. */
  start (): void {
    this.#informer.start().catch((err: unknown) => { this.#informerFailed(err) })
  }

  /** Stops writing and watching; with `deleteOwn`, deletes this replica's slices first (best effort). */
  async stop (deleteOwn: boolean): Promise<void> {
    if (deleteOwn && !this.#stopped) {
      this.#wanted = new Map()
      await this.#flushing
      await this.#flush().catch(() => {})
    }
    this.#stopped = true
    clearTimeout(this.#timer)
    clearTimeout(this.#informerTimer)
    await this.#flushing
    await this.#informer.stop()
  }

  /** Takes the server's report: slices follow the clusters this replica holds sessions for. */
  update (report: ServerStatusReport): void {
    if (this.#stopped || typeof report !== 'object' || report === null) return
    const next = new Map<string, Wanted>()
    const clusters = typeof report.clusters === 'object' && report.clusters !== null ? report.clusters : {}
    if (report.stoppedAt === undefined) {
      for (const name of Object.keys(clusters)) {
        const c = clusters[name]
        if (next.size >= MAX_SLICES) break
        const agents = Array.isArray(c?.agents) ? c.agents : []
        if (agents.length === 0 || typeof c?.port !== 'number' || !Number.isSafeInteger(c.port) || c.port < 1 || c.port > 65535) continue
        next.set(name, { port: c.port, agents: agents.slice(0, MAX_SLICE_AGENTS) })
      }
    }
    const draining = report.draining === true
    if (draining !== this.#draining || !sameWanted(this.#wanted, next)) {
      this.#draining = draining
      this.#wanted = next
      this.#schedule(FLUSH_DELAY_MS)
    }
  }

  /** Agents other replicas hold for `cluster`, from their slices; `alive(leaseName)` filters out dead replicas. */
  peerAgents (cluster: string, alive: (leaseName: string) => boolean): AgentStatus[] {
    const out: AgentStatus[] = []
    for (const s of this.#informer.list(this.#ctx.namespace)) {
      const labels = s.metadata?.labels ?? {}
      if (labels[CLUSTER_LABEL] !== cluster || labels[REPLICA_LABEL] === this.#key) continue
      const lease = s.metadata?.annotations?.[REPLICA_LEASE_ANNOTATION]
      if (typeof lease !== 'string' || !alive(lease)) continue
      // A draining replica has sent its agents GoAway and they are moving: its
      // slice (not ready until it exits, or until its Lease expires if it was
      // killed mid-drain) must not keep them counted as connected.
      if (!(s.endpoints ?? []).some((e) => e.conditions?.ready !== false)) continue
      out.push(...parseAgents(s.metadata?.annotations?.[AGENTS_ANNOTATION]))
    }
    return out
  }

  /** Every slice of other replicas (the leader's clean-up reads them). */
  peerSlices (): V1EndpointSlice[] {
    return this.#informer.list(this.#ctx.namespace).filter((s) => s.metadata?.labels?.[REPLICA_LABEL] !== this.#key)
  }

  /** Deletes a dead replica's slice (the leader's clean-up); 404 counts as done. */
  async deleteSlice (name: string): Promise<void> {
    try {
      await this.#api.deleteNamespacedEndpointSlice({ name, namespace: this.#ctx.namespace })
      this.#onWrite?.('delete', 'ok')
    } catch (err) {
      if (statusOf(err) === 404) return
      this.#onWrite?.('delete', 'error')
      throw kubeApiError(`deleting EndpointSlice ${name}`, err)
    }
  }

  /** Resolves once the writes wanted now are done (tests, drain). */
  async settled (): Promise<void> {
    while (this.#timer !== undefined || this.#flushing !== undefined) {
      if (this.#flushing !== undefined) await this.#flushing
      else await new Promise((resolve) => setTimeout(resolve, 20))
      if (this.#stopped) return
    }
  }

  #schedule (delayMs: number): void {
    if (this.#stopped || !this.#listed) return
    if (this.#flushing !== undefined) { this.#again = true; return }
    if (this.#timer !== undefined) return
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      this.#flushing = this.#flush().then(() => {
        this.#retryMs = RETRY_MIN_MS
      }, (err: unknown) => {
        this.#log.warn({ err, retryInMs: this.#retryMs }, 'cannot write this replica\'s EndpointSlices; retrying after backoff')
        this.#again = true
        const delay = this.#retryMs
        this.#retryMs = Math.min(this.#retryMs * 2, RETRY_MAX_MS)
        return delay
      }).then((delay) => {
        this.#flushing = undefined
        if (this.#again) {
          this.#again = false
          this.#schedule(typeof delay === 'number' ? delay : FLUSH_DELAY_MS)
        }
      })
    }, delayMs)
    this.#timer.unref()
  }

  async #flush (): Promise<void> {
    const ns = this.#ctx.namespace
    const mine = new Map<string, V1EndpointSlice>()
    for (const s of this.#informer.list(ns)) {
      if (s.metadata?.labels?.[REPLICA_LABEL] === this.#key && typeof s.metadata.name === 'string') mine.set(s.metadata.name, s)
    }
    let failed: unknown
    for (const [cluster, want] of this.#wanted) {
      const name = sliceName(cluster, this.#key)
      const body = this.#desired(cluster, want)
      const existing = mine.get(name)
      mine.delete(name)
      if (existing !== undefined && sliceMatches(existing, body)) continue
      const op = existing === undefined ? 'create' : 'update'
      try {
        if (existing === undefined) await this.#api.createNamespacedEndpointSlice({ namespace: ns, body })
        else await this.#api.replaceNamespacedEndpointSlice({ name, namespace: ns, body: { ...body, metadata: { ...body.metadata, resourceVersion: existing.metadata?.resourceVersion } } })
        this.#onWrite?.(op, 'ok')
      } catch (err) {
        const status = statusOf(err)
        this.#onWrite?.(op, status === 409 ? 'conflict' : 'error')
        failed ??= kubeApiError(`writing EndpointSlice ${name}`, err)
      }
    }
    for (const name of mine.keys()) {
      try {
        await this.deleteSlice(name)
      } catch (err) {
        failed ??= err
      }
    }
    if (failed !== undefined) throw failed
  }

  #desired (cluster: string, want: Wanted): V1EndpointSlice {
    const r = this.#replica
    const ready = !this.#draining
    return {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name: sliceName(cluster, this.#key),
        namespace: this.#ctx.namespace,
        labels: {
          [SLICE_SERVICE_LABEL]: serviceName(cluster),
          [SLICE_MANAGED_BY_LABEL]: SLICE_MANAGED_BY_VALUE,
          [MANAGED_BY_LABEL]: MANAGED_BY_VALUE,
          [CLUSTER_LABEL]: cluster,
          [REPLICA_LABEL]: this.#key
        },
        annotations: {
          [REPLICA_IDENTITY_ANNOTATION]: r.identity,
          [REPLICA_LEASE_ANNOTATION]: r.leaseName,
          [AGENTS_ANNOTATION]: JSON.stringify(want.agents.map((a) => ({ id: cut(a.id), remote: cut(a.remote), since: cut(a.since) })))
        },
        ...(r.pod !== undefined ? { ownerReferences: [{ apiVersion: 'v1', kind: 'Pod', name: r.pod.name, uid: r.pod.uid }] } : {})
      },
      addressType: isIP(r.address) === 6 ? 'IPv6' : 'IPv4',
      endpoints: [{ addresses: [r.address], conditions: { ready, serving: true, terminating: this.#draining }, ...(r.pod !== undefined ? { targetRef: { kind: 'Pod', name: r.pod.name, namespace: this.#ctx.namespace, uid: r.pod.uid } } : {}) }],
      ports: [{ name: SERVICE_KUBE_API_PORT_NAME, protocol: 'TCP', port: want.port }]
    }
  }

  #informerFailed (err: unknown): void {
    if (this.#stopped) return
    const delay = this.#informerRetryMs
    this.#informerRetryMs = Math.min(delay * 2, RETRY_MAX_MS)
    this.#log.warn({ err: kubeApiError('watching EndpointSlices', err), retryInMs: delay }, 'EndpointSlice informer failed; cache kept, restarting after backoff')
    clearTimeout(this.#informerTimer)
    this.#informerTimer = setTimeout(() => {
      if (!this.#stopped) this.#informer.start().catch((e: unknown) => { this.#informerFailed(e) })
    }, delay)
    this.#informerTimer.unref()
  }
}

function cut (v: unknown): string { return String(v).slice(0, 256) }

function sameWanted (a: Map<string, Wanted>, b: Map<string, Wanted>): boolean {
  if (a.size !== b.size) return false
  for (const [name, w] of a) {
    const o = b.get(name)
    if (o === undefined || o.port !== w.port || JSON.stringify(o.agents) !== JSON.stringify(w.agents)) return false
  }
  return true
}

/** True when the stored slice says what `desired` says (endpoints, ports, labels, annotations, owner). */
export function sliceMatches (existing: V1EndpointSlice, desired: V1EndpointSlice): boolean {
  const same = (x: unknown, y: unknown): boolean => JSON.stringify(x ?? null) === JSON.stringify(y ?? null)
  const e = existing.endpoints?.[0]; const d = desired.endpoints?.[0]
  return existing.addressType === desired.addressType && existing.endpoints?.length === 1 &&
    same(e?.addresses, d?.addresses) && e?.conditions?.ready === d?.conditions?.ready && e?.conditions?.serving === d?.conditions?.serving &&
    e?.conditions?.terminating === d?.conditions?.terminating &&
    existing.ports?.length === 1 && existing.ports[0]?.port === desired.ports?.[0]?.port && existing.ports[0]?.name === desired.ports?.[0]?.name &&
    same(sorted(existing.metadata?.labels), sorted(desired.metadata?.labels)) &&
    same(sorted(existing.metadata?.annotations), sorted(desired.metadata?.annotations)) &&
    (existing.metadata?.ownerReferences?.[0]?.uid ?? '') === (desired.metadata?.ownerReferences?.[0]?.uid ?? '')
}

function sorted (r: Record<string, string> | undefined): Array<[string, string]> {
  return Object.entries(r ?? {}).sort(([a], [b]) => a.localeCompare(b))
}

/** A peer's agents annotation, validated: hostile JSON gives fewer agents, never a throw. */
export function parseAgents (raw: unknown): AgentStatus[] {
  if (typeof raw !== 'string' || raw.length > MAX_AGENTS_JSON) return []
  let parsed: unknown
  try {
    parsed = JSON.parse(raw)
  } catch {
    return []
  }
  if (!Array.isArray(parsed)) return []
  const out: AgentStatus[] = []
  for (const a of parsed.slice(0, MAX_SLICE_AGENTS)) {
    if (typeof a !== 'object' || a === null) continue
    const { id, remote, since } = a as { id?: unknown, remote?: unknown, since?: unknown }
    if (typeof id !== 'string' || typeof remote !== 'string' || typeof since !== 'string') continue
    out.push({ id: cut(id), remote: cut(remote), since: cut(since) })
  }
  return out
}
