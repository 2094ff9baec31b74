/**
 * The kubernetes backend of the registry: member clusters are KubeSphere
 * Cluster resources in a host cluster, their credentials Secrets in Tower's
 * namespace, their ports entries of the tower-ports ConfigMap.
 *
 * Reads are synchronous and come from the informer cache through
 * cluster-record.ts and the shared rules of @tower/server, so the hot path
 * never waits on the API and both backends decide alike. Records are
 * memoised per cluster by the resourceVersions they were built from.
 *
 * Writes go to the API and then wait until the cache has caught up with
 * them, so a caller that reads right after a write (the contract tests, the
 * CLI printing what it added) sees it. Port allocation, Services, status
 * and clean-up are the ClusterController's, started by claimServer.
 */
import { EventEmitter } from 'node:events'
import { randomBytes } from 'node:crypto'
import { isIP } from 'node:net'
import { hostname } from 'node:os'
import type { KubernetesObject, V1Secret } from '@kubernetes/client-node'
import { InvalidArgumentError, type Logger, silentLogger } from '@tower/mux'
import { isClusterName, type CertificateBundle } from '@tower/pki'
import {
  authenticateAgentIn, callerTokensOf, checkAddOptions, checkGraceMs, checkSerial, ClusterExistsError, credentialValidIn,
  DEFAULT_CERT_RENEW_BEFORE_DAYS, DEFAULT_SERVER_CERT_VALIDITY_DAYS, hashToken, issueServingCertificate, 
  needsRenewal, newToken, nextGraceEnd, PortRangeExhaustedError, servingHosts, TokenPrefix,
  UnknownClusterError, verifyCallerTokenIn,
  type AddOptions, type AgentAuthResult, type AgentStatus, type CallerIdentity, type CallerTokenInfo, type ClusterEndpoint, type ClusterRecord,
  type ClusterRegistry, type ServerSettings, type ServerStatusReport
} from '@tower/server'
import { notOlder, ResourceCache } from './cache.ts'
import { buildRecord, portOwner, portRefusal } from './cluster-record.ts'
import { parseCluster } from './cluster-resource.ts'
import { ClusterController, type ControllerSettings } from './controller.ts'
import { EndpointSlicePublisher, type ReplicaSettings, type SliceWriteHook } from './endpoint-slices.ts'
import { leaseNameFor, ReplicaLease } from './replica-lease.ts'
import { kubeApiError, statusOf } from './errors.ts'
import { loadKubeContext, type KubeContext } from './kube-context.ts'
import {
  CA_SECRET, callersSecretName, CLUSTER_GROUP, CLUSTER_KIND, CLUSTER_PLURAL, CLUSTER_VERSION, IMPERSONATE_ANNOTATION, joinSecretName,
  MODE_ANNOTATION, PortReason, PORTS_CONFIGMAP, SERVICE_KUBE_API_PORT, serviceHost
} from './names.ts'
import { federationAccess } from './federation-sync.ts'
import { preflight, REQUIRED_ACCESS } from './preflight.ts'
import { readRegistryStatus } from './registry-status.ts'
import { addCallerTokenDraft, revokeCallerTokensDraft, revokeSerialDraft, rotateJoinDraft } from './secret-drafts.ts'
import { clusterSecretMeta, readCaSecret, readJoinSecret, SecretWriter, type SecretDraft } from './secrets.ts'

/** Options of {@link KubernetesRegistry.open}. */
export interface KubernetesRegistryOptions {
  /** Path of a kubeconfig for the host cluster; absent: in-cluster. */
  kubeconfig?: string
  /** Tower's namespace; default tower-system. */
  namespace?: string
  /** A ready context instead of kubeconfig/namespace (tests). */
  context?: KubeContext
  /** Server settings (advertise host, SANs, port range, agent port); defaults below. */
  settings?: Partial<ServerSettings>
  /** Settings of the controller claimServer starts. */
  controller?: Partial<ControllerSettings>
  /** Where this replica runs, for its EndpointSlices (see ReplicaSettings). */
  replica?: ReplicaSettings
  /** How long add() waits for the controller to allocate the port, milliseconds; default 30,000. */
  addTimeoutMs?: number
  /** How long remove() waits for the Cluster to be gone (finalizer done), milliseconds; default 30,000. */
  removeTimeoutMs?: number
  /** How long a write waits for the cache to show it, milliseconds; default 10,000. */
  cacheWaitMs?: number
  /** Lifetime of the serving certificate, days; default 825. */
  serverCertValidityDays?: number
  /** Cache start-up timeout, milliseconds; default 60,000. */
  syncTimeoutMs?: number
  logger?: Logger
}

/** `change` is emitted at most this often, milliseconds. */
export const CHANGE_DEBOUNCE_MS = 50

interface Memo { key: string, record: ClusterRecord | undefined }

/** See the module comment. Emits `change` (debounced) when anything a record is built from changes. */
export class KubernetesRegistry extends EventEmitter implements ClusterRegistry {
  /** Which backend this is. */
  readonly kind = 'kubernetes' as const
  readonly settings: ServerSettings
  readonly #ctx: KubeContext
  readonly #cache: ResourceCache
  readonly #writer: SecretWriter
  readonly #log: Logger
  readonly #logger: Logger
  readonly #opts: KubernetesRegistryOptions
  readonly #controllerSettings: ControllerSettings
  readonly #memo = new Map<string, Memo>()
  #ca: CertificateBundle
  #cert: CertificateBundle | undefined
  #controller: ClusterController | undefined
  #claimed = false
  #changeTimer: NodeJS.Timeout | undefined
  #graceTimer: NodeJS.Timeout | undefined
  #slices: EndpointSlicePublisher | undefined
  #replicaLease: ReplicaLease | undefined
  #sliceWrites: SliceWriteHook | undefined

  private constructor (ctx: KubeContext, cache: ResourceCache, ca: CertificateBundle, opts: KubernetesRegistryOptions, logger: Logger) {
    super()
    this.#ctx = ctx
    this.#cache = cache
    this.#writer = new SecretWriter(ctx)
    this.#ca = ca
    this.#opts = opts
    this.#logger = logger
    this.#log = logger.child({ component: 'kubernetes-registry' })
    const portRange = opts.settings?.portRange ?? opts.controller?.portRange ?? '6000-6999'
    this.settings = {
      advertiseHost: opts.settings?.advertiseHost ?? `tower-server.${ctx.namespace}.svc`,
      sans: [...(opts.settings?.sans ?? [])],
      portRange,
      ...(opts.settings?.listenPort !== undefined ? { listenPort: opts.settings.listenPort } : {})
    }
    this.#controllerSettings = {
      portRange,
      kubesphereCompat: false,
      leaderElect: true,
      identity: `${hostname()}-${randomBytes(4).toString('hex')}`,
      leaseDurationMs: 15_000,
      kubeconfigValidityDays: 90,
      // A flag the CLI left unset arrives as undefined and must not erase its default.
      ...Object.fromEntries(Object.entries(opts.controller ?? {}).filter(([, v]) => v !== undefined))
    }
    for (const kind of ['cluster', 'secret', 'configmap'] as const) cache.on(kind, () => { this.#changed() })
    this.#scheduleGrace()
  }

  /** Connects to the host cluster, syncs the cache and makes sure the CA exists. */
  static async open (opts: KubernetesRegistryOptions = {}): Promise<KubernetesRegistry> {
    const logger = opts.logger ?? silentLogger
    const ctx = opts.context ?? loadKubeContext({ kubeconfig: opts.kubeconfig, namespace: opts.namespace })
    const cache = new ResourceCache({ context: ctx, logger, syncTimeoutMs: opts.syncTimeoutMs })
    await cache.start()
    try {
      const cached = cache.secret(CA_SECRET)
      const ca = cached !== undefined ? readCaSecret(cached) : await new SecretWriter(ctx).ensureCa()
      return new KubernetesRegistry(ctx, cache, ca, opts, logger)
    } catch (err) {
      await cache.stop()
      throw err
    }
  }

  /** The host-cluster context (the controller and the CLI share it). */
  get context (): KubeContext { return this.#ctx }

  /** The informer cache. */
  get cache (): ResourceCache { return this.#cache }

  /** The shared CA (Secret tower-ca). */
  get ca (): CertificateBundle { return this.#ca }

  /** The serving certificate: advertise host, SANs and every mc-<name>.<ns>.svc; re-issued in memory when a name is missing. */
  serverCertificate (): CertificateBundle {
    const extra = this.clusters().flatMap((c) => {
      const host = serviceHost(c.name, this.#ctx.namespace)
      return [host, `${host}.cluster.local`]
    })
    const hosts = servingHosts(this.settings, extra)
    if (this.#cert === undefined || needsRenewal(this.#cert, hosts, DEFAULT_CERT_RENEW_BEFORE_DAYS)) {
      this.#cert = issueServingCertificate(this.#ca, { hosts, validityDays: this.#opts.serverCertValidityDays ?? DEFAULT_SERVER_CERT_VALIDITY_DAYS })
      this.#log.info({ hosts: hosts.length }, 'serving certificate issued')
    }
    return this.#cert
  }

  // --- reads ------------------------------------------------------------------

  /** Served clusters (proxy, not deleting, port allocated, join Secret present), sorted by name. */
  clusters (): ClusterRecord[] {
    const out: ClusterRecord[] = []
    const seen = new Set<string>()
    for (const obj of this.#cache.clusters()) {
      const name = (obj as KubernetesObject).metadata?.name
      if (typeof name !== 'string' || !isClusterName(name)) continue
      seen.add(name)
      const r = this.#record(name)
      if (r !== undefined) out.push(r)
    }
    for (const name of this.#memo.keys()) if (!seen.has(name)) this.#memo.delete(name)
    return out.sort((a, b) => a.name.localeCompare(b.name))
  }

  /** One served cluster, or undefined (unknown, invalid name, not served yet). */
  find (name: string): ClusterRecord | undefined {
    return isClusterName(name) ? this.#record(name) : undefined
  }

  /** One served cluster; throws TOWER_ERR_UNKNOWN_CLUSTER. */
  get (name: string): ClusterRecord {
    const c = this.find(name)
    if (c === undefined) throw new UnknownClusterError(String(name))
    return c
  }

  /** mc-<name>.<ns>.svc:6443, the Service in front of the cluster's port. */
  endpoint (name: string): ClusterEndpoint | undefined {
    const c = this.find(name)
    return c === undefined || c.port === 0 ? undefined : { host: serviceHost(c.name, this.#ctx.namespace), port: SERVICE_KUBE_API_PORT }
  }

  authenticateAgent (cluster: string, token: string): AgentAuthResult {
    return authenticateAgentIn(this.find(cluster), cluster, token, Date.now())
  }

  agentCredentialValid (cluster: string, credential: string): boolean {
    return credentialValidIn(this.find(cluster), credential, Date.now())
  }

  verifyCallerToken (cluster: string, token: string): CallerIdentity | undefined {
    return verifyCallerTokenIn(this.find(cluster), token)
  }

  callerTokens (name: string): CallerTokenInfo[] {
    return callerTokensOf(this.get(name))
  }

  #record (name: string, requirePort = true): ClusterRecord | undefined {
    const cluster = this.#cache.cluster(name)
    if (cluster === undefined) return undefined
    const join = this.#cache.secret(joinSecretName(name))
    const callers = this.#cache.secret(callersSecretName(name))
    const ports = this.#cache.configMap(PORTS_CONFIGMAP)
    // Keyed by this cluster's own ports entry, not the ConfigMap's resourceVersion: allocating one
    // cluster's port must not rebuild every record (1,000 records with 10 caller tokens: ~95 ms).
    const key = [rv(cluster), rv(join), rv(callers), portOwner(ports, rawPort(cluster)) ?? '-', requirePort].join('|')
    const memo = requirePort ? this.#memo.get(name) : undefined
    if (memo?.key === key) return memo.record
    const built = buildRecord({ cluster, joinSecret: join, callersSecret: callers, portsConfigMap: ports }, requirePort)
    const record = built.ok ? built.record : undefined
    if (requirePort) this.#memo.set(name, { key, record })
    return record
  }

  // --- writes -----------------------------------------------------------------

  /**
   * Creates the Cluster (type proxy) and its join Secret; resolves once the
   * controller has allocated the port and the cluster is served, or after
   * addTimeoutMs with port 0 (logged: the port is pending).
   */
  async add (name: string, opts: AddOptions = {}): Promise<{ cluster: ClusterRecord, token: string }> {
    const { mode, impersonate } = checkAddOptions(name, opts)
    if (this.#cache.cluster(name) !== undefined) throw new ClusterExistsError(name)
    const annotations: Record<string, string> = { [MODE_ANNOTATION]: mode }
    if (impersonate) annotations[IMPERSONATE_ANNOTATION] = 'true'
    const body = {
      apiVersion: `${CLUSTER_GROUP}/${CLUSTER_VERSION}`,
      kind: CLUSTER_KIND,
      metadata: { name, annotations },
      spec: { connection: { type: 'proxy', ...(opts.port !== undefined ? { kubernetesAPIServerPort: opts.port } : {}) } }
    }
    let created: KubernetesObject
    try {
      created = await this.#ctx.custom.createClusterCustomObject({ group: CLUSTER_GROUP, version: CLUSTER_VERSION, plural: CLUSTER_PLURAL, body }) as KubernetesObject
    } catch (err) {
      if (statusOf(err) === 409) throw new ClusterExistsError(name)
      throw kubeApiError(`creating Cluster ${name}`, err)
    }
    const uid = created.metadata?.uid ?? ''
    const { token, secret } = await this.#writer.ensureJoinSecret({ name, uid }, newToken(TokenPrefix.agent))
    await this.#caughtUp(secret)
    let refused: { reason: string, message: string } | undefined
    const served = await this.#cache.waitFor(() => {
      refused = portRefusal(this.#cache.cluster(name), uid)
      return refused !== undefined || this.find(name)?.uid === uid
    }, this.#opts.addTimeoutMs ?? 30_000)
    if (refused !== undefined) {
      // add() is all or nothing, as in the file backend: the Cluster that cannot get its port goes again.
      // Only this very Cluster (uid precondition), never one re-created under the name meanwhile.
      const body = { preconditions: { uid } }
      await this.#ctx.custom.deleteClusterCustomObject({ group: CLUSTER_GROUP, version: CLUSTER_VERSION, plural: CLUSTER_PLURAL, name, body }).catch((err: unknown) => {
        this.#log.warn({ err: kubeApiError(`deleting Cluster ${name}`, err), cluster: name }, 'cannot delete the Cluster whose port was refused; delete it by hand')
      })
      if (refused.reason === PortReason.PortRangeExhausted) throw new PortRangeExhaustedError(this.settings.portRange)
      throw new InvalidArgumentError(`--port: ${refused.message}`)
    }
    const cluster = served ? this.find(name) : this.#record(name, false)
    if (cluster === undefined) throw kubeApiError(`reading Cluster ${name} back`, { code: 0 })
    if (!served) this.#log.warn({ cluster: name }, 'cluster added but no port allocated yet; is the server (its controller) running?')
    this.#log.info({ cluster: name, mode, port: cluster.port }, 'cluster added')
    return { cluster, token }
  }

  /** Deletes the Cluster; the controller's finalizer releases its port and Secrets. Resolves when it is gone (or after removeTimeoutMs, logged). */
  async remove (name: string): Promise<void> {
    const obj = isClusterName(name) ? this.#cache.cluster(name) : undefined
    const parsed = obj === undefined ? undefined : parseCluster(obj)
    // Only proxy Clusters (or broken ones claiming to be) are Tower's to delete.
    if (parsed === undefined || (parsed.ok && parsed.type !== 'proxy')) throw new UnknownClusterError(String(name))
    try {
      await this.#ctx.custom.deleteClusterCustomObject({ group: CLUSTER_GROUP, version: CLUSTER_VERSION, plural: CLUSTER_PLURAL, name })
    } catch (err) {
      if (statusOf(err) === 404) throw new UnknownClusterError(name)
      throw kubeApiError(`deleting Cluster ${name}`, err)
    }
    const gone = await this.#cache.waitFor(() => this.#cache.cluster(name) === undefined, this.#opts.removeTimeoutMs ?? 30_000)
    if (!gone) this.#log.warn({ cluster: name }, 'Cluster marked for deletion but still there; its finalizer runs when the server (its controller) does')
    this.#log.info({ cluster: name }, 'cluster removed')
  }

  /** Replaces the join token in its Secret; the old one stays as previous-token until the grace ends. */
  async rotateAgentToken (name: string, opts: { graceMs?: number } = {}): Promise<string> {
    const graceMs = checkGraceMs(opts.graceMs)
    const c = this.get(name)
    const token = newToken(TokenPrefix.agent)
    await this.#writeClusterSecret(c, joinSecretName(c.name), (d) => { rotateJoinDraft(d, token, graceMs) })
    this.#log.info({ cluster: c.name, graceMs }, 'agent token rotated')
    return token
  }

  /** The join token from the cluster's Secret (the cache's copy). */
  async agentToken (name: string): Promise<string | undefined> {
    const c = this.find(name) ?? (isClusterName(name) ? this.#record(name, false) : undefined)
    if (c === undefined) throw new UnknownClusterError(String(name))
    return readJoinSecret(this.#cache.secret(joinSecretName(c.name)))?.token
  }

  async issueCallerToken (name: string, identity: CallerIdentity): Promise<{ token: string, id: string }> {
    const c = this.get(name)
    const token = newToken(TokenPrefix.caller)
    const id = randomBytes(4).toString('hex')
    const record = { id, hash: hashToken(token), user: identity.user, groups: [...identity.groups], createdAt: new Date().toISOString() }
    await this.#writeClusterSecret(c, callersSecretName(c.name), (d) => { addCallerTokenDraft(d, c.name, record) })
    this.#log.info({ cluster: c.name, tokenId: id, user: identity.user }, 'caller token issued')
    return { token, id }
  }

  async revokeCallerTokens (name: string, id: string): Promise<number> {
    const c = this.get(name)
    const n = await this.#writeClusterSecret(c, callersSecretName(c.name), (d) => revokeCallerTokensDraft(d, c.name, id))
    this.#log.info({ cluster: c.name, tokenId: id, revoked: n }, 'caller token revoked')
    return n
  }

  async revokeCertificate (name: string, serial: string): Promise<boolean> {
    const hex = checkSerial(serial)
    const c = this.get(name)
    const added = await this.#writeClusterSecret(c, callersSecretName(c.name), (d) => revokeSerialDraft(d, c.name, hex))
    this.#log.info({ cluster: c.name, serial: hex }, 'client certificate revoked')
    return added
  }

  async #writeClusterSecret<T> (c: ClusterRecord, name: string, mutate: (d: SecretDraft) => T): Promise<T> {
    const { result, secret } = await this.#writer.update(name, clusterSecretMeta(name, this.#ctx.namespace, { name: c.name, uid: c.uid ?? '' }), mutate)
    await this.#caughtUp(secret)
    return result
  }

  /** Waits until the cache holds `written` (or something newer). */
  async #caughtUp (written: V1Secret | undefined): Promise<void> {
    const name = written?.metadata?.name
    const target = written?.metadata?.resourceVersion
    if (name === undefined || target === undefined) return
    const ok = await this.#cache.waitFor(() => notOlder(this.#cache.secret(name)?.metadata?.resourceVersion, target), this.#opts.cacheWaitMs ?? 10_000)
    if (!ok) this.#log.warn({ secret: name }, 'write not yet seen by the cache; reads may lag')
  }

  // --- the running server -----------------------------------------------------

  /** Preflight (CRD, RBAC), then starts the ClusterController. */
  async claimServer (): Promise<void> {
    if (this.#claimed) return
    await preflight(this.#ctx, [...REQUIRED_ACCESS, ...federationAccess(this.#controllerSettings.federation)])
    const slices = this.#replicaSlices()
    const controller = new ClusterController({ context: this.#ctx, cache: this.#cache, registry: this, settings: this.#controllerSettings, peers: slices?.peers, logger: this.#logger })
    if (slices !== undefined) {
      this.#slices = slices.publisher
      this.#replicaLease = new ReplicaLease({
        context: this.#ctx, identity: this.#controllerSettings.identity, replicaKey: slices.publisher.key, leaseDurationMs: this.#controllerSettings.leaseDurationMs,
        slices: slices.publisher, leading: () => controller.leading, logger: this.#logger
      })
      slices.lease = this.#replicaLease
      // The Lease first: a leader must never see this replica's slice without its Lease.
      await this.#replicaLease.start()
      slices.publisher.start()
    }
    await controller.start()
    this.#controller = controller
    this.#claimed = true
  }

  /** Stops the controller (and gives up its Lease). */
  async releaseServer (): Promise<void> {
    const c = this.#controller
    this.#controller = undefined
    this.#claimed = false
    await c?.stop()
    // A graceful exit leaves nothing for the leader to clean up: slices first, then the Lease they name.
    const slices = this.#slices; const lease = this.#replicaLease
    this.#slices = undefined
    this.#replicaLease = undefined
    await slices?.stop(true)
    await lease?.stop(true)
  }

  /** Nothing to do: ports are allocated by the controller, never by the OS, in this backend. */
  recordPorts (_ports: Map<string, number>): void {}

  /** Whether every informer has listed once: the server is not ready before (its /readyz). */
  synced (): boolean {
    return this.#cache.synced
  }

  /** Counts this replica's EndpointSlice writes (the server's metric). */
  observeEndpointSliceWrites (hook: SliceWriteHook): void {
    this.#sliceWrites = hook
  }

  // This replica's EndpointSlice publisher and the peers view the controller reads; undefined without a routable address.
  #replicaSlices (): { publisher: EndpointSlicePublisher, peers: { agents: (c: string) => AgentStatus[], subscribe: (l: (c: string) => void) => () => void }, lease?: ReplicaLease } | undefined {
    const r = this.#controllerSettings.replica ?? this.#opts.replica
    const advertise = this.settings.advertiseHost
    const address = r?.address ?? (isIP(advertise) !== 0 ? advertise : undefined)
    if (address === undefined || isIP(address) === 0) {
      this.#log.warn({ advertiseHost: advertise }, 'no IP address for this replica (--pod-ip, or an IP --advertise-host): it publishes no EndpointSlices, so mc-<name> Services route no caller to it')
      return undefined
    }
    // The EndpointSlice API refuses loopback and link-local endpoints (422): do not retry that forever.
    if (/^(127\.|169\.254\.|::1$|fe80:)/i.test(address)) {
      this.#log.warn({ address }, 'this replica\'s address is loopback or link-local, which EndpointSlices cannot hold: it publishes none, so mc-<name> Services route no caller to it')
      return undefined
    }
    const identity = this.#controllerSettings.identity
    const leaseName = leaseNameFor(identity)
    const publisher = new EndpointSlicePublisher({
      context: this.#ctx,
      replica: { identity, address, leaseName, ...(r?.pod !== undefined ? { pod: r.pod } : {}) },
      onWrite: (op, result) => { this.#sliceWrites?.(op, result) },
      logger: this.#logger
    })
    const out: { publisher: EndpointSlicePublisher, peers: { agents: (c: string) => AgentStatus[], subscribe: (l: (c: string) => void) => () => void }, lease?: ReplicaLease } = {
      publisher,
      peers: {
        agents: (cluster) => publisher.peerAgents(cluster, (name) => out.lease?.alive(name) ?? true),
        subscribe: (listener) => { publisher.on('peers', listener); return () => { publisher.off('peers', listener) } }
      }
    }
    return out
  }

  /** Hands the report to the controller, which writes conditions and the agents annotation (when leading). */
  reportStatus (report: ServerStatusReport): void {
    try {
      this.#controller?.report(report)
      this.#slices?.update(report)
    } catch (err) {
      this.#log.warn({ err }, 'status report not taken; Cluster conditions show the previous one')
    }
  }

  /** The status as the Clusters show it, when a server runs (this one, or a Lease holder that renews). Never throws. */
  async readStatus (): Promise<ServerStatusReport | undefined> {
    return await readRegistryStatus(this.#ctx, this.#cache, this.clusters(), {
      self: this.#claimed, agentPort: this.settings.listenPort ?? null, log: this.#log
    })
  }

  /** Stops the controller, the cache and the timers. */
  async close (): Promise<void> {
    await this.releaseServer()
    clearTimeout(this.#changeTimer)
    clearTimeout(this.#graceTimer)
    await this.#cache.stop()
  }

  #changed (): void {
    if (this.#changeTimer !== undefined) return
    this.#changeTimer = setTimeout(() => {
      this.#changeTimer = undefined
      this.#scheduleGrace()
      this.emit('change')
    }, CHANGE_DEBOUNCE_MS)
  }

  // A rotation grace ends without any write: emit `change` then so the server re-checks its agents.
  #scheduleGrace (): void {
    clearTimeout(this.#graceTimer)
    this.#graceTimer = undefined
    const next = nextGraceEnd(this.clusters(), Date.now())
    if (next === undefined) return
    this.#graceTimer = setTimeout(() => {
      this.#graceTimer = undefined
      this.#scheduleGrace()
      this.emit('change')
    }, Math.min(Math.max(next - Date.now(), 0) + 1, 0x7fffffff))
    this.#graceTimer.unref()
  }
}

/** spec.connection.kubernetesAPIServerPort as a number, unvalidated (only a cache key; buildRecord validates). */
function rawPort (cluster: object): number {
  const spec = (cluster as { spec?: unknown }).spec
  const conn = typeof spec === 'object' && spec !== null && Object.hasOwn(spec, 'connection') ? (spec as { connection?: unknown }).connection : undefined
  const port = typeof conn === 'object' && conn !== null && Object.hasOwn(conn, 'kubernetesAPIServerPort') ? (conn as { kubernetesAPIServerPort?: unknown }).kubernetesAPIServerPort : undefined
  return typeof port === 'number' ? port : 0
}

function rv (obj: object | undefined): string {
  const v = (obj as KubernetesObject | undefined)?.metadata?.resourceVersion
  return typeof v === 'string' ? v : '-'
}
