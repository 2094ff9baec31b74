/**
 * Shared machinery for building X.509 certificates with node-forge.
 *
 * forge is slow at RSA key generation and cannot do ECDSA, so keys come from
 * node:crypto and are imported into forge only to sign. Everything forge
 * writes here has been checked against node's X509Certificate (OpenSSL) and
 * kubectl (Go crypto/x509), which is the stricter of the two: positive serials
 * with minimal DER encoding, issuer DN byte-identical to the CA's subject DN,
 * UTF8String attribute values.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import forge from 'node-forge'
import { InvalidArgumentError } from '@tower/mux'
import { CLOCK_SKEW_MS } from './config.ts'
import { CertificateInvalidError } from './errors.ts'

/** A certificate and its private key, both PEM. */
export interface CertificateBundle {
  /** The certificate, PEM (`-----BEGIN CERTIFICATE-----`). */
  certPem: string
  /** The RSA private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`). */
  keyPem: string
}

/** An RSA key pair, as PEM for the caller and as forge objects for signing. */
export interface KeyPair {
  keyPem: string
  privateKey: forge.pki.rsa.PrivateKey
  publicKey: forge.pki.rsa.PublicKey
}

/** A CA parsed and checked, ready to sign. */
export interface LoadedCa {
  cert: forge.pki.Certificate
  key: forge.pki.rsa.PrivateKey
  /** The CA's subject key identifier as a forge byte string, for the leaf's authorityKeyIdentifier. */
  keyIdentifier: string
}

/** One attribute of a subject DN: `CN` or `O`. */
export interface NameAttribute {
  shortName: 'CN' | 'O'
  value: string
}

/** Generates an RSA key pair of `bits` bits with node:crypto and imports it into forge. */
export function generateKeyPair (bits: number): KeyPair {
  const { privateKey: keyPem } = generateKeyPairSync('rsa', {
    modulusLength: bits,
    publicExponent: 0x10001,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' }
  })
  const privateKey = forge.pki.privateKeyFromPem(keyPem)
  const publicKey = forge.pki.setRsaPublicKey(privateKey.n, privateKey.e)
  return { keyPem, privateKey, publicKey }
}

/**
 * A random serial number as hex: 20 bytes (the RFC 5280 maximum), positive.
 * The first byte is kept in 0x01..0x7f because forge writes the bytes as-is:
 * a high bit would make the INTEGER negative and a zero byte would make its
 * DER encoding non-minimal, and Go refuses both.
 */
export function randomSerialHex (): string {
  const bytes = randomBytes(20)
  bytes[0] = bytes[0] & 0x7f
  if (bytes[0] === 0) bytes[0] = 1
  return bytes.toString('hex')
}

/** Converts our attributes into forge's, always as UTF8String so names like `alice@example.com` stay valid. */
export function toForgeAttributes (attrs: NameAttribute[]): forge.pki.CertificateField[] {
  return attrs.map((a) => ({
    shortName: a.shortName,
    value: a.value,
    // forge's typings declare valueTagClass as a Class, but forge reads it as a universal Type.
    valueTagClass: forge.asn1.Type.UTF8 as unknown as forge.asn1.Class
  }))
}

/**
 * The CA's subject as issuer attributes for a leaf. forge keeps parsed
 * UTF8String values as raw bytes but re-encodes them on write, so decode
 * first; otherwise the leaf's issuer would not byte-match the CA's subject.
 */
function issuerAttributes (ca: forge.pki.Certificate): forge.pki.CertificateField[] {
  const utf8 = forge.asn1.Type.UTF8 as number
  return ca.subject.attributes.map((a) => ({
    ...a,
    value: (a.valueTagClass as number) === utf8 && typeof a.value === 'string' ? forge.util.decodeUtf8(a.value) : a.value
  }))
}

/** Options of buildCertificate. */
export interface BuildOptions {
  subject: NameAttribute[]
  publicKey: forge.pki.rsa.PublicKey
  /** Validity in days from now; the start is CLOCK_SKEW_MS in the past. */
  validityDays: number
  /** forge extension descriptors. */
  extensions: object[]
  /** Signs with this CA; when absent the certificate is self-signed with `selfKey`. */
  issuer?: LoadedCa
  /** Private key for a self-signed certificate. */
  selfKey?: forge.pki.rsa.PrivateKey
}

/** Builds and signs (SHA-256) a v3 certificate, and returns it as PEM. */
export function buildCertificate (opts: BuildOptions): string {
  const cert = forge.pki.createCertificate()
  cert.version = 2 // v3
  cert.serialNumber = randomSerialHex()
  cert.publicKey = opts.publicKey
  const now = Date.now()
  cert.validity.notBefore = new Date(now - CLOCK_SKEW_MS)
  cert.validity.notAfter = new Date(now + opts.validityDays * 24 * 60 * 60 * 1000)
  const subject = toForgeAttributes(opts.subject)
  cert.setSubject(subject)
  cert.setIssuer(opts.issuer === undefined ? subject : issuerAttributes(opts.issuer.cert))
  cert.setExtensions(opts.extensions)
  const signer = opts.issuer?.key ?? opts.selfKey
  if (signer === undefined) throw new Error('buildCertificate: neither issuer nor selfKey given')
  cert.sign(signer, forge.md.sha256.create())
  // forge writes CRLF line endings; every consumer accepts LF, and LF diffs cleanly.
  return forge.pki.certificateToPem(cert).replace(/\r\n/g, '\n')
}

/** Parses one PEM certificate with forge; throws CertificateInvalidError naming `field`. */
export function parseCertificatePem (field: string, pem: unknown): forge.pki.Certificate {
  if (typeof pem !== 'string' || !pem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new CertificateInvalidError(`${field} is not a PEM certificate (no "-----BEGIN CERTIFICATE-----" block)`)
  }
  try {
    return forge.pki.certificateFromPem(pem)
  } catch (err) {
    throw new CertificateInvalidError(`${field} is not a valid RSA certificate: ${(err as Error).message}`, { cause: err })
  }
}

/** Parses a PEM RSA private key (PKCS#1 or PKCS#8) with forge; throws CertificateInvalidError naming `field`. */
export function parsePrivateKeyPem (field: string, pem: unknown): forge.pki.rsa.PrivateKey {
  if (typeof pem !== 'string' || !/-----BEGIN (RSA )?PRIVATE KEY-----/.test(pem)) {
    throw new CertificateInvalidError(`${field} is not an unencrypted PEM RSA private key ("-----BEGIN PRIVATE KEY-----" or "-----BEGIN RSA PRIVATE KEY-----")`)
  }
  try {
    return forge.pki.privateKeyFromPem(pem)
  } catch (err) {
    throw new CertificateInvalidError(`${field} is not a valid RSA private key: ${(err as Error).message}`, { cause: err })
  }
}

function verifySelf (cert: forge.pki.Certificate): boolean {
  try {
    return cert.verify(cert)
  } catch {
    return false
  }
}

/**
 * Parses and checks a CA bundle: the certificate must be a CA (basicConstraints
 * cA) and the key must belong to it. `name` is the option name for messages.
 */
export function loadCa (name: string, ca: unknown): LoadedCa {
  if (typeof ca !== 'object' || ca === null) throw new InvalidArgumentError(`${name} must be { certPem, keyPem }`)
  const { certPem, keyPem } = ca as Partial<CertificateBundle>
  const cert = parseCertificatePem(`${name}.certPem`, certPem)
  const key = parsePrivateKeyPem(`${name}.keyPem`, keyPem)
  const bc = cert.getExtension('basicConstraints') as { cA?: boolean } | undefined
  if (bc?.cA !== true) throw new CertificateInvalidError(`${name}.certPem is not a CA certificate (basicConstraints cA is not set)`)
  // A self-signed CA whose own signature fails is corrupt; every leaf it signed would be refused.
  if (cert.isIssuer(cert) && !verifySelf(cert)) throw new CertificateInvalidError(`${name}.certPem has an invalid self-signature (corrupted?)`)
  const pub = cert.publicKey as forge.pki.rsa.PublicKey
  if (pub.n.compareTo(key.n) !== 0 || pub.e.compareTo(key.e) !== 0) {
    throw new CertificateInvalidError(`${name}.keyPem does not belong to ${name}.certPem`)
  }
  const ski = cert.getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier?: string } | undefined
  const keyIdentifier = ski?.subjectKeyIdentifier !== undefined
    ? forge.util.hexToBytes(ski.subjectKeyIdentifier)
    : cert.generateSubjectKeyIdentifier().getBytes()
  return { cert, key, keyIdentifier }
}
