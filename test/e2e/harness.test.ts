// Self-test of the e2e harness, without any tunnel: the control plane starts, both apiservers are the
// pinned real kube-apiserver and are separate clusters, RBAC and client certs work, kwok's fake kubelet
// serves exec / logs / attach / port-forward to the unmodified kubectl over WebSocket and over SPDY,
// the network namespace really cuts the member off, and stop() leaves nothing behind.
//
// Needs the binaries: bash test/e2e/tools/build.sh, then node --test test/e2e/harness.test.ts
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { connect, createServer, type AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import {
  appendPodLog,
  binaries,
  canConnect,
  captureStdout,
  createFakeNodeAndPod,
  createNetns,
  descendants,
  kubectl,
  listHarnessNetns,
  netnsSupport,
  portForward,
  processesMentioning,
  SPDY_ENV,
  startControlPlane,
  startKubectl,
  type ControlPlane,
  type FakePod
} from './harness/index.ts'

const log = process.env.TOWER_E2E_VERBOSE ? (line: string) => console.log(line) : undefined

/** Send `payload`, half-close, and read everything until the peer closes. */
async function echoOverTcp (port: number, payload: string): Promise<string> {
  const sock = connect(port, '127.0.0.1')
  await once(sock, 'connect')
  sock.end(payload)
  const chunks: Buffer[] = []
  for await (const c of sock) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

/** Whether any of `pids` is still alive. */
function alive (pids: number[]): number[] {
  return pids.filter((pid) => {
    try { process.kill(pid, 0); return true } catch { return false }
  })
}

describe('e2e harness: control plane on the host', { timeout: 300_000 }, () => {
  let cp: ControlPlane
  let pod: FakePod

  before(async () => {
    cp = await startControlPlane({ kwok: true, log })
    pod = await createFakeNodeAndPod(cp.member, { name: 'web', namespace: 'harness' })
  })
  after(async () => { await cp?.stop() })

  test('both apiservers are the pinned kube-apiserver', async (t) => {
    const expected = binaries().versions.kubeApiserver
    for (const server of [cp.host, cp.member]) {
      const out = await server.kubectl(['version', '-o', 'json'])
      const gitVersion = (JSON.parse(out) as { serverVersion: { gitVersion: string } }).serverVersion.gitVersion
      t.diagnostic(`${server.name} kube-apiserver serverVersion.gitVersion = ${gitVersion}`)
      console.log(`# ${server.name} kube-apiserver ${gitVersion} at ${server.url}`)
      assert.equal(gitVersion, expected)
      assert.equal(server.version, expected)
    }
    assert.equal(expected, 'v1.36.3')
  })

  test('kubectl get ns works on both, and they are separate clusters', async () => {
    for (const server of [cp.host, cp.member]) {
      const names = (await server.kubectl(['get', 'ns', '-o', 'name'])).split('\n')
      assert.ok(names.includes('namespace/default'), `${server.name}: ${names.join(',')}`)
      assert.ok(names.includes('namespace/kube-system'))
    }
    // createFakeNodeAndPod made namespace "harness" on the member only.
    assert.match(await cp.member.kubectl(['get', 'ns', 'harness', '-o', 'name']), /namespace\/harness/)
    const onHost = await cp.host.kubectlResult(['get', 'ns', 'harness'])
    assert.notEqual(onHost.code, 0)
    assert.match(onHost.stderr, /NotFound|not found/)
  })

  test('RBAC: a user without bindings is forbidden, admin CA does not vouch across clusters', async () => {
    const alice = cp.member.kubeconfig('alice', ['dev'])
    const r = await kubectl(alice, ['get', 'pods', '-n', 'harness'])
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /forbidden/i)
    assert.match(r.stderr, /User "alice"/)
    // The host's admin cert, presented to the member: a different CA, so unauthorized.
    const cross = await kubectl(cp.host.adminKubeconfigPath, ['--server', cp.member.url,
      '--insecure-skip-tls-verify=true', '--certificate-authority=', 'get', 'ns'])
    assert.notEqual(cross.code, 0)
    assert.match(cross.stderr, /Unauthorized|must be logged in/i)
  })

  test('the fake pod is Running on the kwok node', async () => {
    const phase = await cp.member.kubectl(['get', 'pod', pod.pod, '-n', pod.namespace, '-o', 'jsonpath={.status.phase} {.spec.nodeName}'])
    assert.equal(phase, `Running ${pod.node}`)
  })

  for (const [protocol, env] of [['WebSocket', {}], ['SPDY', SPDY_ENV]] as const) {
    describe(`kwok streaming directly, kubectl over ${protocol}`, () => {
      test('exec with stdin and stdout', async () => {
        // kwok v0.8.0 never closes the exec'ed command's stdin, so use a command that stops by itself.
        const payload = `hello over ${protocol}\n`
        const out = await cp.member.kubectl(['exec', '-i', '-n', pod.namespace, pod.pod, '--', 'head', '-c', String(payload.length)],
          { input: payload, env })
        assert.equal(out, payload)
      })

      test('exec separates stdout and stderr', async () => {
        const r = await cp.member.kubectlResult(['exec', '-n', pod.namespace, pod.pod, '--', 'sh', '-c', 'echo to-out; echo to-err >&2'], { env })
        assert.equal(r.code, 0, r.stderr)
        assert.equal(r.stdout, 'to-out\n')
        assert.match(r.stderr, /to-err/)
      })

      test('logs and logs -f', async () => {
        const first = `first-${protocol}-${Date.now()}`
        appendPodLog(cp.kwok!.logsFile, first)
        assert.match(await cp.member.kubectl(['logs', '-n', pod.namespace, pod.pod], { env }), new RegExp(first))
        const follow = startKubectl('logs-f', cp.member.adminKubeconfigPath, ['logs', '-f', '-n', pod.namespace, pod.pod], { env })
        try {
          const out = captureStdout(follow)
          await out.waitFor(new RegExp(first), 30_000) // connected: the existing content arrived
          const later = `later-${protocol}-${Date.now()}`
          appendPodLog(cp.kwok!.logsFile, later)
          await out.waitFor(new RegExp(later), 30_000)
        } finally {
          await follow.stop()
        }
      })

      test('attach streams what the container prints', async () => {
        const attach = startKubectl('attach', cp.member.adminKubeconfigPath, ['attach', '-n', pod.namespace, pod.pod], { env })
        try {
          const out = captureStdout(attach)
          // attach shows only lines printed after it is connected, and nothing tells when that is:
          // keep printing numbered lines until one arrives (bounded by waitFor's timeout).
          const tag = `attach-${protocol}-${Date.now()}`
          let n = 0
          const printer = setInterval(() => appendPodLog(cp.kwok!.logsFile, `${tag}-${n++}`), 200)
          try {
            await out.waitFor(new RegExp(`${tag}-\\d+`), 30_000)
          } finally {
            clearInterval(printer)
          }
        } finally {
          await attach.stop()
        }
      })

      test('port-forward to the echo port', async () => {
        const pf = await portForward(cp.member.adminKubeconfigPath, pod.pod, 8080, { namespace: pod.namespace, env })
        try {
          const payload = `ping over ${protocol} port-forward`
          assert.equal(await echoOverTcp(pf.localPort, payload), payload)
          // A second connection over the same kubectl (a second stream pair on the same upgrade).
          assert.equal(await echoOverTcp(pf.localPort, 'again'), 'again')
        } finally {
          await pf.proc.stop()
        }
      })
    })
  }

  test('stop() ends every process and removes the temp dir', async () => {
    // An exec'ed command still running under kwok. A graceful kwok ends it itself; killed hard (as at
    // exit, or after the grace period) it cannot, and the harness's group/tree kill must.
    const sleeper = startKubectl('exec-sleep', cp.member.adminKubeconfigPath,
      ['exec', '-n', pod.namespace, pod.pod, '--', 'sh', '-c', 'echo started; exec sleep 300'])
    await captureStdout(sleeper).waitFor(/started/, 30_000)
    const kwokChildren = descendants(cp.kwok!.process.pid)
    assert.ok(kwokChildren.length > 0, 'the exec\'ed sleep runs under kwok')
    const pids = [cp.etcd.process.pid, cp.host.process.pid, cp.member.process.pid, cp.kwok!.process.pid, ...kwokChildren]
    assert.ok((await processesMentioning(cp.dir)).length >= 4)
    await cp.kwok!.process.stop(0) // no grace: SIGKILL right behind SIGTERM
    await cp.stop()
    await sleeper.stop()
    assert.deepEqual(alive(pids), [])
    assert.deepEqual(await processesMentioning(cp.dir), [])
    if (!process.env.TOWER_E2E_KEEP) assert.equal(existsSync(cp.dir), false)
  })
})

describe('e2e harness: member inside a network namespace', { timeout: 300_000 }, () => {
  const support = netnsSupport()

  test('the host cannot reach the member; the namespace reaches only the host side', { skip: support.supported ? false : support.reason }, async (t) => {
    const ns = await createNetns({ log })
    t.after(() => ns.delete())
    const cp = await startControlPlane({ netns: ns.name, kwok: true, log })
    t.after(() => cp.stop())

    // The member works from inside its namespace...
    assert.match(await cp.member.kubectl(['get', 'ns', '-o', 'name']), /namespace\/default/)
    const pod = await createFakeNodeAndPod(cp.member, { name: 'inside' })
    assert.equal(await cp.member.kubectl(['exec', '-i', pod.pod, '--', 'head', '-c', '2'], { input: 'ok' }), 'ok')
    // ...and not from the host: the namespace's address has nothing listening on that port (the member
    // is bound to the namespace's own loopback), and 127.0.0.1 on the host is another loopback.
    assert.equal(await canConnect(ns.nsAddress, cp.member.port, 2000), false)

    // From inside, the host side of the veth is reachable (where the Tower server will listen)...
    const srv = createServer((s) => s.end('hello from the host side'))
    srv.listen(0, ns.hostAddress)
    await once(srv, 'listening')
    t.after(() => srv.close())
    const { port } = srv.address() as AddressInfo
    const script = (host: string): string =>
      `const s=require('net').connect(${port},'${host}');s.setTimeout(2000,()=>{console.log('timeout');process.exit(0)});` +
      "s.on('data',d=>process.stdout.write(d));s.on('error',e=>{console.log(e.code);process.exit(0)})"
    assert.equal(await ns.run(process.execPath, ['-e', script(ns.hostAddress)]), 'hello from the host side')
    // ...and the host's loopback is not: it is the namespace's own loopback there.
    assert.match(await ns.run(process.execPath, ['-e', script('127.0.0.1')]), /ECONNREFUSED/)
    // Only the link route: no default route out of the namespace.
    assert.doesNotMatch(await ns.run('ip', ['route']), /default/)

    await cp.stop()
    await ns.delete()
    assert.deepEqual(listHarnessNetns().filter((n) => n === ns.name), [])
    assert.deepEqual(await processesMentioning(cp.dir), [])
  })
})
