/**
 * Writes a Cluster's status. The CRD in deploy/controller has a status
 * subresource, so status goes through PUT .../status; KubeSphere's own CRD
 * has none, where that path is 404 and status is part of the object, written
 * with a plain PUT like KubeSphere does. Which one works is learnt once per
 * process (a 404 on /status for an object that a GET finds) and remembered.
 * Both carry the resourceVersion that was read, so a concurrent change
 * answers 409, and the caller requeues instead of overwriting it.
 */
import { silentLogger, type Logger } from '@tower/mux'
import { statusOf } from './errors.ts'
import type { KubeContext } from './kube-context.ts'
import { CLUSTER_GROUP, CLUSTER_PLURAL, CLUSTER_VERSION } from './names.ts'

/** How status is written: through the subresource, or by updating the whole object. */
export type StatusMode = 'subresource' | 'plain'

/** Options of {@link StatusWriter}. */
export interface StatusWriterOptions {
  context: KubeContext
  logger?: Logger
}

/** A Cluster object as the API returns it. */
export type ClusterObject = Record<string, unknown> & { metadata?: { name?: string, resourceVersion?: string, [key: string]: unknown } }

/** See the module comment. */
export class StatusWriter {
  readonly #ctx: KubeContext
  readonly #log: Logger
  #mode: StatusMode | undefined

  constructor (opts: StatusWriterOptions) {
    this.#ctx = opts.context
    this.#log = (opts.logger ?? silentLogger).child({ component: 'status-writer' })
  }

  /** The mode learnt so far; undefined until the first write. */
  get mode (): StatusMode | undefined { return this.#mode }

  /**
   * Writes `status` onto `obj` (the object as last read, with its
   * resourceVersion) and returns the stored object; undefined when the
   * Cluster is gone. Rejects with 409 when the object changed meanwhile.
   */
  async write (obj: ClusterObject, status: Record<string, unknown>): Promise<ClusterObject | undefined> {
    const name = obj.metadata?.name ?? ''
    const body = { ...obj, status }
    if (this.#mode !== 'plain') {
      try {
        const out = await this.#ctx.custom.replaceClusterCustomObjectStatus({ group: CLUSTER_GROUP, version: CLUSTER_VERSION, plural: CLUSTER_PLURAL, name, body })
        this.#mode = 'subresource'
        return out as ClusterObject
      } catch (err) {
        if (statusOf(err) !== 404) throw err
        // The object is there but /status is not: the CRD has (or now has) no status subresource.
        if (!(await this.#exists(name))) return undefined
        // Several writes may learn it at once; say it once.
        if ((this.#mode as StatusMode | undefined) !== 'plain') this.#log.info({}, 'the Cluster CRD has no status subresource (KubeSphere\'s own CRD); writing status with plain updates')
        this.#mode = 'plain'
      }
    }
    try {
      const out = await this.#ctx.custom.replaceClusterCustomObject({ group: CLUSTER_GROUP, version: CLUSTER_VERSION, plural: CLUSTER_PLURAL, name, body }) as ClusterObject
      // A CRD that gained a status subresource drops status from plain updates: learn again next time.
      if (canonical(out?.status) !== canonical(status)) {
        this.#log.info({}, 'a plain update did not store the status; checking for a status subresource again')
        this.#mode = undefined
      }
      return out
    } catch (err) {
      if (statusOf(err) === 404) return undefined
      throw err
    }
  }

  async #exists (name: string): Promise<boolean> {
    try {
      await this.#ctx.custom.getClusterCustomObject({ group: CLUSTER_GROUP, version: CLUSTER_VERSION, plural: CLUSTER_PLURAL, name })
      return true
    } catch (err) {
      if (statusOf(err) === 404) return false
      throw err
    }
  }
}

/** JSON with object keys sorted, as the apiserver returns custom objects (Go maps serialise sorted). */
function canonical (v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => typeof x === 'object' && x !== null && !Array.isArray(x)
    ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0))
    : x)
}
