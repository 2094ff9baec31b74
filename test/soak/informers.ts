/**
 * The watch side of the soak: client-node informers on several types per cluster, through Tower, and a
 * writer that creates, updates and deletes those objects straight on the member (so the faults never
 * touch the writes). At the end every informer's cache must equal a list read from the member itself:
 * the same names at the same resourceVersions, so no event was lost.
 *
 * Informers restart 300 ms after an error, resuming from their resourceVersion, as client-node's README
 * shows (ListWatch leaves restarts to the application and re-lists by itself after 410 Gone).
 */
import { once } from 'node:events'
import { Agent as HttpsAgent, request } from 'node:https'
import type { IncomingMessage } from 'node:http'
import { CoreV1Api, KubeConfig, makeInformer, type Informer, type KubernetesObject, type ObjectCache } from '@kubernetes/client-node'
import type { ApiServer } from '../e2e/harness/index.ts'
import type { Rng } from './rng.ts'

/** The types watched per cluster: plural resource name and the client-node list call. */
const TYPES = ['configmaps', 'secrets', 'serviceaccounts'] as const
type Plural = typeof TYPES[number]

/** Objects of one type the writer keeps at most, per cluster (bounded memory and apiserver load). */
const MAX_OBJECTS = 40

/** One running informer. */
interface Watched {
  cluster: string
  namespace: string
  plural: Plural
  informer: Informer<KubernetesObject> & ObjectCache<KubernetesObject>
  errors: number
  lastError: string
}

/** Raw admin requests to the member apiserver (create, merge-patch, delete, list). */
class MemberClient {
  #agent: HttpsAgent
  #url: URL

  constructor (member: ApiServer) {
    this.#agent = new HttpsAgent({ keepAlive: true, maxSockets: 8, ca: member.caPem, cert: member.adminCertPem, key: member.adminKeyPem })
    this.#url = new URL(member.url)
  }

  async send (method: string, path: string, body?: object, contentType = 'application/json'): Promise<{ status: number, body: string }> {
    const data = body === undefined ? undefined : JSON.stringify(body)
    const req = request({
      agent: this.#agent, host: this.#url.hostname, port: this.#url.port, method, path, timeout: 30_000,
      headers: data === undefined ? {} : { 'content-type': contentType, 'content-length': Buffer.byteLength(data) }
    })
    req.on('timeout', () => req.destroy(new Error('timed out')))
    req.end(data)
    const [res] = await once(req, 'response') as [IncomingMessage]
    const chunks: Buffer[] = []
    for await (const c of res) chunks.push(c as Buffer)
    return { status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }
  }

  close (): void {
    this.#agent.destroy()
  }
}

/** Informers through Tower and the writer on the member; see the module comment. */
export class WatchWorkload {
  #watched: Watched[] = []
  #member: MemberClient
  #stopped = false
  #writers: Array<Promise<void>> = []
  /** Writes done, and writes the member refused (which do not fail the soak, but are reported). */
  readonly writes = { ok: 0, failed: 0 }
  #rng: Rng

  constructor (member: ApiServer, rng: Rng) {
    this.#member = new MemberClient(member)
    this.#rng = rng
  }

  /** Create the namespace of each cluster (directly on the member). */
  async prepare (namespaces: string[]): Promise<void> {
    for (const ns of namespaces) {
      const r = await this.#member.send('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } })
      if (r.status !== 201 && r.status !== 409) throw new Error(`create namespace ${ns}: ${r.status} ${r.body.slice(0, 200)}`)
    }
  }

  /** Start one informer per type on `namespace` through `kubeconfig`. */
  startInformers (cluster: string, namespace: string, kubeconfig: string): void {
    const kc = new KubeConfig()
    kc.loadFromFile(kubeconfig)
    const api = kc.makeApiClient(CoreV1Api)
    for (const plural of TYPES) {
      const list = {
        configmaps: () => api.listNamespacedConfigMap({ namespace }),
        secrets: () => api.listNamespacedSecret({ namespace }),
        serviceaccounts: () => api.listNamespacedServiceAccount({ namespace })
      }[plural]
      const w: Watched = {
        cluster, namespace, plural, errors: 0, lastError: '',
        informer: makeInformer<KubernetesObject>(kc, `/api/v1/namespaces/${namespace}/${plural}`, list as never)
      }
      let timer: NodeJS.Timeout | undefined
      w.informer.on('error', (err: unknown) => {
        w.errors++
        w.lastError = err instanceof Error ? err.message : String(err)
        if (this.#stopped || timer !== undefined) return
        timer = setTimeout(() => {
          timer = undefined
          if (!this.#stopped) void w.informer.start().catch(() => { /* reported through 'error' */ })
        }, 300)
      })
      void w.informer.start().catch(() => { /* reported through 'error' */ })
      this.#watched.push(w)
    }
  }

  /** Start the writer for each namespace: one change every 100-300 ms. */
  startWriters (namespaces: string[]): void {
    for (const ns of namespaces) this.#writers.push(this.#write(ns))
  }

  async #write (ns: string): Promise<void> {
    const live = new Map<Plural, string[]>(TYPES.map((t) => [t, []]))
    let serial = 0
    while (!this.#stopped) {
      const plural = this.#rng.pick(TYPES)
      const names = live.get(plural)!
      const roll = this.#rng.next()
      const op = names.length < 5 ? 'create' : names.length >= MAX_OBJECTS ? (roll < 0.5 ? 'update' : 'delete') : (roll < 0.4 ? 'create' : roll < 0.8 ? 'update' : 'delete')
      try {
        let r: { status: number, body: string }
        if (op === 'create') {
          const name = `o-${serial++}`
          const kind = { configmaps: 'ConfigMap', secrets: 'Secret', serviceaccounts: 'ServiceAccount' }[plural]
          r = await this.#member.send('POST', `/api/v1/namespaces/${ns}/${plural}`, { apiVersion: 'v1', kind, metadata: { name, labels: { gen: '0' } } })
          if (r.status === 201) names.push(name)
        } else {
          const i = this.#rng.int(0, names.length - 1)
          const path = `/api/v1/namespaces/${ns}/${plural}/${names[i]}`
          if (op === 'update') {
            r = await this.#member.send('PATCH', path, { metadata: { labels: { gen: String(serial++) } } }, 'application/merge-patch+json')
          } else {
            r = await this.#member.send('DELETE', path)
            if (r.status === 200) names.splice(i, 1)
          }
        }
        if (r.status >= 200 && r.status < 300) this.writes.ok++
        else this.writes.failed++
      } catch {
        this.writes.failed++
      }
      await new Promise((resolve) => setTimeout(resolve, this.#rng.int(100, 300)))
    }
  }

  /** Stop the writers and wait for their last write. */
  async stopWriters (): Promise<void> {
    this.#stopped = true
    await Promise.all(this.#writers)
  }

  /**
   * Differences between each informer's cache and the member's list (name@resourceVersion), empty when
   * they agree. One list per type and namespace, straight from the member.
   */
  async differences (): Promise<string[]> {
    const out: string[] = []
    for (const w of this.#watched) {
      const r = await this.#member.send('GET', `/api/v1/namespaces/${w.namespace}/${w.plural}`)
      if (r.status !== 200) { out.push(`${w.cluster}/${w.plural}: member list ${r.status}`); continue }
      const truth = new Map((JSON.parse(r.body) as { items: KubernetesObject[] }).items.map((o) => [o.metadata!.name!, o.metadata!.resourceVersion!]))
      const cache = new Map(w.informer.list(w.namespace).map((o) => [o.metadata!.name!, o.metadata!.resourceVersion!]))
      const missing = [...truth].filter(([n, rv]) => cache.get(n) !== rv).map(([n, rv]) => `${n}@${rv} (cache ${cache.get(n) ?? 'none'})`)
      const extra = [...cache.keys()].filter((n) => !truth.has(n))
      if (missing.length > 0 || extra.length > 0) {
        out.push(`${w.cluster}/${w.plural}: ${truth.size} on the member, ${cache.size} cached; stale or missing ${missing.slice(0, 5).join(', ')}; extra ${extra.slice(0, 5).join(', ')}; last error: ${w.lastError}`)
      }
    }
    return out
  }

  /** Objects cached, and errors (watch breaks) seen, over all informers. */
  summary (): { informers: number, cached: number, errors: number } {
    return {
      informers: this.#watched.length,
      cached: this.#watched.reduce((n, w) => n + w.informer.list(w.namespace).length, 0),
      errors: this.#watched.reduce((n, w) => n + w.errors, 0)
    }
  }

  /** Stop every informer and the member client. */
  async stop (): Promise<void> {
    this.#stopped = true
    for (const w of this.#watched) await w.informer.stop()
    this.#member.close()
  }
}
