/**
 * Errors of the federation join. They belong in the controller package's
 * errors.ts once that exists; until then they live beside the code that
 * throws them, and the CLI matches on `code` only.
 */
import { TowerError } from '@tower/mux'

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
