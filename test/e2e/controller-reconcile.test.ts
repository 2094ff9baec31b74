// Issue 9, part 3: the ClusterController on the real host kube-apiserver of the harness, driven with
// kubectl like a user would:
// - a proxy Cluster gets a port from the range, Service mc-<name> (6443 -> the port), the join, callers and
//   kubeconfig Secrets, the finalizer, the spec endpoint (and, with --kubesphere-compat, the kubeconfig),
//   Initialized True, and no token in the spec;
// - a direct Cluster is never written (resourceVersion unchanged); one without type gets the condition;
// - a user-set port that is taken: PortConflict, the owner unaffected; the range exhausted: PortRangeExhausted;
// - hostile annotations (64 KiB+ and __proto__ JSON service annotations; 1 MB refused by the apiserver);
// - deleting a Cluster removes its Service, Secrets, port entry and finalizer;
// - two controllers with leader election: only the holder writes; stopping it hands over at once;
// - two processes racing to allocate 50 Clusters: no duplicate port;
// - KubeSphere's CRD shape (no status subresource; a loose schema that lets wrong types through): status
//   is still written, by plain update; a string port, a 1e20 port and an object over 256 KiB get a
//   condition and nothing crashes.
//
// Needs the binaries (bash test/e2e/tools/build.sh); no root.
// Run: node --experimental-strip-types --test --test-concurrency=1 test/e2e/controller-reconcile.test.ts
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { KubeConfig } from '@kubernetes/client-node'
import {
  contextFrom, KubernetesRegistry, CLUSTER_GROUP, CLUSTER_PLURAL, CLUSTER_VERSION, FINALIZER, PORTS_CONFIGMAP, type KubeContext
} from '@tower/controller'
import type { Logger } from '@tower/mux'
import type { ServerStatusReport } from '@tower/server'
import { parse as parseYaml } from 'yaml'
import { startControlPlane, startProcess, waitFor, type ControlPlane, type ManagedProcess } from './harness/index.ts'
import { REPO_ROOT, verboseLog } from './tunnel-helpers.ts'

const NS = 'tower-rec'
const RANGE = { first: 7200, last: 7204 }
const RACE_RANGE = '7300-7399'
const CONVERGE_MS = 60_000
type Obj = Record<string, any>

let cp: ControlPlane
let admin: KubeContext
const registries: KubernetesRegistry[] = []
const procs: ManagedProcess[] = []

/** A Logger that keeps every line (for "who wrote") and prints warnings when verbose. */
function captureLogger (lines: Obj[], bindings: Obj = {}): Logger {
  const put = (level: string) => (obj: object, msg?: string): void => {
    const line = { level, ...bindings, ...obj, msg }
    lines.push(line)
    if (verboseLog !== undefined && level !== 'debug' && level !== 'trace') verboseLog(JSON.stringify(line, (k, v) => k === 'err' && v instanceof Error ? v.message : v))
  }
  return { trace: () => {}, debug: put('debug'), info: put('info'), warn: put('warn'), error: put('error'), child: (b) => captureLogger(lines, { ...bindings, ...b }) }
}

async function openController (opts: { leaderElect?: boolean, identity: string, portRange?: string, compat?: boolean, logs?: Obj[], resyncIntervalMs?: number }): Promise<KubernetesRegistry> {
  const portRange = opts.portRange ?? `${RANGE.first}-${RANGE.last}`
  const reg = await KubernetesRegistry.open({
    context: admin,
    settings: { portRange },
    controller: { leaderElect: opts.leaderElect ?? false, portRange, identity: opts.identity, leaseDurationMs: 3000, kubesphereCompat: opts.compat ?? false, resyncIntervalMs: opts.resyncIntervalMs },
    logger: captureLogger(opts.logs ?? [], { identity: opts.identity })
  })
  registries.push(reg)
  await reg.claimServer()
  return reg
}

async function closeRegistry (reg: KubernetesRegistry): Promise<void> {
  await reg.releaseServer()
  await reg.close()
  registries.splice(registries.indexOf(reg), 1)
}

function clusterYaml (name: string, opts: { type?: string, port?: unknown, annotations?: Obj, external?: boolean, extra?: Obj } = {}): Obj {
  const connection: Obj = {}
  if (opts.type !== undefined) connection.type = opts.type
  if (opts.port !== undefined) connection.kubernetesAPIServerPort = opts.port
  return {
    apiVersion: `${CLUSTER_GROUP}/${CLUSTER_VERSION}`,
    kind: 'Cluster',
    metadata: { name, ...(opts.annotations !== undefined ? { annotations: opts.annotations } : {}) },
    spec: { connection, ...(opts.external === true ? { externalKubeAPIEnabled: true } : {}), ...opts.extra }
  }
}

async function create (...objs: Obj[]): Promise<void> {
  await cp.host.kubectl(['create', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objs }) })
}

async function getCluster (name: string): Promise<Obj | undefined> {
  try {
    return await admin.custom.getClusterCustomObject({ group: CLUSTER_GROUP, version: CLUSTER_VERSION, plural: CLUSTER_PLURAL, name }) as Obj
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined
    throw err
  }
}

function condition (obj: Obj | undefined, type: string): Obj | undefined {
  const list: unknown = obj?.status?.conditions
  return Array.isArray(list) ? list.find((c: Obj) => c.type === type) : undefined
}

/** Waits until the Cluster's `type` condition has `status` (and `reason`, when given); returns the Cluster. */
async function waitCondition (name: string, type: string, status: string, reason?: string, timeoutMs = CONVERGE_MS): Promise<Obj> {
  let last: Obj | undefined
  try {
    return await waitFor(`${name}: ${type}=${status}${reason !== undefined ? ` (${reason})` : ''}`, async () => {
      last = await getCluster(name)
      const c = condition(last, type)
      return c?.status === status && (reason === undefined || c?.reason === reason) ? last : undefined
    }, { timeoutMs, intervalMs: 250 })
  } catch (err) {
    throw new Error(`${(err as Error).message}; last conditions: ${JSON.stringify(last?.status?.conditions)}`)
  }
}

async function secret (name: string): Promise<Obj | undefined> {
  const r = await cp.host.kubectlResult(['-n', NS, 'get', 'secret', name, '-o', 'json'])
  return r.code === 0 ? JSON.parse(r.stdout) as Obj : undefined
}

async function service (name: string): Promise<Obj | undefined> {
  const r = await cp.host.kubectlResult(['-n', NS, 'get', 'service', name, '-o', 'json'])
  return r.code === 0 ? JSON.parse(r.stdout) as Obj : undefined
}

async function portTable (): Promise<Map<number, string>> {
  const cm = JSON.parse(await cp.host.kubectl(['-n', NS, 'get', 'configmap', PORTS_CONFIGMAP, '-o', 'json'])) as Obj
  return new Map(Object.entries((cm.data ?? {}) as Record<string, string>).map(([k, v]) => [Number(k), v]))
}

const decode = (b64: string): string => Buffer.from(b64, 'base64').toString('utf8')

before(async () => {
  const started = Date.now()
  cp = await startControlPlane({ log: verboseLog })
  const kc = new KubeConfig()
  kc.loadFromFile(cp.host.adminKubeconfigPath)
  admin = contextFrom(kc, NS)
  await cp.host.kubectl(['create', 'namespace', NS])
  await cp.host.kubectl(['apply', '-f', join(REPO_ROOT, 'deploy/controller/crd.yaml')])
  await cp.host.kubectl(['wait', '--for=condition=Established', '--timeout=60s', `crd/${CLUSTER_PLURAL}.${CLUSTER_GROUP}`])
  console.log(`# control plane ready in ${Date.now() - started} ms`)
})

after(async () => {
  for (const p of procs) await p.stop().catch(() => {})
  for (const r of [...registries]) await closeRegistry(r).catch(() => {})
  await cp?.stop()
})

describe('ClusterController on a real kube-apiserver', { timeout: 900_000 }, () => {
  let writer: KubernetesRegistry
  let ksController: KubernetesRegistry
  let alphaPort = 0

  test('kubectl create a proxy Cluster: port, Service, three Secrets, finalizer, endpoint, Initialized; no token in the spec', async () => {
    writer = await openController({ identity: 'solo', compat: true })
    const started = Date.now()
    await create(clusterYaml('alpha', { type: 'proxy' }))
    const c = await waitCondition('alpha', 'Initialized', 'True')
    console.log(`# alpha Initialized ${Date.now() - started} ms after kubectl create`)
    const conn = c.spec.connection as Obj
    alphaPort = conn.kubernetesAPIServerPort
    assert.ok(alphaPort >= RANGE.first && alphaPort <= RANGE.last, `port ${alphaPort}`)
    assert.equal(conn.kubernetesAPIEndpoint, `https://mc-alpha.${NS}.svc:6443`)
    assert.equal(conn.token, undefined, 'no token in the spec')
    assert.deepEqual(c.metadata.finalizers, [FINALIZER])
    const initialized = condition(c, 'Initialized') as Obj
    assert.equal(initialized.reason, 'Initialized')
    assert.equal(initialized.lastTransitionTime, initialized.lastUpdateTime)

    const svc = await service('mc-alpha') as Obj
    assert.equal(svc.spec.type, 'ClusterIP')
    assert.deepEqual(svc.spec.ports.map((p: Obj) => [p.name, p.port, p.targetPort]), [['kube-api', 6443, alphaPort]])
    assert.equal(svc.spec.selector, undefined, 'mc-<name> has no selector: the replicas\' EndpointSlices route it')
    assert.equal(svc.metadata.ownerReferences[0].uid, c.metadata.uid)

    const join = await secret('tower-join-alpha') as Obj
    assert.match(decode(join.data.token), /^tower-agent_[A-Za-z0-9_-]{43}$/, '256-bit token')
    assert.equal(join.metadata.labels['app.kubernetes.io/managed-by'], 'tower')
    assert.equal(join.metadata.labels['tower.kubesphere.io/cluster'], 'alpha')
    assert.equal(join.metadata.ownerReferences[0].uid, c.metadata.uid)
    assert.ok(await secret('tower-callers-alpha'))
    const kcSecret = await secret('tower-kubeconfig-alpha') as Obj
    const kubeconfig = parseYaml(decode(kcSecret.data.kubeconfig)) as Obj
    assert.equal(kubeconfig.clusters[0].cluster.server, `https://mc-alpha.${NS}.svc:6443`)
    assert.equal(kubeconfig.users[0].user.token, undefined)
    assert.ok(kubeconfig.users[0].user['client-certificate-data'])
    const { X509Certificate } = await import('node:crypto')
    const cert = new X509Certificate(decode(kubeconfig.users[0].user['client-certificate-data']))
    assert.match(cert.subject, /CN=tower-admin/)
    assert.doesNotMatch(cert.subject, /system:masters/)
    const days = (Date.parse(cert.validTo) - Date.now()) / 86_400_000
    assert.ok(days > 80 && days <= 90.1, `validity ${days} days (default 90)`)
    assert.equal(conn.kubeconfig, kcSecret.data.kubeconfig, '--kubesphere-compat: the same kubeconfig in the spec')
    assert.equal((await portTable()).get(alphaPort), `alpha/${c.metadata.uid}`)

    // Settled: a resync-like requeue makes no write.
    const rv = c.metadata.resourceVersion
    await cp.host.kubectl(['annotate', 'clusters', 'alpha', 'e2e/poke=1'])
    const poked = await waitFor('the poke to be seen', async () => {
      const o = await getCluster('alpha')
      return o?.metadata.annotations?.['e2e/poke'] === '1' ? o : undefined
    }, { timeoutMs: 10_000 })
    await new Promise((resolve) => setTimeout(resolve, 1500))
    const after = await getCluster('alpha') as Obj
    assert.equal(after.metadata.resourceVersion, poked.metadata.resourceVersion, `no write after a no-op event (was ${rv})`)
  })

  test('a direct Cluster is never written; one without type gets Initialized=False ConnectionTypeMissing', async () => {
    await create(clusterYaml('plain-direct', { type: 'direct' }), clusterYaml('no-type'), clusterYaml('beta', { type: 'proxy' }))
    const direct = await getCluster('plain-direct') as Obj
    const noType = await waitCondition('no-type', 'Initialized', 'False', 'ConnectionTypeMissing')
    assert.match(condition(noType, 'Initialized')?.message, /proxy/)
    assert.equal(noType.metadata.finalizers, undefined)
    await waitCondition('beta', 'Initialized', 'True')
    const again = await getCluster('plain-direct') as Obj
    assert.equal(again.metadata.resourceVersion, direct.metadata.resourceVersion)
    assert.equal(again.status, undefined)
    assert.equal(await service('mc-plain-direct'), undefined)
    assert.equal(await secret('tower-join-plain-direct'), undefined)
  })

  test('a user-set port that is taken: PortConflict naming the owner; the owner is unaffected', async () => {
    await create(clusterYaml('gamma', { type: 'proxy', port: alphaPort }))
    const g = await waitCondition('gamma', 'Initialized', 'False', 'PortConflict')
    assert.match(condition(g, 'Initialized')?.message, new RegExp(`port ${alphaPort} .*cluster alpha`))
    const a = await getCluster('alpha') as Obj
    assert.equal(a.spec.connection.kubernetesAPIServerPort, alphaPort)
    assert.equal(condition(a, 'Initialized')?.status, 'True')
    assert.equal((await portTable()).get(alphaPort)?.startsWith('alpha/'), true)
    assert.equal(await service('mc-gamma'), undefined)
  })

  test('hostile annotations: oversized and __proto__ service annotations become a condition; 1 MB is refused by the apiserver', async () => {
    const big = JSON.stringify({ 'example.com/x': 'y'.repeat(100_000) })
    await create(
      clusterYaml('huge-ann', { type: 'proxy', external: true, annotations: { 'tower.kubesphere.io/service-annotations': big } }),
      clusterYaml('proto-ann', { type: 'proxy', external: true, annotations: { 'tower.kubesphere.io/service-annotations': '{"__proto__":{"polluted":"yes"}}' } })
    )
    for (const name of ['huge-ann', 'proto-ann']) {
      const c = await waitCondition(name, 'Initialized', 'True')
      assert.equal(condition(c, 'ExternalAccessReady')?.status, 'False')
      assert.equal(condition(c, 'ExternalAccessReady')?.reason, 'InvalidServiceAnnotations')
      assert.equal((await service(`mc-${name}`))?.spec.type, 'ClusterIP', 'invalid annotations keep the Service ClusterIP')
    }
    assert.equal(({} as Obj).polluted, undefined)
    const r = await cp.host.kubectlResult(['create', '-f', '-'], { input: JSON.stringify(clusterYaml('mega-ann', { type: 'proxy', annotations: { 'e2e/big': 'z'.repeat(1024 * 1024) } })) })
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /Too long|too long|must have at most/)
    assert.equal(condition(await getCluster('alpha'), 'Initialized')?.status, 'True')
    await cp.host.kubectl(['delete', 'clusters', 'huge-ann', 'proto-ann', '--wait=true', '--timeout=60s'])
  })

  test('external access: LoadBalancer; the load balancer address becomes the external endpoint and ExternalAccessReady', async () => {
    await create(clusterYaml('ext', { type: 'proxy', external: true, annotations: { 'tower.kubesphere.io/service-annotations': '{"lb.example.com/kind":"nlb"}' } }))
    await waitCondition('ext', 'ExternalAccessReady', 'False', 'LoadBalancerPending')
    const svc = await service('mc-ext') as Obj
    assert.equal(svc.spec.type, 'LoadBalancer')
    assert.equal(svc.metadata.annotations['lb.example.com/kind'], 'nlb')
    // No cloud controller here: play its part.
    await cp.host.kubectl(['-n', NS, 'patch', 'service', 'mc-ext', '--subresource=status', '--type=merge', '-p', '{"status":{"loadBalancer":{"ingress":[{"ip":"203.0.113.9"}]}}}'])
    const c = await waitCondition('ext', 'ExternalAccessReady', 'True', 'LoadBalancerReady')
    assert.equal(c.spec.connection.externalKubernetesAPIEndpoint, 'https://203.0.113.9:6443')
  })

  test('the server report: AgentAvailable, kubernetesVersion, the agents annotation; lastTransitionTime moves only on a transition', async () => {
    const report = (clusters: Obj): ServerStatusReport => ({ pid: process.pid, updatedAt: new Date().toISOString(), agentPort: 1, clusters })
    const agent = (id: string): Obj => ({ id, remote: '127.0.0.1:5000', since: '2026-12-01T10:00:00.000Z' })
    writer.reportStatus(report({ alpha: { port: alphaPort, listening: true, agents: [agent('agent-1')], kubernetesVersion: cp.member.version } }))
    const c1 = await waitCondition('alpha', 'AgentAvailable', 'True', 'AgentConnected')
    assert.equal(c1.status.kubernetesVersion, cp.member.version)
    assert.equal(condition(c1, 'AgentAvailable')?.message, '1 agent(s) connected')
    assert.deepEqual(JSON.parse(c1.metadata.annotations['tower.kubesphere.io/agents']), [agent('agent-1')])
    // Clusters the report does not name have no agent.
    await waitCondition('beta', 'AgentAvailable', 'False', 'NoAgentYet')

    // A burst of reports: coalesced, and the last one wins.
    for (let i = 0; i < 30; i++) {
      const n = i === 29 ? 2 : 1 + (i % 3)
      writer.reportStatus(report({ alpha: { port: alphaPort, listening: true, agents: Array.from({ length: n }, (_, j) => agent(`agent-${j + 1}`)), kubernetesVersion: cp.member.version } }))
    }
    const c2 = await waitFor('alpha to show 2 agents', async () => {
      const c = await getCluster('alpha')
      return condition(c, 'AgentAvailable')?.message === '2 agent(s) connected' && JSON.parse(c?.metadata.annotations['tower.kubesphere.io/agents'] ?? '[]').length === 2 ? c : undefined
    }, { timeoutMs: 20_000, intervalMs: 200 })
    assert.equal(condition(c2, 'AgentAvailable')?.lastTransitionTime, condition(c1, 'AgentAvailable')?.lastTransitionTime, 'same status: no transition')

    const left = new Date(Date.now() + 1500).toISOString()
    const reported = Date.now()
    writer.reportStatus(report({ alpha: { port: alphaPort, listening: true, agents: [], lastAgentLeftAt: left } }))
    const c3 = await waitCondition('alpha', 'AgentAvailable', 'False', 'AgentDisconnected')
    // Coalescing delays a report by at most about a second, however many came before it.
    assert.ok(Date.now() - reported < 5000, `the disconnect showed after ${Date.now() - reported} ms`)
    assert.match(condition(c3, 'AgentAvailable')?.message, new RegExp(left.replace(/[.]/g, '\\.')))
    assert.notEqual(condition(c3, 'AgentAvailable')?.lastTransitionTime, condition(c1, 'AgentAvailable')?.lastTransitionTime, 'a transition moves lastTransitionTime')
    assert.equal(c3.metadata.annotations?.['tower.kubesphere.io/agents'], undefined)
    assert.equal(condition(c3, 'Initialized')?.status, 'True')
  })

  test('range exhausted: PortRangeExhausted for the extra cluster, the others get distinct ports', async () => {
    const used = [...(await portTable()).keys()].filter((p) => p >= RANGE.first && p <= RANGE.last).length
    const free = RANGE.last - RANGE.first + 1 - used
    const names = Array.from({ length: free + 1 }, (_, i) => `fill-${i}`)
    await create(...names.map((n) => clusterYaml(n, { type: 'proxy' })))
    const states = await waitFor('every filler to settle', async () => {
      const all = await Promise.all(names.map(async (n) => condition(await getCluster(n), 'Initialized')))
      return all.every((c) => c?.status === 'True' || c?.reason === 'PortRangeExhausted') ? all : undefined
    }, { timeoutMs: CONVERGE_MS, intervalMs: 250 })
    assert.equal(states.filter((c) => c?.reason === 'PortRangeExhausted').length, 1, JSON.stringify(states))
    const exhausted = states.find((c) => c?.reason === 'PortRangeExhausted') as Obj
    assert.match(exhausted.message, /7200-7204/)
    const table = await portTable()
    assert.equal(new Set(table.values()).size, table.size, 'no owner twice')
    assert.equal(condition(await getCluster('alpha'), 'Initialized')?.status, 'True')
  })

  test('delete a Cluster: Service, Secrets and port entry gone, finalizer removed, the port free again', async () => {
    await cp.host.kubectl(['delete', 'clusters', 'fill-0', '--wait=true', '--timeout=60s'])
    const c = await getCluster('beta') as Obj
    const port = c.spec.connection.kubernetesAPIServerPort as number
    await cp.host.kubectl(['delete', 'clusters', 'beta', '--wait=true', '--timeout=60s'])
    assert.equal(await getCluster('beta'), undefined)
    assert.equal(await service('mc-beta'), undefined)
    for (const s of ['tower-join-beta', 'tower-callers-beta', 'tower-kubeconfig-beta']) assert.equal(await secret(s), undefined, s)
    assert.equal((await portTable()).has(port), false)
    // The exhausted filler gets a freed port at once: a deletion requeues everyone (not the 30 s retry).
    const left = (await Promise.all(Array.from({ length: 6 }, (_, i) => `fill-${i}`).map(async (n) => ({ n, c: condition(await getCluster(n), 'Initialized') }))))
      .find((x) => x.c?.reason === 'PortRangeExhausted')
    if (left !== undefined) await waitCondition(left.n, 'Initialized', 'True', undefined, 15_000)
    // Room in the small range for the next tests.
    await cp.host.kubectl(['delete', 'clusters', ...Array.from({ length: 5 }, (_, i) => `fill-${i + 1}`), '--ignore-not-found', '--wait=true', '--timeout=60s'])
    assert.equal([...(await portTable()).values()].filter((v) => v.startsWith('fill-')).length, 0)
  })

  test('leader election: only the Lease holder writes; stopping it hands over at once', async () => {
    await closeRegistry(writer)
    const logsA: Obj[] = []; const logsB: Obj[] = []
    const a = await openController({ leaderElect: true, identity: 'replica-a', logs: logsA })
    const lease = await waitFor('replica-a to hold the lease', async () => {
      const l = JSON.parse(await cp.host.kubectl(['-n', NS, 'get', 'lease', 'tower-controller', '-o', 'json'])) as Obj
      return l.spec.holderIdentity === 'replica-a' ? l : undefined
    }, { timeoutMs: 20_000, intervalMs: 200 })
    assert.equal(lease.spec.leaseDurationSeconds, 3)
    const b = await openController({ leaderElect: true, identity: 'replica-b', logs: logsB })
    await create(clusterYaml('leased-1', { type: 'proxy' }))
    await waitCondition('leased-1', 'Initialized', 'True')
    const issued = (logs: Obj[], name: string): boolean => logs.some((l) => l.msg === 'issued the caller kubeconfig' && l.cluster === name)
    assert.equal(issued(logsA, 'leased-1'), true, 'the holder reconciled')
    assert.equal(issued(logsB, 'leased-1'), false, 'the other replica did not')

    const stopped = Date.now()
    await closeRegistry(a)
    const released = Date.now()
    const held = await waitFor('replica-b to take over', async () => {
      const l = JSON.parse(await cp.host.kubectl(['-n', NS, 'get', 'lease', 'tower-controller', '-o', 'json'])) as Obj
      return l.spec.holderIdentity === 'replica-b' ? l : undefined
    }, { timeoutMs: 20_000, intervalMs: 100 })
    const takeover = Date.now() - released
    console.log(`# lease taken over ${takeover} ms after the leader released it (its stop took ${released - stopped} ms; lease duration 3 s)`)
    assert.ok(takeover < 3000, `released lease taken before it could expire (${takeover} ms)`)
    assert.ok(held.spec.leaseTransitions >= 1)
    await create(clusterYaml('leased-2', { type: 'proxy' }))
    await waitCondition('leased-2', 'Initialized', 'True')
    assert.equal(issued(logsB, 'leased-2'), true)
    assert.equal(issued(logsA, 'leased-2'), false)
    await closeRegistry(b)
  })

  test('two processes race to allocate 50 Clusters: no duplicate port', async () => {
    const fixture = join(REPO_ROOT, 'test/e2e/fixtures/controller-replica.ts')
    for (const id of ['race-a', 'race-b']) {
      const p = startProcess(id, process.execPath, ['--experimental-strip-types', '--no-warnings', fixture, cp.host.adminKubeconfigPath, NS, RACE_RANGE, id], { log: verboseLog })
      procs.push(p)
      await p.waitForLine(/^ready$/, 60_000)
    }
    const names = Array.from({ length: 50 }, (_, i) => `race-${String(i).padStart(2, '0')}`)
    const started = Date.now()
    await create(...names.map((n) => clusterYaml(n, { type: 'proxy' })))
    await waitFor('all 50 race clusters to be Initialized', async () => {
      const all = await admin.custom.listClusterCustomObject({ group: CLUSTER_GROUP, version: CLUSTER_VERSION, plural: CLUSTER_PLURAL }) as Obj
      const ready = (all.items as Obj[]).filter((c) => names.includes(c.metadata.name) && condition(c, 'Initialized')?.status === 'True')
      return ready.length === names.length ? true : undefined
    }, { timeoutMs: 120_000, intervalMs: 500 })
    console.log(`# 50 clusters allocated by two racing processes in ${Date.now() - started} ms`)
    const all = (await admin.custom.listClusterCustomObject({ group: CLUSTER_GROUP, version: CLUSTER_VERSION, plural: CLUSTER_PLURAL }) as Obj).items as Obj[]
    // Every cluster that got a port (gamma's spec still asks for alpha's, and is refused: not allocated).
    const ports = all.filter((c) => condition(c, 'Initialized')?.status === 'True').map((c) => c.spec.connection.kubernetesAPIServerPort)
    assert.equal(new Set(ports).size, ports.length, `duplicate port among ${JSON.stringify(ports)}`)
    const table = await portTable()
    for (const c of all.filter((c) => names.includes(c.metadata.name))) {
      assert.equal(table.get(c.spec.connection.kubernetesAPIServerPort), `${c.metadata.name}/${c.metadata.uid}`, c.metadata.name)
    }
    assert.equal([...table.values()].filter((v) => v.startsWith('race-')).length, 50)
    for (const p of procs.splice(0)) await p.stop()
  })

  test('KubeSphere\'s CRD shape (no status subresource, loose schema): status by plain update; wrong types and a huge object get a condition', async () => {
    const crd = JSON.parse(await cp.host.kubectl(['get', 'crd', `${CLUSTER_PLURAL}.${CLUSTER_GROUP}`, '-o', 'json'])) as Obj
    for (const v of crd.spec.versions as Obj[]) {
      delete v.subresources
      v.schema = { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } }
    }
    await cp.host.kubectl(['replace', '-f', '-'], { input: JSON.stringify(crd) })
    await waitFor('the CRD without status subresource', async () => {
      const r = await cp.host.kubectlResult(['get', '--raw', `/apis/${CLUSTER_GROUP}/${CLUSTER_VERSION}/${CLUSTER_PLURAL}/alpha/status`])
      return r.code !== 0 && /NotFound|not found/i.test(r.stderr) ? true : undefined
    }, { timeoutMs: 20_000, intervalMs: 250 })
    const logs: Obj[] = []
    ksController = await openController({ identity: 'kubesphere-shape', logs })
    await create(
      clusterYaml('ks-one', { type: 'proxy' }),
      clusterYaml('bad-port-string', { type: 'proxy', port: '6001' }),
      clusterYaml('bad-port-huge', { type: 'proxy', port: 1e20 }),
      clusterYaml('too-big', { type: 'proxy', extra: { junk: 'j'.repeat(300 * 1024) } })
    )
    const ks = await waitCondition('ks-one', 'Initialized', 'True')
    assert.ok(ks.spec.connection.kubernetesAPIServerPort >= RANGE.first)
    assert.ok(logs.some((l) => /no status subresource/.test(String(l.msg))), 'the writer learnt the plain mode')
    assert.match(condition(await waitCondition('bad-port-string', 'Initialized', 'False', 'InvalidSpec'), 'Initialized')?.message, /integer/)
    await waitCondition('bad-port-huge', 'Initialized', 'False', 'PortOutOfRange')
    await waitCondition('too-big', 'Initialized', 'False', 'ObjectTooLarge')
    assert.equal(await service('mc-too-big'), undefined)
    // Still served and settled after all that.
    assert.equal(condition(await getCluster('alpha'), 'Initialized')?.status, 'True')
    assert.equal(logs.filter((l) => l.level === 'error').length, 0, JSON.stringify(logs.filter((l) => l.level === 'error')))
    assert.equal(logs.filter((l) => /no status subresource/.test(String(l.msg))).length, 1, 'the plain mode is learnt once and kept')
  })

  test('a Cluster gone without its finalizer (forced off while no controller ran): the resync frees its port, Service and Secrets', async () => {
    const ks = await getCluster('ks-one') as Obj
    const port = ks.spec.connection.kubernetesAPIServerPort as number
    await closeRegistry(ksController)
    await cp.host.kubectl(['patch', 'clusters', 'ks-one', '--type=json', '-p', '[{"op":"remove","path":"/metadata/finalizers"}]'])
    await cp.host.kubectl(['delete', 'clusters', 'ks-one', '--wait=true', '--timeout=30s'])
    assert.equal((await portTable()).get(port), `ks-one/${ks.metadata.uid}`, 'left behind while no controller ran')
    assert.ok(await service('mc-ks-one'))
    await openController({ identity: 'collector', resyncIntervalMs: 1000 })
    await waitFor('the orphan port entry to go', async () => (await portTable()).has(port) ? undefined : true, { timeoutMs: 20_000, intervalMs: 250 })
    assert.equal(await service('mc-ks-one'), undefined)
    for (const s of ['tower-join-ks-one', 'tower-callers-ks-one', 'tower-kubeconfig-ks-one']) assert.equal(await secret(s), undefined, s)
    // Clusters that exist keep theirs.
    assert.equal((await portTable()).get(alphaPort)?.startsWith('alpha/'), true)
    assert.ok(await service('mc-alpha'))
  })
})
