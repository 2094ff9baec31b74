// The real client: /usr/bin/kubectl reads the kubeconfigs this package writes,
// trusts its CA, verifies its server certificates with Go's crypto/x509 and
// presents its client certificates. The "apiserver" is a node https server
// that echoes who called it.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import https from 'node:https'
import type { TLSSocket } from 'node:tls'
import type { AddressInfo } from 'node:net'
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  createCa, issueServerCert, issueClientCert, renderKubeconfig, rewriteKubeconfigServer, parseClientIdentity,
  type CertificateBundle
} from '@tower/pki'

const KUBECTL = '/usr/bin/kubectl'
const run = promisify(execFile)
const dir = mkdtempSync(join(tmpdir(), 'tower-pki-kubectl-'))
after(() => rmSync(dir, { recursive: true, force: true }))

const ca = createCa({ commonName: 'Tower kubectl CA', validityDays: 1 })
const towerCert = issueServerCert(ca, { commonName: 'tower', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], validityDays: 1 })
const alice = issueClientCert(ca, { user: 'alice', groups: ['system:masters', 'devs'], cluster: 'prod', validityDays: 1 })
// A member cluster with its own CA; its apiserver certificate names only member.internal.
const memberCa = createCa({ commonName: 'member CA', validityDays: 1 })
const memberCert = issueServerCert(memberCa, { commonName: 'kube-apiserver', dnsNames: ['member.internal'], ipAddresses: [], validityDays: 1 })
const memberAdmin = issueClientCert(memberCa, { user: 'kubernetes-admin', groups: ['kubeadm:cluster-admins'], cluster: 'member', validityDays: 1 })

/** Starts a fake kube-apiserver that answers every request with who called it. */
async function apiserver (cert: CertificateBundle, clientCa: string): Promise<string> {
  const server = https.createServer({ key: cert.keyPem, cert: cert.certPem, ca: [clientCa], requestCert: true, rejectUnauthorized: false }, (req, res) => {
    const socket = req.socket as TLSSocket
    const peer = socket.getPeerX509Certificate()
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({
      path: req.url,
      authorized: socket.authorized,
      identity: peer === undefined ? null : parseClientIdentity(peer),
      authorization: req.headers.authorization ?? null
    }))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  after(() => { server.closeAllConnections(); server.close() })
  return `https://127.0.0.1:${(server.address() as AddressInfo).port}`
}

const towerUrl = await apiserver(towerCert, ca.certPem)
const memberUrl = await apiserver(memberCert, memberCa.certPem)

let files = 0
/** Writes `text` to a fresh kubeconfig file and returns its path. */
function kubeconfigFile (text: string, sub = '.'): string {
  const d = join(dir, sub)
  mkdirSync(d, { recursive: true })
  const p = join(d, `config-${++files}`)
  writeFileSync(p, text, { mode: 0o600 })
  return p
}

/** Runs kubectl with only this kubeconfig and a throwaway HOME, so nothing of the machine's leaks in. */
async function kubectl (kubeconfig: string, ...args: string[]): Promise<string> {
  const { stdout } = await run(KUBECTL, ['--kubeconfig', kubeconfig, ...args], {
    env: { HOME: dir, PATH: process.env.PATH ?? '/usr/bin:/bin' },
    timeout: 60_000
  })
  return stdout
}

test('kubectl is installed', () => {
  assert.ok(existsSync(KUBECTL), `${KUBECTL} is required for these tests`)
})

test('kubectl config view reads the rendered kubeconfig', async () => {
  const f = kubeconfigFile(renderKubeconfig({
    name: 'tower-prod', server: towerUrl, caPem: ca.certPem, tlsServerName: 'localhost', namespace: 'apps',
    user: { clientCertPem: alice.certPem, clientKeyPem: alice.keyPem }
  }))
  const view = async (path: string): Promise<string> => await kubectl(f, 'config', 'view', '--raw', '--minify', '-o', `jsonpath=${path}`)
  assert.equal(await view('{.current-context}'), 'tower-prod')
  assert.equal(await view('{.clusters[0].cluster.server}'), towerUrl)
  assert.equal(await view('{.clusters[0].cluster.tls-server-name}'), 'localhost')
  assert.equal(await view('{.contexts[0].context.namespace}'), 'apps')
  assert.equal(Buffer.from(await view('{.clusters[0].cluster.certificate-authority-data}'), 'base64').toString(), ca.certPem)
  assert.equal(Buffer.from(await view('{.users[0].user.client-key-data}'), 'base64').toString(), alice.keyPem)
})

test('kubectl connects with the rendered client-certificate kubeconfig and presents the identity', async () => {
  const f = kubeconfigFile(renderKubeconfig({ name: 'tower-prod', server: towerUrl, caPem: ca.certPem, user: { clientCertPem: alice.certPem, clientKeyPem: alice.keyPem } }))
  const body = JSON.parse(await kubectl(f, 'get', '--raw', '/version', '--request-timeout=20s'))
  assert.deepEqual(body, {
    path: '/version?timeout=20s',
    authorized: true,
    identity: { user: 'alice', groups: ['system:masters', 'devs'], cluster: 'prod' },
    authorization: null
  })
})

test('kubectl connects with the rendered token kubeconfig, verifying the server by tls-server-name', async () => {
  const f = kubeconfigFile(renderKubeconfig({ name: 't', server: towerUrl, caPem: ca.certPem, tlsServerName: 'localhost', user: { token: 'join-token-123' } }))
  const body = JSON.parse(await kubectl(f, 'get', '--raw', '/api', '--request-timeout=20s'))
  assert.equal(body.authorization, 'Bearer join-token-123')
  assert.equal(body.identity, null)
})

test('kubectl refuses a server whose certificate is not from the kubeconfig CA', async () => {
  const f = kubeconfigFile(renderKubeconfig({ name: 'x', server: towerUrl, caPem: memberCa.certPem, user: { token: 't' } }))
  await assert.rejects(kubectl(f, 'get', '--raw', '/version', '--request-timeout=20s'), /certificate signed by unknown authority/)
})

// The member's kubeconfig, as kubeadm writes it: CA by relative file path, client cert inline.
function memberKubeconfig (): string {
  mkdirSync(join(dir, 'member', 'pki'), { recursive: true })
  writeFileSync(join(dir, 'member', 'pki', 'ca.crt'), memberCa.certPem)
  return `apiVersion: v1
kind: Config
clusters:
- name: member
  cluster:
    certificate-authority: pki/ca.crt
    server: https://member.internal:6443
users:
- name: kubernetes-admin
  user:
    client-certificate-data: ${Buffer.from(memberAdmin.certPem).toString('base64')}
    client-key-data: ${Buffer.from(memberAdmin.keyPem).toString('base64')}
contexts:
- name: kubernetes-admin@member
  context: {cluster: member, user: kubernetes-admin}
current-context: kubernetes-admin@member
`
}

test('passthrough: the rewritten member kubeconfig reaches the member through another address and still verifies it', async () => {
  // memberUrl stands in for Tower's passthrough listener: TLS goes end to end to the member.
  const out = rewriteKubeconfigServer(memberKubeconfig(), { server: memberUrl, baseDir: join(dir, 'member') })
  const f = kubeconfigFile(out, 'elsewhere') // a different directory: paths must have been made absolute
  assert.equal(await kubectl(f, 'config', 'view', '-o', 'jsonpath={.clusters[0].cluster.tls-server-name}'), 'member.internal')
  const body = JSON.parse(await kubectl(f, 'get', '--raw', '/version', '--request-timeout=20s'))
  assert.equal(body.authorized, true)
  assert.deepEqual(body.identity, { user: 'kubernetes-admin', groups: ['kubeadm:cluster-admins'], cluster: 'member' })
})

test('passthrough control: without the right tls-server-name kubectl refuses the member certificate', async () => {
  const out = rewriteKubeconfigServer(memberKubeconfig(), { server: memberUrl, baseDir: join(dir, 'member'), tlsServerName: 'wrong.internal' })
  const f = kubeconfigFile(out, 'elsewhere')
  await assert.rejects(kubectl(f, 'get', '--raw', '/version', '--request-timeout=20s'), /certificate is valid for member\.internal, not wrong\.internal/)
})
