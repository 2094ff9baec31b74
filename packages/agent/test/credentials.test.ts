// Upstream credentials: in-cluster ServiceAccount token rotation, kubeconfig users.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, renameSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative, resolve } from 'node:path'
import { stringify } from 'yaml'
import { Agent } from '../src/index.ts'
import { TokenFile } from '../src/credentials.ts'
import { silentLogger } from '@tower/mux'
import { rig, captureLogger } from './harness.ts'
import { fetchText } from './fixtures/fake-server.ts'
import { startTestUpstream, type TestUpstream } from './fixtures/upstream.ts'

function tmp (t: import('node:test').TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'tower-agent-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

// kubelet swaps projected tokens atomically; do the same
function rotate (path: string, token: string): void {
  writeFileSync(path + '.new', token + '\n')
  renameSync(path + '.new', path)
}

async function seenAuthorization (server: Awaited<ReturnType<typeof rig>>['server']): Promise<string> {
  const res = await fetchText(server.request('/echo', { headers: { authorization: 'Bearer from-the-tunnel' } }))
  return (JSON.parse(res.body) as { headers: Record<string, string> }).headers.authorization
}

test('in-cluster: the ServiceAccount token file is used, and a rotated token is picked up', async (t) => {
  const upstream = await startTestUpstream()
  t.after(() => upstream.close())
  const dir = tmp(t)
  writeFileSync(join(dir, 'token'), 'token-one\n')
  writeFileSync(join(dir, 'ca.crt'), upstream.caPem)
  const { server } = await rig(t, {
    upstream,
    agent: {
      upstream: { kind: 'in-cluster', host: '127.0.0.1', port: upstream.port, tokenFile: join(dir, 'token'), caFile: join(dir, 'ca.crt') },
      credentialRefreshMs: 0
    }
  })
  assert.equal(await seenAuthorization(server), 'Bearer token-one')
  rotate(join(dir, 'token'), 'token-two')
  assert.equal(await seenAuthorization(server), 'Bearer token-two')
})

test('TokenFile re-reads at most every refreshMs and keeps the last token when the file vanishes', (t) => {
  const dir = tmp(t)
  const path = join(dir, 'token')
  writeFileSync(path, 'a')
  const logger = captureLogger()
  const cached = new TokenFile(path, 60_000, silentLogger)
  const fresh = new TokenFile(path, 0, logger)
  rotate(path, 'b')
  assert.equal(cached.token, 'a', 'within refreshMs the cached token is used')
  assert.equal(fresh.token, 'b')
  rmSync(path)
  assert.equal(fresh.token, 'b')
  assert.equal(fresh.token, 'b')
  const warnings = logger.entries.filter((e) => e.level === 'warn')
  assert.equal(warnings.length, 1, 'one warning per distinct problem')
  assert.throws(() => new TokenFile(join(dir, 'missing'), 0, silentLogger), { code: 'TOWER_ERR_CREDENTIALS' })
})

function kubeconfig (upstream: TestUpstream, user: Record<string, unknown>, cluster: Record<string, unknown> = {}): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    'current-context': 'member',
    contexts: [{ name: 'member', context: { cluster: 'm', user: 'u' } }, { name: 'other', context: { cluster: 'm', user: 'nobody' } }],
    clusters: [{ name: 'm', cluster: { server: upstream.url, 'certificate-authority-data': Buffer.from(upstream.caPem).toString('base64'), ...cluster } }],
    users: [{ name: 'u', user }, { name: 'nobody', user: {} }]
  })
}

test('kubeconfig: client certificate from relative files and a CA from -data', async (t) => {
  const upstream = await startTestUpstream()
  t.after(() => upstream.close())
  const dir = tmp(t)
  const client = upstream.ca.issue({ cn: 'tower-agent', orgs: ['system:masters'], client: true })
  writeFileSync(join(dir, 'client.crt'), client.certPem)
  writeFileSync(join(dir, 'client.key'), client.keyPem)
  writeFileSync(join(dir, 'config'), kubeconfig(upstream, { 'client-certificate': 'client.crt', 'client-key': 'client.key' }))
  const { server } = await rig(t, { upstream, agent: { upstream: { kind: 'kubeconfig', path: join(dir, 'config') } } })
  const res = await fetchText(server.request('/echo', { headers: { authorization: 'Bearer from-the-tunnel' } }))
  const seen = JSON.parse(res.body) as { clientCn: string, headers: Record<string, string> }
  assert.equal(seen.clientCn, 'tower-agent')
  assert.equal(seen.headers.authorization, undefined, 'the tunnel-side Authorization is dropped even when the agent adds none')
})

test('kubeconfig: token, tokenFile and context selection', async (t) => {
  const upstream = await startTestUpstream()
  t.after(() => upstream.close())
  const dir = tmp(t)
  writeFileSync(join(dir, 'tok'), 'file-token\n')
  writeFileSync(join(dir, 'a'), kubeconfig(upstream, { token: 'inline-token' }))
  writeFileSync(join(dir, 'b'), kubeconfig(upstream, { tokenFile: 'tok' }))
  const a = await rig(t, { upstream, agent: { upstream: { kind: 'kubeconfig', path: join(dir, 'a') } } })
  assert.equal(await seenAuthorization(a.server), 'Bearer inline-token')
  const b = await rig(t, { upstream, agent: { upstream: { kind: 'kubeconfig', path: join(dir, 'b') } } })
  assert.equal(await seenAuthorization(b.server), 'Bearer file-token')
  const c = await rig(t, { upstream, agent: { upstream: { kind: 'kubeconfig', path: join(dir, 'a'), context: 'other' } } })
  assert.equal(await seenAuthorization(c.server), undefined)
})

test('kubeconfig impersonation (as, as-uid, as-groups, as-user-extra) is refused, naming the field, never dropped', async (t) => {
  const upstream = await startTestUpstream()
  t.after(() => upstream.close())
  const dir = tmp(t)
  const fields: Array<[string, unknown]> = [['as', 'alice'], ['as-uid', '42'], ['as-groups', ['devs']], ['as-user-extra', { scopes: ['view'] }]]
  for (const [field, value] of fields) {
    const path = join(dir, field)
    writeFileSync(path, kubeconfig(upstream, { token: 'admin-token', [field]: value }))
    const logger = captureLogger()
    const agent = new Agent({ serverUrl: 'ws://127.0.0.1:1', allowInsecureWs: true, cluster: 'c', token: 't', upstream: { kind: 'kubeconfig', path }, logger })
    t.after(() => agent.stop())
    assert.throws(() => agent.start(), (err: Error & { code?: string, field?: string }) => {
      assert.equal(err.code, 'TOWER_ERR_KUBECONFIG', field)
      assert.equal(err.field, `users[0].user.${field}`)
      assert.ok(err.message.includes(path), err.message)
      assert.ok(err.message.includes(`users[0].user.${field}:`), err.message)
      return true
    })
  }
})

test('kubeconfig problems fail start() with TOWER_ERR_KUBECONFIG', async (t) => {
  const upstream = await startTestUpstream()
  t.after(() => upstream.close())
  const dir = tmp(t)
  const cases: Array<[string, string | undefined, RegExp]> = [
    [kubeconfig(upstream, { exec: { command: 'aws' } }), undefined, /users\[0\]\.user\.exec: exec credential plugins are not supported/],
    [kubeconfig(upstream, { 'auth-provider': { name: 'gcp' } }), undefined, /users\[0\]\.user\.auth-provider/],
    [kubeconfig(upstream, { token: 'x' }), 'nope', /no context named "nope"/],
    [kubeconfig(upstream, { 'client-certificate': 'missing.crt', 'client-key': 'missing.key' }), undefined, /missing\.crt/],
    [kubeconfig(upstream, { token: 'x' }, { server: 'ftp://somewhere' }), undefined, /server must be https:\/\/ or http:\/\//],
    ['- just\n- a list\n', undefined, /must be a mapping/]
  ]
  for (const [i, [text, context, message]] of cases.entries()) {
    const path = join(dir, `k${i}`)
    writeFileSync(path, text)
    const agent = new Agent({ serverUrl: 'ws://127.0.0.1:1', allowInsecureWs: true, cluster: 'c', token: 't', upstream: { kind: 'kubeconfig', path, context } })
    assert.throws(() => agent.start(), { code: 'TOWER_ERR_KUBECONFIG', message })
    assert.throws(() => agent.start(), { code: 'TOWER_ERR_KUBECONFIG', message: new RegExp(`^kubeconfig ${path}: `) })
  }
  const agent = new Agent({ serverUrl: 'ws://127.0.0.1:1', allowInsecureWs: true, cluster: 'c', token: 't', upstream: { kind: 'kubeconfig', path: join(dir, 'absent') } })
  assert.throws(() => agent.start(), { code: 'TOWER_ERR_KUBECONFIG', message: /cannot read kubeconfig/ })
})

test('one kubeconfig reader: pki\'s; no other package source parses YAML or reads current-context (rendering YAML is allowed)', () => {
  const root = resolve(import.meta.dirname, '../../..')
  assert.equal(existsSync(join(root, 'packages/agent/src/kubeconfig.ts')), false)
  const offenders: string[] = []
  for (const pkg of readdirSync(join(root, 'packages'))) {
    if (pkg === 'pki') continue
    const src = join(root, 'packages', pkg, 'src')
    if (!existsSync(src)) continue
    for (const file of readdirSync(src, { recursive: true, encoding: 'utf8' })) {
      if (!file.endsWith('.ts')) continue
      const text = readFileSync(join(src, file), 'utf8')
      // Rendering YAML (the member manifest's Document) is fine; reading it is pki's alone.
      const readsYaml = /import\s*\{[^}]*\b(parse|parseDocument|parseAllDocuments|Parser|Composer)\b[^}]*\}\s*from 'yaml'|import\s+(\*\s+as\s+)?\w+\s+from 'yaml'/.test(text)
      if (readsYaml || /\['current-context'\]|\.currentContext\b/.test(text)) offenders.push(relative(root, join(src, file)))
    }
  }
  assert.deepEqual(offenders, [])
})
