/**
 * The soak's controller mode: the host kube-apiserver is the registry. Cluster resources
 * (deploy/controller/crd.yaml) for the soak's clusters, R `tower server --registry kubernetes` replicas
 * as ServiceAccount tower-server (deploy/controller's RBAC) with leader election, and two agents per
 * cluster, so a cluster spans two replicas. As in test/e2e/ha.test.ts: each replica binds the cluster
 * ports on its own address (a /32 on the first namespace's host-side veth, 10.214.x.y: the
 * EndpointSlice API refuses loopback addresses) and its agent endpoint on the namespace's host address;
 * the agents dial a TCP round-robin in front of the live replicas' agent endpoints (the Service agents
 * use in Kubernetes; a replica being stopped leaves it first, as a terminating Pod leaves a Service).
 * Callers reach each cluster through a slice balancer (test/e2e/harness/slice-balancer.ts) on its
 * mc-<name> Service's EndpointSlices, with
 * the caller kubeconfig the controller stored in Secret tower-kubeconfig-<name>.
 */
import { execFileSync } from 'node:child_process'
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import net from 'node:net'
import { join } from 'node:path'
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml'
import { probeFreePort, startSliceBalancer, waitFor, writeKubeconfig, type SliceBalancer } from '../e2e/harness/index.ts'
import { REPO_ROOT, serviceAccountToken, startTower } from '../e2e/tunnel-helpers.ts'
import type { LeaseView, SliceView } from './criteria.ts'
import { routeToServer, spawnAgent, startBase, upstreamKubeconfig, writeAgentDir, type SoakCluster, type SoakServer, type Topology } from './topology.ts'

/** Namespace of the controller's objects (deploy/controller). */
export const TOWER_NS = 'tower-system'
/** --lease-duration of the replicas (ms): short, so a dead replica's leftovers go quickly. */
export const LEASE_DURATION_MS = 5000
/** --drain-timeout of the replicas (ms). */
export const DRAIN_TIMEOUT_MS = 10_000
/** Agents per cluster. */
const AGENTS_PER_CLUSTER = 2

type Obj = Record<string, any>

/** Controller mode's extra parts: the Kubernetes view the final checks read. */
export interface ControllerTopology extends Topology {
  /** Identities of replicas that were SIGKILLed (their slices and Leases must go). */
  deadIdentities: Set<string>
  /** Slices of every cluster's mc-<name> Service, as read from the host apiserver now. */
  slices (): Promise<SliceView[]>
  /** Replica Leases now. */
  leases (): Promise<LeaseView[]>
  balancers: Map<string, SliceBalancer>
}

/** A TCP round-robin in front of `backends()`: each connection goes to the next one that accepts it. */
async function roundRobin (host: string, backends: () => Array<{ host: string, port: number }>): Promise<{ port: number, close (): void }> {
  let next = 0
  const sockets = new Set<net.Socket>()
  const server = net.createServer((client) => {
    sockets.add(client)
    client.on('close', () => sockets.delete(client))
    client.on('error', () => client.destroy())
    client.pause()
    const list = backends()
    const attempt = (tries: number): void => {
      if (tries >= list.length || client.destroyed) { client.destroy(); return }
      const b = list[next++ % list.length]!
      const up = net.connect(b.port, b.host)
      sockets.add(up)
      up.on('close', () => sockets.delete(up))
      let connected = false
      up.once('connect', () => {
        connected = true
        client.pipe(up).pipe(client)
        client.resume()
        client.on('close', () => up.destroy())
        up.on('close', () => client.destroy())
      })
      up.on('error', () => { if (!connected) attempt(tries + 1); else client.destroy() })
    }
    attempt(0)
  })
  server.listen(0, host)
  await once(server, 'listening')
  return { port: (server.address() as net.AddressInfo).port, close: () => { for (const s of sockets) s.destroy(); server.close() } }
}

/** Build the controller-mode system: `count` clusters, `replicas` replicas. */
export async function startControllerTopology (opts: { count: number, replicas: number, bytesPort: number, log: (l: string) => void, dir: string }): Promise<ControllerTopology> {
  const { log, dir } = opts
  const { namespaces, cp, logDir, serverAddress, relay } = await startBase(opts)
  const hostJson = async (args: string[]): Promise<Obj | undefined> => {
    const r = await cp.host.kubectlResult(['get', ...args, '-o', 'json'], { timeoutMs: 20_000 })
    if (r.code !== 0) {
      if (/NotFound|not found/.test(r.stderr)) return undefined
      throw new Error(`kubectl get ${args.join(' ')}: ${r.stderr.slice(0, 300)}`)
    }
    return JSON.parse(r.stdout) as Obj
  }

  // Replica addresses, outside the harness's 10.213.0.0/16 link networks.
  const used = execFileSync('ip', ['-o', '-4', 'addr', 'show']).toString()
  const octet = [...Array(200).keys()].map((i) => 20 + ((i + process.pid) % 200)).find((n) => !used.includes(`10.214.${n}.`))!
  const addresses: string[] = []
  for (let i = 0; i < opts.replicas; i++) {
    const a = `10.214.${octet}.${i + 2}`
    execFileSync('ip', ['addr', 'add', `${a}/32`, 'dev', namespaces[0]!.hostInterface])
    addresses.push(a)
  }
  const first = await probeFreePort(addresses[0])
  const portRange = `${first}-${first + opts.count + 4}`

  for (const f of ['namespace.yaml', 'crd.yaml', 'rbac.yaml']) await cp.host.kubectl(['apply', '-f', join(REPO_ROOT, 'deploy/controller', f)])
  await cp.host.kubectl(['wait', '--for=condition=Established', 'crd/clusters.cluster.kubesphere.io', '--timeout=60s'])
  await waitFor('Clusters served', async () => (await cp.host.kubectlResult(['get', 'clusters.cluster.kubesphere.io'])).code === 0 ? true : undefined, { timeoutMs: 30_000, intervalMs: 250 })
  const token = await serviceAccountToken(cp.host, TOWER_NS, 'tower-server', join(dir, 'server-sa-token'))
  const serverKubeconfig = writeKubeconfig(join(dir, 'tower-server.kubeconfig'), { server: cp.host.url, caPem: cp.host.caPem, name: 'tower-server', token, namespace: TOWER_NS })

  const servers: SoakServer[] = addresses.map((address, i) => ({ slot: `replica-${i + 1}`, address, identity: '', proc: undefined as never, agentPort: 0, generation: 0, startedAt: 0 }))
  const stopping = new Set<SoakServer>()
  const rr = await roundRobin(serverAddress, () => servers.filter((s) => s.proc?.process.exitStatus === null && !stopping.has(s)).map((s) => ({ host: serverAddress, port: s.agentPort })))
  const agentUrl = `wss://${serverAddress}:${rr.port}`
  const balancers = new Map<string, SliceBalancer>()

  const t: ControllerTopology = {
    mode: 'controller', cp, dir, logDir, serverAddress, servers, clusters: [], hostApiserver: cp.host.process, deadIdentities: new Set(), balancers,
    async restartServer (s, fresh) {
      s.generation++
      s.startedAt = Date.now()
      if (fresh || s.identity === '') s.identity = `${s.slot}-g${s.generation}`
      stopping.delete(s)
      s.proc = startTower(`tower-${s.slot}-${s.generation}`, [
        'server', '--registry', 'kubernetes', '--kubeconfig', serverKubeconfig, '--namespace', TOWER_NS,
        '--listen', `${serverAddress}:0`, '--cluster-host', s.address, '--advertise-host', s.address, '--san', serverAddress,
        '--port-range', portRange, '--identity', s.identity, '--lease-duration', `${LEASE_DURATION_MS / 1000}s`, '--drain-timeout', String(DRAIN_TIMEOUT_MS)
      ], { logDir })
      const listening = await s.proc.waitFor((l) => l.msg === 'agent endpoint listening', 60_000)
      s.agentPort = Number(listening.port)
      log(`${s.slot} generation ${s.generation} (identity ${s.identity}, pid ${s.proc.process.pid}) on ${s.address}, agent endpoint ${serverAddress}:${s.agentPort}`)
    },
    markStopping (s) {
      stopping.add(s)
    },
    async restartAgent (c, a) {
      spawnAgent(t, c, a, agentUrl)
    },
    async slices () {
      const items = (await hostJson(['endpointslices', '-n', TOWER_NS, '-l', 'endpointslice.kubernetes.io/managed-by=tower.kubesphere.io']))?.items ?? []
      return items.map((s: Obj): SliceView => ({
        name: String(s.metadata?.name),
        service: String(s.metadata?.labels?.['kubernetes.io/service-name'] ?? ''),
        identity: String(s.metadata?.annotations?.['tower.kubesphere.io/replica-identity'] ?? ''),
        ready: (Array.isArray(s.endpoints) ? s.endpoints : []).filter((e: Obj) => e?.conditions?.ready === true).flatMap((e: Obj) => e.addresses ?? [])
      }))
    },
    async leases () {
      const items = (await hostJson(['leases', '-n', TOWER_NS, '-l', 'tower.kubesphere.io/replica-lease=true']))?.items ?? []
      return items.map((l: Obj): LeaseView => ({ name: String(l.metadata?.name), holder: String(l.spec?.holderIdentity ?? '') }))
    },
    async stop () {
      for (const b of balancers.values()) await b.close()
      for (const c of t.clusters) for (const a of c.agents) await a.proc?.stop()
      for (const s of servers) await s.proc?.stop()
      rr.close()
      relay.close()
      if (t.hostApiserver !== cp.host.process) await t.hostApiserver.stop()
      await cp.stop()
      for (const ns of namespaces) await ns.delete()
    }
  }
  for (const s of servers) await t.restartServer(s, true)

  const upstream = upstreamKubeconfig(cp, serverAddress, relay.port)
  const ca = (await hostJson(['secret', 'tower-ca', '-n', TOWER_NS]))!
  for (let i = 0; i < opts.count; i++) {
    const name = `soak-c${i + 1}`
    const ns = namespaces[i]!
    await routeToServer(serverAddress, ns)
    await cp.host.kubectl(['apply', '-f', '-'], { input: stringifyYaml({ apiVersion: 'cluster.kubesphere.io/v1alpha1', kind: 'Cluster', metadata: { name }, spec: { connection: { type: 'proxy' } } }) })
    const cluster = await waitFor(`Cluster ${name} Initialized`, async () => {
      const o = await hostJson(['cluster.cluster.kubesphere.io', name])
      return (o?.status?.conditions ?? []).some((c: Obj) => c?.type === 'Initialized' && c.status === 'True') ? o : undefined
    }, { timeoutMs: 90_000, intervalMs: 500 })
    const port = Number(cluster!.spec.connection.kubernetesAPIServerPort)
    const secrets = await waitFor(`Secrets of ${name}`, async () => {
      const join = await hostJson(['secret', `tower-join-${name}`, '-n', TOWER_NS])
      const kc = await hostJson(['secret', `tower-kubeconfig-${name}`, '-n', TOWER_NS])
      return join !== undefined && kc !== undefined ? { join, kc } : undefined
    }, { timeoutMs: 60_000, intervalMs: 500 })
    writeAgentDir(join(dir, `agent-${name}`), Buffer.from(secrets!.join.data.token, 'base64').toString(), Buffer.from(ca.data['tls.crt'], 'base64').toString(), upstream)
    const balancer = await startSliceBalancer({ kubeconfig: cp.host.adminKubeconfigPath, namespace: TOWER_NS, service: `mc-${name}` })
    balancers.set(name, balancer)
    const kc = parseYaml(Buffer.from(secrets!.kc.data.kubeconfig, 'base64').toString()) as Obj
    kc.clusters[0].cluster.server = `https://127.0.0.1:${balancer.port}`
    kc.clusters[0].cluster['tls-server-name'] = `mc-${name}.${TOWER_NS}.svc`
    const kubeconfig = join(dir, `${name}.kubeconfig`)
    writeFileSync(kubeconfig, stringifyYaml(kc), { mode: 0o600 })
    const c: SoakCluster = { name, namespace: name, netns: ns, port, kubeconfig, agents: [] }
    t.clusters.push(c)
    for (const suffix of ['a', 'b'].slice(0, AGENTS_PER_CLUSTER)) {
      const a = spawnAgent(t, c, { slot: `${name}-${suffix}`, id: '', generation: 0, startedAt: 0 }, agentUrl)
      c.agents.push(a)
      await a.proc.waitFor((l) => l.msg === 'connected to server', 60_000)
    }
    await waitFor(`${name}: ${AGENTS_PER_CLUSTER} ready endpoints`, async () => balancer.endpoints().length >= Math.min(AGENTS_PER_CLUSTER, opts.replicas) ? true : undefined, { timeoutMs: 60_000, intervalMs: 250 })
    log(`cluster ${name}: port ${port}, agents in netns ${ns.name} (${ns.nsAddress}), endpoints ${balancer.endpoints().map((e) => `${e.address}:${e.port}`).join(', ')}`)
  }
  return t
}
