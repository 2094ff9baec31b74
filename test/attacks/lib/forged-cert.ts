/**
 * A look-alike of a Tower client certificate: same subject, same extensions
 * (the SAN URIs that bind it to a cluster included), issued by a self-made CA
 * that copies the Tower CA's name. Only the signature tells them apart, which
 * is exactly what the server must check.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import forge from 'node-forge'

function keyPair (): { privatePem: string, publicKey: forge.pki.PublicKey, privateKey: forge.pki.rsa.PrivateKey } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const privatePem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  return {
    privatePem,
    privateKey: forge.pki.privateKeyFromPem(privatePem) as forge.pki.rsa.PrivateKey,
    publicKey: forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString())
  }
}

function validity (cert: forge.pki.Certificate): void {
  cert.validity.notBefore = new Date(Date.now() - 60_000)
  cert.validity.notAfter = new Date(Date.now() + 24 * 3600_000)
}

/** Copies `realCertPem` (a Tower client certificate) onto a CA named like `realCaPem`'s, made here. */
export function forgeLookalike (realCertPem: string, realCaPem: string): { certPem: string, keyPem: string } {
  const real = forge.pki.certificateFromPem(realCertPem)
  const realCa = forge.pki.certificateFromPem(realCaPem)

  const caKeys = keyPair()
  const ca = forge.pki.createCertificate()
  ca.publicKey = caKeys.publicKey
  ca.serialNumber = '01' + randomBytes(8).toString('hex')
  validity(ca)
  ca.setSubject(realCa.subject.attributes)
  ca.setIssuer(realCa.subject.attributes)
  ca.setExtensions([{ name: 'basicConstraints', cA: true, critical: true }, { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true }])
  ca.sign(caKeys.privateKey, forge.md.sha256.create())

  const leafKeys = keyPair()
  const leaf = forge.pki.createCertificate()
  leaf.publicKey = leafKeys.publicKey
  leaf.serialNumber = '01' + randomBytes(8).toString('hex')
  validity(leaf)
  leaf.setSubject(real.subject.attributes)
  leaf.setIssuer(ca.subject.attributes)
  // The real extensions, minus the key identifiers, which name the real keys.
  leaf.setExtensions(real.extensions.filter((e: { name?: string }) => e.name !== 'subjectKeyIdentifier' && e.name !== 'authorityKeyIdentifier'))
  leaf.sign(caKeys.privateKey, forge.md.sha256.create())
  return { certPem: forge.pki.certificateToPem(leaf) + forge.pki.certificateToPem(ca), keyPem: leafKeys.privatePem }
}
