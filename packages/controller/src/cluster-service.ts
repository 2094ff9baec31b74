/**
 * The Service mc-<name> in Tower's namespace: port 6443 (kube-api) to the
 * cluster's port on the Tower server Pods. It has no selector: each replica
 * that holds an agent session for the cluster publishes its own
 * EndpointSlice (endpoint-slices.ts), so callers reach only replicas that
 * can serve them. ClusterIP by default; with
 * spec.externalKubeAPIEnabled a LoadBalancer carrying the annotations of
 * tower.kubesphere.io/service-annotations (Tower owns the Service's
 * annotations: keys removed there are removed here).
 *
 * Pure functions: what the Service should be, whether the stored one
 * differs, and the external address a load balancer gave it.
 */
import type { V1OwnerReference, V1Service } from '@kubernetes/client-node'
import type { ParsedCluster } from './cluster-resource.ts'
import {
  CLUSTER_GROUP, CLUSTER_KIND, CLUSTER_LABEL, CLUSTER_UID_ANNOTATION, CLUSTER_VERSION, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
  SERVICE_KUBE_API_PORT, SERVICE_KUBE_API_PORT_NAME, serviceName
} from './names.ts'

type ValidCluster = Extract<ParsedCluster, { ok: true }>

/** The owner reference Tower puts on a cluster's objects (a cluster-scoped owner of namespaced objects). */
export function clusterOwnerReference (c: { name: string, uid: string }): V1OwnerReference {
  return { apiVersion: `${CLUSTER_GROUP}/${CLUSTER_VERSION}`, kind: CLUSTER_KIND, name: c.name, uid: c.uid }
}

/** The Service a cluster should have, given its allocated port. */
export function desiredService (c: ValidCluster, port: number, namespace: string): V1Service {
  const external = c.externalKubeAPIEnabled && c.serviceAnnotations instanceof Map
  const annotations: Record<string, string> = Object.create(null)
  if (external) for (const [k, v] of c.serviceAnnotations as Map<string, string>) annotations[k] = v
  // Last, so no service annotation can claim another cluster's uid.
  annotations[CLUSTER_UID_ANNOTATION] = c.uid
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name: serviceName(c.name),
      namespace,
      labels: { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE, [CLUSTER_LABEL]: c.name },
      annotations: { ...annotations },
      ownerReferences: [clusterOwnerReference(c)]
    },
    spec: {
      type: external ? 'LoadBalancer' : 'ClusterIP',
      ports: [{ name: SERVICE_KUBE_API_PORT_NAME, protocol: 'TCP', port: SERVICE_KUBE_API_PORT, targetPort: port }]
    }
  }
}

function sameRecord (a: Record<string, string> | undefined, b: Record<string, string> | undefined): boolean {
  const ka = Object.keys(a ?? {}); const kb = Object.keys(b ?? {})
  return ka.length === kb.length && ka.every((k) => Object.hasOwn(b ?? {}, k) && (b as Record<string, string>)[k] === (a as Record<string, string>)[k])
}

/** True when the stored Service already says what `desired` says (the fields Tower owns). */
export function serviceMatches (existing: V1Service, desired: V1Service): boolean {
  const e = existing.spec; const d = desired.spec
  const ep = e?.ports ?? []; const dp = d?.ports ?? []
  if (e === undefined || d === undefined || ep.length !== dp.length) return false
  const portsSame = dp.every((p, i) => {
    const q = ep[i]
    return q !== undefined && q.name === p.name && q.port === p.port && (q.protocol ?? 'TCP') === p.protocol && String(q.targetPort) === String(p.targetPort)
  })
  return portsSame && (e.type ?? 'ClusterIP') === d.type && sameRecord(e.selector, d.selector) &&
    sameRecord(existing.metadata?.annotations, desired.metadata?.annotations) &&
    sameRecord(existing.metadata?.labels, desired.metadata?.labels) &&
    existing.metadata?.ownerReferences?.length === 1 && existing.metadata.ownerReferences[0]?.uid === desired.metadata?.ownerReferences?.[0]?.uid
}

/**
 * The body that turns `existing` into `desired`, keeping what the apiserver
 * allocated (clusterIP, resourceVersion). Fields that only a LoadBalancer or
 * NodePort may carry are dropped when the type becomes ClusterIP.
 */
export function updatedService (existing: V1Service, desired: V1Service): V1Service {
  const spec = { ...existing.spec, ...desired.spec }
  // A Service from before the selector-less design: the selector must go, or the endpoint controller fights the slices.
  if (desired.spec?.selector === undefined) delete spec.selector
  if (desired.spec?.type === 'ClusterIP') {
    delete spec.externalTrafficPolicy
    delete spec.allocateLoadBalancerNodePorts
    delete spec.loadBalancerClass
    delete spec.loadBalancerSourceRanges
    delete spec.healthCheckNodePort
  }
  return {
    ...existing,
    metadata: { ...existing.metadata, labels: desired.metadata?.labels, annotations: desired.metadata?.annotations, ownerReferences: desired.metadata?.ownerReferences },
    spec
  }
}

const HOSTNAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$/i
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/
const IPV6 = /^[0-9a-f:.]{2,45}$/i

/** https://<address>:6443 of a load balancer's first usable ingress entry, or undefined while it has none. */
export function externalEndpoint (svc: V1Service | undefined): string | undefined {
  if (svc?.spec?.type !== 'LoadBalancer') return undefined
  const ingress: unknown = svc.status?.loadBalancer?.ingress
  if (!Array.isArray(ingress)) return undefined
  for (const i of ingress.slice(0, 16)) {
    if (typeof i !== 'object' || i === null) continue
    const ip = (i as { ip?: unknown }).ip; const hostname = (i as { hostname?: unknown }).hostname
    if (typeof ip === 'string') {
      const m = IPV4.exec(ip)
      if (m !== null && m.slice(1).every((o) => Number(o) <= 255)) return `https://${ip}:${SERVICE_KUBE_API_PORT}`
      if (ip.includes(':') && IPV6.test(ip)) return `https://[${ip}]:${SERVICE_KUBE_API_PORT}`
    }
    if (typeof hostname === 'string' && hostname.length <= 253 && HOSTNAME.test(hostname)) return `https://${hostname}:${SERVICE_KUBE_API_PORT}`
  }
  return undefined
}
