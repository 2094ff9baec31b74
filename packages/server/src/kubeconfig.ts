/**
 * Issues kubeconfigs for a cluster's Tower port: with a client certificate
 * (kubectl's usual form), with a caller token (what KubeFed stores), or, for
 * passthrough clusters, by rewriting the member's own kubeconfig so its
 * server is the tunnel and its certificate still verifies (tls-server-name).
 */
import { InvalidArgumentError } from '@tower/mux'
import { issueClientCert, renderKubeconfig, rewriteKubeconfigServer } from '@tower/pki'
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

/** Returns the kubeconfig YAML. */
export function issueKubeconfig (registry: Registry, req: KubeconfigRequest): string {
  const c = registry.get(req.cluster)
  const port = c.port !== 0 ? c.port : registry.readStatus()?.clusters?.[c.name]?.port
  if (typeof port !== 'number' || port === 0) {
    throw new InvalidArgumentError(`cluster "${c.name}" has no port yet: start "tower server" so it can bind one, then retry`)
  }
  const host = req.serverHost ?? registry.settings.advertiseHost
  const server = `https://${host.includes(':') ? `[${host}]` : host}:${port}`
  if (c.mode === 'passthrough') {
    if (req.from === undefined) throw new InvalidArgumentError(`cluster "${c.name}" is in passthrough mode: pass --from <member kubeconfig>; the member's own credentials are used end to end`)
    return rewriteKubeconfigServer(req.from.text, { server, contextName: req.from.context, baseDir: req.from.baseDir, prune: true })
  }
  if (req.from !== undefined) throw new InvalidArgumentError('--from applies to passthrough clusters only')
  const user = req.user ?? DEFAULT_CALLER_USER
  const groups = req.groups ?? []
  const caPem = registry.ca.certPem
  if (req.token === true) {
    const { token } = registry.issueCallerToken(c.name, { user, groups })
    return renderKubeconfig({ name: c.name, server, caPem, user: { token } })
  }
  const cert = issueClientCert(registry.ca, { user, groups, cluster: c.name, validityDays: req.validityDays ?? 365 })
  return renderKubeconfig({ name: c.name, server, caPem, user: { clientCertPem: cert.certPem, clientKeyPem: cert.keyPem } })
}
