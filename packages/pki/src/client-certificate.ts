/**
 * Client certificates for users of Tower's per-cluster listeners, in the
 * Kubernetes convention (CN = user, one O per group) plus a SAN URI
 * `tower://cluster/<name>` that binds the certificate to one member cluster.
 */
import { InvalidArgumentError } from '@tower/mux'
import { buildCertificate, generateKeyPair, loadCa, type CertificateBundle } from './certificate.ts'
import { isClusterUid, resolveKeyBits, validateClusterName, validateNonEmptyString, validateStringArray, validateValidityDays } from './config.ts'
import { CLUSTER_UID_URI_PREFIX, CLUSTER_URI_PREFIX } from './constants.ts'

/** Options of issueClientCert. */
export interface ClientCertOptions {
  /** Kubernetes user name, written as the subject CN. */
  user: string
  /** Kubernetes groups, one subject O each, in order. May be empty. */
  groups: string[]
  /** Member cluster this certificate is valid for; see clusterUri. */
  cluster: string
  /**
   * The random uid of this registration of the cluster, written as a second
   * SAN URI `tower-uid://cluster/<uid>`; the server refuses the certificate
   * once the cluster is re-added under a new uid. 8-64 of [a-z0-9-].
   */
  clusterUid?: string
  /** Lifetime in days (1..36500); validity starts 5 minutes in the past for clock skew. */
  validityDays: number
  /** RSA modulus size in bits; default 2048. */
  keyBits?: number
}

/** The SAN URI that binds a client certificate to `cluster`: `tower://cluster/<cluster>`. */
export function clusterUri (cluster: string): string {
  validateClusterName('cluster', cluster)
  return CLUSTER_URI_PREFIX + cluster
}

// Control characters would be escaped by OpenSSL's name printing and are
// never legitimate in a user or group name; refuse them up front.
function validateNameText (name: string, value: string): void {
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) throw new InvalidArgumentError(`${name} must not contain control characters`)
}

/**
 * Issues a client certificate signed by `ca`: subject CN=user, O=group...,
 * SAN URI `tower://cluster/<cluster>` (and `tower-uid://cluster/<uid>` with
 * `clusterUid`), EKU clientAuth, keyUsage
 * digitalSignature + keyEncipherment (critical), key identifiers.
 * Throws InvalidArgumentError naming the bad option, CertificateInvalidError
 * when `ca` is not a usable CA.
 */
export function issueClientCert (ca: CertificateBundle, opts: ClientCertOptions): CertificateBundle {
  if (typeof opts !== 'object' || opts === null) throw new InvalidArgumentError('issueClientCert options must be an object')
  validateNonEmptyString('user', opts.user)
  validateNameText('user', opts.user)
  validateStringArray('groups', opts.groups)
  opts.groups.forEach((g, i) => validateNameText(`groups[${i}]`, g))
  const uri = clusterUri(opts.cluster)
  if (opts.clusterUid !== undefined && !isClusterUid(opts.clusterUid)) {
    throw new InvalidArgumentError(`clusterUid must be 8-64 lowercase letters, digits or '-', got ${JSON.stringify(opts.clusterUid)}`)
  }
  const altNames = [{ type: 6, value: uri }]
  if (opts.clusterUid !== undefined) altNames.push({ type: 6, value: CLUSTER_UID_URI_PREFIX + opts.clusterUid })
  validateValidityDays('validityDays', opts.validityDays)
  const bits = resolveKeyBits('keyBits', opts.keyBits)
  const issuer = loadCa('ca', ca)
  const keys = generateKeyPair(bits)
  const certPem = buildCertificate({
    subject: [
      { shortName: 'CN', value: opts.user },
      ...opts.groups.map((value) => ({ shortName: 'O' as const, value }))
    ],
    publicKey: keys.publicKey,
    validityDays: opts.validityDays,
    issuer,
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', clientAuth: true },
      { name: 'subjectAltName', altNames },
      { name: 'subjectKeyIdentifier' },
      { name: 'authorityKeyIdentifier', keyIdentifier: issuer.keyIdentifier }
    ]
  })
  return { certPem, keyPem: keys.keyPem }
}
