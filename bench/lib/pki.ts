/**
 * Certificates for the benchmark's own TLS endpoints: a throwaway CA and one
 * server certificate for 127.0.0.1 / localhost, used by the HTTPS upstream
 * and by the Konnectivity proxy-server's agent port. Keys come from
 * node:crypto (fast); node-forge only assembles and signs the X.509.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import forge from 'node-forge'

/** PEM files written by {@link writeBenchPki}. */
export interface BenchPki {
  /** CA certificate PEM path. */
  caFile: string
  /** Server certificate PEM path (SAN IP 127.0.0.1, DNS localhost). */
  certFile: string
  /** Server private key PEM path. */
  keyFile: string
  /** The CA certificate PEM text. */
  caPem: string
}

function rsaKey (): { pub: forge.pki.PublicKey, priv: forge.pki.rsa.PrivateKey, pem: string } {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  const priv = forge.pki.privateKeyFromPem(pem) as forge.pki.rsa.PrivateKey
  const pub = forge.pki.setRsaPublicKey(priv.n, priv.e)
  return { pub, priv, pem }
}

function baseCert (pub: forge.pki.PublicKey, cn: string): forge.pki.Certificate {
  const cert = forge.pki.createCertificate()
  cert.publicKey = pub
  // DER INTEGER rules: positive (top bit clear) and minimal (first byte not 0).
  const serial = randomBytes(16)
  serial[0] = (serial[0] & 0x7f) | 0x01
  cert.serialNumber = serial.toString('hex')
  cert.validity.notBefore = new Date(Date.now() - 60_000)
  cert.validity.notAfter = new Date(Date.now() + 7 * 24 * 3600_000)
  cert.setSubject([{ name: 'commonName', value: cn }])
  return cert
}

/** Creates a CA and a server certificate and writes them as PEM files into `dir`. */
export function writeBenchPki (dir: string): BenchPki {
  const ca = rsaKey()
  const caCert = baseCert(ca.pub, 'tower-bench-ca')
  caCert.setIssuer(caCert.subject.attributes)
  caCert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true }
  ])
  caCert.sign(ca.priv, forge.md.sha256.create())

  const srv = rsaKey()
  const srvCert = baseCert(srv.pub, '127.0.0.1')
  srvCert.setIssuer(caCert.subject.attributes)
  srvCert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
    { name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }, { type: 2, value: 'localhost' }] }
  ])
  srvCert.sign(ca.priv, forge.md.sha256.create())

  const caPem = forge.pki.certificateToPem(caCert)
  const out: BenchPki = {
    caFile: join(dir, 'bench-ca.pem'),
    certFile: join(dir, 'upstream.pem'),
    keyFile: join(dir, 'upstream-key.pem'),
    caPem
  }
  writeFileSync(out.caFile, caPem)
  writeFileSync(out.certFile, forge.pki.certificateToPem(srvCert))
  writeFileSync(out.keyFile, srv.pem, { mode: 0o600 })
  return out
}
