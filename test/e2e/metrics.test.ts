// Metrics end to end against the real member kube-apiserver (issue 11, Tests: Metrics): `tower server
// --metrics-listen` runs as a process; the agent runs in this process with its own metrics registry and
// the member's admin kubeconfig as upstream, its /metrics served by the same HealthServer the CLI uses;
// real kubectl sends list, get, create, delete, a 404, a watch and a refused token through proxy mode.
// Both /metrics endpoints are scraped over HTTP and parsed; every metric each side exports is present,
// and each counter moves by what the traffic did.
//
// Needs the binaries: bash test/e2e/tools/build.sh. Run: node --test test/e2e/metrics.test.ts
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { Agent, agentMetricNames, createMetricsRegistry } from '@tower/agent'
import { serverMetricNames } from '@tower/server'
import { silentLogger } from '@tower/mux'
import { HealthServer } from '@tower/transport'
import { kubectl, kubectlOk, makeTempDir, startControlPlane, startKubectl, waitFor, type ControlPlane } from './harness/index.ts'
import { startTower, towerOk, verboseLog, type AddedCluster, type TowerProcess } from './tunnel-helpers.ts'
import { httpGet, scrape, type Scrape } from '../helpers/scrape.ts'

function assertExported (s: Scrape, names: string[]): void {
  for (const name of names) {
    const base = name.replace(/_(bucket|sum|count)$/, '')
    assert.ok(s.has(name) || s.has(base), `${name} is not exported`)
  }
}

describe('metrics e2e: server and agent /metrics with a real kube-apiserver and kubectl', { timeout: 600_000 }, () => {
  let cp: ControlPlane
  let server: TowerProcess
  let serverMetricsPort: number
  let agent: Agent
  let health: HealthServer
  let agentMetricsPort: number
  let kubeconfig: string
  let dir: string
  let state: string

  before(async () => {
    cp = await startControlPlane({ log: verboseLog })
    dir = makeTempDir('metrics')
    state = join(dir, 'state')
    server = startTower('tower-server', ['server', '--state-dir', state, '--listen', '127.0.0.1:0', '--port-range', '0',
      '--advertise-host', '127.0.0.1', '--san', '127.0.0.1', '--cluster-host', '127.0.0.1', '--metrics-listen', '127.0.0.1:0'])
    serverMetricsPort = Number((await server.waitFor((l) => l.msg === 'metrics and health listening', 30_000)).port)
    const agentPort = Number((await server.waitFor((l) => l.msg === 'agent endpoint listening', 30_000)).port)
    const cluster = JSON.parse(await towerOk(['cluster', 'add', 'member-m', '--state-dir', state, '--output', 'json'])) as AddedCluster
    await server.waitFor((l) => l.msg === 'cluster listener ready' && l.cluster === 'member-m', 30_000)
    kubeconfig = join(dir, 'member-m.kubeconfig')
    await towerOk(['kubeconfig', 'member-m', '--state-dir', state, '--out', kubeconfig])
    agent = new Agent({
      serverUrl: `wss://127.0.0.1:${agentPort}`,
      cluster: cluster.name,
      token: cluster.token,
      caPem: cluster.caPem,
      upstream: { kind: 'kubeconfig', path: cp.member.adminKubeconfigPath },
      metricsRegistry: createMetricsRegistry()
    })
    health = new HealthServer({
      host: '127.0.0.1',
      port: 0,
      metrics: async () => ({ contentType: agent.metrics.registry.contentType, body: await agent.metrics.registry.metrics() }),
      readiness: () => agent.readiness(),
      logger: silentLogger
    })
    agentMetricsPort = await health.listen()
    const connected = once(agent, 'connected')
    agent.start()
    await connected
  })

  after(async () => {
    await agent?.stop()
    await health?.close()
    await server?.stop()
    await cp?.stop()
  })

  test('every metric is present on both sides, and requests, verbs, codes, refusals, agents and upstream dials move with kubectl', async () => {
    const s0 = await scrape(serverMetricsPort)
    assertExported(s0, serverMetricNames())
    assert.equal(s0.value('tower_server_agents_connected', { cluster: 'member-m' }), 1)
    assert.equal(s0.value('tower_server_agent_handshakes_total', { result: 'ok' }), 1)
    const a0 = await scrape(agentMetricsPort)
    assertExported(a0, agentMetricNames())
    assert.equal(a0.value('tower_agent_tunnel_connected'), 1)
    assert.equal((await httpGet(serverMetricsPort, '/readyz')).status, 200)
    assert.equal((await httpGet(agentMetricsPort, '/readyz')).status, 200)

    const req = (s: Scrape, verb: string, code: string): number => s.value('tower_server_requests_total', { cluster: 'member-m', verb, code })
    await kubectlOk(kubeconfig, ['get', 'namespaces', '-o', 'name'])
    const s1 = await scrape(serverMetricsPort)
    assert.ok(req(s1, 'list', '200') >= req(s0, 'list', '200') + 1, 'kubectl get namespaces is a list')
    await kubectlOk(kubeconfig, ['get', 'namespace', 'default', '-o', 'name'])
    const missing = await kubectl(kubeconfig, ['get', 'namespace', 'tower-no-such-namespace'])
    assert.notEqual(missing.code, 0)
    await kubectlOk(kubeconfig, ['create', 'configmap', 'tower-metrics-e2e', '-n', 'default', '--from-literal=a=b'])
    await kubectlOk(kubeconfig, ['delete', 'configmap', 'tower-metrics-e2e', '-n', 'default'])
    const s2 = await scrape(serverMetricsPort)
    assert.ok(req(s2, 'get', '200') >= req(s1, 'get', '200') + 1, 'get namespace default')
    // kubectl itself may GET a missing object more than once.
    assert.ok(req(s2, 'get', '404') - req(s1, 'get', '404') >= 1, 'the missing namespace is a get 404')
    assert.equal(req(s2, 'create', '201') - req(s1, 'create', '201'), 1)
    assert.equal(req(s2, 'delete', '200') - req(s1, 'delete', '200'), 1)
    assert.ok(s2.value('tower_server_request_duration_seconds_count', { cluster: 'member-m', verb: 'create', code: '201' }) >= 1)
    assert.ok(s2.value('tower_server_cluster_sent_bytes_total', { cluster: 'member-m' }) > s0.value('tower_server_cluster_sent_bytes_total', { cluster: 'member-m' }))

    // A watch, counted as verb watch once kubectl ends it.
    await cp.member.kubectl(['create', 'configmap', 'tower-metrics-first', '-n', 'default', '--from-literal=a=b'])
    const watch = startKubectl('kubectl-watch', kubeconfig, ['get', 'configmaps', '-n', 'default', '--watch', '-o', 'name'])
    let out = ''
    watch.child.stdout!.setEncoding('utf8')
    watch.child.stdout!.on('data', (c: string) => { out += c })
    await waitFor('the watch to list the first ConfigMap', async () => out.includes('configmap/tower-metrics-first') ? true : undefined, { timeoutMs: 30_000, intervalMs: 100 })
    await cp.member.kubectl(['create', 'configmap', 'tower-metrics-second', '-n', 'default', '--from-literal=a=b'])
    await waitFor('the watch to see the second ConfigMap', async () => out.includes('configmap/tower-metrics-second') ? true : undefined, { timeoutMs: 30_000, intervalMs: 100 })
    assert.equal((await scrape(serverMetricsPort)).find('tower_server_requests_total', { cluster: 'member-m', verb: 'watch' }).length, 0, 'a watch is counted when it ends')
    await watch.stop()
    await waitFor('the watch to be counted', async () => {
      const s = await scrape(serverMetricsPort)
      return s.find('tower_server_requests_total', { cluster: 'member-m', verb: 'watch' }).length > 0 ? true : undefined
    }, { timeoutMs: 30_000, intervalMs: 100 }).catch(async (err: Error) => {
      throw new Error(`${err.message}: ${JSON.stringify((await scrape(serverMetricsPort)).find('tower_server_requests_total').map((x) => [x.labels.verb, x.labels.code, x.value]))}`)
    })

    // A token kubeconfig with a token that is not a caller token of the cluster.
    const good = join(dir, 'token.kubeconfig')
    await towerOk(['kubeconfig', 'member-m', '--state-dir', state, '--token', '--out', good])
    const text = readFileSync(good, 'utf8')
    assert.match(text, /token: \S+/)
    const bad = join(dir, 'bad-token.kubeconfig')
    writeFileSync(bad, text.replace(/token: \S+/, 'token: tower-caller_not-a-real-one'), { mode: 0o600 })
    const refused = await kubectl(bad, ['get', '--raw', '/version'])
    assert.notEqual(refused.code, 0)
    const s3 = await scrape(serverMetricsPort)
    assert.ok(s3.value('tower_server_caller_auth_failures_total', { cluster: 'member-m', reason: 'token-unknown' }) >= 1, `the bad token is counted by reason: ${JSON.stringify(s3.find('tower_server_caller_auth_failures_total'))} ${refused.stderr}`)
    assert.ok(req(s3, 'get', '401') >= 1)

    // The agent side: it dialled the real apiserver, over h2 (ALPN), and sent requests over it.
    const a1 = await scrape(agentMetricsPort)
    assert.ok(a1.value('tower_agent_upstream_dial_duration_seconds_count', { protocol: 'h2' }) >= 1, 'an h2 dial was timed')
    assert.equal(a1.value('tower_agent_upstream_h2_sessions'), 1)
    assert.ok(a1.value('tower_agent_upstream_h2_requests_total') >= 5)
    assert.equal(a1.value('tower_agent_upstream_dial_failures_total'), 0)
    console.log(`# server requests by verb/code: ${JSON.stringify(s3.find('tower_server_requests_total').map((x) => [x.labels.verb, x.labels.code, x.value]))}`)
  })
})
