// A drain ends exec sessions with a clear status (issue 11): real kubectl v1.32 execs through a real
// TowerServer and agent (in process) to a real member kube-apiserver and kwok. Sessions that finish
// before the drain deadline end with their own output and exit 0; sessions still running at the
// deadline are ended at a frame boundary: over WebSocket (v5.channel.k8s.io) with a metav1.Status on the
// error channel, which kubectl prints, then Close 1000; over SPDY with a DATA frame carrying the Status on
// the error stream, then a FIN. A watch open at the same time ends cleanly early in the drain: it does not
// wait for the execs.
//
// Needs the binaries: bash test/e2e/tools/build.sh. Run: node --test test/e2e/drain-exec.test.ts
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect } from 'node:net'
import { join } from 'node:path'
import { writeFileSync } from 'node:fs'
import { after, before, describe, test } from 'node:test'
import type { Agent } from '@tower/agent'
import { issueKubeconfig } from '@tower/server'
import { createFakeNodeAndPod, kubectl, makeTempDir, portForward, SPDY_ENV, startControlPlane, startKubectl, waitFor, type ControlPlane, type FakePod } from './harness/index.ts'
import { applyRepoManifest, serviceAccountToken, verboseLog } from './tunnel-helpers.ts'
import { addCluster, startAgent, startTower, type TestTower } from '../helpers/tower.ts'
import type { Upstream } from '../fixtures/upstream.ts'

const DRAIN_TIMEOUT_MS = 3000
const MESSAGE = 'tower: this server replica is draining (SIGTERM); the session was closed at the drain deadline, reconnect to continue'

describe('drain: exec sessions through the tunnel end with a clear status', { timeout: 300_000 }, () => {
  let cp: ControlPlane
  let tower: TestTower
  let agent: Agent
  let pod: FakePod
  let kc: string

  before(async () => {
    cp = await startControlPlane({ kwok: true, log: verboseLog })
    const dir = makeTempDir('drain-exec')
    await applyRepoManifest(cp.member, 'deploy/agent/rbac.yaml')
    await applyRepoManifest(cp.member, 'deploy/agent/rbac-admin.yaml')
    const saToken = await serviceAccountToken(cp.member, 'tower-system', 'tower-agent', join(dir, 'sa-token'))
    pod = await createFakeNodeAndPod(cp.member, { name: 'shell', namespace: 'drain' })
    tower = await startTower({ server: { drainTimeoutMs: DRAIN_TIMEOUT_MS } })
    const c = await addCluster(tower, 'member-drain')
    const upstream = { url: cp.member.url, caPem: cp.member.caPem } as unknown as Upstream
    agent = await startAgent(tower, 'member-drain', c.token, upstream, { upstream: { kind: 'url', url: cp.member.url, caPem: cp.member.caPem, token: saToken } })
    kc = join(dir, 'kubeconfig')
    writeFileSync(kc, await issueKubeconfig(tower.registry, { cluster: 'member-drain' }), { mode: 0o600 })
    await waitFor('kubectl through Tower', async () => (await kubectl(kc, ['get', 'ns', '-o', 'name'])).code === 0 ? true : undefined, { timeoutMs: 60_000, intervalMs: 250 })
  })

  after(async () => {
    await agent?.stop()
    await tower?.stop()
    await cp?.stop()
  })

  test('at the deadline: WebSocket and SPDY execs exit non-zero with the draining Status; execs that finish earlier exit 0 with their output', async () => {
    const exec = ['exec', '-n', pod.namespace, pod.pod, '--']
    // Every session prints a line first, so the test knows it is relayed before it drains.
    const start = (name: string, script: string, env: Record<string, string>) => {
      const p = startKubectl(name, kc, [...exec, 'sh', '-c', script], { env })
      let out = ''
      const ready = new Promise<void>((resolve) => {
        p.child.stdout!.on('data', (c: Buffer) => { out += c.toString(); if (out.includes('ready')) resolve() })
      })
      return { p, ready, out: () => out }
    }
    const ws = start('kubectl-exec-ws', 'echo ready; sleep 600', {})
    const spdy = start('kubectl-exec-spdy', 'echo ready; sleep 600', { ...SPDY_ENV })
    // Short sessions: they end by themselves during the drain, before its deadline.
    const shortWs = start('kubectl-exec-ws-short', 'echo ready; sleep 1; echo short-done', {})
    const shortSpdy = start('kubectl-exec-spdy-short', 'echo ready; sleep 1; echo short-done', { ...SPDY_ENV })
    // A watch: it must end cleanly early in the drain, not wait for the execs' deadline.
    const watch = startKubectl('kubectl-watch', kc, ['get', 'ns', '-w', '-o', 'name'])
    const watching = new Promise<void>((resolve) => { watch.child.stdout!.on('data', () => resolve()) })
    // A port-forward (kubectl v1.32: over WebSocket) with a connection open through it; kwok echoes.
    const pf = await portForward(kc, pod.pod, 7000, { namespace: pod.namespace })
    const pfConn = connect(pf.localPort, '127.0.0.1')
    pfConn.on('error', () => {})
    pfConn.write('ping')
    await once(pfConn, 'data')
    const pfClosed = once(pfConn, 'close')
    await Promise.all([ws.ready, spdy.ready, shortWs.ready, shortSpdy.ready, watching])
    const started = Date.now()
    const drained = tower.server.drain()
    const watchExit = watch.exited.then((st) => ({ st, ms: Date.now() - started }))
    const [wsExit, spdyExit] = await Promise.all([ws.p.exited.then((st) => ({ st, ms: Date.now() - started })), spdy.p.exited.then((st) => ({ st, ms: Date.now() - started }))])
    const result = await drained
    const [sw, ss] = await Promise.all([shortWs.p.exited, shortSpdy.p.exited])
    const w = await watchExit
    await pfClosed
    const pfMs = Date.now() - started
    console.log(`# drain result ${JSON.stringify(result)}`)
    console.log(`# watch: exit ${w.st.code} after ${w.ms} ms`)
    console.log(`# WebSocket exec: exit ${wsExit.st.code} after ${wsExit.ms} ms; stderr: ${ws.p.tail(5).trim()}`)
    console.log(`# SPDY exec: exit ${spdyExit.st.code} after ${spdyExit.ms} ms; stderr: ${spdy.p.tail(5).trim()}`)
    console.log(`# port-forward connection closed ${pfMs} ms into the drain; kubectl port-forward printed: ${pf.proc.tail(5).trim()}`)
    await pf.proc.stop()
    assert.ok(pfMs < DRAIN_TIMEOUT_MS + 2500, `the port-forward connection closed ${pfMs} ms into the drain`)

    assert.equal(w.st.code, 0, watch.tail())
    assert.ok(w.ms < DRAIN_TIMEOUT_MS - 1000, `the watch waited ${w.ms} ms for the execs`)
    assert.equal(result.watches, 1)

    assert.equal(sw.code, 0, shortWs.p.tail())
    assert.equal(shortWs.out(), 'ready\nshort-done\n')
    assert.equal(ss.code, 0, shortSpdy.p.tail())
    assert.equal(shortSpdy.out(), 'ready\nshort-done\n')

    assert.notEqual(wsExit.st.code, 0)
    assert.ok(ws.p.tail(20).includes(MESSAGE), `WebSocket kubectl printed:\n${ws.p.tail(20)}`)
    assert.ok(wsExit.ms < DRAIN_TIMEOUT_MS + 2000, `WebSocket exec ended ${wsExit.ms} ms after the drain started`)
    assert.ok(wsExit.ms >= DRAIN_TIMEOUT_MS - 100, `WebSocket exec ended before the deadline (${wsExit.ms} ms)`)

    assert.notEqual(spdyExit.st.code, 0)
    assert.ok(spdy.p.tail(20).includes(MESSAGE), `SPDY kubectl printed:\n${spdy.p.tail(20)}`)
    assert.ok(spdyExit.ms < DRAIN_TIMEOUT_MS + 2000, `SPDY exec ended ${spdyExit.ms} ms after the drain started`)

    assert.equal(result.upgrades, 3, 'the two long execs and the port-forward ended at a frame boundary')
    assert.equal(result.upgradesWithStatus, 2, 'both with the Status')
    assert.equal(result.upgradesReset, 0)
    assert.ok(result.ms < DRAIN_TIMEOUT_MS + 2500, `drain took ${result.ms} ms`)
  })
})
