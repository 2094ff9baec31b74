// Issue 10, Karmada: a real Karmada v1.18.2 control plane (its own kube-apiserver, aggregated apiserver,
// webhook, controller-manager, scheduler) pushes a Deployment and a ConfigMap into member A, which only
// Tower can reach (network namespace, proxy mode, --impersonate). A is joined with the real
// `tower join karmada`. Needs root and the binaries:
//   bash test/e2e/tools/build.sh && bash test/e2e/tools/federation.sh
// Run: node --experimental-strip-types --test test/federation/karmada.test.ts
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { join } from 'node:path'
import { kubectlOk, netnsSupport, writeKubeconfig, type ApiServer } from '../e2e/harness/index.ts'
import { towerOk } from '../e2e/tunnel-helpers.ts'
import { startKarmada, type Karmada } from './harness/karmada.ts'
import { startTopology, type Topology } from './harness/topology.ts'
import { condition, eventually, getJson } from './harness/wait.ts'

const support = netnsSupport()
if (!support.supported) console.log(`# SKIPPED the Karmada federation test: ${support.reason}`)

const NS = 'kar-e2e'

describe('Karmada through Tower (issue 10)', { timeout: 1_200_000, skip: support.supported ? false : support.reason }, () => {
  let top: Topology
  let karmada: Karmada
  let api: ApiServer

  before(async () => {
    top = await startTopology({ karmada: true })
    karmada = await startKarmada({ etcd: top.cp.etcd, bin: top.cp.binaries, fed: top.bin, dir: top.dir, logDir: top.logDir })
    top.procs.push(...karmada.procs)
    api = karmada.apiserver
    console.log(`# karmada ${top.bin.karmada.version}; karmada-apiserver ${api.url}; member A ${top.a.url} in netns ${top.ns.name}, Tower port ${top.clusterA.port} on ${top.ns.hostAddress}`)
    const joined = JSON.parse(await towerOk(['join', 'karmada', 'a', '--karmada-kubeconfig', api.adminKubeconfigPath, '--state-dir', top.tower.stateDir, '--output', 'json']))
    assert.equal(joined.created, true)
  })

  after(async () => {
    await top?.stop()
  })

  async function clusterReady (): Promise<string | undefined> {
    return condition(await getJson(api, ['clusters.cluster.karmada.io', 'a']), 'Ready')?.status
  }

  test('the Karmada Cluster a (push mode, through Tower) becomes Ready', async () => {
    await eventually('Cluster a Ready', 120_000, async () => await clusterReady() === 'True' ? true : undefined)
    const c = await getJson(api, ['clusters.cluster.karmada.io', 'a'])
    assert.equal(c.spec.syncMode, 'Push')
    assert.equal(c.spec.apiEndpoint, `https://${top.ns.hostAddress}:${top.clusterA.port}`)
    // Status collected through the tunnel: A's version and its kwok node.
    assert.equal(c.status.kubernetesVersion, top.a.version)
    await eventually('node summary of A', 60_000, async () => (await getJson(api, ['clusters.cluster.karmada.io', 'a']))?.status?.nodeSummary?.readyNum === 1 ? true : undefined)
  })

  test('a PropagationPolicy puts a Deployment and a ConfigMap into A; the binding shows A\'s status', async () => {
    const items = [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } },
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cfg', namespace: NS }, data: { from: 'karmada' } },
      {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'web', namespace: NS },
        spec: {
          replicas: 2,
          selector: { matchLabels: { app: 'web' } },
          template: {
            metadata: { labels: { app: 'web' } },
            spec: {
              containers: [{ name: 'app', image: 'tower-e2e/fake:latest' }],
              tolerations: [{ key: 'kwok.x-k8s.io/node', operator: 'Exists', effect: 'NoSchedule' }],
              automountServiceAccountToken: false
            }
          }
        }
      },
      {
        apiVersion: 'policy.karmada.io/v1alpha1',
        kind: 'PropagationPolicy',
        metadata: { name: 'to-a', namespace: NS },
        spec: {
          resourceSelectors: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'web' }, { apiVersion: 'v1', kind: 'ConfigMap', name: 'cfg' }],
          placement: { clusterAffinity: { clusterNames: ['a'] } }
        }
      }
    ]
    // The policy first, so the detector claims the objects at creation.
    await api.kubectl(['apply', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [items[0], items[3]] }) })
    await api.kubectl(['apply', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [items[1], items[2]] }) })
    await eventually('ConfigMap in A', 120_000, async () => (await getJson(top.a, ['configmap', 'cfg', '-n', NS]))?.data?.from === 'karmada' ? true : undefined)
    const dep = await eventually('Deployment in A', 120_000, async () => await getJson(top.a, ['deployment', 'web', '-n', NS]))
    assert.equal(dep.spec.replicas, 2)
    await eventually('A runs 2 replicas', 180_000, async () => (await getJson(top.a, ['deployment', 'web', '-n', NS]))?.status?.readyReplicas === 2 ? true : undefined)
    // Karmada collects A's status back through the tunnel into the ResourceBinding and the template.
    const rb = await eventually('ResourceBinding aggregated status from A', 120_000, async () => {
      const b = await getJson(api, ['resourcebindings.work.karmada.io', 'web-deployment', '-n', NS])
      const agg: any[] = Array.isArray(b?.status?.aggregatedStatus) ? b.status.aggregatedStatus : []
      const a = agg.find((s) => s?.clusterName === 'a')
      return a?.applied === true && a?.status?.readyReplicas === 2 ? b : undefined
    })
    assert.equal(condition(rb, 'FullyApplied')?.status, 'True')
    await eventually('template Deployment status in Karmada', 60_000, async () => (await getJson(api, ['deployment', 'web', '-n', NS]))?.status?.readyReplicas === 2 ? true : undefined)
  })

  test('the Cluster\'s Ready condition follows A\'s agent: down, then up', async () => {
    assert.equal(await clusterReady(), 'True')
    const down = Date.now()
    await top.agentA.stop()
    await eventually('Cluster a not Ready', karmada.failureThresholdMs + 60_000, async () => await clusterReady() !== 'True' ? true : undefined)
    console.log(`# Karmada Cluster a not Ready ${Date.now() - down} ms after its agent stopped (failure threshold ${karmada.failureThresholdMs} ms)`)
    // A change made while A is unreachable...
    await api.kubectl(['patch', 'configmap', 'cfg', '-n', NS, '--type=merge', '-p', JSON.stringify({ data: { from: 'karmada', later: 'yes' } })])
    await top.startAgentA()
    const up = Date.now()
    await eventually('Cluster a Ready again', 120_000, async () => await clusterReady() === 'True' ? true : undefined)
    console.log(`# Karmada Cluster a Ready ${Date.now() - up} ms after its agent came back`)
    // ...arrives once it is back.
    await eventually('the change arrives in A', 120_000, async () => (await getJson(top.a, ['configmap', 'cfg', '-n', NS]))?.data?.later === 'yes' ? true : undefined)
  })

  test('impersonation: Karmada\'s credential reaches A as the caller identity of its token', async () => {
    const secret = await getJson(api, ['secret', 'tower-a', '-n', 'karmada-cluster'])
    const token = Buffer.from(secret.data.token, 'base64').toString()
    const caPem = Buffer.from(secret.data.caBundle, 'base64').toString()
    assert.equal(caPem, top.clusterA.caPem, 'caBundle is Tower\'s CA')
    const kc = writeKubeconfig(join(top.dir, 'karmada-a.kubeconfig'), { server: `https://${top.ns.hostAddress}:${top.clusterA.port}`, caPem, name: 'karmada-a', token })
    const who = JSON.parse(await kubectlOk(kc, ['auth', 'whoami', '-o', 'json']))
    assert.equal(who.status.userInfo.username, 'tower-karmada')
  })

  test('tower join karmada again replaces the token; --leave removes the Cluster and its Secret', async () => {
    const join = ['join', 'karmada', 'a', '--karmada-kubeconfig', api.adminKubeconfigPath, '--state-dir', top.tower.stateDir, '--output', 'json']
    const again = JSON.parse(await towerOk(join))
    assert.equal(again.created, false)
    assert.equal(typeof again.revokedTokenId, 'string')
    await api.kubectl(['patch', 'configmap', 'cfg', '-n', NS, '--type=merge', '-p', JSON.stringify({ data: { from: 'karmada', rejoined: 'yes' } })])
    await eventually('a change after the re-join reaches A', 120_000, async () => (await getJson(top.a, ['configmap', 'cfg', '-n', NS]))?.data?.rejoined === 'yes' ? true : undefined)
    assert.equal(await clusterReady(), 'True')
    const left = JSON.parse(await towerOk([...join, '--leave']))
    assert.equal(left.removed, true)
    assert.equal(left.revokedTokenId, again.tokenId)
    await eventually('Cluster a gone (Karmada\'s finalizer done)', 120_000, async () => await getJson(api, ['clusters.cluster.karmada.io', 'a']) === undefined ? true : undefined)
    assert.equal(await getJson(api, ['secret', 'tower-a', '-n', 'karmada-cluster']), undefined)
  })
})
