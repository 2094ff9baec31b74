// Issue 10, "Join (in Tower)" in controller mode: the real `tower server --registry kubernetes
// --join-kubefed --join-karmada F`, running as the tower-server ServiceAccount with deploy/controller's
// RBAC plus the deploy/controller/federation overlay, keeps a KubeFedCluster (host) and a push-mode
// Karmada Cluster (Karmada's apiserver) for a proxy Cluster applied with kubectl. Member A sits in a
// network namespace and is reached only through Tower. Both become Ready through the tunnel; the Cluster's
// Federated condition turns True; a FederatedConfigMap reaches A; a short --federation-token-ttl rotates
// the tokens (the old one then gets 401) while the member stays Ready and propagation goes on; deleting the
// Cluster removes both federation objects and their Secrets, and the caller tokens with the callers Secret.
// Needs root and the binaries:
//   bash test/e2e/tools/build.sh && bash test/e2e/tools/federation.sh
// Run: node --experimental-strip-types --test test/federation/controller-join.test.ts
import assert from 'node:assert/strict'
import { request } from 'node:https'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { netnsSupport, probeFreePort, writeKubeconfig } from '../e2e/harness/index.ts'
import { REPO_ROOT, serviceAccountToken, startTower, startTowerAgent, towerOk, type TowerProcess, type TowerServerHandle } from '../e2e/tunnel-helpers.ts'
import { startKarmada, type Karmada } from './harness/karmada.ts'
import { HEALTH_CHECK, installKubeFed, KUBEFED_NS, startKubeFed } from './harness/kubefed.ts'
import { startTopology, type Topology } from './harness/topology.ts'
import { condition, eventually, getJson } from './harness/wait.ts'

const support = netnsSupport()
if (!support.supported) console.log(`# SKIPPED the controller-mode federation join test: ${support.reason}`)

const NS = 'tower-system'
const FED_NS = 'ctl-fed-e2e'
/** Rotation at two thirds: every 30 s; a superseded token is revoked a sixth of it (7.5 s) after. */
const TOKEN_TTL = '45s'
const TOKEN_ID = 'tower.kubesphere.io/caller-token-id'

type Obj = Record<string, any>

/** Status of a GET /version with `token` on Tower's port (CA-verified, SNI/host = the endpoint host). */
async function statusWith (host: string, port: number, caPem: string, token: string): Promise<number> {
  return await new Promise((resolve, reject) => {
    const req = request({ host, port, path: '/version', ca: caPem, headers: { authorization: `Bearer ${token}` }, timeout: 10_000 }, (res) => {
      res.resume()
      res.on('end', () => { resolve(res.statusCode ?? 0) })
    })
    req.on('error', reject)
    req.on('timeout', () => { req.destroy(new Error('timeout')) })
    req.end()
  })
}

describe('controller mode joins proxy Clusters to KubeFed and Karmada (issue 10)', { timeout: 1_500_000, skip: support.supported ? false : support.reason }, () => {
  const started = Date.now()
  let top: Topology
  let karmada: Karmada
  let server: TowerProcess
  let agent: TowerProcess | undefined
  let port = 0
  let caPem = ''
  const towerAdmin = (args: string[]): Promise<string> =>
    towerOk([...args, '--registry', 'kubernetes', '--kubeconfig', top.host.adminKubeconfigPath, '--namespace', NS], { timeoutMs: 60_000 })
  const cluster = (): Promise<Obj | undefined> => getJson(top.host, ['clusters.cluster.kubesphere.io', 'a'])
  const kubeFedCluster = (): Promise<Obj | undefined> => getJson(top.host, ['kubefedclusters.core.kubefed.io', 'a', '-n', KUBEFED_NS])
  const karmadaCluster = (): Promise<Obj | undefined> => getJson(karmada.apiserver, ['clusters.cluster.karmada.io', 'a'])
  const secretToken = async (server: Topology['host'], name: string, namespace: string): Promise<string | undefined> => {
    const v: unknown = (await getJson(server, ['secret', name, '-n', namespace]))?.data?.token
    return typeof v === 'string' ? Buffer.from(v, 'base64').toString('utf8') : undefined
  }
  const tokens = async (): Promise<Obj[]> => JSON.parse(await towerAdmin(['cluster', 'tokens', 'a', '--output', 'json'])) as Obj[]

  before(async () => {
    top = await startTopology({ karmada: true, tower: false })
    await installKubeFed(top.host, top.bin)
    top.procs.push(await startKubeFed(top.host, top.bin, { logDir: top.logDir }))
    karmada = await startKarmada({ etcd: top.cp.etcd, bin: top.cp.binaries, fed: top.bin, dir: top.dir, logDir: top.logDir })
    top.procs.push(...karmada.procs)
    console.log(`# kubefed ${top.bin.kubefed.version}; karmada ${top.bin.karmada.version}; kube-apiserver ${top.host.version}; member A ${top.a.url} in netns ${top.ns.name}`)

    // deploy/controller's CRD and RBAC, and the federation overlay, for real; the server runs as that ServiceAccount.
    for (const f of ['namespace.yaml', 'crd.yaml', 'rbac.yaml']) await top.host.kubectl(['apply', '-f', join(REPO_ROOT, 'deploy/controller', f)])
    await top.host.kubectl(['apply', '-k', join(REPO_ROOT, 'deploy/controller/federation')])
    await top.host.kubectl(['wait', '--for=condition=Established', 'crd/clusters.cluster.kubesphere.io', '--timeout=60s'])
    await eventually('Clusters served', 30_000, async () => (await top.host.kubectlResult(['get', 'clusters.cluster.kubesphere.io'])).code === 0 ? true : undefined)
    const saToken = await serviceAccountToken(top.host, NS, 'tower-server', join(top.dir, 'server-sa-token'))
    const serverKubeconfig = writeKubeconfig(join(top.dir, 'tower-server.kubeconfig'), { server: top.host.url, caPem: top.host.caPem, name: 'tower-server', token: saToken, namespace: NS })
    const addr = top.ns.hostAddress
    port = await probeFreePort(addr)
    server = startTower('tower-server-federation', [
      'server', '--registry', 'kubernetes', '--kubeconfig', serverKubeconfig, '--namespace', NS, '--no-leader-elect',
      '--listen', `${addr}:0`, '--cluster-host', addr, '--advertise-host', addr, '--san', addr, '--port-range', `${port}-${port}`,
      '--join-kubefed', '--join-karmada', karmada.apiserver.adminKubeconfigPath,
      '--federation-endpoint-host', addr, '--federation-token-ttl', TOKEN_TTL, '--log-level', 'debug'
    ], { logDir: top.logDir })
    await server.waitFor((l) => l.msg === 'agent endpoint listening', 60_000)
  })

  after(async () => {
    await agent?.stop()
    await server?.stop()
    await top?.stop()
    console.log(`# controller-join e2e time: ${((Date.now() - started) / 1000).toFixed(1)} s`)
  })

  test('kubectl apply a proxy Cluster; its agent joins from the network namespace', async () => {
    await top.host.kubectl(['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'cluster.kubesphere.io/v1alpha1',
        kind: 'Cluster',
        metadata: { name: 'a', annotations: { 'tower.kubesphere.io/impersonate': 'true' } },
        spec: { provider: 'e2e', joinFederation: true, connection: { type: 'proxy' } }
      })
    })
    const c = await eventually('Initialized=True', 90_000, async () => {
      const obj = await cluster()
      return condition(obj, 'Initialized')?.status === 'True' ? obj : undefined
    })
    assert.equal(c.spec.connection.kubernetesAPIServerPort, port)
    const joinToken = (await secretToken(top.host, 'tower-join-a', NS))!
    caPem = Buffer.from((await getJson(top.host, ['secret', 'tower-ca', '-n', NS])).data['tls.crt'], 'base64').toString('utf8')
    const handle = { dir: top.dir, host: top.ns.hostAddress, agentPort: Number((await server.waitFor((l) => l.msg === 'agent endpoint listening', 1000)).port) } as TowerServerHandle
    agent = await startTowerAgent(handle, { name: 'a', mode: 'proxy', token: joinToken, caPem }, top.agentUpstream,
      { netns: top.ns.name, serverHost: top.ns.hostAddress, logDir: top.logDir, name: 'tower-agent-a' })
  })

  test('the KubeFedCluster and the Karmada Cluster appear, point at Tower and become Ready; Federated turns True', async () => {
    const endpoint = `https://${top.ns.hostAddress}:${port}`
    const kf = await eventually('KubeFedCluster a Ready', 180_000, async () => {
      const o = await kubeFedCluster()
      return condition(o, 'Ready')?.status === 'True' ? o : undefined
    })
    assert.equal(kf.spec.apiEndpoint, endpoint)
    assert.equal(Buffer.from(kf.spec.caBundle, 'base64').toString('utf8').trim(), caPem.trim())
    assert.equal(kf.spec.secretRef.name, 'tower-a')
    assert.match(kf.metadata.annotations['tower.kubesphere.io/token-expires-at'], /^\d{4}-\d\d-\d\dT/)
    const km = await eventually('Karmada Cluster a Ready', 180_000, async () => {
      const o = await karmadaCluster()
      return condition(o, 'Ready')?.status === 'True' ? o : undefined
    })
    assert.equal(km.spec.syncMode, 'Push')
    assert.equal(km.spec.apiEndpoint, endpoint)
    // Status read through the tunnel: A's version.
    assert.equal(km.status.kubernetesVersion, top.a.version)
    // Each object's token is a caller token of cluster a, of the federation user, and it works on Tower's port.
    const listed = await tokens()
    for (const [obj, user, secret] of [[kf, 'tower-kubefed', await secretToken(top.host, 'tower-a', KUBEFED_NS)], [km, 'tower-karmada', await secretToken(karmada.apiserver, 'tower-a', 'karmada-cluster')]] as const) {
      const id = obj.metadata.annotations[TOKEN_ID]
      assert.ok(listed.some((t) => t.id === id && t.user === user), `token ${id} of ${user} not listed: ${JSON.stringify(listed)}`)
      assert.equal(await statusWith(top.ns.hostAddress, port, caPem, secret!), 200)
    }
    const fed = await eventually('Federated=True', 60_000, async () => {
      const f = condition(await cluster(), 'Federated')
      return f?.status === 'True' ? f : undefined
    })
    assert.equal(fed.reason, 'Joined')
    assert.match(fed.message!, /KubeFed: Ready=True.*Karmada: Ready=True/)
  })

  test('a FederatedConfigMap placed on a reaches member A through the tunnel', async () => {
    await top.host.kubectl(['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'v1',
        kind: 'List',
        items: [
          { apiVersion: 'v1', kind: 'Namespace', metadata: { name: FED_NS } },
          { apiVersion: 'types.kubefed.io/v1beta1', kind: 'FederatedNamespace', metadata: { name: FED_NS, namespace: FED_NS }, spec: { placement: { clusters: [{ name: 'a' }] } } },
          {
            apiVersion: 'types.kubefed.io/v1beta1',
            kind: 'FederatedConfigMap',
            metadata: { name: 'cfg', namespace: FED_NS },
            spec: { template: { data: { round: '1' } }, placement: { clusters: [{ name: 'a' }] } }
          }
        ]
      })
    })
    await eventually('ConfigMap cfg in A', 120_000, async () => (await getJson(top.a, ['configmap', 'cfg', '-n', FED_NS]))?.data?.round === '1' ? true : undefined)
  })

  test('token rotation: new tokens are written, the old ones are revoked (401), the member stays Ready and propagation goes on', async () => {
    const before = { kubefed: (await kubeFedCluster())!.metadata.annotations[TOKEN_ID], karmada: (await karmadaCluster())!.metadata.annotations[TOKEN_ID] }
    const oldKubeFedToken = (await secretToken(top.host, 'tower-a', KUBEFED_NS))!
    assert.equal(await statusWith(top.ns.hostAddress, port, caPem, oldKubeFedToken), 200)
    await eventually('both tokens rotated', 90_000, async () => {
      const kf = (await kubeFedCluster())?.metadata?.annotations?.[TOKEN_ID]
      const km = (await karmadaCluster())?.metadata?.annotations?.[TOKEN_ID]
      return kf !== undefined && km !== undefined && kf !== before.kubefed && km !== before.karmada ? true : undefined
    })
    await eventually('old tokens revoked', 60_000, async () => {
      const ids = new Set((await tokens()).map((t) => t.id))
      return !ids.has(before.kubefed) && !ids.has(before.karmada) ? true : undefined
    })
    await eventually('old KubeFed token refused', 30_000, async () => await statusWith(top.ns.hostAddress, port, caPem, oldKubeFedToken) === 401 ? true : undefined)
    // Past KubeFed's health check window after the revocation: still Ready, on the new token.
    await new Promise((resolve) => setTimeout(resolve, (HEALTH_CHECK.periodSeconds * (HEALTH_CHECK.failureThreshold + 1) + HEALTH_CHECK.timeoutSeconds) * 1000))
    assert.equal(condition(await kubeFedCluster(), 'Ready')?.status, 'True')
    assert.equal(condition(await karmadaCluster(), 'Ready')?.status, 'True')
    assert.equal(condition(await cluster(), 'Federated')?.status, 'True')
    await top.host.kubectl(['patch', 'federatedconfigmap', 'cfg', '-n', FED_NS, '--type=merge', '-p', JSON.stringify({ spec: { template: { data: { round: '2' } } } })])
    await eventually('update reaches A after the rotation', 120_000, async () => (await getJson(top.a, ['configmap', 'cfg', '-n', FED_NS]))?.data?.round === '2' ? true : undefined)
  })

  test('spec.joinFederation false leaves both planes and drops Federated; true joins again', async () => {
    const patch = (v: boolean): Promise<string> => top.host.kubectl(['patch', 'clusters.cluster.kubesphere.io', 'a', '--type=merge', '-p', JSON.stringify({ spec: { joinFederation: v } })])
    await patch(false)
    await eventually('left both planes', 60_000, async () => await kubeFedCluster() === undefined && await karmadaCluster() === undefined ? true : undefined)
    await eventually('Federated removed', 30_000, async () => condition(await cluster(), 'Federated') === undefined ? true : undefined)
    assert.equal(await getJson(top.host, ['secret', 'tower-a', '-n', KUBEFED_NS]), undefined)
    assert.deepEqual((await tokens()).filter((t) => t.user === 'tower-kubefed' || t.user === 'tower-karmada'), [], 'federation tokens left after leaving')
    await patch(true)
    await eventually('Federated=True again', 180_000, async () => condition(await cluster(), 'Federated')?.status === 'True' ? true : undefined)
  })

  test('deleting the Cluster removes the KubeFedCluster, the Karmada Cluster, their Secrets and the tokens', async () => {
    const lastToken = (await secretToken(top.host, 'tower-a', KUBEFED_NS))!
    await top.host.kubectl(['delete', 'clusters.cluster.kubesphere.io', 'a', '--wait=false'])
    await eventually('Cluster a gone (finalizer done)', 180_000, async () => await cluster() === undefined ? true : undefined)
    assert.equal(await kubeFedCluster(), undefined)
    assert.equal(await getJson(top.host, ['secret', 'tower-a', '-n', KUBEFED_NS]), undefined)
    assert.equal(await karmadaCluster(), undefined)
    assert.equal(await getJson(karmada.apiserver, ['secret', 'tower-a', '-n', 'karmada-cluster']), undefined)
    // The caller tokens lived in the callers Secret: gone with it (and the port is closed, so nothing accepts them).
    assert.equal(await getJson(top.host, ['secret', 'tower-callers-a', '-n', NS]), undefined)
    assert.ok(lastToken.length > 0)
    const left = server.lines.filter((l) => l.msg === 'left the federation').map((l) => l.target)
    assert.deepEqual([...new Set(left)].sort(), ['karmada', 'kubefed'])
    // No failed join along the way, and writes only on schedule (a join plus one per 30 s rotation, per target): no churn.
    assert.deepEqual(server.lines.filter((l) => /federation join failed|not Tower's/.test(String(l.msg))).map((l) => l.err?.message), [])
    const writes = server.lines.filter((l) => l.msg === 'joined the federation' || String(l.msg).startsWith('federation object updated'))
    const bound = 2 * (2 + Math.ceil((Date.now() - started) / 30_000))
    assert.ok(writes.length >= 4 && writes.length <= bound, `${writes.length} federation writes (bound ${bound}): ${JSON.stringify(writes.map((l) => [l.target, l.why]))}`)
  })
})
