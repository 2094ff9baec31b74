// deploy/controller/federation against the code: its Role grants exactly federationAccess() (what
// preflight checks with --join-kubefed) in KubeFed's default namespace, bound to tower-server only; and
// the server's federation flags parse into the controller's settings (file registry: a usage error).
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { test } from 'node:test'
import { parseAllDocuments } from 'yaml'
import { DEFAULT_KUBEFED_NAMESPACE, DEFAULT_NAMESPACE, federationAccess } from '@tower/controller'
import { federationSettings } from '../src/federation-options.ts'

const DIR = resolve(import.meta.dirname, '..', '..', '..', 'deploy', 'controller', 'federation')
type Obj = Record<string, any>
const load = (file: string): Obj[] => parseAllDocuments(readFileSync(join(DIR, file), 'utf8'), { version: '1.1' }).map((d) => d.toJS() as Obj).filter((o) => o !== null)

test('federation/rbac.yaml grants exactly federationAccess() in kube-federation-system to tower-server', () => {
  const docs = load('rbac.yaml')
  const role = docs.find((o) => o.kind === 'Role')!
  assert.equal(role.metadata.namespace, DEFAULT_KUBEFED_NAMESPACE)
  const granted = new Set<string>()
  for (const r of role.rules) for (const g of r.apiGroups) for (const res of r.resources) for (const v of r.verbs) granted.add(`${g} ${res} ${v}`)
  const required = new Set<string>()
  for (const a of federationAccess({ kubefed: true })) {
    assert.equal(a.namespace, DEFAULT_KUBEFED_NAMESPACE)
    for (const v of a.verbs) required.add(`${a.group} ${a.resource} ${v}`)
  }
  assert.deepEqual([...granted].filter((g) => !required.has(g)).sort(), [], 'granted but not required')
  assert.deepEqual([...required].filter((g) => !granted.has(g)).sort(), [], 'required but not granted')
  const binding = docs.find((o) => o.kind === 'RoleBinding')!
  assert.equal(binding.metadata.namespace, DEFAULT_KUBEFED_NAMESPACE)
  assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role.metadata.name })
  assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: 'tower-server', namespace: DEFAULT_NAMESPACE }])
  assert.deepEqual(load('kustomization.yaml')[0]!.resources, ['rbac.yaml'])
  assert.deepEqual(federationAccess({ kubefed: false, karmadaKubeconfig: 'k' }), [])
})

test('federation flags: settings for the kubernetes registry, a usage error for the file registry', () => {
  assert.equal(federationSettings({}, 'kubernetes'), undefined)
  assert.deepEqual(federationSettings({ 'join-kubefed': true, 'federation-token-ttl': '2h', 'federation-endpoint-host': '10.0.0.1' }, 'kubernetes'),
    { kubefed: true, kubefedNamespace: undefined, karmadaKubeconfig: undefined, endpointHost: '10.0.0.1', tokenTtlMs: 7_200_000 })
  assert.equal(federationSettings({ 'join-karmada': '/k' }, 'kubernetes')?.karmadaKubeconfig, '/k')
  assert.throws(() => federationSettings({ 'join-kubefed': true }, 'file'), { code: 'TOWER_ERR_USAGE' })
  assert.throws(() => federationSettings({ 'join-kubefed': true, 'federation-token-ttl': 'soon' }, 'kubernetes'), { code: 'TOWER_ERR_USAGE' })
})
