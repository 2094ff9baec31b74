/**
 * Controller-mode federation join (--join-kubefed, --join-karmada): the
 * reconciler calls sync() for every initialized proxy Cluster and leave()
 * on its finalizer path. sync() keeps, per enabled target, one object in
 * the federation control plane (a KubeFedCluster in KubeFed's namespace of
 * the host, a push-mode Karmada Cluster on Karmada's apiserver) pointing at
 * Tower's endpoint for the cluster with Tower's CA and a caller token bound
 * to it, and answers the Federated condition from that object's Ready.
 *
 * What is joined is read from the watches (federation-watch.ts), so a
 * settled member costs no request: a write happens only when the object is
 * missing, says another endpoint or CA, or names a token the registry no
 * longer knows or that is past two thirds of --federation-token-ttl. A
 * rotation issues the new token and writes it (the object's token-id
 * annotation changes, which makes KubeFed and Karmada rebuild their member
 * clients); the tokens it superseded (every other token of the target's
 * user) are revoked once the new one has been in place for a grace period
 * (a sixth of the TTL, at most a minute), so a controller still holding
 * the old client is not cut off mid-rebuild. That rule needs no memory, so
 * a restarted leader finishes a rotation the previous one began; it also
 * means tokens of the users tower-kubefed / tower-karmada on a managed
 * cluster are this sync's alone.
 *
 * The token's age is the creation time the registry keeps for it (the
 * callers Secret), so a restarted or new leader rotates on the same
 * schedule; the expiry is also annotated on the objects for operators.
 */
import { CustomObjectsApi, KubeConfig } from '@kubernetes/client-node'
import { InvalidArgumentError, silentLogger, type Logger } from '@tower/mux'
import type { ClusterRegistry } from '@tower/server'
import { kubeApiError, statusOf } from './errors.ts'
import {
  DEFAULT_KARMADA_SECRET_NAMESPACE, DEFAULT_KUBEFED_NAMESPACE, joinKarmada, joinKubeFed, KARMADA_CLUSTER_GROUP, KARMADA_CLUSTER_PLURAL,
  KARMADA_CLUSTER_VERSION, KUBEFED_CLUSTER_PLURAL, KUBEFED_GROUP, KUBEFED_VERSION, leaveKarmada, leaveKubeFed, type FederationMember, type JoinResult
} from './federation/index.ts'
import { isManaged, tokenIdOf, type ObjectMeta } from './federation/member.ts'
import { expiryAt, federatedCondition, readinessOf, tokenState, wantsFederation, type FederationTarget, type TargetReadiness } from './federation-state.ts'
import { FederationWatch } from './federation-watch.ts'
import type { DesiredCondition } from './conditions.ts'
import { ConditionType, FederationReason, FederationUser } from './names.ts'
import type { AccessRule } from './preflight.ts'

/** Settings of the federation join (from `tower server` flags). */
export interface FederationSettings {
  /** --join-kubefed: keep a KubeFedCluster per proxy Cluster in the host cluster. */
  kubefed: boolean
  /** --kubefed-namespace: KubeFed's namespace in the host cluster; default kube-federation-system. */
  kubefedNamespace?: string
  /** --join-karmada: path of a kubeconfig for Karmada's apiserver; absent: no Karmada join. */
  karmadaKubeconfig?: string
  /**
   * --federation-endpoint-host: host the federation objects' apiEndpoint names instead of the
   * in-cluster Service (mc-<name>.<ns>.svc:6443); the port is then the cluster's own Tower port.
   * For a federation controller outside the host cluster. It must be one of the serving certificate's SANs.
   */
  endpointHost?: string
  /** --federation-token-ttl: lifetime of a federation caller token, milliseconds; rotated at two thirds. Default 30 days. */
  tokenTtlMs?: number
}

/** The parts of a parsed Cluster sync() reads. */
export interface FederationSubject {
  name: string
  uid: string
  mode: 'proxy' | 'passthrough'
}

/** What sync() wants the reconciler to do with the Federated condition. */
export interface FederationOutcome {
  /** Set this condition; undefined: remove Federated (the cluster opted out). */
  condition?: DesiredCondition
  /** Reconcile again after this many milliseconds (rotation, retry). */
  requeueAfterMs?: number
}

/** Options of {@link FederationSync}. */
export interface FederationSyncOptions {
  /** The host cluster (the controller's own KubeConfig): KubeFed runs there. */
  hostKc: KubeConfig
  registry: ClusterRegistry
  settings: FederationSettings
  /** Called with a Cluster name when its federation object changed (queue it). */
  onChange: (name: string) => void
  logger?: Logger
}

/** Default of FederationSettings.tokenTtlMs: 30 days. */
export const DEFAULT_FEDERATION_TOKEN_TTL_MS = 30 * 86_400_000
/** Shortest token lifetime accepted, milliseconds (rotation must not become a busy loop). */
const MIN_TOKEN_TTL_MS = 15_000
/** Retry after a failed join or a conflict, milliseconds. */
const RETRY_MS = 30_000
/** Look again soon while a watch has not listed yet, milliseconds. */
const UNSYNCED_RETRY_MS = 2000
/** How long leave() waits for Karmada's finalizer per attempt before answering pending, milliseconds. */
const KARMADA_LEAVE_WAIT_MS = 5000
/** Retry of a pending leave, milliseconds. */
const LEAVE_RETRY_MS = 5000
/** Longest time a superseded token stays valid after its successor was written, milliseconds. */
const MAX_REVOKE_GRACE_MS = 60_000
/** How long a write may take to show in the watch before it is written again, milliseconds. */
const WATCH_LAG_MS = 30_000
/** Look again this soon while the watch has not shown a write yet, milliseconds. */
const LAG_RETRY_MS = 1000
/** Most writes remembered until the watch shows them. */
const MAX_WRITTEN = 20_000

/** The extra access --join-kubefed needs in the host cluster, for preflight. */
export function federationAccess (settings: FederationSettings | undefined): AccessRule[] {
  if (settings?.kubefed !== true) return []
  const namespace = settings.kubefedNamespace ?? DEFAULT_KUBEFED_NAMESPACE
  return [
    { group: KUBEFED_GROUP, resource: KUBEFED_CLUSTER_PLURAL, verbs: ['get', 'list', 'watch', 'create', 'update', 'delete'], scope: 'namespace', namespace },
    { group: '', resource: 'secrets', verbs: ['get', 'create', 'update', 'delete'], scope: 'namespace', namespace }
  ]
}

/** Checks the settings; throws TOWER_ERR_INVALID_ARG. */
function checkSettings (s: FederationSettings): number {
  const ttl = s.tokenTtlMs ?? DEFAULT_FEDERATION_TOKEN_TTL_MS
  if (!Number.isSafeInteger(ttl) || ttl < MIN_TOKEN_TTL_MS) throw new InvalidArgumentError(`--federation-token-ttl must be at least ${MIN_TOKEN_TTL_MS / 1000}s`)
  const host = s.endpointHost
  if (host !== undefined && (typeof host !== 'string' || !/^[A-Za-z0-9.:-]{1,253}$/.test(host))) {
    throw new InvalidArgumentError(`--federation-endpoint-host must be a host name or IP, got ${JSON.stringify(host)}`)
  }
  return ttl
}

/** A target's client and watch. */
interface Target {
  kind: FederationTarget
  kc: KubeConfig
  watch: FederationWatch
}

/** See the module comment. */
export class FederationSync {
  readonly #o: FederationSyncOptions
  readonly #log: Logger
  readonly #ttlMs: number
  readonly #graceMs: number
  readonly #targets: Target[] = []
  /** The token id last written per `<target>/<cluster>` and when, until the watch shows it (at most one per cluster and target). */
  readonly #written = new Map<string, { id: string, at: number }>()

  constructor (opts: FederationSyncOptions) {
    this.#o = opts
    this.#log = (opts.logger ?? silentLogger).child({ component: 'federation-sync' })
    this.#ttlMs = checkSettings(opts.settings)
    this.#graceMs = Math.min(MAX_REVOKE_GRACE_MS, Math.floor(this.#ttlMs / 6))
    const logger = opts.logger ?? silentLogger
    if (opts.settings.kubefed) {
      const namespace = opts.settings.kubefedNamespace ?? DEFAULT_KUBEFED_NAMESPACE
      const custom = opts.hostKc.makeApiClient(CustomObjectsApi)
      const watch = new FederationWatch({
        kc: opts.hostKc,
        path: `/apis/${KUBEFED_GROUP}/${KUBEFED_VERSION}/namespaces/${namespace}/${KUBEFED_CLUSTER_PLURAL}`,
        list: (labelSelector) => custom.listNamespacedCustomObject({ group: KUBEFED_GROUP, version: KUBEFED_VERSION, namespace, plural: KUBEFED_CLUSTER_PLURAL, labelSelector }),
        namespace,
        what: 'KubeFedClusters',
        logger
      })
      this.#targets.push({ kind: 'kubefed', kc: opts.hostKc, watch })
    }
    if (opts.settings.karmadaKubeconfig !== undefined) {
      const kc = new KubeConfig()
      try {
        kc.loadFromFile(opts.settings.karmadaKubeconfig)
      } catch (err) {
        throw new InvalidArgumentError(`--join-karmada ${opts.settings.karmadaKubeconfig}: ${(err as Error).message}`)
      }
      if (kc.getCurrentCluster() === null) throw new InvalidArgumentError(`--join-karmada ${opts.settings.karmadaKubeconfig} has no current cluster`)
      const custom = kc.makeApiClient(CustomObjectsApi)
      const watch = new FederationWatch({
        kc,
        path: `/apis/${KARMADA_CLUSTER_GROUP}/${KARMADA_CLUSTER_VERSION}/${KARMADA_CLUSTER_PLURAL}`,
        list: (labelSelector) => custom.listClusterCustomObject({ group: KARMADA_CLUSTER_GROUP, version: KARMADA_CLUSTER_VERSION, plural: KARMADA_CLUSTER_PLURAL, labelSelector }),
        what: 'Karmada Clusters',
        logger
      })
      this.#targets.push({ kind: 'karmada', kc, watch })
    }
    for (const t of this.#targets) t.watch.on('object', (name: string) => { opts.onChange(name) })
  }

  /** True when at least one target is enabled. */
  get enabled (): boolean { return this.#targets.length > 0 }

  /** Starts the watches. */
  start (): void {
    for (const t of this.#targets) t.watch.start()
  }

  /** Stops the watches. */
  async stop (): Promise<void> {
    await Promise.all(this.#targets.map((t) => t.watch.stop()))
  }

  /** Joins (or leaves, for joinFederation false) `p` on every target; never throws for a target's failure. */
  async sync (raw: unknown, p: FederationSubject): Promise<FederationOutcome> {
    if (!wantsFederation(raw)) {
      for (const t of this.#targets) {
        if (t.watch.get(p.name) === undefined) continue
        const left = await this.#leaveTarget(t, p.name)
        if (left.pending) return { requeueAfterMs: LEAVE_RETRY_MS }
      }
      return {}
    }
    if (p.mode !== 'proxy') {
      return { condition: { type: ConditionType.Federated, status: 'False', reason: FederationReason.PassthroughMode, message: 'a passthrough cluster cannot be joined: the federation controller\'s caller token needs a proxy-mode cluster' } }
    }
    const readiness: TargetReadiness[] = []
    const next: number[] = []
    let failure: DesiredCondition | undefined
    for (const t of this.#targets) {
      const r = await this.#syncTarget(t, p)
      readiness.push(r.readiness)
      if (r.requeueAfterMs !== undefined) next.push(r.requeueAfterMs)
      failure ??= r.failure
    }
    return { condition: failure ?? federatedCondition(readiness), requeueAfterMs: next.length > 0 ? Math.min(...next) : undefined }
  }

  /**
   * Removes `name` from every target and revokes the tokens (finalizer path).
   * pending: Karmada's finalizer still runs; call again later (the token is kept meanwhile).
   * Throws on a failed request, so the Cluster keeps its finalizer and the queue retries.
   */
  async leave (name: string): Promise<{ pending: boolean, requeueAfterMs?: number }> {
    let pending = false
    for (const t of this.#targets) if ((await this.#leaveTarget(t, name)).pending) pending = true
    return pending ? { pending, requeueAfterMs: LEAVE_RETRY_MS } : { pending }
  }

  async #syncTarget (t: Target, p: FederationSubject): Promise<{ readiness: TargetReadiness, requeueAfterMs?: number, failure?: DesiredCondition }> {
    if (!t.watch.synced) {
      const why = t.watch.lastError === undefined ? '' : `: ${kubeApiError('listing', t.watch.lastError).message.slice(0, 300)}`
      return { readiness: { target: t.kind, status: 'Unknown', reason: FederationReason.Joining, message: `waiting for the first list of the ${t.kind} objects${why}` }, requeueAfterMs: UNSYNCED_RETRY_MS }
    }
    const member = this.#memberOf(p.name)
    if (member === undefined) return { readiness: { target: t.kind }, requeueAfterMs: UNSYNCED_RETRY_MS }
    const current = t.watch.get(p.name)
    const tokens = this.#o.registry.callerTokens(p.name)
    const currentId = tokenIdOf(current?.metadata as ObjectMeta | undefined)
    // A write the watch has not shown yet: its old view would make us write (and issue a token) again.
    const key = `${t.kind}/${p.name}`
    const written = this.#written.get(key)
    if (written !== undefined) {
      if (currentId !== written.id && Date.now() - written.at < WATCH_LAG_MS) return { readiness: readinessOf(t.kind, current), requeueAfterMs: LAG_RETRY_MS }
      this.#written.delete(key)
    }
    const state = tokenState(currentId, tokens, this.#ttlMs, Date.now())
    const stale = staleReason(t.kind, current, member)
    if (stale === undefined && !state.due) {
      const revokeIn = await this.#revokeSuperseded(t, p.name, currentId!, tokens)
      return { readiness: readinessOf(t.kind, current), requeueAfterMs: revokeIn === undefined ? state.inMs : Math.min(state.inMs, revokeIn) }
    }
    try {
      const id = await this.#join(t, p.name, member, stale ?? (state.due ? state.why : 'rotation'))
      // Entries go once seen; a bound for Clusters that went without a leave (a double write at worst).
      if (this.#written.size >= MAX_WRITTEN) this.#written.clear()
      this.#written.set(key, { id, at: Date.now() })
    } catch (err) {
      const code = (err as { code?: unknown }).code
      const conflict = code === 'TOWER_ERR_FEDERATION_CONFLICT'
      this.#log.warn({ err, cluster: p.name, target: t.kind }, conflict ? 'federation object exists and is not Tower\'s; left alone' : 'federation join failed; retried')
      const message = `${t.kind}: ${(err as Error).message}`
      return {
        readiness: readinessOf(t.kind, current),
        requeueAfterMs: RETRY_MS,
        failure: { type: ConditionType.Federated, status: 'False', reason: conflict ? FederationReason.FederationConflict : FederationReason.JoinFailed, message }
      }
    }
    // The watch brings the written object and its Ready; until then the old view is all there is.
    const seen = t.watch.get(p.name)
    return { readiness: seen === undefined ? { target: t.kind } : readinessOf(t.kind, seen), requeueAfterMs: RETRY_MS }
  }

  /** Issues a token, writes it with the object, then revokes the token it replaced. */
  async #join (t: Target, name: string, base: Omit<FederationMember, 'token'>, why: string): Promise<string> {
    const { registry } = this.#o
    const { token, id } = await registry.issueCallerToken(name, { user: FederationUser[t.kind], groups: [] })
    const member: FederationMember = { ...base, token, tokenId: id, tokenExpiresAt: new Date(expiryAt(Date.now(), this.#ttlMs)).toISOString() }
    let result: JoinResult
    try {
      result = t.kind === 'kubefed'
        ? await joinKubeFed(t.kc, member, { namespace: this.#o.settings.kubefedNamespace ?? DEFAULT_KUBEFED_NAMESPACE })
        : await joinKarmada(t.kc, member, { secretNamespace: DEFAULT_KARMADA_SECRET_NAMESPACE })
    } catch (err) {
      // Nothing holds the new token: do not leave a live credential behind.
      await this.#revoke(name, id)
      throw err
    }
    this.#log.info({ cluster: name, target: t.kind, tokenId: id, replaced: result.previousTokenId, why, revokeAfterMs: this.#graceMs },
      result.created ? 'joined the federation' : 'federation object updated; the token it replaced is revoked after the grace')
    return id
  }

  /**
   * Revokes the target user's other tokens once `currentId` has been in place for the grace period.
   * Returns how long until that is due, or undefined when nothing is left to revoke.
   */
  async #revokeSuperseded (t: Target, name: string, currentId: string, tokens: ReadonlyArray<{ id: string, user: string, createdAt: string }>): Promise<number | undefined> {
    const user = FederationUser[t.kind]
    const since = Date.parse(tokens.find((x) => x.id === currentId)?.createdAt ?? '')
    // Only older ones: a newer token is one this sync wrote that the watch does not show yet.
    const others = tokens.filter((x) => x.user === user && x.id !== currentId && !(Date.parse(x.createdAt) > since))
    if (others.length === 0) return undefined
    const wait = Number.isNaN(since) ? 0 : since + this.#graceMs - Date.now()
    if (wait > 0) return wait
    for (const old of others) await this.#revoke(name, old.id)
    this.#log.info({ cluster: name, target: t.kind, tokenId: currentId, revoked: others.map((x) => x.id) }, 'superseded federation tokens revoked')
    return undefined
  }

  async #leaveTarget (t: Target, name: string): Promise<{ pending: boolean }> {
    let tokenId: string | undefined
    try {
      if (t.kind === 'kubefed') {
        tokenId = (await leaveKubeFed(t.kc, name, { namespace: this.#o.settings.kubefedNamespace ?? DEFAULT_KUBEFED_NAMESPACE })).tokenId
      } else {
        const r = await leaveKarmada(t.kc, name, { secretNamespace: DEFAULT_KARMADA_SECRET_NAMESPACE, leaveTimeoutMs: KARMADA_LEAVE_WAIT_MS })
        if (r.pending === true) {
          this.#log.info({ cluster: name, target: t.kind }, 'Karmada Cluster is being deleted; its credential is kept until Karmada\'s finalizer is done')
          return { pending: true }
        }
        tokenId = r.tokenId
      }
    } catch (err) {
      // An object of that name that Tower did not make is not Tower's to remove; it must not block the deletion.
      if ((err as { code?: unknown }).code === 'TOWER_ERR_FEDERATION_CONFLICT') {
        this.#log.warn({ err, cluster: name, target: t.kind }, 'federation object not made by Tower; left in place')
        return { pending: false }
      }
      throw err
    }
    // The removed object's token and any superseded one still in its grace.
    const ids = new Set(this.#o.registry.find(name) === undefined ? [] : this.#o.registry.callerTokens(name).filter((x) => x.user === FederationUser[t.kind]).map((x) => x.id))
    if (tokenId !== undefined) ids.add(tokenId)
    for (const id of ids) await this.#revoke(name, id)
    this.#written.delete(`${t.kind}/${name}`)
    this.#log.info({ cluster: name, target: t.kind, revoked: [...ids] }, 'left the federation')
    return { pending: false }
  }

  /** Revokes a caller token; a cluster or token already gone is fine (its callers Secret goes with it). */
  async #revoke (name: string, id: string): Promise<void> {
    if (this.#o.registry.find(name) === undefined) return
    try {
      await this.#o.registry.revokeCallerTokens(name, id)
    } catch (err) {
      const code = (err as { code?: unknown }).code
      if (code === 'TOWER_ERR_UNKNOWN_TOKEN' || code === 'TOWER_ERR_UNKNOWN_CLUSTER' || statusOf(err) === 404) return
      throw err
    }
  }

  /** Endpoint and CA the federation objects must name; undefined while the registry does not serve the cluster yet. */
  #memberOf (name: string): Omit<FederationMember, 'token'> | undefined {
    const { registry, settings } = this.#o
    const record = registry.find(name)
    const endpoint = registry.endpoint(name)
    if (record === undefined || endpoint === undefined) return undefined
    const host = settings.endpointHost ?? endpoint.host
    const port = settings.endpointHost !== undefined ? record.port : endpoint.port
    return { name, apiEndpoint: `https://${host.includes(':') ? `[${host}]` : host}:${port}`, caPem: registry.ca.certPem }
  }
}

/** Why the object in the control plane does not say what Tower would write, or undefined when it does. */
export function staleReason (kind: FederationTarget, obj: unknown, m: Omit<FederationMember, 'token'>): string | undefined {
  if (obj === undefined) return 'not joined yet'
  const o = obj as { metadata?: ObjectMeta, spec?: Record<string, unknown> }
  if (!isManaged(o.metadata)) return 'not labelled as Tower\'s'
  const spec = typeof o.spec === 'object' && o.spec !== null ? o.spec : {}
  if (spec.apiEndpoint !== m.apiEndpoint) return 'apiEndpoint differs'
  if (kind === 'kubefed' && spec.caBundle !== Buffer.from(m.caPem).toString('base64')) return 'caBundle differs'
  return undefined
}
