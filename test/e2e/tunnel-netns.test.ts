// Issue 3, test 5: the member is really unreachable. The member's etcd, kube-apiserver and kwok, and the
// Tower agents, run in a network namespace whose only link leads to the host side of a veth pair, where
// the Tower server listens (agent endpoint and cluster ports). The host cannot reach the member's
// apiserver or kwok at all, and kubectl on the host still reaches the member through Tower: get, apply,
// exec, logs and port-forward, in proxy and passthrough mode.
//
// Needs root (network namespaces) and the binaries (bash test/e2e/tools/build.sh). Without root the test
// is skipped, and says why. Run: node --test test/e2e/tunnel-netns.test.ts
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import {
  appendPodLog,
  canConnect,
  captureStdout,
  createFakeNodeAndPod,
  createNetns,
  kubectl,
  kubectlOk,
  makeTempDir,
  netnsSupport,
  portForward,
  SPDY_ENV,
  startControlPlane,
  startKubectl,
  type ControlPlane,
  type FakePod,
  type Netns
} from './harness/index.ts'
import {
  applyRepoManifest,
  echoOverTcp,
  execInputChecked,
  serviceAccountToken,
  startTowerAgent,
  startTowerServer,
  verboseLog,
  type TowerProcess,
  type TowerServerHandle
} from './tunnel-helpers.ts'

const support = netnsSupport()
if (!support.supported) console.log(`# SKIPPED the network-namespace test (issue 3, test 5): ${support.reason}`)

describe('tunnel e2e: the member is in a network namespace the host cannot reach', {
  timeout: 600_000,
  skip: support.supported ? false : support.reason
}, () => {
  let ns: Netns
  let cp: ControlPlane
  let tower: TowerServerHandle
  let pod: FakePod
  const agents: TowerProcess[] = []
  const kc = { proxy: '', pt: '' }

  before(async () => {
    ns = await createNetns({ log: verboseLog })
    cp = await startControlPlane({ netns: ns.name, kwok: true, log: verboseLog })
    console.log(`# member kube-apiserver ${cp.member.version} in netns ${ns.name} at ${cp.member.url}; Tower server on ${ns.hostAddress}`)
    const dir = makeTempDir('tunnel-netns')
    const logDir = join(dir, 'logs')
    mkdirSync(logDir)
    await applyRepoManifest(cp.member, 'deploy/agent/rbac.yaml')
    await applyRepoManifest(cp.member, 'deploy/agent/rbac-admin.yaml')
    const tokenFile = join(dir, 'sa-token')
    await serviceAccountToken(cp.member, 'tower-system', 'tower-agent', tokenFile)
    // Agent endpoint and cluster ports on the host side of the veth: the one address the namespace reaches.
    tower = await startTowerServer(dir, { host: ns.hostAddress, logDir })
    const upstream = { url: cp.member.url, caPem: cp.member.caPem, tokenFile }
    for (const [name, mode] of [['ns-proxy', 'proxy'], ['ns-pt', 'passthrough']] as const) {
      const c = await tower.addCluster(name, { mode })
      agents.push(await startTowerAgent(tower, c, upstream, { netns: ns.name, serverHost: ns.hostAddress, logDir }))
    }
    kc.proxy = await tower.kubeconfig('ns-proxy')
    kc.pt = await tower.kubeconfig('ns-pt', { from: cp.member.adminKubeconfigPath })
    pod = await createFakeNodeAndPod(cp.member, { name: 'hidden', namespace: 'netns' })
  })

  after(async () => {
    for (const a of agents) await a.stop()
    await tower?.stop()
    await cp?.stop()
    await ns?.delete()
  })

  test('the host side cannot reach the member apiserver or kwok directly', async () => {
    assert.equal(await canConnect(ns.nsAddress, cp.member.port, 2000), false, 'member apiserver reachable at the namespace address')
    assert.equal(await canConnect(ns.nsAddress, cp.kwok!.port, 2000), false, 'kwok reachable at the namespace address')
    // The member's own kubeconfig, used from the host (no `ip netns exec`): https://127.0.0.1:PORT is the
    // host's loopback, where no member apiserver is.
    const direct = await kubectl(cp.member.adminKubeconfigPath, ['get', '--raw', '/version'], { timeoutMs: 20_000 })
    assert.notEqual(direct.code, 0, 'the member answered from the host side')
    const viaNsAddress = await kubectl(cp.member.adminKubeconfigPath, ['--server', `https://${ns.nsAddress}:${cp.member.port}`,
      '--tls-server-name', '127.0.0.1', 'get', '--raw', '/version'], { timeoutMs: 20_000 })
    assert.notEqual(viaNsAddress.code, 0, 'the member answered at the namespace address')
    // Inside, there is no default route: the namespace reaches the veth peer and nothing else.
    assert.doesNotMatch(await ns.run('ip', ['route']), /default/)
    // ...and yet the member answers from inside (the harness talks to it with ip netns exec).
    assert.match(await cp.member.kubectl(['get', '--raw', '/version']), /"gitVersion"/)
  })

  for (const mode of ['proxy', 'passthrough'] as const) {
    test(`through the tunnel (${mode}): get ns, apply, delete`, async () => {
      const kcFor = mode === 'proxy' ? kc.proxy : kc.pt
      const names = (await kubectlOk(kcFor, ['get', 'ns', '-o', 'name'])).split('\n')
      assert.ok(names.includes('namespace/netns'), names.join(','))
      const cm = JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `from-host-${mode}`, namespace: 'netns' }, data: { mode } })
      assert.match(await kubectlOk(kcFor, ['apply', '-f', '-'], { input: cm }), new RegExp(`configmap/from-host-${mode} created`))
      assert.equal(await cp.member.kubectl(['get', 'cm', `from-host-${mode}`, '-n', 'netns', '-o', 'jsonpath={.data.mode}']), mode)
      assert.match(await kubectlOk(kcFor, ['delete', 'cm', `from-host-${mode}`, '-n', 'netns']), /deleted/)
    })

    for (const [protocol, env] of [['WebSocket', {}], ['SPDY', SPDY_ENV]] as const) {
      test(`through the tunnel (${mode}, kubectl over ${protocol}): exec, logs -f, port-forward`, async (t) => {
        const kcFor = mode === 'proxy' ? kc.proxy : kc.pt
        // exec with stdin (hashed inside; kwok never closes an exec'ed command's stdin, so head ends it)
        const payload = randomBytes(128 * 1024)
        const hash = createHash('sha256').update(payload).digest('hex')
        // (kubectl's stdin stays open until it exits, and a wrong result is retried once: see execKeepingStdinOpen.)
        const out = await execInputChecked(kcFor, ['exec', '-i', '-n', pod.namespace, pod.pod, '--', 'sh', '-c', `head -c ${payload.length} | sha256sum`],
          payload, { env: { ...env } }, `${hash}  -\n`)
        assert.equal(out, `${hash}  -\n`)

        const line = `netns-${mode}-${protocol}-${Date.now()}`
        appendPodLog(cp.kwok!.logsFile, line)
        const follow = startKubectl(`logs-f-${mode}-${protocol}`, kcFor, ['logs', '-f', '-n', pod.namespace, pod.pod], { env })
        t.after(() => follow.stop())
        const logs = captureStdout(follow)
        await logs.waitFor(new RegExp(line), 30_000)
        const later = `${line}-later`
        appendPodLog(cp.kwok!.logsFile, later)
        await logs.waitFor(new RegExp(later), 30_000)

        const pf = await portForward(kcFor, pod.pod, 9090, { namespace: pod.namespace, env })
        t.after(() => pf.proc.stop())
        const bytes = randomBytes(200 * 1024)
        assert.ok((await echoOverTcp(pf.localPort, bytes)).equals(bytes), 'port-forward echo differs')
      })
    }
  }

  test('agents stayed connected from inside the namespace', () => {
    for (const a of agents) {
      assert.equal(a.process.exitStatus, null, `${a.name} exited`)
      assert.equal(a.lines.filter((l) => l.msg === 'connected to server').length, 1, `${a.name} reconnected`)
    }
  })
})
