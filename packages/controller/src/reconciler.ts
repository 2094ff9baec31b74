/**
 * One reconcile of one Cluster, from the cache's copy of it:
 *
 *   direct                  nothing, not even a read of the rest
 *   no spec.connection.type Initialized=False ConnectionTypeMissing, nothing else
 *   invalid (parseCluster)  Initialized=False with its reason; objects already made are kept
 *   being deleted           release the port, delete Service and Secrets, drop the finalizer
 *   proxy                   finalizer -> port (tower-ports CAS) -> join and callers Secrets ->
 *                           Service -> kubeconfig Secret -> spec endpoints and agents
 *                           annotation -> status (conditions, kubernetesVersion)
 *
 * Every step compares first and writes only what differs, so a reconcile of
 * a settled cluster makes no write at all. Every write carries the
 * resourceVersion that was read: 409 rejects the reconcile and the work
 * queue retries it after a backoff against the newer object. Nothing is
 * deleted unless the Cluster itself carries a deletionTimestamp, so a failed
 * list or an unsynced cache can never remove anything.
 */
import type { V1Secret, V1Service } from '@kubernetes/client-node'
import { silentLogger, type Logger } from '@tower/mux'
import { issueKubeconfigCredential, newToken, TokenPrefix, type AgentStatus, type ClusterRegistry } from '@tower/server'
import type { ResourceCache } from './cache.ts'
import { parseCluster, type ParsedCluster } from './cluster-resource.ts'
import { collectOrphans, deleteClusterObjects } from './cluster-cleanup.ts'
import { desiredService, externalEndpoint, serviceMatches, updatedService } from './cluster-service.ts'
import type { ClusterCondition } from './cluster-resource.ts'
import { conditionsEqual, conditionTime, findCondition, removeCondition, setCondition, type DesiredCondition } from './conditions.ts'
import { kubeApiError, statusOf } from './errors.ts'
import type { FederationSync } from './federation-sync.ts'
import type { KubeContext } from './kube-context.ts'
import {
  AGENTS_ANNOTATION, callersSecretName, CLUSTER_GROUP, CLUSTER_PLURAL, CLUSTER_UID_ANNOTATION, CLUSTER_VERSION, ClusterReason,
  ConditionType, EXPIRES_AT_ANNOTATION, FINALIZER, JoinSecretKey, joinSecretName, KUBECONFIG_KEY, kubeconfigSecretName,
  ParseReason, PORTS_CONFIGMAP, serviceHost, serviceName, SERVICE_KUBE_API_PORT
} from './names.ts'
import type { PortAllocator } from './port-allocator.ts'
import { clusterSecretMeta, secretValue, type SecretWriter } from './secrets.ts'
import type { ClusterObject, StatusWriter } from './status-writer.ts'
import type { WorkResult } from './work-queue.ts'

type ValidCluster = Extract<ParsedCluster, { ok: true }>

/** What the running server last reported about one cluster. */
export interface RuntimeView {
  agents: AgentStatus[]
  kubernetesVersion?: string
  lastAgentLeftAt?: string
}

/** Dependencies of {@link Reconciler}. */
export interface ReconcilerOptions {
  context: KubeContext
  cache: ResourceCache
  registry: ClusterRegistry
  ports: PortAllocator
  status: StatusWriter
  secrets: SecretWriter
  /** Write the kubeconfig into spec.connection.kubeconfig too (--kubesphere-compat). */
  kubesphereCompat: boolean
  /** Validity of issued kubeconfig certificates, in days. */
  kubeconfigValidityDays: number
  /** Called after a deletion freed a port, so clusters refused one can try again at once. */
  onPortFreed?: () => void
  /** The server's last report on a cluster; undefined while no report has come at all. */
  runtime: (name: string) => RuntimeView | undefined
  /** The federation join (--join-kubefed, --join-karmada), when on. */
  federation?: FederationSync
  logger?: Logger
}

/** Largest Cluster object Tower reads, in bytes of JSON (the cache's own limit). */
const MAX_CLUSTER_BYTES = 256 * 1024
/** How soon to look again while the registry's cache catches up with the objects just written, in milliseconds. */
const PENDING_RETRY_MS = 1000
/** How soon to retry a port refusal (another cluster may free the port), in milliseconds. */
const PORT_RETRY_MS = 30_000
/** Most agents listed in the agents annotation. */
const MAX_ANNOTATED_AGENTS = 16
const DAY_MS = 86_400_000

/** A kubeconfig this process issued, so a stale cache does not make it issue again. */
interface Issued { uid: string, yaml: string, expiresAt: number }

/** See the module comment. */
export class Reconciler {
  readonly #o: ReconcilerOptions
  readonly #log: Logger
  readonly #issued = new Map<string, Issued>()

  constructor (opts: ReconcilerOptions) {
    this.#o = opts
    this.#log = (opts.logger ?? silentLogger).child({ component: 'reconciler' })
  }

  /** Reconciles cluster `name`; rejects on a failed write (the queue retries). */
  async reconcile (name: string): Promise<WorkResult | undefined> {
    let raw = this.#o.cache.cluster(name) as ClusterObject | undefined
    let tooLarge: number | undefined
    if (raw === undefined) {
      // Gone, not cached yet, or too large for the cache: only the API can tell.
      raw = await this.#fetch(name)
      if (raw === undefined) return undefined
      const bytes = Buffer.byteLength(JSON.stringify(raw))
      if (bytes > MAX_CLUSTER_BYTES) tooLarge = bytes
    }
    if (connectionTypeOf(raw) === 'direct') return undefined
    const p = parseCluster(raw)
    const deleting = isDeleting(raw)
    if (deleting) {
      if (!hasFinalizer(raw)) return undefined
      // Leave the federation first: Karmada's finalizer needs the caller token, which the cleanup revokes.
      const left = await this.#o.federation?.leave(name)
      if (left?.pending === true) return { requeueAfterMs: left.requeueAfterMs }
      await this.#cleanup(name, raw)
      return undefined
    }
    if (tooLarge !== undefined) {
      await this.#writeConditions(raw, conditionsOf(raw), [initialized('False', ClusterReason.ObjectTooLarge,
        `the Cluster object is ${tooLarge} bytes; Tower reads Clusters of at most ${MAX_CLUSTER_BYTES} bytes (look for a huge annotation)`)])
      return undefined
    }
    if (!p.ok) {
      await this.#writeConditions(raw, conditionsOf(raw), [initialized('False', p.reason, p.message)])
      return undefined
    }
    if (p.type === undefined) {
      await this.#writeConditions(raw, p.conditions, [initialized('False', ParseReason.ConnectionTypeMissing,
        'spec.connection.type is not set: Tower manages only clusters of type proxy and leaves this one alone; set it to proxy or direct')])
      return undefined
    }
    if (p.type !== 'proxy') return undefined
    return await this.#reconcileProxy(p, raw)
  }

  /** Cleans up after Clusters gone without their finalizer (see cluster-cleanup.ts). */
  async collectOrphans (): Promise<void> {
    const gone = await collectOrphans(this.#o, this.#o.cache)
    for (const name of gone) this.forget(name)
    if (gone.length > 0) this.#o.onPortFreed?.()
  }

  /** Forgets what this process remembers about a cluster (after deletion). */
  forget (name: string): void {
    this.#issued.delete(name)
  }

  async #reconcileProxy (p: ValidCluster, raw: ClusterObject): Promise<WorkResult | undefined> {
    const { name, uid } = p
    let obj: ClusterObject | undefined = raw
    if (!p.hasFinalizer) {
      const meta = (raw.metadata ?? {}) as Record<string, unknown>
      const finalizers = Array.isArray(meta.finalizers) ? meta.finalizers : []
      obj = await this.#replace({ ...raw, metadata: { ...meta, finalizers: [...finalizers, FINALIZER] } })
      if (obj === undefined) return undefined
    }
    const port = await this.#o.ports.ensure({ cluster: name, uid }, p.port, this.#o.cache.configMap(PORTS_CONFIGMAP))
    if (!port.ok) {
      await this.#writeConditions(obj, p.conditions, [initialized('False', port.reason, port.message)])
      return { requeueAfterMs: PORT_RETRY_MS }
    }
    await this.#ensureSecret(joinSecretName(name), p, () => new Map([[JoinSecretKey.token, p.specToken ?? newToken(TokenPrefix.agent)]]))
    await this.#ensureSecret(callersSecretName(name), p, () => new Map())
    const service = await this.#ensureService(p, port.port)
    const kubeconfig = p.mode === 'proxy' ? await this.#ensureKubeconfig(p) : { pending: false }

    // Spec and metadata: endpoints, the compat kubeconfig, the agents annotation.
    const ns = this.#o.context.namespace
    const runtime = this.#o.runtime(name)
    const external = p.externalKubeAPIEnabled ? externalEndpoint(service) : undefined
    const connection: Record<string, unknown> = { ...(record(record(obj.spec).connection)) }
    const before = JSON.stringify(connection)
    connection.kubernetesAPIEndpoint = `https://${serviceHost(name, ns)}:${SERVICE_KUBE_API_PORT}`
    connection.kubernetesAPIServerPort = port.port
    if (external !== undefined) connection.externalKubernetesAPIEndpoint = external
    if (this.#o.kubesphereCompat && kubeconfig.yaml !== undefined) connection.kubeconfig = Buffer.from(kubeconfig.yaml, 'utf8').toString('base64')
    const meta = record(obj.metadata)
    const annotations: Record<string, unknown> = { ...record(meta.annotations) }
    const annotationsBefore = JSON.stringify(annotations)
    if (runtime !== undefined) {
      if (runtime.agents.length === 0) delete annotations[AGENTS_ANNOTATION]
      else annotations[AGENTS_ANNOTATION] = agentsAnnotation(runtime.agents)
    }
    if (JSON.stringify(connection) !== before || JSON.stringify(annotations) !== annotationsBefore) {
      obj = await this.#replace({ ...obj, metadata: { ...meta, annotations }, spec: { ...record(obj.spec), connection } })
      if (obj === undefined) return undefined
    }

    // Status.
    const want: DesiredCondition[] = []
    if (kubeconfig.pending) {
      want.push(initialized('False', ClusterReason.Initializing, 'port, Secrets and Service are written; waiting for the registry to see them before issuing the kubeconfig'))
    } else {
      want.push(initialized('True', ClusterReason.Initialized, `port ${port.port}, Service ${serviceName(name)}, Secrets ${joinSecretName(name)}, ${callersSecretName(name)}${p.mode === 'proxy' ? `, ${kubeconfigSecretName(name)}` : ''}`))
    }
    const agent = agentCondition(runtime, findCondition(p.conditions, ConditionType.AgentAvailable))
    if (agent !== undefined) want.push(agent)
    let conditions: readonly ClusterCondition[] = p.conditions
    if (p.externalKubeAPIEnabled) want.push(externalCondition(p, external))
    else conditions = removeCondition(conditions, ConditionType.ExternalAccessReady)
    const federation = kubeconfig.pending || this.#o.federation === undefined ? undefined : await this.#o.federation.sync(obj, p)
    if (federation?.condition !== undefined) want.push(federation.condition)
    else if (federation !== undefined) conditions = removeCondition(conditions, ConditionType.Federated)
    await this.#writeConditions(obj, conditions, want, runtime?.kubernetesVersion)

    const next = [kubeconfig.pending ? PENDING_RETRY_MS : undefined, kubeconfig.renewInMs, federation?.requeueAfterMs].filter((v): v is number => v !== undefined)
    return next.length > 0 ? { requeueAfterMs: Math.min(...next) } : undefined
  }

  /** Creates a per-cluster Secret when missing; one made for an earlier Cluster of the name (another uid) is replaced. */
  async #ensureSecret (secretName: string, p: ValidCluster, data: () => Map<string, string>): Promise<void> {
    const { secrets, cache } = this.#o
    let current: V1Secret | undefined = cache.secret(secretName)
    if (current !== undefined && secretUid(current) === p.uid) return
    if (current !== undefined) current = await secrets.read(secretName) // the cache may be behind
    if (current !== undefined && secretUid(current) === p.uid) return
    if (current !== undefined && secretUid(current) !== undefined) {
      this.#log.info({ cluster: p.name, secret: secretName }, 'Secret belongs to an earlier Cluster of this name; replacing it')
      await secrets.delete(secretName)
    } else if (current !== undefined) {
      // Made without Tower's uid annotation (by hand, or before the Cluster existed): adopt it, keeping its data.
      await secrets.update(secretName, undefined, (d) => { d.annotations.set(CLUSTER_UID_ANNOTATION, p.uid) })
      return
    }
    const meta = clusterSecretMeta(secretName, this.#o.context.namespace, { name: p.name, uid: p.uid })
    const created = await secrets.createIfAbsent({ apiVersion: 'v1', kind: 'Secret', type: 'Opaque', metadata: meta, data: encode(data()) })
    if (secretUid(created) !== p.uid) throw kubeApiError(`creating Secret ${secretName}`, { code: 409 })
  }

  async #ensureService (p: ValidCluster, port: number): Promise<V1Service | undefined> {
    const { core, namespace } = this.#o.context
    const desired = desiredService(p, port, namespace)
    const name = serviceName(p.name)
    const existing = this.#o.cache.service(name)
    if (existing !== undefined && serviceMatches(existing, desired)) return existing
    try {
      if (existing === undefined) return await core.createNamespacedService({ namespace, body: desired })
      return await core.replaceNamespacedService({ name, namespace, body: updatedService(existing, desired) })
    } catch (err) {
      // 409: created meanwhile, or changed since the cache saw it; the retry works from the newer object.
      throw kubeApiError(`writing Service ${name}`, err)
    }
  }

  /** The caller kubeconfig Secret: issued when missing, for another uid, or with less than a third of its validity left. */
  async #ensureKubeconfig (p: ValidCluster): Promise<{ pending: boolean, yaml?: string, renewInMs?: number }> {
    const validityMs = this.#o.kubeconfigValidityDays * DAY_MS
    const secretName = kubeconfigSecretName(p.name)
    const now = Date.now()
    const cached = this.#o.cache.secret(secretName)
    const fromSecret: Issued | undefined = cached === undefined ? undefined : issuedFrom(cached)
    const mine = this.#issued.get(p.name)
    const best = [fromSecret, mine].filter((i): i is Issued => i !== undefined && i.uid === p.uid).sort((a, b) => b.expiresAt - a.expiresAt)[0]
    if (best !== undefined) {
      const renewAt = best.expiresAt - validityMs / 3
      if (now < renewAt) return { pending: false, yaml: best.yaml, renewInMs: renewAt - now }
    }
    const { registry } = this.#o
    if (registry.find(p.name)?.uid !== p.uid || registry.endpoint(p.name) === undefined) return { pending: true }
    const { yaml } = await issueKubeconfigCredential(registry, { cluster: p.name, validityDays: this.#o.kubeconfigValidityDays })
    const expiresAt = now + validityMs
    const meta = clusterSecretMeta(secretName, this.#o.context.namespace, { name: p.name, uid: p.uid })
    if (cached !== undefined && secretUid(cached) !== undefined && secretUid(cached) !== p.uid) await this.#o.secrets.delete(secretName)
    await this.#o.secrets.update(secretName, meta, (d) => {
      d.data.set(KUBECONFIG_KEY, yaml)
      d.annotations.set(CLUSTER_UID_ANNOTATION, p.uid)
      d.annotations.set(EXPIRES_AT_ANNOTATION, new Date(expiresAt).toISOString())
    })
    this.#issued.set(p.name, { uid: p.uid, yaml, expiresAt })
    this.#log.info({ cluster: p.name, expiresAt: new Date(expiresAt).toISOString() }, 'issued the caller kubeconfig')
    return { pending: false, yaml, renewInMs: expiresAt - validityMs / 3 - now }
  }

  async #cleanup (name: string, raw: ClusterObject): Promise<void> {
    await deleteClusterObjects(this.#o, name)
    const meta = record(raw.metadata)
    const finalizers = Array.isArray(meta.finalizers) ? meta.finalizers.filter((f) => f !== FINALIZER) : []
    await this.#replace({ ...raw, metadata: { ...meta, finalizers } })
    this.forget(name)
    this.#o.onPortFreed?.()
    this.#log.info({ cluster: name }, 'Cluster deleted: port released, Service and Secrets deleted, finalizer removed')
  }

  /** Sets `want` on `conditions` and writes status when anything changed. */
  async #writeConditions (obj: ClusterObject, conditions: readonly ClusterCondition[], want: DesiredCondition[], kubernetesVersion?: string): Promise<void> {
    const now = conditionTime()
    let next = conditions
    for (const w of want) next = setCondition(next, w, now)
    const status = record(obj.status)
    const versionChanged = kubernetesVersion !== undefined && status.kubernetesVersion !== kubernetesVersion
    const stored = Array.isArray(status.conditions) ? status.conditions : []
    if (!versionChanged && conditionsEqual(next, conditions) && stored.length === conditions.length) return
    const body: Record<string, unknown> = { ...status, conditions: next }
    if (kubernetesVersion !== undefined) body.kubernetesVersion = kubernetesVersion
    try {
      await this.#o.status.write(obj, body)
    } catch (err) {
      throw kubeApiError(`writing the status of Cluster ${obj.metadata?.name ?? ''}`, err)
    }
  }

  /** Plain update of the whole Cluster; undefined when it is gone. */
  async #replace (body: ClusterObject): Promise<ClusterObject | undefined> {
    const name = body.metadata?.name ?? ''
    try {
      return await this.#o.context.custom.replaceClusterCustomObject({ group: CLUSTER_GROUP, version: CLUSTER_VERSION, plural: CLUSTER_PLURAL, name, body }) as ClusterObject
    } catch (err) {
      if (statusOf(err) === 404) return undefined
      throw kubeApiError(`updating Cluster ${name}`, err)
    }
  }

  async #fetch (name: string): Promise<ClusterObject | undefined> {
    try {
      return await this.#o.context.custom.getClusterCustomObject({ group: CLUSTER_GROUP, version: CLUSTER_VERSION, plural: CLUSTER_PLURAL, name }) as ClusterObject
    } catch (err) {
      if (statusOf(err) === 404) return undefined
      throw kubeApiError(`reading Cluster ${name}`, err)
    }
  }
}

/**
 * The valid conditions of a Cluster whose spec does not parse, so writing
 * Initialized=False keeps the others: parseCluster reads a copy that holds
 * only the status and the identity fields, which it checks itself.
 */
function conditionsOf (raw: ClusterObject): ClusterCondition[] {
  const meta = record(raw.metadata)
  const p = parseCluster({ metadata: { name: meta.name, uid: meta.uid, resourceVersion: meta.resourceVersion }, status: raw.status })
  return p.ok ? p.conditions : []
}

function initialized (status: 'True' | 'False', reason: string, message: string): DesiredCondition {
  return { type: ConditionType.Initialized, status, reason, message }
}

/** AgentAvailable from the server's report; undefined (leave it) while no report has come. */
export function agentCondition (runtime: RuntimeView | undefined, current: ClusterCondition | undefined): DesiredCondition | undefined {
  if (runtime === undefined) return undefined
  const type = ConditionType.AgentAvailable
  const n = runtime.agents.length
  if (n > 0) return { type, status: 'True', reason: ClusterReason.AgentConnected, message: `${n} agent(s) connected` }
  if (runtime.lastAgentLeftAt !== undefined) {
    return { type, status: 'False', reason: ClusterReason.AgentDisconnected, message: `the last agent disconnected at ${runtime.lastAgentLeftAt}` }
  }
  // A restarted server no longer knows when the last agent left; the condition written before it still does.
  if (current?.status === 'False' && current.reason === ClusterReason.AgentDisconnected) {
    return { type, status: 'False', reason: current.reason, message: current.message ?? '' }
  }
  return { type, status: 'False', reason: ClusterReason.NoAgentYet, message: 'no agent has connected yet' }
}

function externalCondition (p: ValidCluster, endpoint: string | undefined): DesiredCondition {
  const type = ConditionType.ExternalAccessReady
  if (!(p.serviceAnnotations instanceof Map)) {
    return { type, status: 'False', reason: ClusterReason.InvalidServiceAnnotations, message: `${p.serviceAnnotations.error}; the Service stays ClusterIP` }
  }
  if (endpoint === undefined) return { type, status: 'False', reason: ClusterReason.LoadBalancerPending, message: `waiting for the load balancer of Service ${serviceName(p.name)} to get an address` }
  return { type, status: 'True', reason: ClusterReason.LoadBalancerReady, message: endpoint }
}

/** The agents annotation's JSON: at most 16 entries, each field bounded. */
export function agentsAnnotation (agents: readonly AgentStatus[]): string {
  const cut = (s: unknown): string => typeof s === 'string' ? s.slice(0, 128) : ''
  return JSON.stringify(agents.slice(0, MAX_ANNOTATED_AGENTS).map((a) => ({ id: cut(a.id), remote: cut(a.remote), since: cut(a.since) })))
}

function record (v: unknown): Record<string, any> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? v as Record<string, any> : {}
}

function connectionTypeOf (raw: ClusterObject): unknown {
  const c = record(record(raw.spec).connection)
  return Object.hasOwn(c, 'type') ? c.type : undefined
}

function isDeleting (raw: ClusterObject): boolean {
  const meta = record(raw.metadata)
  return meta.deletionTimestamp !== undefined && meta.deletionTimestamp !== null
}

function hasFinalizer (raw: ClusterObject): boolean {
  const f = record(raw.metadata).finalizers
  return Array.isArray(f) && f.includes(FINALIZER)
}

function secretUid (s: V1Secret): string | undefined {
  const a = s.metadata?.annotations
  return a !== undefined && Object.hasOwn(a, CLUSTER_UID_ANNOTATION) ? a[CLUSTER_UID_ANNOTATION] : undefined
}

function issuedFrom (s: V1Secret): Issued | undefined {
  const uid = secretUid(s)
  const a = s.metadata?.annotations
  const expires = a !== undefined && Object.hasOwn(a, EXPIRES_AT_ANNOTATION) ? Date.parse(String(a[EXPIRES_AT_ANNOTATION])) : NaN
  const yaml = secretValue(s, KUBECONFIG_KEY, 256 * 1024)
  if (uid === undefined || yaml === undefined || Number.isNaN(expires)) return undefined
  return { uid, yaml, expiresAt: expires }
}

function encode (data: Map<string, string>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of data) out[k] = Buffer.from(v, 'utf8').toString('base64')
  return out
}
