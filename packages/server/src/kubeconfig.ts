/**
 * Issues kubeconfigs for a cluster's Tower port: with a client certificate
 * (kubectl's usual form), with a caller token (what KubeFed stores), or, for
 * passthrough clusters, by rewriting the member's own kubeconfig so its
 * server is the tunnel and its certificate still verifies (tls-server-name).
 */
import { InvalidArgumentError } from '@tower/mux'
import { X509Certificate } from 'node:crypto'
import { issueClientCert, normalizeSerial, renderKubeconfig, rewriteKubeconfigServer } from '@tower/pki'
import type { ClusterRegistry } from './registry/api.ts'

/** What to put in the kubeconfig. */
export interface KubeconfigRequest {
  cluster: string
  /** Host the kubeconfig points at; defaults to the server's advertise host. */
  serverHost?: string
  /** Port the kubeconfig points at instead of the endpoint's (e.g. the server's own cluster port, bypassing a Service). */
  serverPort?: number
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
export async function issueKubeconfig (registry: ClusterRegistry, req: KubeconfigRequest): Promise<string> {
  return (await issueKubeconfigCredential(registry, req)).yaml
}

/**
 * Returns the kubeconfig YAML with the serial or token id of its credential.
 * The server address is the registry's endpoint for the cluster (its host
 * replaced by `serverHost` when given).
 */
export async function issueKubeconfigCredential (registry: ClusterRegistry, req: KubeconfigRequest): Promise<IssuedKubeconfig> {
  const c = registry.get(req.cluster)
  const endpoint = registry.endpoint(c.name)
  if (endpoint === undefined) {
    throw new InvalidArgumentError(`cluster "${c.name}" has no port yet: start "tower server" so it can bind one, then retry`)
  }
  const host = req.serverHost ?? endpoint.host
  const port = req.serverPort ?? endpoint.port
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidArgumentError(`serverPort (--server-port) must be an integer in 1-65535, got ${String(port)}`)
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
    const { token, id } = await registry.issueCallerToken(c.name, { user, groups })
    return { yaml: renderKubeconfig({ name: c.name, server, caPem, user: { token } }), tokenId: id }
  }
  const cert = issueClientCert(registry.ca, { user, groups, cluster: c.name, clusterUid: c.uid, validityDays: req.validityDays ?? 365 })
  const serial = normalizeSerial(new X509Certificate(cert.certPem).serialNumber)
  return { yaml: renderKubeconfig({ name: c.name, server, caPem, user: { clientCertPem: cert.certPem, clientKeyPem: cert.keyPem } }), serial }
}
