/**
 * A client-side load balancer for a selector-less Service, the way kube-proxy resolves one: a
 * client-node informer on the discovery.k8s.io/v1 EndpointSlices labelled
 * `kubernetes.io/service-name=<service>` in one namespace, and a TCP listener on 127.0.0.1:0 that sends
 * each new connection to the next ready endpoint (round robin), trying the next one when a dial fails.
 * With no ready endpoint the connection is closed at once, as kube-proxy rejects a Service without
 * endpoints.
 *
 * It relays bytes only: TLS stays end to end, so a caller's kubeconfig points at the balancer and names
 * the cluster port's certificate with `tls-server-name`. The harness has no kube-proxy; this is what
 * the HA e2e test and the soak use instead, so that callers follow the slices Tower writes.
 *
 * Slices are hostile input like every Kubernetes object: an endpoint counts only with a valid address of
 * the slice's addressType and a valid port; anything else is skipped.
 */
import { once } from 'node:events'
import net from 'node:net'
import { DiscoveryV1Api, KubeConfig, makeInformer, type Informer, type ObjectCache, type V1EndpointSlice } from '@kubernetes/client-node'

/** The label that ties an EndpointSlice to its Service (Kubernetes' own). */
const SERVICE_NAME_LABEL = 'kubernetes.io/service-name'

/** One backend the balancer may send connections to. */
export interface SliceEndpoint {
  /** IP address from the slice. */
  address: string
  /** TCP port from the slice's ports. */
  port: number
}

/** Options of {@link startSliceBalancer}. */
export interface SliceBalancerOptions {
  /** Path of a kubeconfig for the apiserver that holds the slices (the host). */
  kubeconfig: string
  /** Namespace of the Service and its slices. */
  namespace: string
  /** Service name: slices labelled `kubernetes.io/service-name=<service>` are read. */
  service: string
  /** Name of the slice port to use; default the slice's first port. */
  portName?: string
  /** Address to listen on; default 127.0.0.1 (port 0). */
  host?: string
  /** How long one dial may take before the next endpoint is tried, in ms; default 2000. */
  dialTimeoutMs?: number
  /** Delay before the informer restarts after a list or watch error, in ms; default 300. */
  restartDelayMs?: number
  /** Most connections relayed at once (the rest are closed); default 1000. */
  maxConnections?: number
  /** Debug lines (dial failures, informer errors); default none. */
  log?: (line: string) => void
}

/** What the balancer did, for assertions. */
export interface SliceBalancerStats {
  /** Connections sent to each endpoint, keyed by `address:port`. */
  connections: Map<string, number>
  /** Connections closed because no ready endpoint accepted them. */
  rejected: number
  /** Dials that failed (each was retried on the next endpoint, if any). */
  dialFailures: number
  /** Informer errors (each followed by a restart). */
  informerErrors: number
}

/** A running balancer. */
export interface SliceBalancer {
  /** Listen address. */
  host: string
  /** Listen port. */
  port: number
  /** The ready endpoints as the informer sees them now, sorted. */
  endpoints (): SliceEndpoint[]
  /** Counters since the start (a snapshot). */
  stats (): SliceBalancerStats
  /** Stop the informer, close every relayed connection and the listener. Idempotent. */
  close (): Promise<void>
}

function validPort (p: unknown): p is number {
  return typeof p === 'number' && Number.isInteger(p) && p > 0 && p < 65536
}

/** The ready endpoints of some slices (a nil ready condition means ready, as the API documents). */
export function readyEndpoints (slices: readonly V1EndpointSlice[], portName?: string): SliceEndpoint[] {
  const out = new Map<string, SliceEndpoint>()
  for (const s of slices) {
    const family = s?.addressType === 'IPv4' ? 4 : s?.addressType === 'IPv6' ? 6 : 0
    if (family === 0 || !Array.isArray(s.ports) || !Array.isArray(s.endpoints)) continue
    const p = portName === undefined ? s.ports[0] : s.ports.find((x) => x?.name === portName)
    if (!validPort(p?.port) || (p?.protocol !== undefined && p.protocol !== 'TCP')) continue
    for (const e of s.endpoints) {
      const ready = e?.conditions?.ready
      if (ready === false || (ready !== undefined && ready !== true)) continue
      if (e === null || typeof e !== 'object' || !Array.isArray(e.addresses)) continue
      // Kubernetes documents that consumers use the first address only.
      const address = e.addresses[0]
      if (typeof address !== 'string' || net.isIP(address) !== family) continue
      out.set(`${address}:${p.port}`, { address, port: p.port })
    }
  }
  return [...out.entries()].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0).map(([, e]) => e)
}

/** Start the informer and the listener; resolves once the listener is up and the slices were listed once. */
export async function startSliceBalancer (opts: SliceBalancerOptions): Promise<SliceBalancer> {
  const log = opts.log ?? (() => {})
  const dialTimeoutMs = opts.dialTimeoutMs ?? 2000
  const restartDelayMs = opts.restartDelayMs ?? 300
  const maxConnections = opts.maxConnections ?? 1000
  const kc = new KubeConfig()
  kc.loadFromFile(opts.kubeconfig)
  const api = kc.makeApiClient(DiscoveryV1Api)
  const selector = `${SERVICE_NAME_LABEL}=${opts.service}`
  const informer: Informer<V1EndpointSlice> & ObjectCache<V1EndpointSlice> = makeInformer(kc,
    `/apis/discovery.k8s.io/v1/namespaces/${encodeURIComponent(opts.namespace)}/endpointslices`,
    () => api.listNamespacedEndpointSlice({ namespace: opts.namespace, labelSelector: selector }), selector)
  const counts = new Map<string, number>()
  let rejected = 0
  let dialFailures = 0
  let informerErrors = 0
  let next = 0
  let closed = false
  let restart: NodeJS.Timeout | undefined
  const sockets = new Set<net.Socket>()

  informer.on('error', (err: unknown) => {
    informerErrors++
    log(`slice balancer ${opts.service}: informer error (${err instanceof Error ? err.message : String(err)}); restarting in ${restartDelayMs} ms`)
    if (closed || restart !== undefined) return
    restart = setTimeout(() => {
      restart = undefined
      if (!closed) void informer.start().catch(() => { /* reported through 'error' */ })
    }, restartDelayMs)
  })

  const endpoints = (): SliceEndpoint[] => readyEndpoints(informer.list(opts.namespace), opts.portName)

  const track = (s: net.Socket): void => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  }

  const server = net.createServer({ pauseOnConnect: true }, (client) => {
    track(client)
    client.on('error', () => client.destroy())
    if (sockets.size > maxConnections) { rejected++; client.destroy(); return }
    const list = endpoints()
    const start = list.length === 0 ? 0 : next++ % list.length
    const attempt = (tries: number): void => {
      if (closed || client.destroyed) return
      if (tries >= list.length) { rejected++; client.destroy(); return }
      const ep = list[(start + tries) % list.length]!
      const up = net.connect({ host: ep.address, port: ep.port })
      track(up)
      const timer = setTimeout(() => up.destroy(new Error(`dial timed out after ${dialTimeoutMs} ms`)), dialTimeoutMs)
      let connected = false
      up.once('connect', () => {
        clearTimeout(timer)
        connected = true
        const key = `${ep.address}:${ep.port}`
        counts.set(key, (counts.get(key) ?? 0) + 1)
        up.on('error', () => client.destroy())
        client.on('close', () => up.destroy())
        up.on('close', () => client.destroy())
        client.pipe(up).pipe(client)
        client.resume()
      })
      up.once('error', (err) => {
        clearTimeout(timer)
        if (connected) return
        dialFailures++
        log(`slice balancer ${opts.service}: dial ${ep.address}:${ep.port} failed (${err.message}); trying the next endpoint`)
        up.destroy()
        attempt(tries + 1)
      })
    }
    attempt(0)
  })
  server.listen(0, opts.host ?? '127.0.0.1')
  await once(server, 'listening')
  await informer.start()
  const addr = server.address() as net.AddressInfo

  return {
    host: addr.address,
    port: addr.port,
    endpoints,
    stats: () => ({ connections: new Map(counts), rejected, dialFailures, informerErrors }),
    close: async () => {
      if (closed) return
      closed = true
      clearTimeout(restart)
      await informer.stop()
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}
