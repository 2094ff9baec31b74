// deploy/controller against the code it deploys: the RBAC grants exactly REQUIRED_ACCESS (the table the
// server checks at start), no more, no less; the CRD is the resource names.ts names, with a status
// subresource and KubeSphere's fields; the Deployment runs `tower server --registry kubernetes` as that
// ServiceAccount, non-root on a read-only root file system, with pods the mc-<name> Services select, and
// sets only TOWER_* variables `tower server` reads; the kustomization lists every file.
// (kubectl apply -k deploy/controller --dry-run=server runs against a real apiserver in
// test/e2e/controller-flow.test.ts, which also runs the server as exactly this RBAC.)
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { test } from 'node:test'
import { parseAllDocuments } from 'yaml'
import {
  CLUSTER_CRD, CLUSTER_GROUP, CLUSTER_KIND, CLUSTER_PLURAL, CLUSTER_VERSION, DEFAULT_NAMESPACE, REQUIRED_ACCESS, SERVER_POD_LABEL, SERVER_POD_VALUE
} from '@tower/controller'

const DIR = resolve(import.meta.dirname, '..', '..', '..', 'deploy', 'controller')
const MAIN = resolve(import.meta.dirname, '..', 'src', 'main.ts')
const SERVER_SA = 'tower-server'

type Obj = Record<string, any>
const load = (file: string): Obj[] => parseAllDocuments(readFileSync(join(DIR, file), 'utf8'), { version: '1.1' }).map((d) => {
  assert.deepEqual(d.errors, [], file)
  return d.toJS() as Obj
}).filter((o) => o !== null)
const one = (file: string, kind: string): Obj => {
  const found = load(file).filter((o) => o.kind === kind)
  assert.equal(found.length, 1, `${file}: one ${kind}`)
  return found[0]!
}

/** Every (scope, group, resource[/sub], name, verb) a set of RBAC rules grants. */
function grants (rules: Obj[], scope: string): Set<string> {
  const out = new Set<string>()
  for (const r of rules) {
    for (const list of [r.apiGroups, r.resources, r.verbs]) {
      assert.ok(Array.isArray(list) && list.length > 0, `rule without apiGroups, resources or verbs: ${JSON.stringify(r)}`)
      assert.ok(!list.includes('*'), `wildcard in ${JSON.stringify(r)}`)
    }
    assert.equal(r.nonResourceURLs, undefined)
    const names: Array<string | undefined> = r.resourceNames === undefined ? [undefined] : r.resourceNames
    assert.ok(names.length > 0, 'an empty resourceNames grants every name')
    for (const g of r.apiGroups) for (const res of r.resources) for (const n of names) for (const v of r.verbs) out.add(`${scope} ${g} ${res} ${n ?? '*'} ${v}`)
  }
  return out
}

test('rbac.yaml grants exactly REQUIRED_ACCESS to ServiceAccount tower-server', () => {
  const docs = load('rbac.yaml')
  const sa = one('rbac.yaml', 'ServiceAccount')
  assert.deepEqual([sa.metadata.name, sa.metadata.namespace], [SERVER_SA, DEFAULT_NAMESPACE])
  const role = one('rbac.yaml', 'Role')
  assert.equal(role.metadata.namespace, DEFAULT_NAMESPACE)
  const clusterRole = one('rbac.yaml', 'ClusterRole')
  const granted = new Set([...grants(clusterRole.rules, 'cluster'), ...grants(role.rules, 'namespace')])
  const required = new Set<string>()
  for (const a of REQUIRED_ACCESS) {
    const res = a.subresource === undefined ? a.resource : `${a.resource}/${a.subresource}`
    for (const v of a.verbs) required.add(`${a.scope} ${a.group} ${res} ${a.name ?? '*'} ${v}`)
  }
  assert.deepEqual([...granted].filter((g) => !required.has(g)).sort(), [], 'granted but not required')
  assert.deepEqual([...required].filter((g) => !granted.has(g)).sort(), [], 'required but not granted')
  // Each role is bound to the ServiceAccount and to nothing else.
  for (const [kind, roleKind, roleName] of [['ClusterRoleBinding', 'ClusterRole', clusterRole.metadata.name], ['RoleBinding', 'Role', role.metadata.name]]) {
    const b = docs.find((o) => o.kind === kind)!
    assert.deepEqual(b.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: roleKind, name: roleName })
    assert.deepEqual(b.subjects, [{ kind: 'ServiceAccount', name: SERVER_SA, namespace: DEFAULT_NAMESPACE }])
    if (kind === 'RoleBinding') assert.equal(b.metadata.namespace, DEFAULT_NAMESPACE)
  }
  assert.deepEqual(docs.map((o) => o.kind).sort(), ['ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding', 'ServiceAccount'])
})

test('crd.yaml: the Cluster resource names.ts names, cluster-scoped, with a status subresource and KubeSphere\'s fields', () => {
  const crd = one('crd.yaml', 'CustomResourceDefinition')
  assert.equal(crd.metadata.name, CLUSTER_CRD)
  assert.equal(crd.spec.group, CLUSTER_GROUP)
  assert.equal(crd.spec.scope, 'Cluster')
  assert.equal(crd.spec.names.kind, CLUSTER_KIND)
  assert.equal(crd.spec.names.plural, CLUSTER_PLURAL)
  assert.equal(crd.spec.versions.length, 1)
  const v = crd.spec.versions[0]
  assert.deepEqual([v.name, v.served, v.storage], [CLUSTER_VERSION, true, true])
  assert.deepEqual(v.subresources, { status: {} })
  const schema = v.schema.openAPIV3Schema
  const spec = schema.properties.spec.properties
  for (const f of ['joinFederation', 'enable', 'provider', 'connection', 'externalKubeAPIEnabled', 'config']) assert.ok(Object.hasOwn(spec, f), `spec.${f}`)
  const conn = spec.connection.properties
  const types: Record<string, string> = {
    type: 'string', kubernetesAPIEndpoint: 'string', kubesphereAPIEndpoint: 'string', externalKubernetesAPIEndpoint: 'string',
    kubeconfig: 'string', token: 'string', kubernetesAPIServerPort: 'integer', kubesphereAPIServerPort: 'integer'
  }
  for (const [f, t] of Object.entries(types)) assert.equal(conn[f]?.type, t, `spec.connection.${f}`)
  assert.equal(conn.kubeconfig.format, 'byte', 'KubeSphere stores the kubeconfig as []byte (base64)')
  const status = schema.properties.status.properties
  for (const f of ['conditions', 'kubernetesVersion', 'kubeSphereVersion', 'nodeCount', 'zones', 'region', 'configz', 'uid']) assert.ok(Object.hasOwn(status, f), `status.${f}`)
  const cond = status.conditions.items
  assert.deepEqual(cond.required, ['type', 'status'])
  for (const f of ['type', 'status', 'lastUpdateTime', 'lastTransitionTime', 'reason', 'message']) assert.ok(Object.hasOwn(cond.properties, f), `condition.${f}`)
  const columns = v.additionalPrinterColumns.map((c: Obj) => c.jsonPath)
  for (const p of ['.spec.connection.type', '.spec.connection.kubernetesAPIServerPort', '.status.kubernetesVersion']) assert.ok(columns.includes(p), p)
})

test('server.yaml: 2 replicas of tower server --registry kubernetes as tower-server, non-root, read-only root, pods the Services select', async () => {
  const d = one('server.yaml', 'Deployment')
  assert.equal(d.metadata.namespace, DEFAULT_NAMESPACE)
  assert.equal(d.spec.replicas, 2)
  const pod = d.spec.template
  assert.equal(pod.metadata.labels[SERVER_POD_LABEL], SERVER_POD_VALUE)
  assert.equal(d.spec.selector.matchLabels[SERVER_POD_LABEL], SERVER_POD_VALUE)
  assert.equal(pod.spec.serviceAccountName, SERVER_SA)
  assert.notEqual(pod.spec.automountServiceAccountToken, false, 'in-cluster config needs the ServiceAccount token')
  assert.equal(pod.spec.securityContext.runAsNonRoot, true)
  assert.equal(pod.spec.volumes, undefined, 'controller mode keeps nothing on disk')
  assert.equal(pod.spec.containers.length, 1)
  const c = pod.spec.containers[0]
  assert.deepEqual(c.args, ['server'])
  assert.equal(c.securityContext.readOnlyRootFilesystem, true)
  assert.equal(c.securityContext.allowPrivilegeEscalation, false)
  assert.deepEqual(c.securityContext.capabilities.drop, ['ALL'])
  assert.ok(c.resources.requests.cpu !== undefined && c.resources.requests.memory !== undefined && c.resources.limits.memory !== undefined)
  const env = new Map<string, Obj>(c.env.map((e: Obj) => [e.name, e]))
  assert.equal(env.get('TOWER_REGISTRY')?.value, 'kubernetes')
  assert.equal(env.get('TOWER_NAMESPACE')?.valueFrom?.fieldRef?.fieldPath, 'metadata.namespace')
  assert.equal(env.get('TOWER_IDENTITY')?.valueFrom?.fieldRef?.fieldPath, 'metadata.name')
  assert.equal(env.has('TOWER_STATE_DIR'), false)
  assert.equal(env.has('TOWER_KUBECONFIG'), false, 'in-cluster config')
  const agentsPort = c.ports.find((p: Obj) => p.name === 'agents')
  assert.equal(`0.0.0.0:${agentsPort.containerPort}`, env.get('TOWER_LISTEN')?.value)
  // Probes on the plain-HTTP metrics port, which TOWER_METRICS_LISTEN opens; Prometheus scrapes it too.
  const metricsPort = c.ports.find((p: Obj) => p.name === 'metrics')
  assert.equal(`0.0.0.0:${metricsPort.containerPort}`, env.get('TOWER_METRICS_LISTEN')?.value)
  assert.deepEqual(c.readinessProbe.httpGet, { path: '/readyz', port: 'metrics' })
  assert.deepEqual(c.livenessProbe.httpGet, { path: '/livez', port: 'metrics' })
  assert.equal(pod.metadata.annotations['prometheus.io/port'], String(metricsPort.containerPort))
  assert.equal(pod.metadata.annotations['prometheus.io/scrape'], 'true')
  // Every TOWER_* variable it sets is one `tower server` reads (the describe texts name them).
  const help = await new Promise<string>((resolvePromise, reject) => {
    execFile(process.execPath, [MAIN, 'server', '--help'], { timeout: 30_000 }, (err, stdout) => err === null ? resolvePromise(stdout) : reject(err))
  })
  for (const name of env.keys()) assert.ok(help.includes(`(${name})`) || help.includes(`${name})`), `tower server does not read ${name}`)
})

test('server.yaml HA: the downward API gives each replica its Pod for the EndpointSlices; a drain fits the grace period; a PodDisruptionBudget keeps one', () => {
  const d = one('server.yaml', 'Deployment')
  const c = d.spec.template.spec.containers[0]
  const env = new Map<string, Obj>(c.env.map((e: Obj) => [e.name, e]))
  assert.equal(env.get('TOWER_POD_NAME')?.valueFrom?.fieldRef?.fieldPath, 'metadata.name')
  assert.equal(env.get('TOWER_POD_UID')?.valueFrom?.fieldRef?.fieldPath, 'metadata.uid')
  assert.equal(env.get('TOWER_POD_IP')?.valueFrom?.fieldRef?.fieldPath, 'status.podIP')
  const drainMs = Number(env.get('TOWER_DRAIN_TIMEOUT')?.value)
  assert.ok(drainMs > 0 && d.spec.template.spec.terminationGracePeriodSeconds * 1000 > drainMs, 'the kubelet waits longer than the drain')
  const pdb = one('server.yaml', 'PodDisruptionBudget')
  assert.equal(pdb.metadata.namespace, DEFAULT_NAMESPACE)
  assert.equal(pdb.spec.minAvailable, 1)
  assert.deepEqual(pdb.spec.selector.matchLabels, { [SERVER_POD_LABEL]: SERVER_POD_VALUE })
})

test('service.yaml selects the server pods on the agent port; the kustomization lists every file', () => {
  const svc = one('service.yaml', 'Service')
  assert.equal(svc.metadata.namespace, DEFAULT_NAMESPACE)
  assert.deepEqual(svc.spec.selector, { [SERVER_POD_LABEL]: SERVER_POD_VALUE })
  assert.deepEqual(svc.spec.ports.map((p: Obj) => [p.port, p.targetPort]), [[8443, 'agents']])
  const kustomization = load('kustomization.yaml')[0]!
  const yamlFiles = readdirSync(DIR).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort()
  assert.deepEqual([...kustomization.resources].sort(), yamlFiles)
  // Namespace first, so a fresh `kubectl apply -k` creates it before what lives in it.
  assert.equal(kustomization.resources[0], 'namespace.yaml')
  assert.equal(one('namespace.yaml', 'Namespace').metadata.name, DEFAULT_NAMESPACE)
})
