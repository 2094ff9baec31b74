// Issue 11, HA: three `tower server --registry kubernetes` replicas on the real host kube-apiserver of
// the harness, as ServiceAccount tower-server with deploy/controller's RBAC. Each replica binds the
// cluster ports on its own address (one of three /32s the test adds to its own veth's host side, since
// the EndpointSlice API refuses loopback addresses; also its --advertise-host, so its EndpointSlices
// point there) and the agent endpoint on the netns host address; agents in the network namespace dial a small
// TCP round-robin in front of the three agent endpoints (the Service the agents use in Kubernetes).
// The harness has no kube-proxy: callers resolve mc-<name>'s endpoints from the EndpointSlices, the way
// a client-side load balancer does (harness/slice-balancer.ts: an informer on the slices, round robin
// over the ready endpoints).
//
// Proven: two agents land on two replicas and the slices list both, and AgentAvailable counts both
// (the leader holds at most one); SIGKILL of the replica holding a cluster's only agent: the agent
// reconnects to another replica, the slices follow, kubectl works again (the time is printed), and the
// dead replica's slice and Lease are removed; SIGTERM (drain) of the replica holding the agent with a
// watch, a 100 MB `kubectl port-forward` download from the kwok pod's byte server (ha-byte-server.ts,
// in the netns), a 3 s exec and a `sleep 600` exec in flight: the download finishes with the right
// length and sha256, the short exec exits 0 with its output, the long one is cut at the deadline with
// kubectl exiting non-zero and a message containing "draining", the watch ends cleanly and resumes on
// the replica that has the agent, the process exits within --drain-timeout, its slice and Lease go.
// The agent is on another replica within 5 s of the SIGTERM, while the drained session still carries
// the download and the execs (make before break on GoAway, packages/agent/src/agent.ts).
// Throughout, a client-node informer on the member's ConfigMaps, through the slice balancer, runs
// against a writer in the netns (ha-churn.ts) changing them every 100 ms: at the end its cache equals
// the member's list (names and resourceVersions) and every created name was seen ADDED; the time it
// was without a working endpoint after each fault is printed.
//
// The drain always lasts the whole --drain-timeout here (the long exec), so the file takes about
// DRAIN_TIMEOUT_MS longer than the rest: 78-127 s in all, measured under load averages of 15-26.
//
// Needs root (network namespaces) and the binaries (bash test/e2e/tools/build.sh).
// Run: node --experimental-strip-types --test test/e2e/ha.test.ts
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { mkdirSync, writeFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import net from 'node:net'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { after, before, describe, test } from 'node:test'
import { CoreV1Api, KubeConfig, makeInformer, type Informer, type ObjectCache, type V1ConfigMap } from '@kubernetes/client-node'
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml'
import {
  createFakeNodeAndPod, createNetns, kubectlOk, makeTempDir, netnsSupport, portForward, probeFreePort, startControlPlane, startProcess, startSliceBalancer,
  waitFor, writeKubeconfig, type ControlPlane, type FakePod, type ManagedProcess, type Netns, type SliceBalancer
} from './harness/index.ts'
import { DeterministicStream } from '../soak/rng.ts'
import { getOnce, kubeconfigTls, REPO_ROOT, serviceAccountToken, startTower, verboseLog, type TowerProcess } from './tunnel-helpers.ts'

const NS = 'tower-system'
const CLUSTER = 'ha'
// Set in before(): 10.214.<n>.2-4, outside the harness's 10.213.0.0/16 link networks.
const REPLICAS: string[] = []
// 30 s, the deploy default (TOWER_DRAIN_TIMEOUT in deploy/controller): the drain waits it out in full
// here (the long exec), and the 100 MB download must finish inside it on this shared 2-core machine.
// Measured from the SIGTERM under load averages of 11-28: 3.6-18.9 s for the 100 MB (4-20 MB/s), and
// with 15 s only 95 MB had arrived at the deadline once; 30 s is about 1.6x the slowest seen.
const DRAIN_TIMEOUT_MS = 30_000
/** Member namespace of the informer test's ConfigMaps, and the writer's period (ms). */
const CHURN_NS = 'churn'
const CHURN_INTERVAL_MS = 100
/** The pod port kwok forwards to the byte server, the seed of its bytes, and the drain's download (bytes). */
const BYTES_POD_PORT = 8000
const BYTES_SEED = 4011
const BIG_BYTES = 100_000_000
const support = netnsSupport()
if (!support.supported) console.log(`# SKIPPED the HA test (issue 11): ${support.reason}`)

type Obj = Record<string, any>

/** A TCP round-robin in front of the agent endpoints: each connection goes to the next backend that accepts it. */
async function roundRobin (host: string, backends: () => Array<{ host: string, port: number }>): Promise<{ port: number, close: () => void }> {
  let next = 0
  const sockets = new Set<net.Socket>()
  const server = net.createServer((client) => {
    sockets.add(client)
    client.on('close', () => sockets.delete(client))
    client.pause()
    const list = backends()
    const attempt = (tries: number): void => {
      if (tries >= list.length) { client.destroy(); return }
      const b = list[next++ % list.length]!
      const up = net.connect(b.port, b.host)
      let connected = false
      up.once('connect', () => {
        connected = true
        sockets.add(up)
        up.on('close', () => sockets.delete(up))
        client.pipe(up).pipe(client)
        client.resume()
        up.on('error', () => client.destroy())
        client.on('error', () => up.destroy())
      })
      up.once('error', () => { if (!connected) attempt(tries + 1) })
    }
    attempt(0)
  })
  server.listen(0, host)
  await once(server, 'listening')
  return { port: (server.address() as net.AddressInfo).port, close: () => { for (const s of sockets) s.destroy(); server.close() } }
}

describe('HA e2e: three replicas routed by EndpointSlices, replica Leases, drain', {
  timeout: 600_000,
  skip: support.supported ? false : support.reason
}, () => {
  const started = Date.now()
  let ns: Netns
  let cp: ControlPlane
  let dir: string
  let logDir: string
  let serverKubeconfig: string
  let portRange = ''
  let rr: { port: number, close: () => void }
  const replicas = new Map<string, { proc: TowerProcess, agentPort: number, identity: string }>()
  const agents: TowerProcess[] = []
  let clusterPort = 0
  let balancer: SliceBalancer
  let byteServer: ManagedProcess
  let bytesPod: FakePod
  // The informer through the balancer, and the writer on the member (see the informer test).
  let churn: ManagedProcess | undefined
  const churnLines: Obj[] = []
  let churnStartedAt = 0
  let informer: (Informer<V1ConfigMap> & ObjectCache<V1ConfigMap>) | undefined
  let informerStopped = false
  const seenAdded = new Set<string>()
  const eventTimes: number[] = []
  const errorTimes: number[] = []
  const errorMessages: string[] = []
  /** When each fault hit the replica the informer was on (ms since the epoch). */
  const faults = new Map<string, number>()
  /** kubectl's stderr for the exec the drain cut (checked by its own test). */
  let longExecMessage: string | undefined
  /** ms from the SIGTERM until the agent was on another replica's ready slice, and until the process exited. */
  let drainMoved: { moved: number, exited: number } | undefined

  const host = (args: string[], input?: string): Promise<string> => cp.host.kubectl(args, input === undefined ? {} : { input })
  const getJson = async (args: string[]): Promise<Obj | undefined> => {
    const r = await cp.host.kubectlResult(['get', ...args, '-o', 'json'])
    if (r.code !== 0) {
      if (/NotFound|not found/.test(r.stderr)) return undefined
      throw new Error(`kubectl get ${args.join(' ')}: ${r.stderr}`)
    }
    return JSON.parse(r.stdout) as Obj
  }
  const slices = async (): Promise<Obj[]> => (await getJson(['endpointslices', '-n', NS, '-l', `kubernetes.io/service-name=mc-${CLUSTER}`]))?.items ?? []
  /** Ready addresses of mc-<name>, as a client-side load balancer reads them from the slices. */
  const readyAddresses = async (): Promise<string[]> => (await slices()).flatMap((s) => (s.endpoints ?? []).filter((e: Obj) => e.conditions?.ready === true).flatMap((e: Obj) => e.addresses)).sort()
  const cluster = (): Promise<Obj | undefined> => getJson(['cluster.cluster.kubesphere.io', CLUSTER])
  const condition = (c: Obj | undefined, type: string): Obj | undefined => (c?.status?.conditions ?? []).find((x: Obj) => x?.type === type)

  const startReplica = async (address: string, i: number): Promise<void> => {
    const identity = `replica-${i}`
    const proc = startTower(`tower-${identity}`, [
      'server', '--registry', 'kubernetes', '--kubeconfig', serverKubeconfig, '--namespace', NS,
      '--listen', `${ns.hostAddress}:0`, '--cluster-host', address, '--advertise-host', address, '--san', ns.hostAddress,
      '--port-range', portRange, '--identity', identity, '--lease-duration', '3s', '--drain-timeout', String(DRAIN_TIMEOUT_MS), '--log-level', 'debug'
    ], { logDir })
    const listening = await proc.waitFor((l) => l.msg === 'agent endpoint listening', 60_000)
    replicas.set(address, { proc, agentPort: Number(listening.port), identity })
  }

  const startAgent = async (id: string): Promise<TowerProcess> => {
    const agentDir = join(dir, id)
    mkdirSync(agentDir, { recursive: true })
    const file = (n: string, content: string): string => { const p = join(agentDir, n); writeFileSync(p, content, { mode: 0o600 }); return p }
    const secret = (await getJson(['secret', `tower-join-${CLUSTER}`, '-n', NS]))!
    const ca = (await getJson(['secret', 'tower-ca', '-n', NS]))!
    const saToken = (await cp.member.kubectl(['create', 'token', 'tower-agent', '-n', 'default', '--duration=1h'])).trim()
    const a = startTower(`tower-agent-${id}`, ['agent',
      '--server', `wss://${ns.hostAddress}:${rr.port}`, '--cluster', CLUSTER, '--agent-id', id,
      '--token-file', file('token', Buffer.from(secret.data.token, 'base64').toString()), '--ca-file', file('ca.crt', Buffer.from(ca.data['tls.crt'], 'base64').toString()),
      '--upstream', cp.member.url, '--upstream-ca-file', file('member-ca.crt', cp.member.caPem),
      '--upstream-token-file', file('sa-token', saToken + '\n'),
      '--reconnect-min-ms', '200', '--reconnect-max-ms', '1000'], { netns: ns.name, logDir })
    await a.waitFor((l) => l.msg === 'connected to server', 30_000)
    agents.push(a)
    return a
  }

  /**
   * The stored kubeconfig pointed at one replica's address (what kube-proxy would pick from the slices),
   * or at the slice balancer with `port`.
   */
  const kubeconfigAt = async (address: string, port = clusterPort): Promise<string> => {
    const secret = (await getJson(['secret', `tower-kubeconfig-${CLUSTER}`, '-n', NS]))!
    const kc = parseYaml(Buffer.from(secret.data.kubeconfig, 'base64').toString()) as Obj
    kc.clusters[0].cluster.server = `https://${address}:${port}`
    kc.clusters[0].cluster['tls-server-name'] = `mc-${CLUSTER}.${NS}.svc`
    const path = join(dir, `at-${address}-${port}.kubeconfig`)
    writeFileSync(path, stringifyYaml(kc), { mode: 0o600 })
    return path
  }

  /** `kubectl <args>` started now; `started` resolves once stdout has shown `marker`. */
  const startKubectlRun = (kc: string, args: string[], marker: string): { started: Promise<void>, done: Promise<{ code: number | null, stdout: string, stderr: string, ms: number }> } => {
    const t = Date.now()
    const child = spawn('kubectl', ['--kubeconfig', kc, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let markerSeen!: () => void
    const started = new Promise<void>((resolve) => { markerSeen = resolve })
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); if (stdout.includes(marker)) markerSeen() })
    child.stderr.on('data', (c: Buffer) => { stderr = (stderr + c.toString()).slice(-4000) })
    const done = (once(child, 'exit') as Promise<[number | null]>).then(([code]) => ({ code, stdout, stderr, ms: Date.now() - t }))
    return { started: Promise.race([started, done.then((r) => { throw new Error(`kubectl ${args.join(' ')} exited (${r.code}) before printing ${marker}: ${r.stderr}`) })]), done }
  }

  /** GET /bytes/<size> from the byte server through a local port-forward; `flowing` resolves after the first MiB. */
  const download = (port: number, size: number): { flowing: Promise<void>, done: Promise<{ status: number, bytes: number, sha: string, ms: number, error?: string }> } => {
    const t = Date.now()
    let mib!: () => void
    const flowing = new Promise<void>((resolve) => { mib = resolve })
    const done = new Promise<{ status: number, bytes: number, sha: string, ms: number, error?: string }>((resolve) => {
      const req = httpRequest({ host: '127.0.0.1', port, path: `/bytes/${size}`, agent: false }, (res) => {
        const h = createHash('sha256'); let bytes = 0
        res.on('data', (c: Buffer) => { h.update(c); bytes += c.length; if (bytes >= 1 << 20) mib() })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, sha: h.digest('hex'), ms: Date.now() - t }))
        res.on('error', (err) => resolve({ status: res.statusCode ?? 0, bytes, sha: '', ms: Date.now() - t, error: err.message }))
      })
      req.on('error', (err) => resolve({ status: 0, bytes: 0, sha: '', ms: Date.now() - t, error: err.message }))
      req.end()
    })
    return { flowing, done }
  }

  const kill = async (address: string): Promise<void> => {
    const r = replicas.get(address)!
    process.kill(r.proc.process.pid, 'SIGKILL')
    await r.proc.process.exited
    replicas.delete(address)
  }

  before(async () => {
    ns = await createNetns({ log: verboseLog })
    dir = makeTempDir('ha')
    // TOWER_E2E_LOG_DIR keeps the processes' logs after the run (the temp dir goes).
    logDir = process.env.TOWER_E2E_LOG_DIR ?? join(dir, 'logs')
    mkdirSync(logDir, { recursive: true })
    // The pod's application runs in the netns, where kwok (the member's kubelet) forwards the pod port to.
    byteServer = startProcess('ha-byte-server', process.execPath, ['--experimental-strip-types', '--no-warnings', join(REPO_ROOT, 'test/e2e/ha-byte-server.ts'), String(BYTES_SEED)],
      { netns: ns.name, logDir })
    const bytesPort = Number((JSON.parse(await byteServer.waitForLine(/^\{"port":\d+\}$/, 30_000)) as Obj).port)
    cp = await startControlPlane({ netns: ns.name, log: verboseLog, kwok: { portForwards: [{ port: BYTES_POD_PORT, address: '127.0.0.1', targetPort: bytesPort }] } })
    bytesPod = await createFakeNodeAndPod(cp.member, { name: 'bytes' })
    const used = execFileSync('ip', ['-o', '-4', 'addr', 'show']).toString()
    const octet = [...Array(200).keys()].map((i) => 20 + ((i + process.pid) % 200)).find((n) => !used.includes(`10.214.${n}.`))!
    for (const last of [2, 3, 4]) {
      const a = `10.214.${octet}.${last}`
      execFileSync('ip', ['addr', 'add', `${a}/32`, 'dev', ns.hostInterface])
      REPLICAS.push(a)
    }
    const first = await probeFreePort(REPLICAS[0])
    portRange = `${first}-${first}`
    await host(['apply', '-f', join(REPO_ROOT, 'deploy/controller/namespace.yaml')])
    for (const f of ['crd.yaml', 'rbac.yaml']) await host(['apply', '-f', join(REPO_ROOT, 'deploy/controller', f)])
    await host(['wait', '--for=condition=Established', 'crd/clusters.cluster.kubesphere.io', '--timeout=60s'])
    await waitFor('Clusters served', async () => (await cp.host.kubectlResult(['get', 'clusters.cluster.kubesphere.io'])).code === 0 ? true : undefined, { timeoutMs: 30_000, intervalMs: 250 })
    const token = await serviceAccountToken(cp.host, NS, 'tower-server', join(dir, 'server-sa-token'))
    serverKubeconfig = writeKubeconfig(join(dir, 'tower-server.kubeconfig'), { server: cp.host.url, caPem: cp.host.caPem, name: 'tower-server', token, namespace: NS })
    // The agents act as a member ServiceAccount with cluster-admin (no impersonation in this test).
    await cp.member.kubectl(['create', 'serviceaccount', 'tower-agent', '-n', 'default'])
    await cp.member.kubectl(['create', 'clusterrolebinding', 'tower-agent-admin', '--clusterrole=cluster-admin', '--serviceaccount=default:tower-agent'])
    rr = await roundRobin(ns.hostAddress, () => [...replicas.values()].map((r) => ({ host: ns.hostAddress, port: r.agentPort })))
    balancer = await startSliceBalancer({ kubeconfig: cp.host.adminKubeconfigPath, namespace: NS, service: `mc-${CLUSTER}`, log: verboseLog })
    console.log(`# host kube-apiserver ${cp.host.version}; member ${cp.member.version} in netns ${ns.name}; replicas on ${REPLICAS.join(', ')}; cluster port ${first}`)
  })

  after(async () => {
    informerStopped = true
    await informer?.stop()
    await churn?.stop()
    await balancer?.close()
    for (const a of agents) await a.stop()
    for (const r of replicas.values()) await r.proc.stop()
    rr?.close()
    await cp?.stop()
    await byteServer?.stop()
    await ns?.delete()
    console.log(`# HA e2e time: ${((Date.now() - started) / 1000).toFixed(1)} s`)
  })

  test('three replicas start as ServiceAccount tower-server (preflight passes with the EndpointSlice and Lease RBAC)', async () => {
    for (const [i, a] of REPLICAS.entries()) await startReplica(a, i + 1)
    await host(['apply', '-f', '-'], stringifyYaml({
      apiVersion: 'cluster.kubesphere.io/v1alpha1', kind: 'Cluster', metadata: { name: CLUSTER }, spec: { connection: { type: 'proxy' } }
    }))
    const c = await waitFor('Initialized=True', async () => { const o = await cluster(); return condition(o, 'Initialized')?.status === 'True' ? o : undefined }, { timeoutMs: 60_000, intervalMs: 500 })
    clusterPort = c.spec.connection.kubernetesAPIServerPort
    const svc = (await getJson(['service', `mc-${CLUSTER}`, '-n', NS]))!
    assert.equal(svc.spec.selector, undefined)
    const leases = (await getJson(['leases', '-n', NS, '-l', 'tower.kubesphere.io/replica-lease=true']))!.items.map((l: Obj) => l.spec.holderIdentity).sort()
    assert.deepEqual(leases, ['replica-1', 'replica-2', 'replica-3'])
    assert.deepEqual(await slices(), [], 'no agent yet, so no slice')
  })

  test('two agents land on different replicas; the slices list both; AgentAvailable counts both', async () => {
    await startAgent('agent-a')
    await startAgent('agent-b')
    const addrs = await waitFor('two ready slices', async () => { const a = await readyAddresses(); return a.length === 2 ? a : undefined }, { timeoutMs: 30_000, intervalMs: 250 })
    assert.notEqual(addrs[0], addrs[1])
    for (const a of addrs) assert.ok(REPLICAS.includes(a), a)
    for (const s of await slices()) {
      assert.equal(s.metadata.labels['endpointslice.kubernetes.io/managed-by'], 'tower.kubesphere.io')
      assert.equal(s.ports[0].port, clusterPort)
      assert.equal(s.addressType, 'IPv4')
    }
    const c = await waitFor('AgentAvailable with 2 agents', async () => { const o = await cluster(); return /^2 agent/.test(condition(o, 'AgentAvailable')?.message ?? '') ? o : undefined }, { timeoutMs: 30_000, intervalMs: 250 })
    assert.equal(condition(c, 'AgentAvailable')?.status, 'True')
    assert.deepEqual(JSON.parse(c.metadata.annotations['tower.kubesphere.io/agents']).map((a: Obj) => a.id).sort(), ['agent-a', 'agent-b'])
    for (const a of addrs) assert.match(await kubectlOk(await kubeconfigAt(a), ['get', 'ns', 'default', '-o', 'name']), /namespace\/default/)
    // The slice balancer reads the same two endpoints and spreads new connections over both.
    await waitFor('the balancer sees both endpoints', async () => balancer.endpoints().length === 2 ? true : undefined, { timeoutMs: 30_000, intervalMs: 100 })
    assert.deepEqual(balancer.endpoints().map((e) => e.address), addrs)
    const viaBalancer = await kubeconfigAt('127.0.0.1', balancer.port)
    for (let i = 0; i < 4; i++) assert.match(await kubectlOk(viaBalancer, ['get', 'ns', 'default', '-o', 'name']), /namespace\/default/)
    const counts = balancer.stats().connections
    for (const a of addrs) assert.ok((counts.get(`${a}:${clusterPort}`) ?? 0) >= 1, `connections per endpoint: ${JSON.stringify([...counts])}`)
  })

  test('a client-node informer on the member\'s ConfigMaps through the slice balancer starts while a writer changes them every 100 ms', async () => {
    await cp.member.kubectl(['create', 'namespace', CHURN_NS])
    churnStartedAt = Date.now()
    churn = startProcess('ha-churn', process.execPath, ['--experimental-strip-types', '--no-warnings', join(REPO_ROOT, 'test/e2e/ha-churn.ts'), cp.member.adminKubeconfigPath, CHURN_NS, String(CHURN_INTERVAL_MS)],
      { netns: ns.name, logDir, rawStdout: true })
    createInterface({ input: churn.child.stdout! }).on('line', (l) => { if (churnLines.length < 100_000) churnLines.push(JSON.parse(l) as Obj) })
    const kc = new KubeConfig()
    kc.loadFromFile(await kubeconfigAt('127.0.0.1', balancer.port))
    const api = kc.makeApiClient(CoreV1Api)
    const inf = makeInformer(kc, `/api/v1/namespaces/${CHURN_NS}/configmaps`, () => api.listNamespacedConfigMap({ namespace: CHURN_NS }))
    informer = inf
    const seen = (): void => { if (eventTimes.length < 100_000) eventTimes.push(Date.now()) }
    inf.on('add', (cm) => { seenAdded.add(cm.metadata!.name!); seen() })
    inf.on('update', seen)
    inf.on('delete', seen)
    let restart: NodeJS.Timeout | undefined
    // ListWatch leaves the restart after an error to the application (client-node's README): 300 ms.
    inf.on('error', (err: unknown) => {
      if (errorTimes.length < 100_000) errorTimes.push(Date.now())
      if (errorMessages.length < 100_000) errorMessages.push(err instanceof Error ? err.message.slice(0, 160) : String(err).slice(0, 160))
      if (informerStopped || restart !== undefined) return
      restart = setTimeout(() => { restart = undefined; if (!informerStopped) void inf.start() }, 300)
    })
    await inf.start()
    await waitFor('the informer sees the writer\'s ConfigMaps', async () => seenAdded.size >= 5 ? true : undefined, { timeoutMs: 30_000, intervalMs: 100 })
    assert.ok(churnLines.some((l) => l.op === 'create'))
  })

  test('SIGKILL the replica holding the only agent: the agent moves, the slices follow, kubectl works again, the dead slice and Lease go', async () => {
    await agents.pop()!.stop()
    const [only] = await waitFor('one slice', async () => { const a = await readyAddresses(); return a.length === 1 ? a : undefined }, { timeoutMs: 30_000, intervalMs: 250 })
    const victim = replicas.get(only!)!
    const t0 = Date.now()
    faults.set('SIGKILL', t0)
    await kill(only!)
    const moved = await waitFor('a slice on another replica', async () => (await readyAddresses()).find((a) => a !== only), { timeoutMs: 30_000, intervalMs: 100 })
    const tSlice = Date.now() - t0
    const kc = await kubeconfigAt(moved)
    await waitFor('kubectl through the new replica', async () => {
      const r = await cp.host.kubectlResult(['--kubeconfig', kc, 'get', 'ns', 'default', '-o', 'name'])
      return r.code === 0 ? true : undefined
    }, { timeoutMs: 30_000, intervalMs: 100 })
    const tKubectl = Date.now() - t0
    await waitFor('the dead replica\'s slice removed', async () => (await slices()).every((s) => s.endpoints[0].addresses[0] !== only) ? true : undefined, { timeoutMs: 30_000, intervalMs: 250 })
    const tCleanup = Date.now() - t0
    await waitFor('the dead replica\'s Lease removed', async () => (await getJson(['lease', `tower-replica-${victim.identity}`, '-n', NS])) === undefined ? true : undefined, { timeoutMs: 30_000, intervalMs: 250 })
    console.log(`# failover after SIGKILL: agent on another replica's slice ${tSlice} ms, first kubectl ${tKubectl} ms, dead slice removed ${tCleanup} ms (lease 3 s)`)
    assert.equal(condition(await cluster(), 'AgentAvailable')?.status, 'True')
  })

  test('SIGTERM drains with a watch, a 100 MB port-forward download and two execs in flight: the download and the short exec finish intact, the long exec is cut at the deadline, the watch ends cleanly and resumes, the process exits within --drain-timeout', async () => {
    const [holder] = await readyAddresses()
    const r = replicas.get(holder!)!
    const kc = await kubeconfigAt(holder!)
    const watch = spawn('kubectl', ['--kubeconfig', kc, 'get', '--raw', '/api/v1/namespaces?watch=true'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    watch.stdout.on('data', (c: Buffer) => { out += c.toString() })
    const watchExit = once(watch, 'exit') as Promise<[number | null]>
    await waitFor('watch streaming', async () => out.includes('"ADDED"') ? true : undefined, { timeoutMs: 30_000, intervalMs: 100 })
    // A large response in flight too: the member's OpenAPI document, read up to its first chunk and then
    // held (the tunnel's window fills), so it is mid-transfer when the drain starts; its digest is taken first.
    const reference = await getOnce(kc, '/openapi/v2')
    assert.equal(reference.status, 200)
    const { url, opts } = await kubeconfigTls(kc)
    let release!: () => void
    const held = new Promise<void>((resolve) => { release = resolve })
    let firstChunk!: () => void
    const flowing = new Promise<void>((resolve) => { firstChunk = resolve })
    const inFlight = new Promise<{ status: number, sha: string, bytes: number, error?: string }>((resolve) => {
      const req = httpsRequest(new URL('/openapi/v2', url), { ...opts, agent: false }, (res) => {
        const h = createHash('sha256'); let bytes = 0
        res.on('data', (c: Buffer) => {
          h.update(c); bytes += c.length
          if (bytes === c.length) { res.pause(); firstChunk(); void held.then(() => res.resume()) }
        })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, sha: h.digest('hex'), bytes }))
        res.on('error', (err) => resolve({ status: 0, sha: '', bytes, error: err.message }))
      })
      req.on('error', (err) => resolve({ status: 0, sha: '', bytes: 0, error: err.message }))
      req.end()
    })
    await flowing
    // In flight as well: a 100 MB download through kubectl port-forward (past its first MiB), an exec that
    // ends by itself 3 s later, and an exec that would run for 10 minutes.
    const pf = await portForward(kc, bytesPod.pod, BYTES_POD_PORT, { namespace: bytesPod.namespace })
    const big = download(pf.localPort, BIG_BYTES)
    const expectedBig = new DeterministicStream(BYTES_SEED).sha256(BIG_BYTES)
    const seq = Array.from({ length: 20_000 }, (_, i) => String(i + 1)).join('\n') + '\n'
    const shortExec = startKubectlRun(kc, ['exec', '-n', bytesPod.namespace, bytesPod.pod, '--', 'sh', '-c', 'echo started; sleep 3; seq 1 20000'], 'started')
    const longExec = startKubectlRun(kc, ['exec', '-n', bytesPod.namespace, bytesPod.pod, '--', 'sh', '-c', 'echo started; exec sleep 600'], 'started')
    await Promise.all([big.flowing, shortExec.started, longExec.started])
    const t0 = Date.now()
    faults.set('SIGTERM', t0)
    process.kill(r.proc.process.pid, 'SIGTERM')
    // Timed from here, not where it is awaited (after the long exec's deadline).
    const watchEnded = watchExit.then(([c]) => [c, Date.now() - t0] as const)
    // The agent gets a GoAway at once and should be on another replica's ready slice long before the deadline.
    const movedAt = waitFor('the agent on another replica', async () => (await readyAddresses()).find((a) => a !== holder), { timeoutMs: DRAIN_TIMEOUT_MS + 30_000, intervalMs: 100 })
      .then((a) => ({ address: a, ms: Date.now() - t0 }))
    await new Promise((resolve) => setTimeout(resolve, 300))
    release()
    // All three settle by themselves (or by the deadline); timings are taken from the SIGTERM.
    const since = <T>(p: Promise<T>): Promise<[T, number]> => p.then((v) => [v, Date.now() - t0])
    const [[shortDone, tShort], [bigDone, tBig], [longDone, tLong]] = await Promise.all([since(shortExec.done), since(big.done), since(longExec.done)])
    longExecMessage = longDone.stderr
    await pf.proc.stop()
    const mbps = (BIG_BYTES / 1e6 / (bigDone.ms / 1000)).toFixed(1)
    console.log(`# drain: 100 MB port-forward download: ${bigDone.bytes} bytes after ${tBig} ms (${bigDone.error ?? 'complete'}; ${mbps} MB/s over ${bigDone.ms} ms); short exec exit ${shortDone.code} after ${tShort} ms;`,
      `long exec ended after ${tLong} ms (exit ${longDone.code}: ${longDone.stderr.trim().split('\n').at(-1) ?? ''})`)
    assert.equal(shortDone.code, 0, `the short exec ended by itself: ${shortDone.stderr}`)
    assert.equal(shortDone.stdout, 'started\n' + seq, 'its output intact')
    assert.ok(tShort < DRAIN_TIMEOUT_MS, `the short exec ended before the deadline (${tShort} ms)`)
    assert.equal(bigDone.status, 200, bigDone.error)
    assert.equal(bigDone.bytes, BIG_BYTES, `the 100 MB download finished (${bigDone.error ?? 'no error'})`)
    assert.equal(bigDone.sha, expectedBig, 'the 100 MB download is intact (sha256)')
    assert.ok(tBig < DRAIN_TIMEOUT_MS, `the 100 MB download ended before the deadline (${tBig} ms)`)
    assert.notEqual(longDone.code, 0, 'the long exec was cut')
    assert.ok(tLong >= DRAIN_TIMEOUT_MS - 1000 && tLong < DRAIN_TIMEOUT_MS + 5000, `the long exec was cut at the deadline (${tLong} ms)`)
    const [code, tWatch] = await watchEnded
    assert.equal(code, 0, 'the watch ended cleanly (kubectl exits 0 on a clean end)')
    // Watches end when the drain starts (drain step 4), not at its deadline with the long exec.
    assert.ok(tWatch < DRAIN_TIMEOUT_MS / 2, `the watch ended early in the drain, not at its deadline (${tWatch} ms)`)
    const events = out.trim().split('\n').map((line) => JSON.parse(line) as Obj)
    // The initial events of a watch without resourceVersion come in no RV order: resume from the newest.
    const lastRv = String(Math.max(...events.map((e) => Number(e.object.metadata.resourceVersion))))
    const got = await inFlight
    assert.equal(got.status, 200, got.error)
    assert.equal(got.sha, createHash('sha256').update(reference.body).digest('hex'), `the download in flight (${got.bytes} bytes) finished intact`)
    const { address: moved, ms: tMoved } = await movedAt
    drainMoved = { moved: tMoved, exited: Date.now() - t0 }
    const exit = await r.proc.process.exited
    const tExit = Date.now() - t0
    replicas.delete(holder!)
    assert.ok(tExit < DRAIN_TIMEOUT_MS + 5000, `exited after ${tExit} ms`)
    assert.equal(exit.code, 0)
    // The watch resumes from its resourceVersion on the replica that holds the agent now: it sees what
    // happened after it ended, and nothing it had already seen.
    const movedKc = await kubeconfigAt(moved)
    const resumed = spawn('kubectl', ['--kubeconfig', movedKc, 'get', '--raw', `/api/v1/namespaces?watch=true&resourceVersion=${lastRv}`], { stdio: ['ignore', 'pipe', 'pipe'] })
    let resumedOut = ''
    resumed.stdout.on('data', (c: Buffer) => { resumedOut += c.toString() })
    await cp.member.kubectl(['create', 'namespace', 'after-drain'])
    await waitFor('the resumed watch sees the new namespace', async () => resumedOut.includes('"after-drain"') ? true : undefined, { timeoutMs: 30_000, intervalMs: 100 })
    resumed.kill()
    const resumedEvents = resumedOut.trim().split('\n').map((line) => JSON.parse(line) as Obj)
    assert.deepEqual(resumedEvents.map((e) => [e.type, e.object.metadata.name]), [['ADDED', 'after-drain']])
    assert.match(await kubectlOk(movedKc, ['get', 'ns', 'default', '-o', 'name']), /namespace\/default/)
    assert.equal((await slices()).some((s) => s.endpoints[0].addresses[0] === holder), false, 'the drained replica deleted its slice')
    assert.equal(await getJson(['lease', `tower-replica-${r.identity}`, '-n', NS]), undefined, 'the drained replica deleted its Lease')
    console.log(`# drain: ${got.bytes}-byte download in flight finished intact; watch ended cleanly after ${tWatch} ms and resumed from resourceVersion ${lastRv} on ${moved};`, `agent on another replica after ${tMoved} ms, process exited after ${tExit} ms (--drain-timeout ${DRAIN_TIMEOUT_MS} ms)`)
  })
  // The issue: "When a replica drains, its agents reconnect at once to another replica". Before the agent
  // dialled again on GoAway (efe4bdb) it waited for the drained session to close, and with the long exec
  // holding it open the cluster had no ready endpoint for the whole drain: 30.7-31.1 s measured.
  test('during a drain the agent is on another replica at once (well before the deadline)', () => {
    assert.ok(drainMoved !== undefined, 'the drain test ran')
    assert.ok(drainMoved.moved < 5000, `agent on another replica ${drainMoved.moved} ms after the SIGTERM (process exited after ${drainMoved.exited} ms)`)
  })

  test('the exec the drain cut says why: its message contains "draining"', async () => {
    assert.ok(longExecMessage !== undefined, 'the drain test ran')
    assert.match(longExecMessage, /draining/, `kubectl's message: ${longExecMessage.trim()}`)
  })

  test('the informer through the slices missed no event across the SIGKILL and the drain', async () => {
    assert.ok(informer !== undefined && churn !== undefined, 'the informer test ran')
    const stoppedAt = Date.now()
    process.kill(churn.pid, 'SIGTERM')
    await churn.exited
    assert.equal(churnLines.at(-1)?.op, 'stopped', 'the writer ended after its last tick')
    const created = churnLines.filter((l) => l.op === 'create').map((l) => l.name as string)
    const failed = churnLines.filter((l) => l.op === 'error')
    assert.deepEqual(failed, [], 'every write on the member succeeded')
    const memberRvs = async (): Promise<Map<string, string>> => {
      const list = JSON.parse(await cp.member.kubectl(['get', 'configmaps', '-n', CHURN_NS, '-o', 'json'])) as Obj
      return new Map(list.items.map((cm: Obj) => [cm.metadata.name, cm.metadata.resourceVersion]))
    }
    const cachedRvs = (): Map<string, string> => new Map(informer!.list(CHURN_NS).map((cm) => [cm.metadata!.name!, cm.metadata!.resourceVersion!]))
    const truth = await memberRvs()
    const sorted = (m: Map<string, string>): Array<[string, string]> => [...m].sort(([a], [b]) => a < b ? -1 : 1)
    try {
      await waitFor('the informer\'s cache equals the member\'s list', async () => JSON.stringify(sorted(cachedRvs())) === JSON.stringify(sorted(truth)) ? true : undefined, { timeoutMs: 30_000, intervalMs: 100 })
    } finally {
      const cache = cachedRvs()
      const missing = [...truth].filter(([n, rv]) => cache.get(n) !== rv).slice(0, 5)
      const extra = [...cache].filter(([n]) => !truth.has(n)).slice(0, 5)
      if (missing.length + extra.length > 0) console.log(`# informer differs: stale or missing ${JSON.stringify(missing)}, extra ${JSON.stringify(extra)}`)
    }
    assert.deepEqual(sorted(cachedRvs()), sorted(truth))
    const notSeen = created.filter((n) => !seenAdded.has(n))
    assert.deepEqual(notSeen, [], `every one of the ${created.length} created ConfigMaps was seen ADDED`)
    // The time without a working endpoint: the longest gap between two events after each fault (the
    // writer makes 2-3 changes every 100 ms, so a gap is the informer's outage, not a quiet spell).
    const outages: string[] = []
    for (const [what, at] of faults) {
      // The window reaches past the drain deadline, where the drained replica ends the informer's watch.
      const nextFault = Math.min(...[...faults.values()].filter((t) => t > at))
      const end = Math.min(at + DRAIN_TIMEOUT_MS + 10_000, nextFault, stoppedAt)
      const times = eventTimes.filter((t) => t >= at - 1000 && t <= end)
      let longest = 0
      for (let i = 1; i < times.length; i++) if (times[i]! > at - 500) longest = Math.max(longest, times[i]! - times[i - 1]!)
      const first = eventTimes.find((t) => t > at)
      const errors = errorTimes.flatMap((t, i) => t >= at && t <= end ? [`+${t - at} ms ${errorMessages[i]}`] : [])
      outages.push(`${what}: longest gap between events ${longest} ms, first event after it +${first === undefined ? '?' : first - at} ms, ${errors.length} informer errors (first: ${errors.slice(0, 2).join(' | ')})`)
    }
    const st = balancer.stats()
    console.log(`# informer through the slice balancer: ${created.length} ConfigMaps created in ${((stoppedAt - churnStartedAt) / 1000).toFixed(1)} s (one tick every ${CHURN_INTERVAL_MS} ms or as fast as the member answers; ${churnLines.length - 1} writes in all), all seen ADDED, cache equals the member's ${truth.size}; ${errorTimes.length} informer errors in all;`,
      `${outages.join('; ')}; balancer: connections ${JSON.stringify([...st.connections])}, ${st.dialFailures} failed dials, ${st.rejected} rejected`)
  })
})
