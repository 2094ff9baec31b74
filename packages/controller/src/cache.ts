/**
 * The controller's view of the host cluster: client-node informers on every
 * Cluster and on Tower's own Secrets, Services and ConfigMaps (selected by
 * the managed-by label) in its namespace.
 *
 * client-node's ListWatch reports a failed list or watch on 'error' and then
 * stops for good, keeping its objects. So this cache restarts a failed
 * informer itself after a backoff (1 s doubling to 30 s) and never clears
 * anything because of an error: the tunnels keep serving on the last known
 * state while the host apiserver is away. Only a successful re-list (after a
 * 410 Gone) removes objects, and then they really are gone.
 *
 * Clusters are copied into a map of their own, so one whose JSON is larger
 * than maxClusterBytes never reaches the clusters view (it is logged).
 */
import { EventEmitter } from 'node:events'
import { makeInformer } from '@kubernetes/client-node'
import type { Informer, KubernetesListObject, KubernetesObject, ObjectCache, V1ConfigMap, V1Secret, V1Service } from '@kubernetes/client-node'
import type { Logger } from '@tower/mux'
import { CrdMissingError, ForbiddenError, kubeApiError, statusOf } from './errors.ts'
import type { KubeContext } from './kube-context.ts'
import { CLUSTER_CRD, CLUSTER_GROUP, CLUSTER_PLURAL, CLUSTER_VERSION, MANAGED_BY_LABEL, MANAGED_BY_VALUE } from './names.ts'

/** Options of ResourceCache. */
export interface ResourceCacheOptions {
  context: KubeContext
  logger: Logger
  /** A Cluster larger than this (JSON, bytes) is left out of the view; default 256 KiB. */
  maxClusterBytes?: number
  /** Most Clusters kept; further ones are left out and logged. Default 10,000. */
  maxClusters?: number
  /** First restart delay after an informer error, milliseconds; default 1,000. */
  initialBackoffMs?: number
  /** Longest restart delay, milliseconds; default 30,000. */
  maxBackoffMs?: number
  /** start() rejects when the first lists have not all succeeded within this, milliseconds; default 60,000. */
  syncTimeoutMs?: number
}

/** Which informer an event comes from; also the name of the event ResourceCache emits. */
export type ResourceKind = 'cluster' | 'secret' | 'service' | 'configmap'

type AnyInformer = Informer<KubernetesObject> & ObjectCache<KubernetesObject>

interface Watched {
  kind: ResourceKind
  informer: AnyInformer
  listed: boolean
  backoffMs: number
  timer?: NodeJS.Timeout
  lastError?: unknown
}

/**
 * Informer-backed cache. Emits `cluster`, `secret`, `service`, `configmap`
 * with the object's name on every add, update and delete, and `error` (err)
 * when an informer fails (only when someone listens; it is always logged).
 */
export class ResourceCache extends EventEmitter {
  readonly #ctx: KubeContext
  readonly #log: Logger
  readonly #maxClusterBytes: number
  readonly #maxClusters: number
  readonly #initialBackoffMs: number
  readonly #maxBackoffMs: number
  readonly #syncTimeoutMs: number
  readonly #clusters = new Map<string, object>()
  readonly #watched: Watched[] = []
  #stopped = false
  #started = false
  #synced: (() => void) | undefined
  #fatal: ((err: Error) => void) | undefined

  constructor (opts: ResourceCacheOptions) {
    super()
    this.#ctx = opts.context
    this.#log = opts.logger.child({ component: 'resource-cache' })
    this.#maxClusterBytes = opts.maxClusterBytes ?? 256 * 1024
    this.#maxClusters = opts.maxClusters ?? 10_000
    this.#initialBackoffMs = opts.initialBackoffMs ?? 1000
    this.#maxBackoffMs = opts.maxBackoffMs ?? 30_000
    this.#syncTimeoutMs = opts.syncTimeoutMs ?? 60_000
  }

  /** Starts every informer; resolves once each has listed once, rejects (TOWER_ERR_KUBE_API) after syncTimeoutMs. */
  async start (): Promise<void> {
    if (this.#started) throw new Error('ResourceCache started twice')
    this.#started = true
    const { custom, core, namespace } = this.#ctx
    const selector = `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}`
    const nsPath = `/api/v1/namespaces/${namespace}`
    this.#add('cluster', `/apis/${CLUSTER_GROUP}/${CLUSTER_VERSION}/${CLUSTER_PLURAL}`, undefined,
      async () => await custom.listClusterCustomObject({ group: CLUSTER_GROUP, version: CLUSTER_VERSION, plural: CLUSTER_PLURAL }) as KubernetesListObject<KubernetesObject>)
    this.#add('secret', `${nsPath}/secrets`, selector, async () => await core.listNamespacedSecret({ namespace, labelSelector: selector }))
    this.#add('service', `${nsPath}/services`, selector, async () => await core.listNamespacedService({ namespace, labelSelector: selector }))
    this.#add('configmap', `${nsPath}/configmaps`, selector, async () => await core.listNamespacedConfigMap({ namespace, labelSelector: selector }))
    const synced = new Promise<void>((resolve, reject) => { this.#synced = resolve; this.#fatal = reject })
    for (const w of this.#watched) this.#run(w)
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => {
        const pending = this.#watched.find(w => !w.listed)
        reject(kubeApiError(`listing ${pending?.kind ?? 'resource'}s`, pending?.lastError))
      }, this.#syncTimeoutMs)
    })
    try {
      await Promise.race([synced, timeout])
    } catch (err) {
      await this.stop()
      throw err
    } finally {
      clearTimeout(timer)
    }
  }

  /** Stops every informer and restart timer; the cached objects stay readable. */
  async stop (): Promise<void> {
    this.#stopped = true
    for (const w of this.#watched) {
      clearTimeout(w.timer)
      await w.informer.stop().catch(() => {})
    }
  }

  /** True once every informer has listed once. */
  get synced (): boolean {
    return this.#watched.length > 0 && this.#watched.every(w => w.listed)
  }

  /** Every Cluster within the size limit, as the API returned it. */
  clusters (): object[] {
    return [...this.#clusters.values()]
  }

  /** One Cluster by name, or undefined. */
  cluster (name: string): object | undefined {
    return typeof name === 'string' ? this.#clusters.get(name) : undefined
  }

  /** One of Tower's Secrets in its namespace (only labelled ones are watched). */
  secret (name: string): V1Secret | undefined {
    return this.#get('secret', name) as V1Secret | undefined
  }

  /** One of Tower's Services in its namespace. */
  service (name: string): V1Service | undefined {
    return this.#get('service', name) as V1Service | undefined
  }

  /** One of Tower's ConfigMaps in its namespace. */
  configMap (name: string): V1ConfigMap | undefined {
    return this.#get('configmap', name) as V1ConfigMap | undefined
  }

  /** Every cached object of a namespaced kind. */
  list (kind: Exclude<ResourceKind, 'cluster'>): readonly KubernetesObject[] {
    return this.#watched.find(w => w.kind === kind)?.informer.list(this.#ctx.namespace) ?? []
  }

  /** Resolves true once `pred` holds (checked now and after every cache event), false after `timeoutMs`. */
  async waitFor (pred: () => boolean, timeoutMs: number): Promise<boolean> {
    if (pred()) return true
    return await new Promise<boolean>((resolve) => {
      const kinds: ResourceKind[] = ['cluster', 'secret', 'service', 'configmap']
      const check = (): void => { if (pred()) done(true) }
      const timer = setTimeout(() => { done(false) }, timeoutMs)
      const done = (v: boolean): void => {
        clearTimeout(timer)
        for (const k of kinds) this.off(k, check)
        resolve(v)
      }
      for (const k of kinds) this.on(k, check)
    })
  }

  #get (kind: ResourceKind, name: string): KubernetesObject | undefined {
    if (typeof name !== 'string') return undefined
    return this.#watched.find(w => w.kind === kind)?.informer.get(name, this.#ctx.namespace)
  }

  #add (kind: ResourceKind, path: string, selector: string | undefined, list: () => Promise<KubernetesListObject<KubernetesObject>>): void {
    const w: Watched = { kind, listed: false, backoffMs: this.#initialBackoffMs, informer: undefined as unknown as AnyInformer }
    const listed = async (): Promise<KubernetesListObject<KubernetesObject>> => {
      const result = await list()
      w.backoffMs = this.#initialBackoffMs
      if (!w.listed) {
        w.listed = true
        // The informer applies the list a few microtasks after this returns; report the sync after that.
        setImmediate(() => { if (this.synced) this.#synced?.() })
      }
      return result
    }
    w.informer = makeInformer(this.#ctx.kc, path, listed, selector) as AnyInformer
    const onObject = (deleted: boolean) => (obj: KubernetesObject): void => {
      w.backoffMs = this.#initialBackoffMs
      const name = obj?.metadata?.name
      if (typeof name !== 'string') return
      if (kind === 'cluster') this.#putCluster(name, deleted ? undefined : obj)
      this.emit(kind, name)
    }
    w.informer.on('add', onObject(false))
    w.informer.on('update', onObject(false))
    w.informer.on('delete', onObject(true))
    w.informer.on('error', (err: unknown) => { this.#failed(w, err) })
    this.#watched.push(w)
  }

  #run (w: Watched): void {
    if (this.#stopped) return
    w.informer.start().catch((err: unknown) => { this.#failed(w, err) })
  }

  #failed (w: Watched, err: unknown): void {
    if (this.#stopped) return
    // Before the first list, a missing CRD or a refused identity will not heal by retrying: say so now.
    const fatal = w.listed ? undefined : fatalStartError(w.kind, statusOf(err), this.#ctx.namespace)
    if (fatal !== undefined && this.#fatal !== undefined) {
      this.#fatal(fatal)
      return
    }
    w.lastError = err
    const delay = w.backoffMs
    w.backoffMs = Math.min(w.backoffMs * 2, this.#maxBackoffMs)
    const wrapped = kubeApiError(`watching ${w.kind}s`, err)
    this.#log.warn({ err: wrapped, kind: w.kind, retryInMs: delay }, 'informer failed; cache kept, restarting after backoff')
    if (this.listenerCount('error') > 0) this.emit('error', wrapped)
    clearTimeout(w.timer)
    w.timer = setTimeout(() => { this.#run(w) }, delay)
    w.timer.unref()
  }

  #putCluster (name: string, obj: KubernetesObject | undefined): void {
    if (obj === undefined) {
      this.#clusters.delete(name)
      return
    }
    let bytes: number
    try {
      bytes = Buffer.byteLength(JSON.stringify(obj))
    } catch {
      bytes = Infinity
    }
    if (bytes > this.#maxClusterBytes) {
      this.#clusters.delete(name)
      this.#log.warn({ cluster: name.slice(0, 253), bytes, limit: this.#maxClusterBytes }, 'Cluster object too large; left out of the view')
      return
    }
    if (!this.#clusters.has(name) && this.#clusters.size >= this.#maxClusters) {
      this.#log.warn({ cluster: name.slice(0, 253), limit: this.#maxClusters }, 'too many Clusters; this one is left out of the view')
      return
    }
    this.#clusters.set(name, obj)
  }
}

/**
 * True when resourceVersion `have` is `want` or later. They are opaque, but
 * etcd's are integers, so they are compared as such; anything else only by equality.
 */
export function notOlder (have: string | undefined, want: string): boolean {
  if (have === undefined) return false
  if (have === want) return true
  if (/^\d{1,30}$/.test(have) && /^\d{1,30}$/.test(want)) return BigInt(have) >= BigInt(want)
  return false
}

const RESOURCE_OF: Record<ResourceKind, string> = { cluster: `${CLUSTER_PLURAL}.${CLUSTER_GROUP}`, secret: 'secrets', service: 'services', configmap: 'configmaps' }

/** The error that ends start() at once for a first list that failed with `status`, or undefined to retry. */
function fatalStartError (kind: ResourceKind, status: number, namespace: string): Error | undefined {
  if (status === 404 && kind === 'cluster') return new CrdMissingError(CLUSTER_CRD)
  if (status === 401 || status === 403) return new ForbiddenError('list', RESOURCE_OF[kind], kind === 'cluster' ? undefined : namespace, status === 401 ? 'the credentials were not accepted' : undefined)
  return undefined
}
