/**
 * Agent errors. All extend `TowerError` and carry a stable `code`
 * (documented in the root README):
 * - `TOWER_ERR_KUBECONFIG`: the kubeconfig is unreadable, malformed, names a
 *   missing context/cluster/user, uses an auth method the agent does not
 *   support (exec plugins, auth providers), or impersonates (`as`, `as-uid`,
 *   `as-groups`, `as-user-extra`: refused, since dropping it would act with a
 *   broader identity).
 * - `TOWER_ERR_CREDENTIALS`: a token, certificate, key or CA file cannot be read.
 * - `TOWER_ERR_UPSTREAM`: the upstream (kube-apiserver) could not be reached.
 *
 * Handshake failures with the server are `HandshakeError`
 * (`TOWER_ERR_HANDSHAKE`, with `statusCode`) from @tower/transport.
 */
import { TowerError } from '@tower/transport'

export { TowerError, InvalidArgumentError, HandshakeError } from '@tower/transport'

/** The kubeconfig cannot be used. The message names the file and the offending entry. */
export class KubeconfigError extends TowerError {
  /** Path of the offending field, such as `users[0].user.as`; undefined when the file as a whole is the problem. */
  readonly field: string | undefined

  constructor (message: string, options?: ErrorOptions & { field?: string }) {
    super(message, 'TOWER_ERR_KUBECONFIG', options)
    this.field = options?.field
  }
}

/** A credential file (token, certificate, key, CA) cannot be read. */
export class CredentialsError extends TowerError {
  constructor (message: string, options?: ErrorOptions) {
    super(message, 'TOWER_ERR_CREDENTIALS', options)
  }
}

/** The upstream could not be reached (connect error or connect timeout). */
export class UpstreamError extends TowerError {
  constructor (message: string, options?: ErrorOptions) {
    super(message, 'TOWER_ERR_UPSTREAM', options)
  }
}
