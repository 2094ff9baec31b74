/**
 * Passthrough mode hands users the member cluster's own kubeconfig, pointed
 * at Tower's listener for that cluster. TLS is end-to-end with the member's
 * kube-apiserver, so the client must still verify the member's certificate:
 * `server` becomes the tunnel endpoint and `tls-server-name` keeps the
 * original host. Everything else (CA, credentials, comments, unknown fields)
 * is kept as written, because the YAML is edited in place rather than
 * re-rendered.
 */
import { isAbsolute, resolve as resolvePath } from 'node:path'
import { parseDocument, type Document } from 'yaml'
import { InvalidArgumentError } from '@tower/mux'
import { validateNonEmptyString } from './config.ts'
import { KubeconfigInvalidError } from './errors.ts'
import { kubeconfigFromObject, selectContext, YAML_OPTIONS } from './kubeconfig.ts'

/** Options of rewriteKubeconfigServer. */
export interface RewriteKubeconfigOptions {
  /** The tunnel endpoint, `https://host:port`. */
  server: string
  /**
   * Name the member's certificate is checked against. Default: the cluster's
   * existing `tls-server-name`, else the host of its original `server`.
   */
  tlsServerName?: string
  /** Context to rewrite; default `current-context`. It becomes the current context. */
  contextName?: string
  /** Drop every other context, and every cluster and user the kept context does not use. Default false. */
  prune?: boolean
  /** When given, relative file paths (certificate-authority, client-certificate, client-key, tokenFile) are made absolute against it, so the output works from any directory. */
  baseDir?: string
}

/** File-path fields, by section, that kubectl resolves relative to the kubeconfig. */
const PATH_FIELDS = {
  clusters: { key: 'cluster', fields: ['certificate-authority'] },
  users: { key: 'user', fields: ['client-certificate', 'client-key', 'tokenFile'] }
} as const

/** The host of a URL without IPv6 brackets: `https://[::1]:6443` → `::1`. */
function hostOf (server: string): string {
  return new URL(server).hostname.replace(/^\[(.*)\]$/, '$1')
}

function absolutize (doc: Document, baseDir: string): void {
  for (const [list, { key, fields }] of Object.entries(PATH_FIELDS)) {
    const n = (doc.get(list) as { items?: unknown[] } | undefined)?.items?.length ?? 0
    for (let i = 0; i < n; i++) {
      for (const field of fields) {
        const value = doc.getIn([list, i, key, field])
        if (typeof value === 'string' && value !== '' && !isAbsolute(value)) doc.setIn([list, i, key, field], resolvePath(baseDir, value))
      }
    }
  }
}

/**
 * Returns the kubeconfig `text` with the selected context's cluster `server`
 * replaced by `opts.server` and `tls-server-name` set so the member's
 * certificate still verifies; that context becomes current. Without `prune`,
 * other contexts sharing the same cluster entry are redirected too.
 * Throws KubeconfigInvalidError for a malformed kubeconfig or an unknown
 * context, InvalidArgumentError for bad options.
 */
export function rewriteKubeconfigServer (text: string, opts: RewriteKubeconfigOptions): string {
  if (typeof opts !== 'object' || opts === null) throw new InvalidArgumentError('rewriteKubeconfigServer options must be an object')
  validateNonEmptyString('server', opts.server)
  let url: URL
  try {
    url = new URL(opts.server)
  } catch {
    throw new InvalidArgumentError(`server is not a URL: ${JSON.stringify(opts.server)}`)
  }
  // Passthrough carries the member's own TLS, so the endpoint is always https.
  if (url.protocol !== 'https:') throw new InvalidArgumentError(`server must be an https URL, got ${JSON.stringify(opts.server)}`)
  if (opts.tlsServerName !== undefined) validateNonEmptyString('tlsServerName', opts.tlsServerName)
  if (opts.baseDir !== undefined) validateNonEmptyString('baseDir', opts.baseDir)
  if (typeof text !== 'string') throw new KubeconfigInvalidError('', 'text must be a string')

  const doc = parseDocument(text, YAML_OPTIONS)
  if (doc.errors.length > 0) throw new KubeconfigInvalidError('', `not valid YAML: ${doc.errors[0].message}`, { cause: doc.errors[0] })
  const cfg = kubeconfigFromObject(doc.toJS())
  const sel = selectContext(cfg, opts.contextName)
  const original = cfg.clusters[sel.clusterIndex]
  let tlsServerName = opts.tlsServerName ?? original.tlsServerName
  if (tlsServerName === undefined) {
    try {
      tlsServerName = hostOf(original.server)
    } catch {
      throw new KubeconfigInvalidError(`clusters[${sel.clusterIndex}].cluster.server`, `is not a URL: ${JSON.stringify(original.server)}`)
    }
  }

  if (opts.baseDir !== undefined) absolutize(doc, opts.baseDir)
  doc.setIn(['clusters', sel.clusterIndex, 'cluster', 'server'], opts.server)
  doc.setIn(['clusters', sel.clusterIndex, 'cluster', 'tls-server-name'], tlsServerName)
  doc.set('current-context', sel.contextName)

  if (opts.prune === true) {
    const keep: Record<string, number | undefined> = { contexts: sel.contextIndex, clusters: sel.clusterIndex, users: sel.userIndex }
    for (const [list, index] of Object.entries(keep)) {
      const n = (doc.get(list) as { items?: unknown[] } | undefined)?.items?.length ?? 0
      // Delete from the end so earlier indexes stay valid.
      for (let i = n - 1; i >= 0; i--) if (i !== index) doc.deleteIn([list, i])
    }
  }
  return doc.toString(YAML_OPTIONS)
}
