/**
 * Issues kubeconfigs for a cluster's Tower port: with a client certificate
 * (kubectl's usual form), with a caller token (what KubeFed stores), or, for
 * passthrough clusters, by rewriting the member's own kubeconfig so its
 * server is the tunnel and its certificate still verifies (tls-server-name).
 */
import { InvalidArgumentError } from '@tower/mux'
import { X509Certificate } from 'node:crypto'
import { issueClientCert, normalizeSerial, renderKubeconfig, rewriteKubeconfigServer } from '@tower/pki'
import type { Registry } from './registry.ts'

/** What to put in the kubeconfig. */
export interface KubeconfigRequest {
  cluster: string
  /** Host the kubeconfig points at; defaults to the server's advertise host. */
  serverHost?: string
  /** Identity of the caller (proxy mode). */
  user?: string
  groups?: string[]
  /** Use a caller token instead of a client certificate. */
  token?: boolean
  /** Certificate validity in days. */
  validityDays?: number
  /** The member's own kubeconfig text, for passthrough clusters. */
  from?: { text: string, context?: string, baseDir?: string }
}

/** Default identity of issued credentials: no group, so nothing is granted by default under impersonation. */
export const DEFAULT_CALLER_USER = 'tower-admin'

/** A kubeconfig and what identifies the credential in it. */
export interface IssuedKubeconfig {
  yaml: string
  /** Serial (lowercase hex) of the client certificate, for `tower kubeconfig revoke --serial`. */
  serial?: string
  /** Id of the caller token, for `tower cluster token --revoke-caller`. */
  tokenId?: string
}

/** Returns the kubeconfig YAML. */
export function issueKubeconfig (registry: Registry, req: KubeconfigRequest): string {
  return issueKubeconfigCredential(registry, req).yaml
}

/** Returns the kubeconfig YAML with the serial or token id of its credential. */
export function issueKubeconfigCredential (registry: Registry, req: KubeconfigRequest): IssuedKubeconfig {
  const c = registry.get(req.cluster)
  const port = c.port !== 0 ? c.port : statusPort(registry.readStatus(), c.name)
  if (typeof port !== 'number' || port === 0) {
    throw new InvalidArgumentError(`cluster "${c.name}" has no port yet: start "tower server" so it can bind one, then retry`)
  }
  const host = req.serverHost ?? registry.settings.advertiseHost
  const server = `https://${host.includes(':') ? `[${host}]` : host}:${port}`
  if (c.mode === 'passthrough') {
    if (req.from === undefined) throw new InvalidArgumentError(`cluster "${c.name}" is in passthrough mode: pass --from <member kubeconfig>; the member's own credentials are used end to end`)
    return { yaml: rewriteKubeconfigServer(req.from.text, { server, contextName: req.from.context, baseDir: req.from.baseDir, prune: true }) }
  }
  if (req.from !== undefined) throw new InvalidArgumentError('--from applies to passthrough clusters only')
  const user = req.user ?? DEFAULT_CALLER_USER
  const groups = req.groups ?? []
  const caPem = registry.ca.certPem
  if (req.token === true) {
    const { token, id } = registry.issueCallerToken(c.name, { user, groups })
    return { yaml: renderKubeconfig({ name: c.name, server, caPem, user: { token } }), tokenId: id }
  }
  const cert = issueClientCert(registry.ca, { user, groups, cluster: c.name, clusterUid: c.uid, validityDays: req.validityDays ?? 365 })
  const serial = normalizeSerial(new X509Certificate(cert.certPem).serialNumber)
  return { yaml: renderKubeconfig({ name: c.name, server, caPem, user: { clientCertPem: cert.certPem, clientKeyPem: cert.keyPem } }), serial }
}

// status.json is written by the server, but read here as untrusted input.
function statusPort (status: Record<string, any> | undefined, name: string): number | undefined {
  const clusters: unknown = status?.clusters
  if (typeof clusters !== 'object' || clusters === null || !Object.hasOwn(clusters, name)) return undefined
  const port: unknown = (clusters as Record<string, { port?: unknown }>)[name]?.port
  return typeof port === 'number' && Number.isInteger(port) && port > 0 && port <= 65535 ? port : undefined
}
