// The agent manifest module is the one source of deploy/agent/*.yaml and of `tower cluster manifest`:
// the files in the repository are exactly what it renders, the Secret feeds every key the Deployment
// reads, the token is only in the Secret's data, and no system: name is ever impersonable.
// (The objects are also applied with --dry-run=server to a real apiserver: test/e2e/controller-flow.test.ts.)
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { parseAllDocuments } from 'yaml'
import { agentManifest, agentRbac, AGENT_NAME, deployAgentFiles, renderDocuments } from '../src/agent-manifest.ts'

const DEPLOY_AGENT = join(import.meta.dirname, '..', '..', '..', 'deploy', 'agent')
const TOKEN = 'tower-agent-' + 'x'.repeat(43)
const CA = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'

type Obj = Record<string, any>
const parse = (text: string): Obj[] => parseAllDocuments(text, { version: '1.1' }).map((d) => {
  assert.deepEqual(d.errors, [])
  return d.toJS() as Obj
})

test('deploy/agent/rbac.yaml and agent.yaml are what agent-manifest.ts renders (regenerate: node --experimental-strip-types deploy/agent/generate.ts)', () => {
  const files = deployAgentFiles()
  assert.deepEqual([...files.keys()].sort(), ['agent.yaml', 'rbac.yaml'])
  for (const [name, text] of files) {
    assert.equal(readFileSync(join(DEPLOY_AGENT, name), 'utf8'), text, `deploy/agent/${name} differs from agent-manifest.ts`)
  }
})

test('the manifest: Namespace, ServiceAccount, RBAC, Secret, Deployment, in apply order', () => {
  const objs = parse(renderDocuments(agentManifest({ cluster: 'prod-eu', server: 'wss://tower.example.com:8443', token: TOKEN, caPem: CA, image: 'registry.local/tower:9' })))
  assert.deepEqual(objs.map((o) => o.kind), ['Namespace', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Secret', 'Deployment'])
  const secret = objs[4]!
  const data = new Map(Object.entries(secret.data as Record<string, string>).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]))
  assert.deepEqual(Object.fromEntries(data), { server: 'wss://tower.example.com:8443', cluster: 'prod-eu', token: TOKEN, 'ca.crt': CA })
  const deployment = objs[5]!
  const pod = deployment.spec.template.spec
  assert.equal(pod.containers[0].image, 'registry.local/tower:9')
  assert.equal(pod.serviceAccountName, objs[1]!.metadata.name)
  // Every Secret key the Deployment reads exists in the Secret it names.
  const refs = [
    ...pod.containers[0].env.filter((e: Obj) => e.valueFrom !== undefined).map((e: Obj) => e.valueFrom.secretKeyRef),
    ...pod.volumes.filter((v: Obj) => v.secret !== undefined).flatMap((v: Obj) => v.secret.items.map((i: Obj) => ({ name: v.secret.secretName, key: i.key })))
  ]
  assert.ok(refs.length >= 4)
  for (const r of refs) {
    assert.equal(r.name, secret.metadata.name)
    assert.ok(data.has(r.key), `the Deployment reads key ${r.key}, which the Secret lacks`)
  }
  // Everything is in the agent's namespace; the binding names its ServiceAccount.
  for (const o of objs.filter((x) => x.kind !== 'Namespace' && !x.kind.startsWith('Cluster'))) assert.equal(o.metadata.namespace, objs[0]!.metadata.name)
  assert.deepEqual(objs[3]!.subjects, [{ kind: 'ServiceAccount', name: AGENT_NAME, namespace: objs[0]!.metadata.name }])
})

test('the join token appears only base64-encoded in the Secret data', () => {
  const text = renderDocuments(agentManifest({ cluster: 'c1', server: 'wss://h:1', token: TOKEN, caPem: CA }))
  assert.equal(text.includes(TOKEN), false, 'the token appears in clear text')
  const b64 = Buffer.from(TOKEN).toString('base64')
  assert.equal(text.split(b64).length - 1, 1)
})

test('impersonation: only named users and groups, never a system: name, never an empty resourceNames', () => {
  const rules = (users?: string[], groups?: string[]): Obj[] => agentRbac({ impersonateUsers: users, impersonateGroups: groups })
    .map((d) => d.object as Obj).find((o) => o.kind === 'ClusterRole')!.rules
  assert.deepEqual(rules(), [{ apiGroups: [''], resources: ['users'], verbs: ['impersonate'], resourceNames: ['tower-admin'] }])
  assert.deepEqual(rules(['bob', 'system:admin', 'alice', 'bob'], ['system:masters', 'devs']), [
    { apiGroups: [''], resources: ['users'], verbs: ['impersonate'], resourceNames: ['alice', 'bob'] },
    { apiGroups: [''], resources: ['groups'], verbs: ['impersonate'], resourceNames: ['devs'] }
  ])
  // Nothing left to name: no rule at all rather than one without resourceNames (which grants everything).
  assert.deepEqual(rules(['system:masters'], []), [])
  for (const r of rules(['a'], ['b'])) assert.ok(Array.isArray(r.resourceNames) && r.resourceNames.length > 0)
})
