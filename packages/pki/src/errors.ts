/**
 * Error classes of the pki package. All extend `TowerError` from mux and
 * carry a stable `code`; callers match on `code`, never on message text.
 * Invalid options to our own functions throw mux's `InvalidArgumentError`
 * (`TOWER_ERR_INVALID_ARG`) instead.
 */
import { TowerError } from '@tower/mux'

/**
 * A certificate or key is malformed (bad PEM/DER), is not a CA where one is
 * needed, was not issued by the expected CA, is outside its validity period,
 * or lacks the Tower identity fields (CN, cluster URI).
 * Code: `TOWER_ERR_CERT_INVALID`.
 */
export class CertificateInvalidError extends TowerError {
  constructor (message: string, options?: ErrorOptions) {
    super(message, 'TOWER_ERR_CERT_INVALID', options)
  }
}

/**
 * A kubeconfig is not valid YAML, or a field has the wrong type, is missing,
 * or points at something that does not exist (an unknown context, cluster or
 * user; an unreadable file; base64 that is not PEM).
 * Code: `TOWER_ERR_KUBECONFIG_INVALID`.
 */
export class KubeconfigInvalidError extends TowerError {
  /** Path of the offending field, such as `clusters[0].cluster.server`; empty for the whole document. */
  readonly field: string

  constructor (field: string, message: string, options?: ErrorOptions) {
    super(field === '' ? `kubeconfig: ${message}` : `kubeconfig: ${field}: ${message}`, 'TOWER_ERR_KUBECONFIG_INVALID', options)
    this.field = field
  }
}

/**
 * A kubeconfig asks for a credential mechanism Tower cannot use on its own,
 * such as `exec` plugins or `auth-provider`.
 * Code: `TOWER_ERR_KUBECONFIG_UNSUPPORTED`.
 */
export class KubeconfigUnsupportedError extends TowerError {
  /** Path of the offending field, such as `users[0].user.exec`. */
  readonly field: string

  constructor (field: string, message: string) {
    super(`kubeconfig: ${field}: ${message}`, 'TOWER_ERR_KUBECONFIG_UNSUPPORTED')
    this.field = field
  }
}
