/**
 * TLS server certificates for Tower's listeners (one per member cluster, and
 * the agent endpoint), signed by the Tower CA.
 */
import { InvalidArgumentError } from '@tower/mux'
import { buildCertificate, generateKeyPair, loadCa, type CertificateBundle } from './certificate.ts'
import { resolveKeyBits, validateDnsNames, validateIpAddresses, validateNonEmptyString, validateValidityDays } from './config.ts'

/** Options of issueServerCert. */
export interface ServerCertOptions {
  /** Subject CN; informational only, clients match the SANs. */
  commonName: string
  /** DNS names the server answers to (SAN type 2), such as `localhost` or `*.tower.example`. */
  dnsNames: string[]
  /** IPv4/IPv6 addresses the server answers to (SAN type 7), such as `127.0.0.1`. */
  ipAddresses: string[]
  /** Lifetime in days (1..36500); validity starts 5 minutes in the past for clock skew. */
  validityDays: number
  /** RSA modulus size in bits; default 2048. */
  keyBits?: number
}

/**
 * Issues a server certificate signed by `ca`: SAN DNS + IP, EKU serverAuth,
 * keyUsage digitalSignature + keyEncipherment (critical), basicConstraints
 * cA false, subject and authority key identifiers.
 * Throws InvalidArgumentError naming the bad option, CertificateInvalidError
 * when `ca` is not a usable CA.
 */
export function issueServerCert (ca: CertificateBundle, opts: ServerCertOptions): CertificateBundle {
  if (typeof opts !== 'object' || opts === null) throw new InvalidArgumentError('issueServerCert options must be an object')
  validateNonEmptyString('commonName', opts.commonName)
  validateDnsNames('dnsNames', opts.dnsNames)
  validateIpAddresses('ipAddresses', opts.ipAddresses)
  if (opts.dnsNames.length === 0 && opts.ipAddresses.length === 0) {
    throw new InvalidArgumentError('dnsNames and ipAddresses are both empty: a server certificate needs at least one SAN')
  }
  validateValidityDays('validityDays', opts.validityDays)
  const bits = resolveKeyBits('keyBits', opts.keyBits)
  const issuer = loadCa('ca', ca)
  const keys = generateKeyPair(bits)
  const certPem = buildCertificate({
    subject: [{ shortName: 'CN', value: opts.commonName }],
    publicKey: keys.publicKey,
    validityDays: opts.validityDays,
    issuer,
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          ...opts.dnsNames.map((value) => ({ type: 2, value })),
          ...opts.ipAddresses.map((ip) => ({ type: 7, ip }))
        ]
      },
      { name: 'subjectKeyIdentifier' },
      { name: 'authorityKeyIdentifier', keyIdentifier: issuer.keyIdentifier }
    ]
  })
  return { certPem, keyPem: keys.keyPem }
}
