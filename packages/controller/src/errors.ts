/**
 * Errors of the controller package. Callers match on `code`.
 *
 * A failed API call becomes KubeApiError with the HTTP status and the
 * Status reason only: client-node's own error message embeds the response
 * body and headers, which can carry object data, so it is never kept.
 */
import { TowerError } from '@tower/mux'

export { TowerError } from '@tower/mux'

/** The Cluster CRD is not installed in the host cluster. */
export class CrdMissingError extends TowerError {
  /** The CRD's name, e.g. clusters.cluster.kubesphere.io. */
  readonly crd: string
  constructor (crd: string) {
    super(`the CustomResourceDefinition ${crd} is not installed in the host cluster; install it with: kubectl apply -k deploy/controller`, 'TOWER_ERR_CRD_MISSING')
    this.crd = crd
  }
}

/** Tower's identity lacks a permission it needs in the host cluster. */
export class ForbiddenError extends TowerError {
  readonly verb: string
  /** `resource` or `resource/subresource`, with its API group when it has one. */
  readonly resource: string
  /** The namespace, or undefined for a cluster-scoped check. */
  readonly namespace: string | undefined
  constructor (verb: string, resource: string, namespace: string | undefined, why?: string) {
    const where = namespace === undefined ? 'cluster-wide' : `in namespace ${namespace}`
    super(`Tower may not ${verb} ${resource} ${where}${why !== undefined && why !== '' ? ` (${why})` : ''}; grant it (deploy/controller/rbac.yaml)`, 'TOWER_ERR_FORBIDDEN')
    this.verb = verb
    this.resource = resource
    this.namespace = namespace
  }
}

/** A call to the host cluster's API failed. */
export class KubeApiError extends TowerError {
  /** HTTP status, or 0 when no response came (connection refused, timeout). */
  readonly status: number
  /** The Status object's reason (NotFound, Conflict, AlreadyExists…), or '' when none. */
  readonly reason: string
  constructor (what: string, status: number, reason: string) {
    super(`${what} failed: ${status === 0 ? 'no response from the host cluster' : `HTTP ${status}${reason !== '' ? ` ${reason}` : ''}`}`, 'TOWER_ERR_KUBE_API')
    this.status = status
    this.reason = reason
  }
}

/** The HTTP status of a client-node error, or 0 when it is not an API response. */
export function statusOf (err: unknown): number {
  if (err instanceof KubeApiError) return err.status
  if (typeof err === 'object' && err !== null) {
    const code = (err as { code?: unknown }).code
    if (typeof code === 'number' && Number.isInteger(code) && code >= 100 && code <= 599) return code
    const statusCode = (err as { statusCode?: unknown }).statusCode
    if (typeof statusCode === 'number') return statusCode
  }
  return 0
}

const REASON = /^[A-Za-z]{1,64}$/

/** Wraps a client-node error as KubeApiError (status and reason only); passes a TowerError through. */
export function kubeApiError (what: string, err: unknown): TowerError {
  if (err instanceof TowerError) return err
  const status = statusOf(err)
  let reason = ''
  const body = typeof err === 'object' && err !== null ? (err as { body?: unknown }).body : undefined
  try {
    const parsed: unknown = typeof body === 'string' ? JSON.parse(body) : body
    const r = typeof parsed === 'object' && parsed !== null ? (parsed as { reason?: unknown }).reason : undefined
    if (typeof r === 'string' && REASON.test(r)) reason = r
  } catch {
    // A body that is not JSON has no reason to offer.
  }
  return new KubeApiError(what, status, reason)
}

/**
 * The object Tower would write already exists and was not made by Tower
 * (no `app.kubernetes.io/managed-by: tower` label): a cluster joined by
 * kubefedctl or karmadactl is never taken over silently.
 */
export class FederationConflictError extends TowerError {
  constructor (message: string) {
    super(message, 'TOWER_ERR_FEDERATION_CONFLICT')
  }
}

/** The federation control plane refused or failed a request (missing CRDs, RBAC, unreachable). */
export class FederationApiError extends TowerError {
  /** HTTP status of the failed request, when there was one. */
  readonly status: number | undefined

  constructor (message: string, status: number | undefined, options?: ErrorOptions) {
    super(message, 'TOWER_ERR_FEDERATION_API', options)
    this.status = status
  }
}
