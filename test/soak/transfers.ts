/**
 * The transfer side of the soak, per cluster and through Tower: unpaginated lists of 5,000 ConfigMaps
 * (a proxied HTTP response of megabytes: a body that ends cleanly but does not parse, or lacks items,
 * was silently truncated), `kubectl exec -i` carrying seeded bytes that the container hashes (WebSocket
 * and SPDY in turn), and `kubectl port-forward` downloads from the byte server, 4 MiB often and 100 MB
 * now and then, checked by length and sha256.
 */
import { createHash } from 'node:crypto'
import type { RequestOptions } from 'node:https'
import { Agent as HttpsAgent } from 'node:https'
import { portForward, SPDY_ENV, type ManagedProcess } from '../e2e/harness/index.ts'
import { execKeepingStdinOpen, kubeconfigTls } from '../e2e/tunnel-helpers.ts'
import { fetchOnce, type FetchResult } from './fetch.ts'
import { reasonOf, type Outcome, type Outcomes } from './outcomes.ts'
import type { DeterministicStream, Rng } from './rng.ts'
import { BYTES_POD_PORT, type SoakCluster } from './topology.ts'

/** Objects in the bulk namespace. */
export const BULK_COUNT = 5000
/** Namespace of the bulk ConfigMaps (shared by all clusters: they are one member). */
export const BULK_NS = 'soak-bulk'
/** A transfer with no byte for this long is hung (ms): above the mux keepalive (30 s + 10 s timeout). */
export const STALL_MS = 90_000
/** The big download (bytes). */
export const BIG_BYTES = 100 * 1000 * 1000
const SMALL_BYTES = 4 * 1024 * 1024
const EXEC_BYTES = 256 * 1024

/** Classify a GET: `check` judges a complete 200 body (ok, or truncated/corrupt). */
export function classify (r: FetchResult, check: () => 'ok' | 'truncated' | 'corrupt'): Outcome {
  if (r.stalled) return 'hung'
  if (r.status === 0) return 'refused'
  if (r.status !== 200) return r.complete || !r.bodyStarted ? 'refused' : 'interrupted'
  if (!r.complete) return 'interrupted'
  return check()
}

/** The loops of one cluster. */
class ClusterTransfers {
  #c: SoakCluster
  #out: Outcomes
  #rng: Rng
  #stream: DeterministicStream
  #podName: string
  #tls!: RequestOptions
  #base!: URL
  #agent!: HttpsAgent
  #pf: { proc: ManagedProcess, localPort: number } | undefined
  #pfStarts = 0
  #stopped = false

  constructor (c: SoakCluster, out: Outcomes, rng: Rng, stream: DeterministicStream, podName: string) {
    this.#c = c
    this.#out = out
    this.#rng = rng
    this.#stream = stream
    this.#podName = podName
  }

  async init (): Promise<void> {
    const { url, opts } = await kubeconfigTls(this.#c.kubeconfig)
    this.#tls = opts
    this.#base = url
    this.#agent = new HttpsAgent({ keepAlive: true, maxSockets: 4, ca: opts.ca, cert: opts.cert, key: opts.key })
  }

  get stopped (): boolean { return this.#stopped }

  async #sleep (ms: number): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, ms))
  }

  /** Lists of the bulk namespace, one every 5-10 s. */
  async lists (): Promise<void> {
    while (!this.#stopped) {
      const r = await fetchOnce(new URL(`/api/v1/namespaces/${BULK_NS}/configmaps`, this.#base), { tls: this.#tls, agent: this.#agent, stallMs: STALL_MS, keep: true })
      let detail = ''
      const outcome = classify(r, () => {
        try {
          const list = JSON.parse(r.body!.toString()) as { kind?: string, items?: unknown[] }
          if (list.kind === 'ConfigMapList' && list.items?.length === BULK_COUNT) return 'ok'
          detail = `kind ${list.kind}, ${list.items?.length} items`
          return 'truncated'
        } catch (err) {
          detail = `${r.bytes} bytes that do not parse: ${(err as Error).message}`
          return 'truncated'
        }
      })
      this.#out.add('list-5000', outcome, `${this.#c.name}: ${detail || r.error}`, outcome === 'ok' ? r.bytes : 0, reasonOf(r))
      await this.#sleep(this.#rng.int(5000, 10000))
    }
  }

  /** exec -i with seeded stdin hashed in the container, one every 4-8 s, WebSocket and SPDY in turn. */
  async execs (): Promise<void> {
    for (let n = 0; !this.#stopped; n++) {
      const spdy = n % 2 === 1
      const payload = this.#rng.bytes(EXEC_BYTES)
      const expected = `${createHash('sha256').update(payload).digest('hex')}  -\n`
      const r = await execKeepingStdinOpen(this.#c.kubeconfig, ['exec', '-i', '-n', this.#c.namespace, this.#podName, '--', 'sh', '-c', `head -c ${EXEC_BYTES} | sha256sum`],
        payload, { env: spdy ? { ...SPDY_ENV } : {}, timeoutMs: STALL_MS })
      const name = spdy ? 'exec-spdy' : 'exec-websocket'
      const out = r.stdout.toString()
      let outcome: Outcome
      if (r.code === null) outcome = 'hung'
      else if (r.code !== 0) outcome = out === '' ? 'refused' : 'interrupted'
      else outcome = out === expected ? 'ok' : (out.length < expected.length ? 'truncated' : 'corrupt')
      // kubectl's last stderr line says why (`error: … 503 …`); the exit code when it printed none
      const lastErr = r.stderr.trim().split('\n').at(-1) ?? ''
      this.#out.add(name, outcome, `${this.#c.name}: code ${r.code}, stdout ${JSON.stringify(out.slice(0, 80))}, stderr ${r.stderr.slice(-200)}`, outcome === 'ok' ? EXEC_BYTES : 0,
        reasonOf({ error: lastErr, code: r.code }))
      await this.#sleep(this.#rng.int(4000, 8000))
    }
  }

  /** A running `kubectl port-forward` to the byte server's pod port (restarted when it has exited). */
  async #portForward (): Promise<number | undefined> {
    if (this.#pf !== undefined && this.#pf.proc.exitStatus === null) return this.#pf.localPort
    await this.#pf?.proc.stop()
    this.#pf = undefined
    const spdy = this.#pfStarts++ % 2 === 1
    try {
      this.#pf = await portForward(this.#c.kubeconfig, this.#podName, BYTES_POD_PORT,
        { namespace: this.#c.namespace, env: spdy ? { ...SPDY_ENV } : {}, timeoutMs: 30_000 })
      return this.#pf.localPort
    } catch (err) {
      this.#out.add('port-forward-start', 'refused', '', 0, reasonOf({ error: (err as Error).message }))
      return undefined
    }
  }

  /** One download of `size` bytes through the port-forward. */
  async download (size: number, workload: string): Promise<void> {
    const port = await this.#portForward()
    if (port === undefined) return
    const r = await fetchOnce(new URL(`http://127.0.0.1:${port}/bytes/${size}`), { stallMs: STALL_MS, hash: true })
    const outcome = classify(r, () => r.bytes !== size ? 'truncated' : r.sha256 === this.#stream.sha256(size) ? 'ok' : 'corrupt')
    this.#out.add(workload, outcome, `${this.#c.name}: ${r.bytes} of ${size} bytes, status ${r.status}, ${r.error ?? ''}`, outcome === 'ok' ? size : 0, reasonOf(r))
  }

  /** 4 MiB downloads, one every 2-5 s. */
  async smallDownloads (): Promise<void> {
    while (!this.#stopped) {
      await this.download(SMALL_BYTES, 'port-forward-4MiB')
      await this.#sleep(this.#rng.int(2000, 5000))
    }
  }

  stop (): void {
    this.#stopped = true
  }

  async close (): Promise<void> {
    await this.#pf?.proc.stop()
    this.#agent.destroy()
  }
}

/** All transfer loops of all clusters. */
export class TransferWorkload {
  #clusters: ClusterTransfers[]
  #loops: Array<Promise<void>> = []

  constructor (clusters: SoakCluster[], out: Outcomes, rng: Rng, stream: DeterministicStream, podName: string) {
    this.#clusters = clusters.map((c) => new ClusterTransfers(c, out, rng, stream, podName))
  }

  /** Start every loop; the 100 MB downloads go one at a time, cluster after cluster, 5 s apart. */
  async start (): Promise<void> {
    for (const c of this.#clusters) await c.init()
    for (const c of this.#clusters) this.#loops.push(c.lists(), c.execs(), c.smallDownloads())
    this.#loops.push((async () => {
      for (let i = 0; !this.#clusters[0]!.stopped; i++) {
        await this.#clusters[i % this.#clusters.length]!.download(BIG_BYTES, 'port-forward-100MB')
        await new Promise((resolve) => setTimeout(resolve, 5000))
      }
    })())
  }

  /** Stop the loops and wait until each has finished its current transfer. */
  async stop (): Promise<void> {
    for (const c of this.#clusters) c.stop()
    await Promise.all(this.#loops)
    for (const c of this.#clusters) await c.close()
  }
}
