/**
 * Reading a Tower client identity back out of a peer certificate, and
 * checking that a certificate was issued by a given CA.
 *
 * The identity is read from node's own rendering of the certificate
 * (X509Certificate `.subject` / `.subjectAltName`, or the legacy object of
 * `getPeerCertificate()`), not from forge: node parses any key type, and this
 * is what a TLS server already has in hand. OpenSSL prints the subject with
 * RFC 2253 escapes (`O=a\,b`), which are undone here.
 */
import { X509Certificate } from 'node:crypto'
import { isClusterName, isClusterUid } from './config.ts'
import { CLUSTER_UID_URI_PREFIX, CLUSTER_URI_PREFIX } from './constants.ts'
import { CertificateInvalidError } from './errors.ts'

/** Who a client certificate speaks for. */
export interface ClientIdentity {
  /** Kubernetes user name: the subject CN. */
  user: string
  /** Kubernetes groups: the subject O values, in certificate order. */
  groups: string[]
  /** Member cluster the certificate is bound to, from its `tower://cluster/<name>` SAN URI. */
  cluster: string
  /** The registration of that cluster, from a `tower-uid://cluster/<uid>` SAN URI; absent on certificates without one. */
  clusterUid?: string
}

/** What parseClientIdentity reads from an X509Certificate (`tls.TLSSocket#getPeerX509Certificate()`). */
export interface X509CertificateLike {
  /** Subject as newline-separated `KEY=value` lines, such as `CN=alice\nO=dev`. */
  subject: string
  /** SANs as `URI:tower://cluster/prod, DNS:x`; undefined when the certificate has none. */
  subjectAltName?: string | undefined
}

/** What parseClientIdentity reads from the legacy object of `tls.TLSSocket#getPeerCertificate()`. */
export interface PeerCertificateLike {
  /** Subject fields; a repeated field is an array. */
  subject: Record<string, string | string[] | undefined>
  /** SANs in the same format as X509Certificate#subjectAltName. */
  subjectaltname?: string | undefined
}

/** Anything parseClientIdentity accepts: PEM, DER, or what node's TLS socket returns (undefined when the peer sent no certificate). */
export type ClientCertificateInput = string | Uint8Array | X509CertificateLike | PeerCertificateLike | undefined | null

/** Parses PEM text or DER bytes into node's X509Certificate; throws CertificateInvalidError naming `field`. */
export function toX509 (field: string, input: string | Uint8Array | X509Certificate): X509Certificate {
  if (input instanceof X509Certificate) return input
  try {
    return new X509Certificate(typeof input === 'string' ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength))
  } catch (err) {
    throw new CertificateInvalidError(`${field} is not a valid PEM or DER certificate: ${(err as Error).message}`, { cause: err })
  }
}

// Undoes OpenSSL's RFC 2253 escaping: `\,` `\+` `\"` `\\` `\<` `\>` `\;` `\#` `\ `
// and `\XX` hex for control characters. No special character is a hex digit,
// so the two forms cannot be confused.
function unescapeRfc2253 (value: string): string {
  return value.replace(/\\([0-9A-Fa-f]{2}|.)/g, (_m, e: string) => e.length === 2 ? String.fromCharCode(parseInt(e, 16)) : e)
}

/** Splits node's multi-line subject into [key, value] pairs; a multi-valued RDN is printed as `A=x + B=y`. */
function subjectPairs (subject: string): Array<[string, string]> {
  const pairs: Array<[string, string]> = []
  for (const line of subject.split('\n')) {
    if (line === '') continue
    for (const part of line.split(/(?<!\\) \+ /)) {
      const eq = part.indexOf('=')
      if (eq <= 0) throw new CertificateInvalidError(`cannot parse certificate subject component ${JSON.stringify(part)}`)
      pairs.push([part.slice(0, eq), unescapeRfc2253(part.slice(eq + 1))])
    }
  }
  return pairs
}

/**
 * Parses node's SAN string (`DNS:a, URI:b, IP Address:1.2.3.4`) into [type, value]
 * pairs. Node JSON-quotes a value that contains a comma or quote, so a quoted
 * value is decoded with JSON.parse.
 */
export function parseSubjectAltName (san: string): Array<[string, string]> {
  const out: Array<[string, string]> = []
  const entry = /([A-Za-z][A-Za-z ]*):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/y
  let pos = 0
  while (pos < san.length) {
    entry.lastIndex = pos
    const m = entry.exec(san)
    if (m === null) throw new CertificateInvalidError(`cannot parse certificate subjectAltName at ${JSON.stringify(san.slice(pos))}`)
    out.push([m[1], m[2].startsWith('"') ? JSON.parse(m[2]) as string : m[2]])
    pos = entry.lastIndex
  }
  return out
}

function identityFrom (cns: string[], groups: string[], san: string | undefined): ClientIdentity {
  if (cns.length !== 1 || cns[0] === '') {
    throw new CertificateInvalidError(`client certificate must have exactly one non-empty subject CN (the user), found ${cns.length}`)
  }
  const uris = parseSubjectAltName(san ?? '').filter(([type]) => type === 'URI').map(([, value]) => value)
  const clusters = uris.filter((v) => v.startsWith(CLUSTER_URI_PREFIX)).map((v) => v.slice(CLUSTER_URI_PREFIX.length))
  const uids = uris.filter((v) => v.startsWith(CLUSTER_UID_URI_PREFIX)).map((v) => v.slice(CLUSTER_UID_URI_PREFIX.length))
  if (clusters.length !== 1) {
    throw new CertificateInvalidError(`client certificate must have exactly one ${CLUSTER_URI_PREFIX}<name> SAN URI, found ${clusters.length}`)
  }
  if (!isClusterName(clusters[0])) {
    throw new CertificateInvalidError(`client certificate names an invalid cluster ${JSON.stringify(clusters[0])}`)
  }
  if (uids.length > 1 || (uids.length === 1 && !isClusterUid(uids[0]))) {
    throw new CertificateInvalidError(`client certificate must have at most one valid ${CLUSTER_UID_URI_PREFIX}<uid> SAN URI`)
  }
  const id: ClientIdentity = { user: cns[0], groups, cluster: clusters[0] }
  if (uids.length === 1) id.clusterUid = uids[0]
  return id
}

/**
 * Reads the Tower identity of a client certificate: user (CN), groups (O...)
 * and the bound cluster (SAN URI `tower://cluster/<name>`).
 *
 * Accepts PEM, DER, an X509Certificate (`getPeerX509Certificate()`), or the
 * legacy object of `getPeerCertificate()`. It does NOT check who issued the
 * certificate: only call it once the TLS layer reports `socket.authorized`
 * (or after verifyIssuedBy), then compare `cluster` with the listener's own.
 * Throws CertificateInvalidError when there is no certificate or a field is
 * missing or ambiguous.
 */
export function parseClientIdentity (input: ClientCertificateInput): ClientIdentity {
  if (input === undefined || input === null) throw new CertificateInvalidError('no client certificate was presented')
  if (typeof input === 'string' || input instanceof Uint8Array) input = toX509('certificate', input)
  if (typeof input.subject === 'string') {
    const x = input as X509CertificateLike
    const pairs = subjectPairs(x.subject)
    const cns = pairs.filter(([k]) => k === 'CN').map(([, v]) => v)
    const groups = pairs.filter(([k]) => k === 'O').map(([, v]) => v)
    return identityFrom(cns, groups, x.subjectAltName)
  }
  if (typeof input.subject === 'object' && input.subject !== null) {
    // getPeerCertificate() returns {} when the peer sent no certificate.
    const p = input as PeerCertificateLike
    if (Object.keys(p.subject).length === 0 && p.subjectaltname === undefined) {
      throw new CertificateInvalidError('no client certificate was presented')
    }
    const list = (v: string | string[] | undefined): string[] => v === undefined ? [] : Array.isArray(v) ? v : [v]
    return identityFrom(list(p.subject.CN), list(p.subject.O), p.subjectaltname)
  }
  throw new CertificateInvalidError('no client certificate was presented')
}

/**
 * Checks that `cert` was signed by the CA in `caCertPem` (issuer name and
 * signature) and that `now` lies within its validity period. Throws
 * CertificateInvalidError saying which check failed; returns nothing.
 * Does not check revocation, EKU or name constraints: the TLS handshake
 * (`requestCert` + `ca`) does the full chain verification.
 */
export function verifyIssuedBy (cert: X509Certificate | string | Uint8Array, caCertPem: string | X509Certificate, now: Date = new Date()): void {
  const leaf = toX509('cert', cert)
  const ca = toX509('caCertPem', caCertPem)
  if (!ca.ca) throw new CertificateInvalidError('caCertPem is not a CA certificate')
  if (!leaf.checkIssued(ca)) throw new CertificateInvalidError(`certificate issuer "${leaf.issuer}" does not match CA subject "${ca.subject}"`)
  if (!leaf.verify(ca.publicKey)) throw new CertificateInvalidError('certificate signature does not verify with the CA public key')
  if (now < leaf.validFromDate) throw new CertificateInvalidError(`certificate is not valid before ${leaf.validFromDate.toISOString()}`)
  if (now > leaf.validToDate) throw new CertificateInvalidError(`certificate expired at ${leaf.validToDate.toISOString()}`)
}

/**
 * A certificate serial in the one form Tower stores and compares: lowercase
 * hex without `:` separators or leading zeros (node prints uppercase, openssl
 * may print colons). Returns undefined for anything that is not 1-40 hex digits.
 */
export function normalizeSerial (serial: string): string | undefined {
  const hex = serial.trim().replace(/:/g, '').toLowerCase().replace(/^0+(?=.)/, '')
  return /^[0-9a-f]{1,40}$/.test(hex) ? hex : undefined
}
