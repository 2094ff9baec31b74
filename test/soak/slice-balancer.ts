/**
 * A client-side load balancer for one selector-less Service (the soak's stand-in for kube-proxy, which
 * the harness does not run): a client-node informer on the Service's EndpointSlices on the host
 * apiserver, and a TCP listener on 127.0.0.1:0 that relays each new connection to a ready endpoint,
 * round robin, trying the next one when a connect fails. No ready endpoint: the connection is closed.
 * Bytes only: TLS stays end to end, so callers need `tls-server-name` of the cluster port's certificate.
 *
 * While the host apiserver is down the informer keeps its last slices (kube-proxy keeps its rules too)
 * and restarts 300 ms after each error.
 *
 * H4's harness balancer (test/e2e/harness/slice-balancer.ts) was not committed when the soak needed
 * one; this is the soak's own, small on purpose.
 */
import { once } from 'node:events'
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { DiscoveryV1Api, KubeConfig, makeInformer, type Informer, type ObjectCache, type V1EndpointSlice } from '@kubernetes/client-node'

/** Most connections relayed at once (each holds two sockets). */
const MAX_CONNECTIONS = 512

/** A running balancer. */
export interface SliceBalancer {
  /** Its port on 127.0.0.1. */
  port: number
  /** `address:port` of every ready endpoint now, sorted. */
  ready (): string[]
  /** Connections relayed per endpoint (`address:port`) since the start. */
  readonly connections: ReadonlyMap<string, number>
  close (): Promise<void>
}

/** Ready `address:port` pairs of a set of EndpointSlices (hostile input: anything malformed is skipped). */
export function readyEndpoints (slices: readonly V1EndpointSlice[]): string[] {
  const out = new Set<string>()
  for (const s of slices) {
    const port = s?.ports?.[0]?.port
    if (!Number.isInteger(port) || port! <= 0 || port! > 65535) continue
    for (const e of Array.isArray(s.endpoints) ? s.endpoints : []) {
      if (e?.conditions?.ready !== true || !Array.isArray(e.addresses)) continue
      for (const a of e.addresses) if (typeof a === 'string') out.add(`${a}:${port}`)
    }
  }
  return [...out].sort()
}

/** Balance over the slices of Service `service` in `namespace`, read with `kubeconfig` (a file). */
export async function startSliceBalancer (opts: { kubeconfig: string, namespace: string, service: string }): Promise<SliceBalancer> {
  const kc = new KubeConfig()
  kc.loadFromFile(opts.kubeconfig)
  const api = kc.makeApiClient(DiscoveryV1Api)
  const labelSelector = `kubernetes.io/service-name=${opts.service}`
  const informer: Informer<V1EndpointSlice> & ObjectCache<V1EndpointSlice> = makeInformer<V1EndpointSlice>(kc,
    `/apis/discovery.k8s.io/v1/namespaces/${opts.namespace}/endpointslices`,
    () => api.listNamespacedEndpointSlice({ namespace: opts.namespace, labelSelector }), labelSelector)
  let stopped = false
  let timer: NodeJS.Timeout | undefined
  informer.on('error', () => {
    if (stopped || timer !== undefined) return
    timer = setTimeout(() => {
      timer = undefined
      if (!stopped) void informer.start().catch(() => { /* reported through 'error' */ })
    }, 300)
  })
  await informer.start()
  const ready = (): string[] => readyEndpoints(informer.list(opts.namespace))
  const connections = new Map<string, number>()
  const sockets = new Set<Socket>()
  let next = 0
  const server: Server = createServer((client) => {
    if (sockets.size >= MAX_CONNECTIONS * 2) { client.destroy(); return }
    sockets.add(client)
    client.on('close', () => sockets.delete(client))
    client.on('error', () => client.destroy())
    client.pause()
    const list = ready()
    const attempt = (tries: number): void => {
      if (tries >= list.length || client.destroyed) { client.destroy(); return }
      const ep = list[next++ % list.length]!
      const colon = ep.lastIndexOf(':')
      const up = connect(Number(ep.slice(colon + 1)), ep.slice(0, colon))
      sockets.add(up)
      up.on('close', () => sockets.delete(up))
      let connected = false
      up.once('connect', () => {
        connected = true
        connections.set(ep, (connections.get(ep) ?? 0) + 1)
        client.pipe(up).pipe(client)
        client.resume()
        client.on('close', () => up.destroy())
        up.on('close', () => client.destroy())
      })
      up.on('error', () => { if (!connected) attempt(tries + 1); else client.destroy() })
    }
    attempt(0)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    port: (server.address() as AddressInfo).port,
    ready,
    connections,
    async close () {
      stopped = true
      clearTimeout(timer)
      await informer.stop()
      for (const s of sockets) s.destroy()
      server.close()
    }
  }
}
