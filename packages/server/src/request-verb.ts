/**
 * What a caller request does, in Kubernetes terms, from its method and
 * target alone: the verb and, for resource requests, the object it names.
 * The audit log records both; the request metrics label by verb. The parse
 * follows kube-apiserver's RequestInfoFactory: `/api/<version>/…` and
 * `/apis/<group>/<version>/…`, the legacy `watch/` prefix, `?watch=true`,
 * an optional `namespaces/<ns>/` before the resource (but `namespaces/<ns>`
 * and its `status` and `finalize` are the namespace object itself).
 *
 * Beyond kube-apiserver's verbs, an upgrade (exec, attach, port-forward, a
 * WebSocket stream) and a request to an `exec`, `attach` or `portforward`
 * subresource are `connect`. Requests outside the API (`/version`,
 * `/openapi/…`) have the lowercase method as verb, as kube-apiserver's
 * non-resource requests do. The input is hostile: an over-long target, an
 * over-long segment or an unknown method yields no object and a fixed verb.
 */

/** The verbs {@link requestInfo} yields. */
export const REQUEST_VERBS = [
  'get', 'list', 'watch', 'create', 'update', 'patch', 'delete', 'deletecollection', 'connect',
  'head', 'post', 'put', 'options', 'other'
] as const

/** One of {@link REQUEST_VERBS}. */
export type RequestVerb = typeof REQUEST_VERBS[number]

/** The object a resource request names (audit.k8s.io/v1 ObjectReference, the fields a path can carry). */
export interface ObjectRef {
  resource: string
  namespace?: string
  name?: string
  /** Empty for the core group (`/api/v1`). */
  apiGroup: string
  apiVersion: string
  subresource?: string
}

/** The verb of a request and, for a resource request, its object. */
export interface RequestInfo {
  verb: RequestVerb
  objectRef?: ObjectRef
}

/** The request metrics' `verb` label values: the API verbs, `proxy` for a `…/proxy` subresource, `other` for the rest. */
export const METRICS_VERBS = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete', 'deletecollection', 'proxy', 'connect', 'other'] as const

/** One of {@link METRICS_VERBS}. */
export type MetricsVerb = typeof METRICS_VERBS[number]

// A target longer than this is not parsed (no API path is this long).
const MAX_TARGET = 4096
// A path segment longer than this names no object (Kubernetes names are at most 253).
const MAX_SEGMENT = 253
const NAMESPACE_SUBRESOURCES = new Set(['status', 'finalize'])
const CONNECT_SUBRESOURCES = new Set(['exec', 'attach', 'portforward'])
const NON_RESOURCE_VERBS = new Map<string, RequestVerb>([
  ['GET', 'get'], ['HEAD', 'head'], ['POST', 'post'], ['PUT', 'put'], ['PATCH', 'patch'], ['DELETE', 'delete'], ['OPTIONS', 'options']
])
const PLAIN_VERBS = new Set<string>(['get', 'list', 'watch', 'create', 'update', 'patch', 'delete', 'deletecollection', 'connect'])

/** The verb and object of a request; `upgrade` for an HTTP upgrade. Never throws. */
export function requestInfo (method: string | undefined, target: string | undefined, upgrade: boolean): RequestInfo {
  const url = typeof target === 'string' ? target : ''
  if (url.length > MAX_TARGET) return { verb: upgrade ? 'connect' : 'other' }
  const q = url.indexOf('?')
  const path = q < 0 ? url : url.slice(0, q)
  const query = q < 0 ? '' : url.slice(q + 1)
  const parts = path.split('/').filter((p) => p !== '')
  let apiGroup: string
  let apiVersion: string
  let rest: string[]
  if (parts[0] === 'api' && parts.length >= 2) {
    apiGroup = ''
    apiVersion = parts[1]!
    rest = parts.slice(2)
  } else if (parts[0] === 'apis' && parts.length >= 3) {
    apiGroup = parts[1]!
    apiVersion = parts[2]!
    rest = parts.slice(3)
  } else {
    return { verb: upgrade ? 'connect' : (NON_RESOURCE_VERBS.get(method ?? '') ?? 'other') }
  }

  let watch = false
  if (rest[0] === 'watch') {
    watch = true
    rest = rest.slice(1)
  }
  let namespace: string | undefined
  if (rest[0] === 'namespaces' && rest.length > 1) {
    namespace = rest[1]
    if (rest.length > 2 && !NAMESPACE_SUBRESOURCES.has(rest[2]!)) rest = rest.slice(2)
  }
  const [resource, name, subresource] = rest
  const verb = resourceVerb(method, name, subresource, upgrade, watch || watchQuery(query))
  if (resource === undefined || rest.length > 3 && subresource !== 'proxy') return { verb }
  if (![apiGroup, apiVersion, resource, namespace, name, subresource].every(fits)) return { verb }
  const objectRef: ObjectRef = { resource, apiGroup, apiVersion }
  if (namespace !== undefined) objectRef.namespace = namespace
  if (name !== undefined) objectRef.name = name
  if (subresource !== undefined) objectRef.subresource = subresource
  return { verb, objectRef }
}

/** The request metrics' verb of a request (see {@link METRICS_VERBS}). */
export function metricsVerb (info: RequestInfo): MetricsVerb {
  if (info.objectRef?.subresource === 'proxy' && info.verb !== 'connect') return 'proxy'
  if (info.objectRef === undefined && info.verb !== 'connect') return info.verb === 'get' || info.verb === 'head' ? 'get' : 'other'
  return PLAIN_VERBS.has(info.verb) ? info.verb as MetricsVerb : 'other'
}

function resourceVerb (method: string | undefined, name: string | undefined, subresource: string | undefined, upgrade: boolean, watch: boolean): RequestVerb {
  if (subresource !== undefined && CONNECT_SUBRESOURCES.has(subresource)) return 'connect'
  if (upgrade) return watch ? 'watch' : 'connect'
  switch (method) {
    case 'GET':
    case 'HEAD':
      if (watch) return 'watch'
      return name === undefined ? 'list' : 'get'
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

function fits (segment: string | undefined): boolean {
  return segment === undefined || segment.length <= MAX_SEGMENT
}
