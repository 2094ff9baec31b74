/**
 * An informer on the federation objects Tower wrote (KubeFedClusters in
 * KubeFed's namespace, or Karmada Clusters on Karmada's apiserver), selected
 * by the managed-by label, so a member's Federated condition follows their
 * Ready condition without polling.
 *
 * As in cache.ts, client-node's informer stops for good after an error; this
 * restarts it after a backoff (1 s doubling to 30 s) and keeps the objects it
 * had, so a federation apiserver that goes away leaves the last view (and
 * removes nothing).
 */
import { EventEmitter } from 'node:events'
import { makeInformer, type Informer, type KubeConfig, type KubernetesListObject, type KubernetesObject, type ObjectCache } from '@kubernetes/client-node'
import type { Logger } from '@tower/mux'
import { kubeApiError } from './errors.ts'
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE } from './names.ts'

/** Options of {@link FederationWatch}. */
export interface FederationWatchOptions {
  kc: KubeConfig
  /** Watch path, e.g. /apis/core.kubefed.io/v1beta1/namespaces/kube-federation-system/kubefedclusters. */
  path: string
  /** The matching list call; it gets the label selector. */
  list: (labelSelector: string) => Promise<unknown>
  /** Namespace of the objects; undefined for cluster-scoped ones. */
  namespace?: string
  /** What is watched, for logs (e.g. `KubeFedClusters`). */
  what: string
  logger: Logger
}

const INITIAL_BACKOFF_MS = 1000
const MAX_BACKOFF_MS = 30_000

/** Emits `object` (name) on every add, update and delete. */
export class FederationWatch extends EventEmitter {
  readonly #o: FederationWatchOptions
  readonly #log: Logger
  readonly #informer: Informer<KubernetesObject> & ObjectCache<KubernetesObject>
  #listed = false
  #stopped = true
  #backoffMs = INITIAL_BACKOFF_MS
  #timer: NodeJS.Timeout | undefined
  #lastError: unknown

  constructor (opts: FederationWatchOptions) {
    super()
    this.#o = opts
    this.#log = opts.logger.child({ component: 'federation-watch', watch: opts.what })
    const selector = `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}`
    const list = async (): Promise<KubernetesListObject<KubernetesObject>> => {
      const result = await opts.list(selector) as KubernetesListObject<KubernetesObject>
      this.#backoffMs = INITIAL_BACKOFF_MS
      this.#lastError = undefined
      if (!this.#listed) setImmediate(() => { this.#listed = true; this.emit('synced') })
      return result
    }
    this.#informer = makeInformer(opts.kc, opts.path, list, selector)
    const onObject = (obj: KubernetesObject): void => {
      const name = obj?.metadata?.name
      if (typeof name === 'string') this.emit('object', name)
    }
    this.#informer.on('add', onObject)
    this.#informer.on('update', onObject)
    this.#informer.on('delete', onObject)
    this.#informer.on('error', (err: unknown) => { this.#failed(err) })
  }

  /** True once the first list has been applied. */
  get synced (): boolean { return this.#listed }

  /** The last list or watch failure since the last successful list, for condition messages. */
  get lastError (): unknown { return this.#lastError }

  /** The watched object `name`, or undefined. */
  get (name: string): KubernetesObject | undefined {
    return this.#informer.get(name, this.#o.namespace)
  }

  /** Starts listing and watching; failures are retried, never thrown. */
  start (): void {
    if (!this.#stopped) return
    this.#stopped = false
    this.#run()
  }

  /** Stops the informer and its restart timer; the objects stay readable. */
  async stop (): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#timer)
    await this.#informer.stop().catch(() => {})
  }

  #run (): void {
    if (this.#stopped) return
    this.#informer.start().catch((err: unknown) => { this.#failed(err) })
  }

  #failed (err: unknown): void {
    if (this.#stopped) return
    this.#lastError = err
    const delay = this.#backoffMs
    this.#backoffMs = Math.min(this.#backoffMs * 2, MAX_BACKOFF_MS)
    this.#log.warn({ err: kubeApiError(`watching ${this.#o.what}`, err), retryInMs: delay }, 'federation watch failed; last view kept, restarting after backoff')
    clearTimeout(this.#timer)
    this.#timer = setTimeout(() => { this.#run() }, delay)
    this.#timer.unref()
  }
}
