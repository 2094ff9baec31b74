// deploy/agent/rbac.yaml grants only what Tower uses: impersonating the
// users and groups Tower sends, named one by one. kubectl's client-side dry
// run still needs a cluster for discovery, so the manifest is checked here
// against the RBAC v1 schema fields and the rules themselves.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { parseAllDocuments } from 'yaml'

const FILE = resolve(import.meta.dirname, '../../../deploy/agent/rbac.yaml')

interface Rule { apiGroups?: string[], resources?: string[], verbs?: string[], resourceNames?: string[], nonResourceURLs?: string[] }
interface Manifest { apiVersion: string, kind: string, metadata: { name: string, namespace?: string }, rules?: Rule[], roleRef?: Record<string, string>, subjects?: Array<Record<string, string>> }

function manifests (): Manifest[] {
  const docs = parseAllDocuments(readFileSync(FILE, 'utf8'))
  assert.ok(Array.isArray(docs), 'one YAML stream')
  return docs.map((d) => {
    assert.deepEqual(d.errors, [], 'valid YAML')
    return d.toJS() as Manifest
  })
}

test('rbac.yaml: valid manifests of the expected kinds, the role bound to the agent ServiceAccount only', () => {
  const all = manifests()
  assert.deepEqual(all.map((m) => `${m.apiVersion} ${m.kind} ${m.metadata.name}`), [
    'v1 Namespace tower-system',
    'v1 ServiceAccount tower-agent',
    'rbac.authorization.k8s.io/v1 ClusterRole tower-agent-impersonator',
    'rbac.authorization.k8s.io/v1 ClusterRoleBinding tower-agent-impersonator'
  ])
  const binding = all[3]
  assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'tower-agent-impersonator' })
  assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: 'tower-agent', namespace: 'tower-system' }])
})

test('rbac.yaml: only impersonate, only users and groups, each named; no uids, userextras, serviceaccounts, wildcards or system:masters', () => {
  const role = manifests().find((m) => m.kind === 'ClusterRole')
  assert.ok(role?.rules !== undefined && role.rules.length > 0)
  const granted = new Map<string, string[]>()
  for (const rule of role.rules) {
    for (const key of Object.keys(rule)) assert.ok(['apiGroups', 'resources', 'verbs', 'resourceNames'].includes(key), `unexpected rule field ${key}`)
    assert.deepEqual(rule.verbs, ['impersonate'])
    assert.deepEqual(rule.apiGroups, [''])
    for (const resource of rule.resources ?? []) {
      assert.ok(resource === 'users' || resource === 'groups', `impersonating ${resource} is never needed`)
      // an absent or empty resourceNames means every name, system:masters included
      assert.ok(Array.isArray(rule.resourceNames) && rule.resourceNames.length > 0, `${resource}: resourceNames must name who may be impersonated`)
      for (const name of rule.resourceNames) {
        assert.ok(name !== '*' && name !== '' && !name.startsWith('system:'), `${resource}: ${name} must not be impersonable`)
      }
      granted.set(resource, [...(granted.get(resource) ?? []), ...rule.resourceNames])
    }
  }
  // tower kubeconfig's default identity: user tower-admin, no group
  assert.ok(granted.get('users')?.includes('tower-admin'))
})
