// Kubeconfig rendering, parsing, resolution and the passthrough rewrite, as
// pure functions. kubectl.test.ts runs the real kubectl against the output.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parse as parseYaml } from 'yaml'
import {
  createCa, issueClientCert, renderKubeconfig, parseKubeconfig, resolveContext, rewriteKubeconfigServer,
  KubeconfigInvalidError, KubeconfigUnsupportedError
} from '@tower/pki'

const ca = createCa({ commonName: 'Tower kubeconfig CA', validityDays: 1 })
const client = issueClientCert(ca, { user: 'alice', groups: ['devs'], cluster: 'prod', validityDays: 1 })
const b64 = (s: string): string => Buffer.from(s).toString('base64')

const dir = mkdtempSync(join(tmpdir(), 'tower-pki-kubeconfig-'))
after(() => rmSync(dir, { recursive: true, force: true }))

/** Asserts `fn` throws a KubeconfigInvalidError whose `field` is `field`. */
function throwsField (fn: () => unknown, field: string, message?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof KubeconfigInvalidError, `expected KubeconfigInvalidError, got ${String(err)}`)
    assert.equal(err.code, 'TOWER_ERR_KUBECONFIG_INVALID')
    assert.equal(err.field, field)
    if (message !== undefined) assert.match(err.message, message)
    return true
  })
}

test('render → parse → resolve round-trips a client-certificate kubeconfig', () => {
  const text = renderKubeconfig({
    name: 'tower-prod',
    server: 'https://127.0.0.1:7443',
    caPem: ca.certPem,
    tlsServerName: 'prod.tower.local',
    namespace: 'kube-system',
    user: { clientCertPem: client.certPem, clientKeyPem: client.keyPem }
  })
  // The raw YAML has kubectl's field names and base64 data.
  const raw = parseYaml(text)
  assert.equal(raw.apiVersion, 'v1')
  assert.equal(raw.kind, 'Config')
  assert.equal(raw['current-context'], 'tower-prod')
  assert.equal(raw.clusters[0].cluster['certificate-authority-data'], b64(ca.certPem))
  assert.equal(raw.users[0].user['client-key-data'], b64(client.keyPem))

  const cfg = parseKubeconfig(text)
  assert.deepEqual(cfg.contexts, [{ name: 'tower-prod', cluster: 'tower-prod', user: 'tower-prod', namespace: 'kube-system' }])
  assert.deepEqual(resolveContext(cfg), {
    contextName: 'tower-prod',
    namespace: 'kube-system',
    cluster: { name: 'tower-prod', server: 'https://127.0.0.1:7443', caPem: ca.certPem, insecureSkipTlsVerify: false, tlsServerName: 'prod.tower.local' },
    user: { name: 'tower-prod', clientCertPem: client.certPem, clientKeyPem: client.keyPem }
  })
})

test('render → parse → resolve round-trips a token kubeconfig, quoting YAML 1.1 keywords', () => {
  // "yes" and "on" are booleans to kubectl's YAML 1.1 reader; they must come out quoted.
  const text = renderKubeconfig({ name: 'yes', server: 'https://[::1]:7443', caPem: ca.certPem, user: { token: 'on' } })
  assert.match(text, /name: "yes"/)
  assert.match(text, /token: "on"/)
  const r = resolveContext(parseKubeconfig(text))
  assert.equal(r.contextName, 'yes')
  assert.deepEqual(r.user, { name: 'yes', token: 'on' })
  assert.equal(r.cluster.server, 'https://[::1]:7443')
})

test('renderKubeconfig validates its options', () => {
  const base = { name: 'n', server: 'https://x:1', caPem: ca.certPem, user: { token: 't' } }
  const isArg = (name: string) => (err: unknown): boolean =>
    (err as { code?: string }).code === 'TOWER_ERR_INVALID_ARG' && (err as Error).message.startsWith(name)
  assert.throws(() => renderKubeconfig({ ...base, name: '' }), isArg('name'))
  assert.throws(() => renderKubeconfig({ ...base, server: 'not a url' }), isArg('server'))
  assert.throws(() => renderKubeconfig({ ...base, server: 'ftp://x' }), isArg('server'))
  assert.throws(() => renderKubeconfig({ ...base, caPem: 'nope' }), isArg('caPem'))
  assert.throws(() => renderKubeconfig({ ...base, user: { token: '' } }), isArg('user.token'))
  assert.throws(() => renderKubeconfig({ ...base, user: { clientCertPem: client.certPem, clientKeyPem: 'x' } }), isArg('user.clientKeyPem'))
})

test('parseKubeconfig names the offending field', () => {
  throwsField(() => parseKubeconfig('clusters: [\n'), '', /not valid YAML/)
  throwsField(() => parseKubeconfig('- a\n- b\n'), '', /mapping/)
  throwsField(() => parseKubeconfig('kind: Pod\n'), 'kind')
  throwsField(() => parseKubeconfig('apiVersion: v2\n'), 'apiVersion')
  throwsField(() => parseKubeconfig('clusters: {}\n'), 'clusters', /list/)
  throwsField(() => parseKubeconfig('clusters:\n- cluster: {server: https://a}\n'), 'clusters[0].name', /required/)
  throwsField(() => parseKubeconfig('clusters:\n- name: a\n  cluster: {}\n'), 'clusters[0].cluster.server', /required/)
  throwsField(() => parseKubeconfig('clusters:\n- name: a\n  cluster: {server: 3}\n'), 'clusters[0].cluster.server', /string/)
  throwsField(() => parseKubeconfig('clusters:\n- name: a\n  cluster: {server: https://a, insecure-skip-tls-verify: maybe}\n'), 'clusters[0].cluster.insecure-skip-tls-verify')
  throwsField(() => parseKubeconfig('users:\n- name: u\n  user: {}\n- name: u\n  user: {}\n'), 'users[1].name', /duplicate/)
  throwsField(() => parseKubeconfig('contexts:\n- name: c\n  context: {user: u}\n'), 'contexts[0].context.cluster')
  // YAML 1.1 booleans, as kubectl reads them
  const cfg = parseKubeconfig('clusters:\n- name: a\n  cluster: {server: "https://a", insecure-skip-tls-verify: yes}\n')
  assert.equal(cfg.clusters[0].insecureSkipTlsVerify, true)
  // An empty file is a valid, empty kubeconfig (kubectl agrees).
  assert.deepEqual(parseKubeconfig('{}'), { clusters: [], users: [], contexts: [] })
})

const twoContexts = `
apiVersion: v1
kind: Config
current-context: a
clusters:
- name: ca
  cluster:
    server: https://a.example:6443
    certificate-authority-data: ${b64(ca.certPem)}
- name: cb
  cluster: {server: "https://b.example:6443", certificate-authority-data: "bm90IHBlbQ=="}
users:
- name: ua
  user: {token: token-a}
- name: ub
  user: {client-certificate-data: "${b64(client.certPem)}"}
- name: exec
  user: {exec: {command: aws, apiVersion: client.authentication.k8s.io/v1}}
contexts:
- name: a
  context: {cluster: ca, user: ua}
- name: b
  context: {cluster: cb, user: ub}
- name: c
  context: {cluster: nowhere, user: ua}
- name: d
  context: {cluster: ca, user: nobody}
- name: e
  context: {cluster: ca, user: exec}
- name: anon
  context: {cluster: ca}
`

test('resolveContext picks the context and names what is wrong with it', () => {
  const cfg = parseKubeconfig(twoContexts)
  assert.equal(resolveContext(cfg).user.token, 'token-a')
  assert.equal(resolveContext(cfg, { contextName: 'a' }).cluster.server, 'https://a.example:6443')
  assert.deepEqual(resolveContext(cfg, { contextName: 'anon' }).user, {})
  throwsField(() => resolveContext(cfg, { contextName: 'zz' }), 'contexts', /no context named "zz"/)
  throwsField(() => resolveContext({ ...cfg, currentContext: undefined }), 'current-context')
  throwsField(() => resolveContext(cfg, { contextName: 'b' }), 'clusters[1].cluster.certificate-authority-data', /PEM/)
  throwsField(() => resolveContext(cfg, { contextName: 'c' }), 'contexts[2].context.cluster', /nowhere/)
  throwsField(() => resolveContext(cfg, { contextName: 'd' }), 'contexts[3].context.user', /nobody/)
  assert.throws(() => resolveContext(cfg, { contextName: 'e' }), (err: unknown) =>
    err instanceof KubeconfigUnsupportedError && err.code === 'TOWER_ERR_KUBECONFIG_UNSUPPORTED' && err.field === 'users[2].user.exec')
  // client certificate without a key
  const noKey = { ...cfg, clusters: [cfg.clusters[0], { ...cfg.clusters[1], certificateAuthorityData: undefined }] }
  throwsField(() => resolveContext(noKey, { contextName: 'b' }), 'users[1].user.client-key')
})

test('resolveContext reads file paths relative to baseDir through readFile', () => {
  const sub = join(dir, 'files')
  mkdirSync(join(sub, 'pki'), { recursive: true })
  writeFileSync(join(sub, 'pki', 'ca.crt'), ca.certPem)
  writeFileSync(join(sub, 'pki', 'client.crt'), client.certPem)
  writeFileSync(join(sub, 'pki', 'client.key'), client.keyPem)
  const text = `
clusters:
- name: c
  cluster: {server: "https://c:6443", certificate-authority: pki/ca.crt}
users:
- name: u
  user: {client-certificate: pki/client.crt, client-key: ${join(sub, 'pki', 'client.key')}, tokenFile: ../token}
- name: missing
  user: {client-certificate: pki/absent.crt, client-key: pki/client.key}
contexts:
- {name: x, context: {cluster: c, user: u}}
- {name: m, context: {cluster: c, user: missing}}
current-context: x
`
  const cfg = parseKubeconfig(text)
  const read: string[] = []
  const readFile = (p: string): Buffer => { read.push(p); return readFileSync(p) }
  const r = resolveContext(cfg, { baseDir: sub, readFile })
  assert.equal(r.cluster.caPem, ca.certPem)
  assert.equal(r.user.clientCertPem, client.certPem)
  assert.equal(r.user.clientKeyPem, client.keyPem)
  assert.equal(r.user.tokenFile, join(dir, 'token'), 'tokenFile is made absolute but not read')
  assert.deepEqual(read, [join(sub, 'pki', 'ca.crt'), join(sub, 'pki', 'client.crt'), join(sub, 'pki', 'client.key')])

  throwsField(() => resolveContext(cfg, { contextName: 'm', baseDir: sub, readFile }), 'users[1].user.client-certificate', /absent\.crt/)
  assert.throws(() => resolveContext(cfg, { baseDir: sub }), /readFile is required/)
  assert.throws(() => resolveContext(cfg, { readFile }), /baseDir is required/)
})

// A member cluster's kubeconfig as a cloud provider or kubeadm writes it.
const member = `# written by kubeadm
apiVersion: v1
kind: Config
clusters:
- name: member
  cluster:
    certificate-authority: pki/ca.crt # relative to this file
    server: https://member.internal:6443
- name: unused-cluster
  cluster: {server: "https://unused:6443"}
users:
- name: admin
  user:
    client-certificate-data: ${b64(client.certPem)}
    client-key-data: ${b64(client.keyPem)}
- name: unused-user
  user: {token: secret}
contexts:
- name: admin@member
  context: {cluster: member, user: admin, namespace: apps}
- name: other
  context: {cluster: unused-cluster, user: unused-user}
current-context: other
preferences: {colors: true}
`

test('rewriteKubeconfigServer points the context at the tunnel and keeps the member\'s TLS identity', () => {
  const out = rewriteKubeconfigServer(member, { server: 'https://tower.example:9443', contextName: 'admin@member' })
  const cfg = parseKubeconfig(out)
  assert.equal(cfg.currentContext, 'admin@member')
  assert.deepEqual(cfg.clusters[0], {
    name: 'member',
    server: 'https://tower.example:9443',
    certificateAuthority: 'pki/ca.crt',
    tlsServerName: 'member.internal'
  })
  // credentials and everything else untouched
  assert.equal(cfg.users[0].clientCertificateData, b64(client.certPem))
  assert.equal(cfg.users[0].clientKeyData, b64(client.keyPem))
  assert.equal(cfg.contexts.length, 2)
  assert.deepEqual(cfg.clusters[1], { name: 'unused-cluster', server: 'https://unused:6443' })
  assert.match(out, /# written by kubeadm/)
  assert.match(out, /# relative to this file/)
  assert.deepEqual(parseYaml(out).preferences, { colors: true })
})

test('rewriteKubeconfigServer can prune other entries and absolutize file paths', () => {
  const out = rewriteKubeconfigServer(member, { server: 'https://127.0.0.1:9443', contextName: 'admin@member', prune: true, baseDir: '/etc/kubernetes' })
  const cfg = parseKubeconfig(out)
  assert.deepEqual(cfg.contexts.map((c) => c.name), ['admin@member'])
  assert.deepEqual(cfg.clusters.map((c) => c.name), ['member'])
  assert.deepEqual(cfg.users.map((u) => u.name), ['admin'])
  assert.equal(cfg.clusters[0].certificateAuthority, '/etc/kubernetes/pki/ca.crt')
  assert.doesNotMatch(out, /secret/)
  const r = resolveContext(cfg, { readFile: (p) => p === '/etc/kubernetes/pki/ca.crt' ? ca.certPem : '' })
  assert.equal(r.cluster.tlsServerName, 'member.internal')
  assert.equal(r.user.clientKeyPem, client.keyPem)
})

test('rewriteKubeconfigServer keeps an existing tls-server-name, honours an explicit one, strips IPv6 brackets', () => {
  const withName = member.replace('server: https://member.internal:6443', 'server: https://10.0.0.1:6443\n    tls-server-name: api.member')
  assert.equal(parseKubeconfig(rewriteKubeconfigServer(withName, { server: 'https://t:1', contextName: 'admin@member' })).clusters[0].tlsServerName, 'api.member')
  assert.equal(parseKubeconfig(rewriteKubeconfigServer(member, { server: 'https://t:1', contextName: 'admin@member', tlsServerName: 'x.y' })).clusters[0].tlsServerName, 'x.y')
  const v6 = member.replace('https://member.internal:6443', 'https://[fd00::1]:6443')
  assert.equal(parseKubeconfig(rewriteKubeconfigServer(v6, { server: 'https://t:1', contextName: 'admin@member' })).clusters[0].tlsServerName, 'fd00::1')
  // default context is current-context
  assert.equal(parseKubeconfig(rewriteKubeconfigServer(member, { server: 'https://t:1' })).clusters[1].tlsServerName, 'unused')
})

test('rewriteKubeconfigServer refuses bad input', () => {
  assert.throws(() => rewriteKubeconfigServer(member, { server: 'http://t:1' }), /server must be an https URL/)
  assert.throws(() => rewriteKubeconfigServer(member, { server: 'nope' }), /server is not a URL/)
  throwsField(() => rewriteKubeconfigServer(member, { server: 'https://t:1', contextName: 'zz' }), 'contexts')
  throwsField(() => rewriteKubeconfigServer('clusters: 3', { server: 'https://t:1' }), 'clusters')
})

test('resolveContext refuses every impersonation field, naming it: ignoring one would run as the broader user', () => {
  const cases: Array<[string, string]> = [
    ['as: system:admin', 'as'],
    ['as-uid: "1234"', 'as-uid'],
    ['as-groups: [system:masters]', 'as-groups'],
    ['as-user-extra: {scopes: [view]}', 'as-user-extra']
  ]
  for (const [line, field] of cases) {
    const cfg = parseKubeconfig(`
clusters:
- {name: c, cluster: {server: "https://c:6443"}}
users:
- name: u
  user:
    token: t
    ${line}
contexts:
- {name: x, context: {cluster: c, user: u}}
current-context: x
`)
    assert.throws(() => resolveContext(cfg), (err: unknown) => {
      assert.ok(err instanceof KubeconfigUnsupportedError, `${field}: expected KubeconfigUnsupportedError, got ${String(err)}`)
      assert.equal(err.field, `users[0].user.${field}`)
      assert.match(err.message, /impersonation/)
      return true
    }, field)
  }
  // empty values impersonate nobody (as in client-go) and are not refused
  const empty = parseKubeconfig('clusters: [{name: c, cluster: {server: "https://c:6443"}}]\nusers: [{name: u, user: {token: t, as: "", as-groups: [], as-user-extra: {}}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n')
  assert.equal(resolveContext(empty).user.token, 't')
})

test('parseKubeconfig checks the types of the impersonation fields', () => {
  const user = (fields: string): string => `users:\n- name: u\n  user: {${fields}}\n`
  throwsField(() => parseKubeconfig(user('as-groups: system:masters')), 'users[0].user.as-groups', /list of strings/)
  throwsField(() => parseKubeconfig(user('as-groups: [1]')), 'users[0].user.as-groups', /list of strings/)
  throwsField(() => parseKubeconfig(user('as-uid: [1]')), 'users[0].user.as-uid', /string/)
  throwsField(() => parseKubeconfig(user('as-user-extra: [a]')), 'users[0].user.as-user-extra', /mapping/)
  throwsField(() => parseKubeconfig(user('as-user-extra: {scopes: view}')), 'users[0].user.as-user-extra', /list of strings/)
  const cfg = parseKubeconfig(user('as-groups: [a, b], as-user-extra: {__proto__: [x]}'))
  assert.deepEqual(cfg.users[0].impersonateGroups, ['a', 'b'])
  assert.deepEqual(cfg.users[0].impersonateUserExtra, new Map([['__proto__', ['x']]]))
})
