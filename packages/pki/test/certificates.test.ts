// Certificates checked by node's X509Certificate (OpenSSL), not by forge: the
// point is that other stacks accept what forge wrote.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { checkServerIdentity } from 'node:tls'
import { execFileSync } from 'node:child_process'
import {
  createCa, issueServerCert, issueClientCert, parseClientIdentity, verifyIssuedBy, clusterUri,
  parseSubjectAltName, CertificateInvalidError, CLUSTER_URI_PREFIX, isClusterName, normalizeSerial
} from '@tower/pki'

// RSA generation is the slow part: one CA and one of each leaf for the file.
const ca = createCa({ commonName: 'Tower test CA', validityDays: 30 })
const otherCa = createCa({ commonName: 'Tower test CA', validityDays: 30 }) // same name on purpose
const server = issueServerCert(ca, { commonName: 'tower', dnsNames: ['localhost', '*.tower.test'], ipAddresses: ['127.0.0.1', '::1'], validityDays: 7 })
const groups = ['system:masters', 'dev,ops', 'a+b', '#lead', 'ünïcode', 'q"e\\z']
const client = issueClientCert(ca, { user: 'alice@example.com', groups, cluster: 'prod-eu-1', validityDays: 7 })

const caX = new X509Certificate(ca.certPem)
const serverX = new X509Certificate(server.certPem)
const clientX = new X509Certificate(client.certPem)

// The openssl CLI is an independent parser; its text form shows extensions
// and their criticality, which X509Certificate does not expose.
function opensslText (pem: string): string {
  return execFileSync('openssl', ['x509', '-noout', '-text'], { input: pem, encoding: 'utf8' })
}

// Serial: positive, at most 20 bytes, minimal DER (no leading zero byte).
function assertSerial (x: X509Certificate): void {
  const hex = x.serialNumber
  assert.ok(hex.length <= 40, `serial ${hex} longer than 20 bytes`)
  assert.ok(parseInt(hex.slice(0, 2), 16) < 0x80, `serial ${hex} is negative`)
  assert.ok(!/^00/.test(hex), `serial ${hex} has a leading zero byte`)
  assert.notEqual(BigInt('0x' + hex), 0n)
}

test('CA is a self-signed CA with the right extensions', () => {
  assert.equal(caX.ca, true)
  assert.equal(caX.subject, 'CN=Tower test CA')
  assert.ok(caX.checkIssued(caX))
  assert.ok(caX.verify(caX.publicKey))
  assert.equal(caX.publicKey.asymmetricKeyDetails?.modulusLength, 2048)
  assertSerial(caX)
  assert.ok(ca.keyPem.startsWith('-----BEGIN PRIVATE KEY-----'))
  assert.ok(!ca.certPem.includes('\r'), 'PEM uses LF line endings')
  // Validity starts about 5 minutes back for clock skew, and lasts 30 days.
  const skew = Date.now() - caX.validFromDate.getTime()
  assert.ok(skew > 4 * 60_000 && skew < 6 * 60_000, `validity starts ${skew} ms ago`)
  const days = (caX.validToDate.getTime() - Date.now()) / 86_400_000
  assert.ok(days > 29.9 && days <= 30, `valid for ${days} days`)
  // Extensions as the openssl CLI prints them.
  const text = opensslText(ca.certPem)
  assert.match(text, /X509v3 Basic Constraints: critical\n *CA:TRUE, pathlen:0/)
  assert.match(text, /X509v3 Key Usage: critical\n *Certificate Sign, CRL Sign\n/)
  assert.match(text, /Signature Algorithm: sha256WithRSAEncryption/)
  const serials = [caX, new X509Certificate(otherCa.certPem), serverX, clientX].map((x) => x.serialNumber)
  assert.equal(new Set(serials).size, 4, 'serials are random')
})

test('server certificate: signed by the CA, SAN DNS and IP, serverAuth', () => {
  assert.ok(serverX.checkIssued(caX))
  assert.ok(serverX.verify(caX.publicKey))
  assert.equal(serverX.ca, false)
  assertSerial(serverX)
  assert.equal(serverX.subjectAltName, 'DNS:localhost, DNS:*.tower.test, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1')
  assert.deepEqual(serverX.keyUsage, ['1.3.6.1.5.5.7.3.1'])
  const text = opensslText(server.certPem)
  assert.match(text, /X509v3 Basic Constraints: critical\n *CA:FALSE/)
  assert.match(text, /X509v3 Key Usage: critical\n *Digital Signature, Key Encipherment\n/)
  assert.match(text, /X509v3 Extended Key Usage: *\n *TLS Web Server Authentication\n/)
  const peer = serverX.toLegacyObject()
  assert.equal(checkServerIdentity('localhost', peer), undefined)
  assert.equal(checkServerIdentity('api.tower.test', peer), undefined)
  assert.equal(checkServerIdentity('127.0.0.1', peer), undefined)
  assert.equal(checkServerIdentity('::1', peer), undefined)
  assert.ok(checkServerIdentity('example.com', peer) instanceof Error)
  assert.ok(checkServerIdentity('10.0.0.1', peer) instanceof Error)
  assert.ok(checkServerIdentity('a.b.tower.test', peer) instanceof Error, 'wildcard covers one label only')
})

test('server certificate: authorityKeyIdentifier matches the CA subjectKeyIdentifier', () => {
  const ski = /X509v3 Subject Key Identifier: *\n *([0-9A-F:]+)/.exec(opensslText(ca.certPem))?.[1]
  const aki = /X509v3 Authority Key Identifier: *\n *(?:keyid:)?([0-9A-F:]+)/.exec(opensslText(server.certPem))?.[1]
  assert.ok(ski !== undefined, 'CA has a subject key identifier')
  assert.equal(aki, ski)
})

test('client certificate: CN=user, one O per group, cluster URI, clientAuth', () => {
  assert.ok(clientX.checkIssued(caX))
  assert.ok(clientX.verify(caX.publicKey))
  assertSerial(clientX)
  assert.deepEqual(clientX.keyUsage, ['1.3.6.1.5.5.7.3.2'])
  assert.match(opensslText(client.certPem), /X509v3 Extended Key Usage: *\n *TLS Web Client Authentication\n/)
  assert.equal(clientX.subjectAltName, `URI:${CLUSTER_URI_PREFIX}prod-eu-1`)
  // node's own parse of the subject, independent of ours
  const legacy = clientX.toLegacyObject().subject as unknown as Record<string, string | string[]>
  assert.equal(legacy.CN, 'alice@example.com')
  assert.deepEqual(legacy.O, groups)
})

test('parseClientIdentity reads X509Certificate, PEM, DER and the legacy peer object alike', () => {
  const want = { user: 'alice@example.com', groups, cluster: 'prod-eu-1' }
  assert.deepEqual(parseClientIdentity(clientX), want)
  assert.deepEqual(parseClientIdentity(client.certPem), want)
  assert.deepEqual(parseClientIdentity(clientX.raw), want)
  assert.deepEqual(parseClientIdentity(new Uint8Array(clientX.raw)), want)
  assert.deepEqual(parseClientIdentity(clientX.toLegacyObject() as never), want)
})

test('a user with no groups parses to an empty group list', () => {
  const c = issueClientCert(ca, { user: 'bob', groups: [], cluster: 'dev', validityDays: 1, keyBits: 2048 })
  assert.deepEqual(parseClientIdentity(c.certPem), { user: 'bob', groups: [], cluster: 'dev' })
  assert.deepEqual(parseClientIdentity(new X509Certificate(c.certPem).toLegacyObject() as never), { user: 'bob', groups: [], cluster: 'dev' })
})

test('parseClientIdentity refuses certificates without a Tower identity', () => {
  const isCertErr = (err: unknown): boolean => err instanceof CertificateInvalidError && err.code === 'TOWER_ERR_CERT_INVALID'
  assert.throws(() => parseClientIdentity(server.certPem), isCertErr) // no cluster URI
  assert.throws(() => parseClientIdentity(ca.certPem), isCertErr)
  assert.throws(() => parseClientIdentity(undefined), isCertErr) // getPeerX509Certificate() without a client cert
  assert.throws(() => parseClientIdentity({} as never), isCertErr) // getPeerCertificate() without a client cert
  assert.throws(() => parseClientIdentity('not a certificate'), isCertErr)
  assert.throws(() => parseClientIdentity({ subject: 'O=x', subjectAltName: 'URI:tower://cluster/a' }), /exactly one non-empty subject CN/)
  assert.throws(() => parseClientIdentity({ subject: 'CN=a', subjectAltName: 'URI:tower://cluster/a, URI:tower://cluster/b' }), /exactly one tower:\/\/cluster/)
  assert.throws(() => parseClientIdentity({ subject: 'CN=a', subjectAltName: 'URI:tower://cluster/-bad' }), /invalid cluster/)
})

test('parseSubjectAltName handles node\'s quoting of values with commas', () => {
  assert.deepEqual(parseSubjectAltName('DNS:a, URI:"tower://x/a,b", IP Address:1.2.3.4'), [['DNS', 'a'], ['URI', 'tower://x/a,b'], ['IP Address', '1.2.3.4']])
  assert.deepEqual(parseSubjectAltName(''), [])
})

test('verifyIssuedBy accepts the issuing CA and rejects another CA of the same name', () => {
  verifyIssuedBy(clientX, ca.certPem)
  verifyIssuedBy(client.certPem, caX)
  verifyIssuedBy(serverX, ca.certPem)
  assert.throws(() => verifyIssuedBy(clientX, otherCa.certPem), (err: unknown) => err instanceof CertificateInvalidError && /signature|issuer/.test(err.message))
  assert.throws(() => verifyIssuedBy(clientX, client.certPem), /not a CA/)
})

test('verifyIssuedBy checks the validity period', () => {
  const future = new Date(Date.now() + 8 * 86_400_000)
  assert.throws(() => verifyIssuedBy(clientX, ca.certPem, future), /expired/)
  const past = new Date(Date.now() - 10 * 60_000)
  assert.throws(() => verifyIssuedBy(clientX, ca.certPem, past), /not valid before/)
  verifyIssuedBy(clientX, ca.certPem, new Date(Date.now() - 60_000)) // inside the clock-skew allowance
})

test('options are validated and the message names the option', () => {
  const isArg = (name: string) => (err: unknown): boolean =>
    (err as { code?: string }).code === 'TOWER_ERR_INVALID_ARG' && (err as Error).message.includes(name)
  const base = { commonName: 's', dnsNames: ['localhost'], ipAddresses: [], validityDays: 1 }
  assert.throws(() => issueServerCert(ca, { ...base, ipAddresses: ['300.1.1.1'] }), isArg('ipAddresses[0]'))
  assert.throws(() => issueServerCert(ca, { ...base, ipAddresses: ['localhost'] }), isArg('ipAddresses[0]'))
  assert.throws(() => issueServerCert(ca, { ...base, dnsNames: ['ok', ''] }), isArg('dnsNames[1]'))
  assert.throws(() => issueServerCert(ca, { ...base, dnsNames: ['has space'] }), isArg('dnsNames[0]'))
  assert.throws(() => issueServerCert(ca, { ...base, dnsNames: [] }), isArg('dnsNames'))
  assert.throws(() => issueServerCert(ca, { ...base, validityDays: 0 }), isArg('validityDays'))
  assert.throws(() => issueServerCert(ca, { ...base, commonName: '' }), isArg('commonName'))
  assert.throws(() => createCa({ commonName: 'x', validityDays: 1.5 }), isArg('validityDays'))
  assert.throws(() => createCa({ commonName: 'x', validityDays: 1, keyBits: 1024 }), isArg('keyBits'))
  const cbase = { user: 'u', groups: [], cluster: 'c', validityDays: 1 }
  assert.throws(() => issueClientCert(ca, { ...cbase, user: '' }), isArg('user'))
  assert.throws(() => issueClientCert(ca, { ...cbase, user: 'a\nb' }), isArg('user'))
  assert.throws(() => issueClientCert(ca, { ...cbase, groups: ['ok', 3 as never] }), isArg('groups[1]'))
  assert.throws(() => issueClientCert(ca, { ...cbase, cluster: 'a/b' }), isArg('cluster'))
  assert.throws(() => clusterUri(''), isArg('cluster'))
  assert.equal(clusterUri('prod'), 'tower://cluster/prod')
})

test('a malformed or non-CA issuer is refused with TOWER_ERR_CERT_INVALID naming the field', () => {
  const opts = { user: 'u', groups: [], cluster: 'c', validityDays: 1 }
  const isCert = (field: string) => (err: unknown): boolean =>
    err instanceof CertificateInvalidError && err.code === 'TOWER_ERR_CERT_INVALID' && err.message.includes(field)
  assert.throws(() => issueClientCert({ certPem: 'garbage', keyPem: ca.keyPem }, opts), isCert('ca.certPem'))
  const lines = ca.certPem.trim().split('\n')
  const truncated = [...lines.slice(0, 5), lines[lines.length - 1]].join('\n')
  assert.throws(() => issueClientCert({ certPem: truncated, keyPem: ca.keyPem }, opts), isCert('ca.certPem'))
  // Flip bits in the signature (the last base64 line before END): parses, but the self-signature fails.
  const sigLine = lines[lines.length - 2]
  const flipped = [...lines.slice(0, -2), (sigLine[0] === 'A' ? 'B' : 'A') + sigLine.slice(1), lines[lines.length - 1]].join('\n')
  assert.throws(() => issueClientCert({ certPem: flipped, keyPem: ca.keyPem }, opts), isCert('self-signature'))
  assert.throws(() => issueClientCert({ certPem: ca.certPem, keyPem: 'garbage' }, opts), isCert('ca.keyPem'))
  assert.throws(() => issueClientCert({ certPem: ca.certPem, keyPem: otherCa.keyPem }, opts), isCert('ca.keyPem'))
  assert.throws(() => issueClientCert(server, opts), isCert('not a CA'))
})

test('item 21: a client certificate can carry the cluster registration uid, read back as clusterUid', () => {
  const c = issueClientCert(ca, { user: 'u', groups: [], cluster: 'prod', clusterUid: '0123456789abcdef', validityDays: 1 })
  assert.deepEqual(parseClientIdentity(c.certPem), { user: 'u', groups: [], cluster: 'prod', clusterUid: '0123456789abcdef' })
  assert.throws(() => issueClientCert(ca, { user: 'u', groups: [], cluster: 'prod', clusterUid: 'Bad/uid', validityDays: 1 }), { code: 'TOWER_ERR_INVALID_ARG' })
  assert.equal(normalizeSerial('0A:1b'), 'a1b')
  assert.equal(normalizeSerial('xyz'), undefined)
})

test('item 1: the one cluster-name rule is a DNS label and never throws', () => {
  for (const ok of ['a', 'prod-eu-1', 'constructor', 'x'.repeat(63)]) assert.equal(isClusterName(ok), true, ok)
  for (const bad of ['', '__proto__', 'toString', 'a.b', '-a', 'a-', 'x'.repeat(64), undefined, 5, {}]) assert.equal(isClusterName(bad), false, String(bad))
})
