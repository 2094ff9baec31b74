// A real mutual-TLS handshake on 127.0.0.1 with Tower's certificates, the way
// the server's per-cluster listeners use them: requestCert, CA pinned, and the
// identity read from getPeerX509Certificate().
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import tls from 'node:tls'
import type { AddressInfo } from 'node:net'
import {
  createCa, issueServerCert, issueClientCert, parseClientIdentity, verifyIssuedBy,
  CertificateInvalidError, type CertificateBundle, type ClientIdentity
} from '@tower/pki'

const ca = createCa({ commonName: 'Tower mTLS CA', validityDays: 1 })
const foreignCa = createCa({ commonName: 'Tower mTLS CA', validityDays: 1 })
const serverCert = issueServerCert(ca, { commonName: 'tower', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], validityDays: 1 })
const alice = issueClientCert(ca, { user: 'alice', groups: ['system:masters', 'devs'], cluster: 'prod', validityDays: 1 })
const mallory = issueClientCert(foreignCa, { user: 'alice', groups: ['system:masters'], cluster: 'prod', validityDays: 1 })

/** What the server saw on one connection. */
interface Seen {
  authorized: boolean
  authorizationError?: string
  identity?: ClientIdentity
  identityError?: unknown
  legacyIdentity?: ClientIdentity
}

const server = tls.createServer({
  key: serverCert.keyPem,
  cert: serverCert.certPem,
  ca: [ca.certPem],
  requestCert: true,
  rejectUnauthorized: false // so an unauthorized client reaches us and we can assert on it
})
// Keyed by the client's port, so each test finds its own connection.
const seen = new Map<number, Seen>()
server.on('secureConnection', (socket: tls.TLSSocket) => {
  socket.on('error', () => {}) // clients in these tests hang up abruptly
  const s: Seen = { authorized: socket.authorized }
  if (socket.authorizationError !== null) s.authorizationError = String(socket.authorizationError)
  try {
    s.identity = parseClientIdentity(socket.getPeerX509Certificate())
    s.legacyIdentity = parseClientIdentity(socket.getPeerCertificate())
  } catch (err) {
    s.identityError = err
  }
  seen.set(socket.remotePort ?? 0, s)
  socket.end(JSON.stringify({ authorized: socket.authorized }))
})
server.listen(0, '127.0.0.1')
await once(server, 'listening')
const { port } = server.address() as AddressInfo
after(() => { server.close() })

/** Connects with `client` (or no certificate), reads the server's answer, and returns what the server saw. */
async function connect (client: CertificateBundle | undefined, extra: tls.ConnectionOptions = {}): Promise<Seen> {
  const socket = tls.connect({
    host: '127.0.0.1',
    port,
    ca: [ca.certPem],
    ...(client === undefined ? {} : { key: client.keyPem, cert: client.certPem }),
    ...extra
  })
  socket.on('error', () => {}) // a refused handshake surfaces through 'close' below
  await once(socket, 'connect')
  const localPort = socket.localPort ?? 0
  let body = ''
  socket.setEncoding('utf8')
  socket.on('data', (d: string) => { body += d })
  await once(socket, 'close')
  // The server records before it answers, so an answer means the record is there.
  const s = seen.get(localPort)
  assert.ok(s !== undefined, 'server saw the connection')
  assert.deepEqual(JSON.parse(body), { authorized: s.authorized })
  return s
}

test('a client certificate from the CA is authorized and its identity parsed', async () => {
  const s = await connect(alice)
  assert.equal(s.authorized, true, s.authorizationError)
  assert.deepEqual(s.identity, { user: 'alice', groups: ['system:masters', 'devs'], cluster: 'prod' })
  assert.deepEqual(s.legacyIdentity, s.identity)
})

test('the client verifies the server certificate by IP SAN and by DNS SAN', async () => {
  const byIp = tls.connect({ host: '127.0.0.1', port, ca: [ca.certPem], key: alice.keyPem, cert: alice.certPem })
  await once(byIp, 'secureConnect')
  assert.equal(byIp.authorized, true)
  byIp.destroy()
  const byName = tls.connect({ host: '127.0.0.1', servername: 'localhost', port, ca: [ca.certPem], key: alice.keyPem, cert: alice.certPem })
  await once(byName, 'secureConnect')
  assert.equal(byName.authorized, true)
  byName.destroy()
  // Wrong name: the client refuses the server.
  const wrong = tls.connect({ host: '127.0.0.1', servername: 'other.example', port, ca: [ca.certPem], key: alice.keyPem, cert: alice.certPem })
  const [err] = await once(wrong, 'error') as [NodeJS.ErrnoException]
  assert.equal(err.code, 'ERR_TLS_CERT_ALTNAME_INVALID')
  await once(wrong, 'close')
})

test('a client certificate from a different CA (same CA name) is not authorized', async () => {
  const s = await connect(mallory)
  assert.equal(s.authorized, false)
  assert.match(s.authorizationError ?? '', /signature|unable to (get|verify)/i)
  // The identity still parses (parsing is not authorization), which is why callers
  // must check socket.authorized or verifyIssuedBy first.
  assert.equal(s.identity?.user, 'alice')
  assert.throws(() => verifyIssuedBy(mallory.certPem, ca.certPem), CertificateInvalidError)
})

test('a client with no certificate is not authorized and has no identity', async () => {
  const s = await connect(undefined)
  assert.equal(s.authorized, false)
  assert.ok(s.identityError instanceof CertificateInvalidError)
  assert.equal(s.identityError.code, 'TOWER_ERR_CERT_INVALID')
})

test('the cluster binding distinguishes certificates for different clusters', async () => {
  const other = issueClientCert(ca, { user: 'alice', groups: ['system:masters', 'devs'], cluster: 'staging', validityDays: 1 })
  const s = await connect(other)
  assert.equal(s.authorized, true, 'the CA signed it, so TLS alone accepts it')
  assert.equal(s.identity?.cluster, 'staging')
  assert.notEqual(s.identity?.cluster, 'prod', 'a listener for prod must refuse it by comparing cluster')
})
