/**
 * Certificates for the test clusters: one CA per cluster, the apiserver's serving cert, client certs
 * (admin = O=system:masters) and the service-account signing key.
 *
 * Independent of packages/pki on purpose: the harness must not share code (and bugs) with what it tests.
 * Keys come from node:crypto (native, fast); node-forge only builds and signs the certificates.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { isIP } from 'node:net'
import forge from 'node-forge'

/** A PEM certificate and its PEM private key. */
export interface CertPair { certPem: string, keyPem: string }

/** A certificate authority that can issue more certificates. */
export interface TestCa extends CertPair {
  /** Issue a serving cert for these DNS names / IP addresses. */
  serving (commonName: string, hosts: string[]): CertPair
  /** Issue a client cert: CN = user, O = groups (Kubernetes reads them as user name and groups). */
  client (user: string, groups?: string[]): CertPair
}

const DAY_MS = 24 * 3600 * 1000

function rsaKeyPair (): { publicPem: string, privatePem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  return {
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  }
}

/** The service-account token signing key pair (PEM): `--service-account-signing-key-file` / `-key-file`. */
export function serviceAccountKeys (): { publicPem: string, privatePem: string } {
  return rsaKeyPair()
}

interface Subject { commonName: string, organizations?: string[] }

function subjectAttrs (s: Subject): forge.pki.CertificateField[] {
  return [{ name: 'commonName', value: s.commonName },
    ...(s.organizations ?? []).map((o) => ({ name: 'organizationName', value: o }))]
}

function sign (opts: {
  subject: Subject
  issuer?: { cert: forge.pki.Certificate, key: forge.pki.rsa.PrivateKey }
  extensions: object[]
}): CertPair & { cert: forge.pki.Certificate, key: forge.pki.rsa.PrivateKey } {
  const { publicPem, privatePem } = rsaKeyPair()
  const key = forge.pki.privateKeyFromPem(privatePem) as forge.pki.rsa.PrivateKey
  const cert = forge.pki.createCertificate()
  cert.publicKey = forge.pki.publicKeyFromPem(publicPem)
  // Positive serial: a leading 0x00..0x7f byte keeps the DER INTEGER positive.
  cert.serialNumber = '01' + randomBytes(15).toString('hex')
  // Backdated a minute so a slightly skewed clock in another process does not see a future cert.
  cert.validity.notBefore = new Date(Date.now() - 60_000)
  cert.validity.notAfter = new Date(Date.now() + 7 * DAY_MS)
  cert.setSubject(subjectAttrs(opts.subject))
  cert.setIssuer(opts.issuer ? opts.issuer.cert.subject.attributes : subjectAttrs(opts.subject))
  cert.setExtensions(opts.extensions)
  cert.sign(opts.issuer?.key ?? key, forge.md.sha256.create())
  return { cert, key, certPem: forge.pki.certificateToPem(cert), keyPem: privatePem }
}

/** A fresh self-signed CA named `commonName`. */
export function createCa (commonName: string): TestCa {
  const ca = sign({
    subject: { commonName },
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
      { name: 'subjectKeyIdentifier' }
    ]
  })
  const issuer = { cert: ca.cert, key: ca.key }
  return {
    certPem: ca.certPem,
    keyPem: ca.keyPem,
    serving (cn, hosts) {
      const altNames = hosts.map((h) => isIP(h) !== 0 ? { type: 7, ip: h } : { type: 2, value: h })
      const { certPem, keyPem } = sign({
        subject: { commonName: cn },
        issuer,
        extensions: [
          { name: 'basicConstraints', cA: false },
          { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
          { name: 'extKeyUsage', serverAuth: true },
          { name: 'subjectAltName', altNames }
        ]
      })
      return { certPem, keyPem }
    },
    client (user, groups = []) {
      const { certPem, keyPem } = sign({
        subject: { commonName: user, organizations: groups },
        issuer,
        extensions: [
          { name: 'basicConstraints', cA: false },
          { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
          { name: 'extKeyUsage', clientAuth: true }
        ]
      })
      return { certPem, keyPem }
    }
  }
}
