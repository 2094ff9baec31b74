/**
 * The Kubernetes verb of a caller request, from its method and path, as the
 * `verb` label of the request metrics. The parsing follows kube-apiserver's
 * RequestInfoFactory: `/api/v1/…` and `/apis/<group>/<version>/…`, an
 * optional `namespaces/<ns>/` before the resource, the legacy `watch/`
 * prefix, `?watch=true`. Paths outside the API (`/version`, `/healthz`,
 * `/openapi/…`) are `get` for GET and HEAD, `other` otherwise.
 *
 * Beyond the API verbs, `proxy` is a request to a `…/proxy` subresource, and
 * `connect` an upgrade or a request to `exec`, `attach` or `portforward`.
 * The set is fixed, so the label stays bounded whatever a caller sends.
 */

/** The `verb` label values. */
export const METRICS_VERBS = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete', 'deletecollection', 'proxy', 'connect', 'other'] as const

/** One of {@link METRICS_VERBS}. */
export type MetricsVerb = typeof METRICS_VERBS[number]

// Subresources of a namespace itself (namespaces/<name>/status), not a resource in it.
const NAMESPACE_SUBRESOURCES = new Set(['status', 'finalize'])
const CONNECT_SUBRESOURCES = new Set(['exec', 'attach', 'portforward'])
// A path longer than this is not parsed: it is `other` (no API path is this long).
const MAX_PATH = 4096

/** The verb of a request; `upgrade` for an HTTP upgrade (exec, attach, port-forward, a WebSocket watch). */
export function kubernetesVerb (method: string | undefined, url: string | undefined, upgrade: boolean): MetricsVerb {
  const target = typeof url === 'string' ? url : ''
  if (target.length > MAX_PATH) return 'other'
  const q = target.indexOf('?')
  const path = q < 0 ? target : target.slice(0, q)
  const query = q < 0 ? '' : target.slice(q + 1)
  const parts = path.split('/').filter((p) => p !== '')
  let rest: string[]
  if (parts[0] === 'api' && parts.length >= 2) rest = parts.slice(2)
  else if (parts[0] === 'apis' && parts.length >= 3) rest = parts.slice(3)
  else return method === 'GET' || method === 'HEAD' ? (upgrade ? 'connect' : 'get') : 'other'

  let watch = false
  if (rest[0] === 'watch') {
    watch = true
    rest = rest.slice(1)
  }
  if (rest[0] === 'namespaces' && rest.length > 1 && !(rest.length > 2 && NAMESPACE_SUBRESOURCES.has(rest[2]!))) {
    if (rest.length > 2) rest = rest.slice(2)
  }
  const name = rest[1]
  const subresource = rest[2]
  if (subresource !== undefined && CONNECT_SUBRESOURCES.has(subresource)) return 'connect'
  if (subresource === 'proxy') return 'proxy'
  if (upgrade) return watch || watchQuery(query) ? 'watch' : 'connect'

  switch (method) {
    case 'GET':
    case 'HEAD':
      if (watch || watchQuery(query)) return 'watch'
      return name === undefined && rest.length > 0 ? 'list' : 'get'
    case 'POST': return 'create'
    case 'PUT': return 'update'
    case 'PATCH': return 'patch'
    case 'DELETE': return name === undefined ? 'deletecollection' : 'delete'
    default: return 'other'
  }
}

function watchQuery (query: string): boolean {
  if (query === '') return false
  for (const pair of query.split('&')) {
    if (pair === 'watch=true' || pair === 'watch=1') return true
  }
  return false
}
