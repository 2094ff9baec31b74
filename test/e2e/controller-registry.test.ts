// The kubernetes registry backend (issue 9) against the real host kube-apiserver of the harness, with the
// Cluster CRD from deploy/controller and the ClusterController running (--leader-elect=false), so add()
// gets its port from the real tower-ports ConfigMap CAS:
// - preflight: TOWER_ERR_CRD_MISSING before the CRD is applied; TOWER_ERR_FORBIDDEN naming the verb,
//   resource and namespace for a user (RBAC authorizer) granted REQUIRED_ACCESS minus one verb; no error
//   once that verb is granted too;
// - add / find / endpoint / join token / rotation grace / caller tokens / revoked serials / remove, seen
//   by a second registry that only reads (the way the CLI and another replica see them);
// - hostile Clusters created through the API do not break the cache or other clusters;
// - cache resilience: with the apiserver unreachable (a TCP relay in between is shut), the cache keeps
//   its clusters and find() answers; once it is reachable again a change made meanwhile arrives.
//
// Needs the binaries (bash test/e2e/tools/build.sh); no root.
// Run: node --experimental-strip-types --test --test-concurrency=1 test/e2e/controller-registry.test.ts
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, connect, type Server, type Socket } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { KubeConfig, RbacAuthorizationV1Api } from '@kubernetes/client-node'
import {
  contextFrom, KubernetesRegistry, preflight, REQUIRED_ACCESS, CLUSTER_GROUP, CLUSTER_PLURAL, CLUSTER_VERSION, FINALIZER,
  MODE_ANNOTATION, SERVICE_ANNOTATIONS_ANNOTATION, CONTROLLER_LEASE, joinSecretName, type KubeContext
} from '@tower/controller'
import { startControlPlane, waitFor, type ControlPlane } from './harness/index.ts'
import { registryContract } from '@tower/server/registry-contract'
import { REPO_ROOT, verboseLog } from './tunnel-helpers.ts'
import { join } from 'node:path'

const NS = 'tower-reg'
const PORT_RANGE = '7000-7099'
type Obj = Record<string, any>

function adminContext (cp: ControlPlane, server?: string): KubeContext {
  const kc = new KubeConfig()
  if (server === undefined) {
    kc.loadFromFile(cp.host.adminKubeconfigPath)
  } else {
    kc.loadFromOptions({
      clusters: [{ name: 'host', server, caData: Buffer.from(cp.host.caPem).toString('base64') }],
      users: [{ name: 'admin', certData: Buffer.from(cp.host.adminCertPem).toString('base64'), keyData: Buffer.from(cp.host.adminKeyPem).toString('base64') }],
      contexts: [{ name: 'host', cluster: 'host', user: 'admin' }],
      currentContext: 'host'
    })
  }
  return contextFrom(kc, NS)
}

function userContext (cp: ControlPlane, user: string): KubeContext {
  const kc = new KubeConfig()
  kc.loadFromFile(cp.host.kubeconfig(user))
  return contextFrom(kc, NS)
}

/** A TCP relay to the apiserver that can be shut (every connection destroyed) and reopened on its port. */
class Relay {
  #server: Server | undefined
  readonly #sockets = new Set<Socket>()
  readonly #target: number
  port = 0
  constructor (target: number) { this.#target = target }
  async open (): Promise<void> {
    const server = createServer((down) => {
      const up = connect(this.#target, '127.0.0.1')
      this.#sockets.add(down).add(up)
      const drop = (): void => { down.destroy(); up.destroy(); this.#sockets.delete(down); this.#sockets.delete(up) }
      down.on('error', drop).on('close', drop)
      up.on('error', drop).on('close', drop)
      down.pipe(up).pipe(down)
    })
    server.listen(this.port, '127.0.0.1')
    await once(server, 'listening')
    this.port = (server.address() as { port: number }).port
    this.#server = server
  }
  async shut (): Promise<void> {
    const s = this.#server
    this.#server = undefined
    for (const sock of this.#sockets) sock.destroy()
    this.#sockets.clear()
    if (s !== undefined) await new Promise<void>((resolve) => s.close(() => { resolve() }))
  }
}

async function waitChange (reg: KubernetesRegistry, pred: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  if (pred()) return
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { reg.off('change', check); reject(new Error(`timed out waiting for ${what}`)) }, timeoutMs)
    function check (): void {
      if (!pred()) return
      clearTimeout(timer)
      reg.off('change', check)
      resolve()
    }
    reg.on('change', check)
  })
}

let cp: ControlPlane
let admin: KubeContext
const open: KubernetesRegistry[] = []
// The one registry that runs the controller (claimServer), shared by every test that needs ports.
let writer: KubernetesRegistry | undefined
const claimed = async (): Promise<KubernetesRegistry> => {
  await ensureCrd()
  return (writer ??= await openRegistry({ claim: true }))
}

let crdApplied = false
async function ensureCrd (): Promise<void> {
  if (crdApplied) return
  await cp.host.kubectl(['apply', '-f', join(REPO_ROOT, 'deploy/controller/crd.yaml')])
  await cp.host.kubectl(['wait', '--for=condition=Established', '--timeout=60s', `crd/${CLUSTER_PLURAL}.${CLUSTER_GROUP}`])
  crdApplied = true
}

async function openRegistry (opts: { context?: KubeContext, claim?: boolean } = {}): Promise<KubernetesRegistry> {
  const reg = await KubernetesRegistry.open({
    context: opts.context ?? admin,
    controller: { leaderElect: false, portRange: PORT_RANGE, identity: `test-${open.length}` },
    addTimeoutMs: 30_000,
    removeTimeoutMs: 30_000
  })
  open.push(reg)
  if (opts.claim === true) await reg.claimServer()
  return reg
}

before(async () => {
  const started = Date.now()
  cp = await startControlPlane({ log: verboseLog })
  admin = adminContext(cp)
  await cp.host.kubectl(['create', 'namespace', NS])
  console.log(`# control plane ready in ${Date.now() - started} ms`)
})

after(async () => {
  for (const r of open) await r.close().catch(() => {})
  await cp?.stop()
})

describe('kubernetes registry on a real kube-apiserver', { timeout: 900_000 }, () => {
  test('preflight without the CRD: TOWER_ERR_CRD_MISSING naming it and the fix', async () => {
    await assert.rejects(preflight(admin), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'TOWER_ERR_CRD_MISSING')
      assert.match(err.message, /clusters\.cluster\.kubesphere\.io/)
      assert.match(err.message, /kubectl apply -k deploy\/controller/)
      return true
    })
    // Opening a registry (the CLI does) fails at once too, not after the sync timeout.
    const t0 = Date.now()
    await assert.rejects(KubernetesRegistry.open({ context: admin }), { code: 'TOWER_ERR_CRD_MISSING' })
    assert.ok(Date.now() - t0 < 10_000, `open failed after ${Date.now() - t0} ms`)
    await ensureCrd()
    await preflight(admin)
    // A user with no rights at all: open names what it may not list.
    await assert.rejects(KubernetesRegistry.open({ context: userContext(cp, 'nobody') }), (err: Error & { code?: string, verb?: string }) => {
      assert.equal(err.code, 'TOWER_ERR_FORBIDDEN')
      assert.equal(err.verb, 'list')
      return true
    })
  })

  test('preflight as a user missing one verb: TOWER_ERR_FORBIDDEN naming verb, resource and namespace', async () => {
    await ensureCrd()
    const rbac = admin.kc.makeApiClient(RbacAuthorizationV1Api)
    const user = 'tower-limited'
    const rules = (scope: 'cluster' | 'namespace', drop?: { resource: string, verb: string }): Obj[] => REQUIRED_ACCESS.filter((r) => r.scope === scope).map((r) => ({
      apiGroups: [r.group],
      resources: [r.subresource !== undefined ? `${r.resource}/${r.subresource}` : r.resource],
      verbs: r.verbs.filter((v) => !(drop !== undefined && drop.resource === r.resource && r.subresource === undefined && drop.verb === v)),
      ...(r.name !== undefined ? { resourceNames: [r.name] } : {})
    }))
    await rbac.createClusterRole({ body: { metadata: { name: user }, rules: rules('cluster') as never } })
    await rbac.createClusterRoleBinding({ body: { metadata: { name: user }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: user }, subjects: [{ kind: 'User', name: user, apiGroup: 'rbac.authorization.k8s.io' }] } })
    await rbac.createNamespacedRole({ namespace: NS, body: { metadata: { name: user }, rules: rules('namespace', { resource: 'services', verb: 'delete' }) as never } })
    await rbac.createNamespacedRoleBinding({ namespace: NS, body: { metadata: { name: user }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: user }, subjects: [{ kind: 'User', name: user, apiGroup: 'rbac.authorization.k8s.io' }] } })
    const limited = userContext(cp, user)
    await assert.rejects(preflight(limited), (err: Error & { code?: string, verb?: string, resource?: string, namespace?: string }) => {
      assert.equal(err.code, 'TOWER_ERR_FORBIDDEN')
      assert.equal(err.verb, 'delete')
      assert.equal(err.resource, 'services')
      assert.equal(err.namespace, NS)
      assert.match(err.message, /delete services in namespace tower-reg/)
      return true
    })
    await rbac.replaceNamespacedRole({ name: user, namespace: NS, body: { metadata: { name: user }, rules: rules('namespace') as never } })
    // RBAC changes reach the authorizer's cache within a moment.
    await waitFor('the full role to apply', async () => await preflight(limited).then(() => true, () => undefined), { timeoutMs: 20_000, intervalMs: 250 })
  })

  test('add, read, rotate, caller tokens, serials and remove; a second registry sees each change', async () => {
    const writer = await claimed()
    const reader = await openRegistry()
    assert.equal(writer.kind, 'kubernetes')

    const { cluster, token } = await writer.add('east', { mode: 'proxy', impersonate: true })
    assert.equal(cluster.name, 'east')
    assert.ok(cluster.port >= 7000 && cluster.port <= 7099, `port ${cluster.port} from ${PORT_RANGE}`)
    assert.equal(cluster.impersonate, true)
    assert.match(cluster.uid ?? '', /^[0-9a-f-]{36}$/)
    assert.deepEqual(writer.endpoint('east'), { host: `mc-east.${NS}.svc`, port: 6443 })
    assert.equal(writer.authenticateAgent('east', token).ok, true)
    assert.equal(writer.authenticateAgent('east', token + 'x').ok, false)
    assert.equal(await writer.agentToken('east'), token)
    await assert.rejects(writer.add('east'), { code: 'TOWER_ERR_CLUSTER_EXISTS' })

    await waitChange(reader, () => reader.find('east')?.port === cluster.port, 'the reader to see east')
    assert.equal(reader.authenticateAgent('east', token).ok, true)
    const stored = JSON.parse(await cp.host.kubectl(['get', CLUSTER_PLURAL, 'east', '-o', 'json'])) as Obj
    assert.equal(stored.spec.connection.type, 'proxy')
    assert.equal(stored.spec.connection.kubernetesAPIServerPort, cluster.port)
    assert.equal(stored.spec.connection.token, undefined, 'no token is written into the spec')
    assert.ok((stored.metadata.finalizers as string[]).includes(FINALIZER))
    const secret = JSON.parse(await cp.host.kubectl(['-n', NS, 'get', 'secret', joinSecretName('east'), '-o', 'json'])) as Obj
    assert.equal(Buffer.from(secret.data.token, 'base64').toString(), token)
    assert.equal(secret.metadata.labels['app.kubernetes.io/managed-by'], 'tower')
    assert.equal(secret.metadata.ownerReferences[0].uid, cluster.uid)

    // Rotation with grace: both tokens open, for the reader too; the old one's credential stays valid until the grace ends.
    const auth = reader.authenticateAgent('east', token)
    assert.ok(auth.ok)
    const rotated = await writer.rotateAgentToken('east', { graceMs: 3000 })
    await waitChange(reader, () => reader.authenticateAgent('east', rotated).ok, 'the reader to accept the new token')
    assert.equal(reader.authenticateAgent('east', token).ok, true, 'old token within the grace')
    assert.equal(reader.agentCredentialValid('east', auth.credential), true)
    await waitChange(reader, () => !reader.agentCredentialValid('east', auth.credential), 'the grace to end (change emitted at its end)', 10_000)
    assert.equal(reader.authenticateAgent('east', token).ok, false)

    // Caller tokens and revoked serials live in the callers Secret.
    const issued = await writer.issueCallerToken('east', { user: 'alice', groups: ['devs'] })
    assert.deepEqual(writer.verifyCallerToken('east', issued.token), { user: 'alice', groups: ['devs'] })
    await waitChange(reader, () => reader.verifyCallerToken('east', issued.token) !== undefined, 'the reader to accept the caller token')
    assert.deepEqual(reader.callerTokens('east').map((t) => [t.id, t.user]), [[issued.id, 'alice']])
    assert.ok(!JSON.stringify(reader.callerTokens('east')).includes('sha256'), 'listing shows no hash')
    await assert.rejects(writer.revokeCallerTokens('east', 'nope'), { code: 'TOWER_ERR_UNKNOWN_TOKEN' })
    assert.equal(await writer.revokeCallerTokens('east', issued.id), 1)
    assert.equal(writer.verifyCallerToken('east', issued.token), undefined)
    assert.equal(await writer.revokeCertificate('east', '0A:1B'), true)
    assert.equal(await writer.revokeCertificate('east', 'a1b'), false)
    assert.deepEqual(writer.get('east').revokedSerials, ['a1b'])

    // A second cluster gets another port; remove frees the name.
    const west = await writer.add('west', { mode: 'passthrough' })
    assert.notEqual(west.cluster.port, cluster.port)
    assert.deepEqual(writer.clusters().map((c) => c.name), ['east', 'west'])
    // A port another cluster holds: the controller refuses it (Initialized=False, PortConflict) and add() fails at once, leaving nothing.
    const t0 = Date.now()
    await assert.rejects(writer.add('clash', { port: west.cluster.port }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'TOWER_ERR_INVALID_ARG')
      assert.match(err.message, /already used by (cluster )?west/)
      return true
    })
    assert.ok(Date.now() - t0 < 15_000, 'refused well before addTimeoutMs')
    await waitFor('the refused Cluster to be deleted', async () => (await cp.host.kubectlResult(['get', CLUSTER_PLURAL, 'clash'])).code !== 0 ? true : undefined, { timeoutMs: 20_000, intervalMs: 200 })
    await writer.remove('east')
    assert.equal(writer.find('east'), undefined)
    assert.equal(writer.authenticateAgent('east', rotated).ok, false)
    await waitChange(reader, () => reader.find('east') === undefined, 'the reader to drop east')
    const left = await cp.host.kubectlResult(['get', CLUSTER_PLURAL, 'east'])
    assert.notEqual(left.code, 0, 'the Cluster is gone: the finalizer ran')
    await assert.rejects(writer.remove('east'), { code: 'TOWER_ERR_UNKNOWN_CLUSTER' })
    // The name can be added again, as a new registration with a new uid.
    const again = await writer.add('east')
    assert.notEqual(again.cluster.uid, cluster.uid)
    assert.equal(writer.authenticateAgent('east', rotated).ok, false)
    assert.equal(writer.authenticateAgent('east', again.token).ok, true)
  })

  test('hostile Clusters do not break the cache or other clusters', async () => {
    const good = await (await claimed()).add('good-one')
    const reg = await openRegistry()
    const create = async (body: Obj): Promise<void> => {
      await admin.custom.createClusterCustomObject({ group: CLUSTER_GROUP, version: CLUSTER_VERSION, plural: CLUSTER_PLURAL, body }).catch((err: unknown) => {
        // The CRD's schema may refuse it at the door; that is fine too.
        console.log(`# apiserver refused a hostile Cluster: ${String((err as { code?: number }).code)}`)
      })
    }
    const base = { apiVersion: `${CLUSTER_GROUP}/${CLUSTER_VERSION}`, kind: 'Cluster' }
    await create({ ...base, metadata: { name: 'bad-mode', annotations: { [MODE_ANNOTATION]: 'x'.repeat(100_000) } }, spec: { connection: { type: 'proxy' } } })
    await create({ ...base, metadata: { name: 'bad-svc', annotations: { [SERVICE_ANNOTATIONS_ANNOTATION]: '{"__proto__": {"polluted": "yes"}, "constructor": 1}' } }, spec: { connection: { type: 'proxy' }, externalKubeAPIEnabled: true } })
    await create({ ...base, metadata: { name: 'huge', annotations: { big: 'y'.repeat(200_000) } }, spec: { connection: { type: 'proxy' } } })
    // Larger than the cache's 256 KiB limit for one Cluster (the apiserver takes objects up to ~1.5 MB).
    await create({ ...base, metadata: { name: 'too-big' }, spec: { connection: { type: 'proxy', kubeconfig: Buffer.alloc(300 * 1024, 7).toString('base64') } } })
    await create({ ...base, metadata: { name: 'no-type' }, spec: { connection: {} } })
    await create({ ...base, metadata: { name: 'direct-one' }, spec: { connection: { type: 'direct', kubernetesAPIServerPort: 7005 } } })
    await waitFor('the hostile Clusters in the cache', async () => reg.cache.cluster('no-type') !== undefined && reg.cache.cluster('direct-one') !== undefined ? true : undefined, { timeoutMs: 20_000, intervalMs: 100 })
    // Events of one resource arrive in order: no-type is there, so too-big was seen before it.
    assert.equal(reg.cache.cluster('too-big'), undefined, 'an oversized Cluster is left out of the view')
    assert.equal((await cp.host.kubectlResult(['get', CLUSTER_PLURAL, 'too-big'])).code, 0, 'it does exist in the API')
    const names = reg.clusters().map((c) => c.name)
    for (const bad of ['bad-mode', 'no-type', 'direct-one']) assert.ok(!names.includes(bad), `${bad} is not served`)
    assert.ok(names.includes('good-one'), 'the good cluster is still served')
    assert.equal(reg.authenticateAgent('good-one', good.token).ok, true)
    assert.equal(({} as Obj).polluted, undefined)
    assert.equal(reg.find('__proto__'), undefined)
    assert.equal(reg.find('constructor'), undefined)
    assert.equal(reg.authenticateAgent('__proto__', 'x').ok, false)
    // A direct Cluster is never written to: no finalizer, no Secret.
    const direct = JSON.parse(await cp.host.kubectl(['get', CLUSTER_PLURAL, 'direct-one', '-o', 'json'])) as Obj
    assert.equal(direct.metadata.finalizers, undefined)
    assert.equal((await cp.host.kubectlResult(['-n', NS, 'get', 'secret', joinSecretName('direct-one')])).code === 0, false)
  })

  test('two replicas starting at once in an empty namespace end with one CA', async () => {
    await ensureCrd()
    const ns = 'tower-race'
    await cp.host.kubectl(['create', 'namespace', ns])
    const kc = new KubeConfig()
    kc.loadFromFile(cp.host.adminKubeconfigPath)
    const [a, b, c] = await Promise.all([0, 1, 2].map(async () => await KubernetesRegistry.open({ context: contextFrom(kc, ns) })))
    open.push(a, b, c)
    assert.equal(a.ca.certPem, b.ca.certPem)
    assert.equal(b.ca.certPem, c.ca.certPem)
    const stored = JSON.parse(await cp.host.kubectl(['-n', ns, 'get', 'secret', 'tower-ca', '-o', 'json'])) as Obj
    assert.equal(Buffer.from(stored.data['tls.crt'], 'base64').toString(), a.ca.certPem)
  })

  test('readStatus: the agents the server reported, read back from the Clusters; undefined without a live server', async () => {
    const server = await claimed()
    const { cluster } = await server.add('status-one')
    const since = new Date().toISOString()
    server.reportStatus({
      pid: process.pid,
      updatedAt: since,
      agentPort: 8443,
      clusters: { 'status-one': { port: cluster.port, listening: true, agents: [{ id: 'agent-1', remote: '10.1.2.3:4567', since }], kubernetesVersion: 'v1.36.3' } }
    })
    await waitFor('the agents annotation to be written and read back', async () => {
      const st = await server.readStatus()
      return st?.clusters['status-one']?.agents[0]?.id === 'agent-1' ? st : undefined
    }, { timeoutMs: 20_000, intervalMs: 200 })
    const st = await server.readStatus()
    assert.equal(st?.pid, process.pid)
    assert.deepEqual(st?.clusters['status-one']?.agents, [{ id: 'agent-1', remote: '10.1.2.3:4567', since }])
    assert.equal(st?.clusters['status-one']?.port, cluster.port)

    // Another process (the CLI) sees a server only through a held, fresh Lease.
    const cli = await openRegistry()
    assert.equal(await cli.readStatus(), undefined, 'no Lease: no live server (leader election is off in this test)')
    // By kubectl, as another replica would hold it (a plain Date from client-node is sent with milliseconds, which a MicroTime refuses).
    const renewTime = new Date().toISOString().replace(/Z$/, '000Z')
    await cp.host.kubectl(['apply', '-f', '-'], {
      input: JSON.stringify({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: CONTROLLER_LEASE, namespace: NS }, spec: { holderIdentity: 'someone', leaseDurationSeconds: 30, renewTime } })
    })
    await waitFor('the CLI to see the cluster', async () => cli.find('status-one') !== undefined ? true : undefined, { timeoutMs: 20_000, intervalMs: 100 })
    const seen = await cli.readStatus()
    assert.equal(seen?.clusters['status-one']?.agents[0]?.remote, '10.1.2.3:4567')
    await admin.coordination.deleteNamespacedLease({ name: CONTROLLER_LEASE, namespace: NS })
  })

  test('apiserver unreachable: the cache keeps its clusters; a change made meanwhile arrives after', async (t) => {
    const direct = await claimed()
    await direct.add('resil')
    const relay = new Relay(cp.host.port)
    await relay.open()
    t.after(async () => { await relay.shut() })
    const viaRelay = await KubernetesRegistry.open({ context: adminContext(cp, `https://127.0.0.1:${relay.port}`), controller: { leaderElect: false } })
    open.push(viaRelay)
    const before = viaRelay.find('resil')
    assert.ok(before !== undefined)
    const errors: unknown[] = []
    viaRelay.cache.on('error', (err) => { errors.push(err) })

    await relay.shut()
    await waitFor('an informer error', async () => errors.length > 0 ? true : undefined, { timeoutMs: 20_000, intervalMs: 100 })
    assert.deepEqual(viaRelay.find('resil'), before, 'find() still answers from the cache')
    assert.ok(viaRelay.clusters().some((c) => c.name === 'resil'))

    const newToken = await direct.rotateAgentToken('resil')
    assert.equal(viaRelay.authenticateAgent('resil', newToken).ok, false, 'the change cannot have arrived yet')
    await relay.open()
    const t0 = Date.now()
    await waitChange(viaRelay, () => viaRelay.authenticateAgent('resil', newToken).ok, 'the rotation to arrive after the outage', 60_000)
    console.log(`# informer back ${Date.now() - t0} ms after the relay reopened (${errors.length} errors during the outage)`)
  })
})

// The same contract the file backend passes: every test gets a fresh registry that only reads and writes
// (as the CLI does), while the shared claimed one runs the controller that allocates the ports.
registryContract('kubernetes', async () => {
  await claimed()
  const registry = await openRegistry()
  return { registry, cleanup: async () => { await registry.close() } }
}, { deadlineMs: 20_000 })
