/**
 * The certificate authority: a self-signed RSA certificate that signs
 * Tower's server certificates (the per-cluster listeners) and client
 * certificates (users of those listeners). Storing it is the caller's job;
 * this package never touches the file system.
 */
import { InvalidArgumentError } from '@tower/mux'
import { buildCertificate, generateKeyPair, loadCa, type CertificateBundle } from './certificate.ts'
import { resolveKeyBits, validateNonEmptyString, validateValidityDays } from './config.ts'

/** Options of createCa. */
export interface CreateCaOptions {
  /** Subject CN of the CA, such as `tower-ca`. */
  commonName: string
  /** Lifetime in days (1..36500); validity starts 5 minutes in the past for clock skew. */
  validityDays: number
  /** RSA modulus size in bits; default 2048. */
  keyBits?: number
}

/**
 * Creates a self-signed CA: basicConstraints cA (critical, pathLen 0: it signs
 * leaves only), keyUsage keyCertSign + cRLSign (critical), subjectKeyIdentifier,
 * a random positive 20-byte serial, SHA-256 signature.
 */
export function createCa (opts: CreateCaOptions): CertificateBundle {
  if (typeof opts !== 'object' || opts === null) throw new InvalidArgumentError('createCa options must be an object')
  validateNonEmptyString('commonName', opts.commonName)
  validateValidityDays('validityDays', opts.validityDays)
  const keys = generateKeyPair(resolveKeyBits('keyBits', opts.keyBits))
  const certPem = buildCertificate({
    subject: [{ shortName: 'CN', value: opts.commonName }],
    publicKey: keys.publicKey,
    validityDays: opts.validityDays,
    selfKey: keys.privateKey,
    extensions: [
      { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
      { name: 'subjectKeyIdentifier' }
    ]
  })
  return { certPem, keyPem: keys.keyPem }
}

/**
 * Checks a stored CA before it is used: both PEMs parse, the certificate is a
 * CA with a valid self-signature, and the key belongs to it. Throws
 * CertificateInvalidError (or InvalidArgumentError for a non-object) whose
 * message names `name.certPem` or `name.keyPem`.
 */
export function verifyCaBundle (name: string, ca: CertificateBundle): void {
  loadCa(name, ca)
}
