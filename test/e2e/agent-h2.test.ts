// The agent's upstream leg over HTTP/2, against the real member kube-apiserver (issue 12, agent leg):
// `tower server` runs as a process; the agent runs in this process (so that its h2 pool's counters can be
// read) with the member's admin kubeconfig as its upstream; real kubectl lists and watches through the
// cluster port in proxy mode. Asserted from the pool's counters, not from log lines: ALPN chose h2, the
// requests went over it, one session carried them all, and a watch that kubectl ends is released
// upstream (RST_STREAM) so that the pool's stream table empties.
//
// Needs the binaries: bash test/e2e/tools/build.sh. Run: node --test test/e2e/agent-h2.test.ts
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { after, before, describe, test } from 'node:test'
import { Agent } from '@tower/agent'
import { kubectlOk, makeTempDir, startControlPlane, startKubectl, waitFor, type ControlPlane } from './harness/index.ts'
import { startTowerServer, verboseLog, type AddedCluster, type TowerServerHandle } from './tunnel-helpers.ts'

describe('agent e2e: HTTP/2 from the agent to a real kube-apiserver', { timeout: 600_000 }, () => {
  let cp: ControlPlane
  let tower: TowerServerHandle
  let cluster: AddedCluster & { port: number }
  let kubeconfig: string
  let agent: Agent

  before(async () => {
    cp = await startControlPlane({ log: verboseLog })
    tower = await startTowerServer(makeTempDir('agent-h2'))
    cluster = await tower.addCluster('member-h2')
    kubeconfig = await tower.kubeconfig('member-h2')
    agent = new Agent({
      serverUrl: `wss://${tower.host}:${tower.agentPort}`,
      cluster: cluster.name,
      token: cluster.token,
      caPem: cluster.caPem,
      upstream: { kind: 'kubeconfig', path: cp.member.adminKubeconfigPath }
    })
    const connected = once(agent, 'connected')
    agent.start()
    await connected
  })

  after(async () => {
    await agent?.stop()
    await tower?.stop()
    await cp?.stop()
  })

  test('kubectl list and watch through proxy mode; the agent spoke h2 to the kube-apiserver', async () => {
    assert.equal(agent.upstreamH2?.protocol, 'unknown', 'nothing has been sent yet')
    const names = await kubectlOk(kubeconfig, ['get', 'namespaces', '-o', 'name'])
    assert.match(names, /^namespace\/default$/m)
    const afterList = agent.upstreamH2!
    assert.equal(afterList.protocol, 'h2')
    assert.ok(afterList.h2Requests >= 1, JSON.stringify(afterList))
    assert.equal(afterList.overflows, 0)

    // no kube-controller-manager runs, so default has no ConfigMap of its own: make one for the initial list
    await cp.member.kubectl(['create', 'configmap', 'tower-h2-first', '-n', 'default', '--from-literal=a=b'])
    const watch = startKubectl('kubectl-watch', kubeconfig, ['get', 'configmaps', '-n', 'default', '--watch', '-o', 'name'])
    let out = ''
    watch.child.stdout!.setEncoding('utf8')
    watch.child.stdout!.on('data', (c: string) => { out += c })
    try {
      await waitFor('the watch to list the first ConfigMap', async () => out.includes('configmap/tower-h2-first') ? true : undefined, { timeoutMs: 30_000, intervalMs: 100 })
      // kubectl prints the list's items before it opens the watch request: wait for the watch's stream
      await waitFor('the watch to hold an h2 stream upstream', async () => (agent.upstreamH2?.streams ?? 0) >= 1 ? true : undefined, { timeoutMs: 10_000, intervalMs: 20 })
      const during = agent.upstreamH2!
      assert.ok(during.streams >= 1, `the watch holds an h2 stream: ${JSON.stringify(during)}`)
      await cp.member.kubectl(['create', 'configmap', 'tower-h2-e2e', '-n', 'default', '--from-literal=a=b'])
      await waitFor('the watch to see the new ConfigMap', async () => out.includes('configmap/tower-h2-e2e') ? true : undefined, { timeoutMs: 30_000, intervalMs: 100 })
    } finally {
      await watch.stop()
    }
    // kubectl gone: the tunnel stream closes, the agent resets the h2 stream, the apiserver ends the watch
    await waitFor('the agent to release the watch upstream', async () => agent.upstreamH2?.streams === 0 ? true : undefined, { timeoutMs: 30_000, intervalMs: 100 })
    const end = agent.upstreamH2!
    assert.equal(end.protocol, 'h2')
    assert.equal(end.sessions, 1, JSON.stringify(end))
    assert.equal(end.dials, 1, JSON.stringify(end))
    assert.ok(end.h2Requests > afterList.h2Requests, JSON.stringify(end))
    assert.equal(end.retries, 0)
    assert.ok(end.peerMaxStreams !== undefined && end.peerMaxStreams >= 1, JSON.stringify(end))
    console.log(`# agent h2 pool after list + watch: ${JSON.stringify(end)}`)
  })
})
