// `tower cluster manifest` on the file registry: the token comes from --token-file (checked against the
// stored hash) or a --rotate, never from nowhere; it lands in the Secret's data only, never in a note.
// The kubernetes registry's path (token from the join Secret) runs in test/e2e/controller-flow.test.ts.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { parseAllDocuments } from 'yaml'
import { FileRegistry } from '@tower/server'
import { clusterManifest, type ManifestArgs } from '../src/commands/manifest.ts'

type Obj = Record<string, any>

async function setup (t: { after: (fn: () => unknown) => void }): Promise<{ dir: string, stateDir: string, token: string, caPem: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tower-cli-manifest-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const stateDir = path.join(dir, 'state')
  const registry = await FileRegistry.open({ stateDir, create: true, server: { advertiseHost: 'tower.example.com', listenPort: 9443 } })
  const { token } = await registry.add('prod-eu')
  await registry.add('imp', { impersonate: true })
  await registry.issueCallerToken('imp', { user: 'alice', groups: ['devs', 'system:masters'] })
  const caPem = registry.ca.certPem
  await registry.close()
  return { dir, stateDir, token, caPem }
}

const args = (stateDir: string, more: Partial<ManifestArgs>): ManifestArgs => ({ name: 'prod-eu', 'state-dir': stateDir, rotate: false, ...more })
const objects = (yaml: string): Obj[] => parseAllDocuments(yaml, { version: '1.1' }).map((d) => d.toJS() as Obj)
const secretData = (yaml: string): Map<string, string> => new Map(Object.entries(objects(yaml).find((o) => o.kind === 'Secret')!.data as Record<string, string>)
  .map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]))

test('--token-file: the saved token, the CA and the default server URL go into the Secret', async (t) => {
  const { dir, stateDir, token, caPem } = await setup(t)
  const file = path.join(dir, 'prod-eu.token')
  fs.writeFileSync(file, token + '\n', { mode: 0o600 })
  const notes: string[] = []
  const yaml = await clusterManifest(args(stateDir, { 'token-file': file }), (l) => notes.push(l))
  assert.deepEqual(Object.fromEntries(secretData(yaml)), { server: 'wss://tower.example.com:9443', cluster: 'prod-eu', token, 'ca.crt': caPem })
  assert.equal(yaml.includes(token), false, 'token in clear text')
  assert.equal(notes.join('\n').includes(token), false)
  const image = await clusterManifest(args(stateDir, { 'token-file': file, server: 'wss://10.0.0.1:8443', image: 'r/t:1' }), () => {})
  assert.equal(secretData(image).get('server'), 'wss://10.0.0.1:8443')
  assert.equal(objects(image).find((o) => o.kind === 'Deployment')!.spec.template.spec.containers[0].image, 'r/t:1')
})

test('no token source: a usage error that says how to get one; a stale token file is refused', async (t) => {
  const { dir, stateDir } = await setup(t)
  await assert.rejects(clusterManifest(args(stateDir, {}), () => {}),
    (err: Error & { code?: string }) => err.code === 'TOWER_ERR_USAGE' && /keeps only a hash/.test(err.message) && /--token-file/.test(err.message) && /--rotate/.test(err.message))
  const stale = path.join(dir, 'stale.token')
  fs.writeFileSync(stale, 'tower-agent-not-the-token\n')
  await assert.rejects(clusterManifest(args(stateDir, { 'token-file': stale }), () => {}), /not a valid join token of cluster "prod-eu"/)
  fs.writeFileSync(stale, 'two\ntokens\n')
  await assert.rejects(clusterManifest(args(stateDir, { 'token-file': stale }), () => {}), /one token on one line/)
  await assert.rejects(clusterManifest(args(stateDir, { 'token-file': path.join(dir, 'absent') }), () => {}), /cannot read --token-file/)
  await assert.rejects(clusterManifest(args(stateDir, { name: 'nope', rotate: true }), () => {}), (err: Error & { code?: string }) => err.code === 'TOWER_ERR_UNKNOWN_CLUSTER')
  await assert.rejects(clusterManifest(args(stateDir, { rotate: true, 'token-file': stale }), () => {}), /exclude each other/)
  await assert.rejects(clusterManifest(args(stateDir, { server: 'https://x:1' }), () => {}), /--server must be wss:\/\/host:port/)
})

test('--rotate: a new token in the Secret, the old one refused, and stderr says so without the token', async (t) => {
  const { stateDir, token: old } = await setup(t)
  const notes: string[] = []
  const yaml = await clusterManifest(args(stateDir, { rotate: true }), (l) => notes.push(l))
  const fresh = secretData(yaml).get('token')!
  assert.notEqual(fresh, old)
  assert.ok(notes.some((n) => /issued a new join token for "prod-eu"/.test(n) && /disconnected now/.test(n)), notes.join('\n'))
  assert.equal(notes.join('\n').includes(fresh), false, 'the new token was printed on stderr')
  const registry = await FileRegistry.open({ stateDir, create: false })
  t.after(() => registry.close())
  assert.equal(registry.authenticateAgent('prod-eu', fresh).ok, true)
  assert.equal(registry.authenticateAgent('prod-eu', old).ok, false)
})

test('an --impersonate cluster: the agent may impersonate tower-admin and the caller tokens\' identities, never a system: name', async (t) => {
  const { stateDir } = await setup(t)
  const notes: string[] = []
  const yaml = await clusterManifest(args(stateDir, { name: 'imp', rotate: true }), (l) => notes.push(l))
  const role = objects(yaml).find((o) => o.kind === 'ClusterRole')!
  assert.deepEqual(role.rules, [
    { apiGroups: [''], resources: ['users'], verbs: ['impersonate'], resourceNames: ['alice', 'tower-admin'] },
    { apiGroups: [''], resources: ['groups'], verbs: ['impersonate'], resourceNames: ['devs'] }
  ])
  assert.ok(notes.some((n) => n.includes('system:masters')), notes.join('\n'))
})
