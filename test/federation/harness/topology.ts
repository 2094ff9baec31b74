/**
 * The federation topology of issue 10:
 *
 *   host apiserver (+ KubeFed)          member A: etcd, apiserver, kwok, kube-controllers and the Tower
 *   member B: apiserver + kwok,         agent, all inside a network namespace the host cannot reach;
 *     reached directly                  served to the host only through Tower (proxy mode, --impersonate)
 *   Tower server on the host side of A's veth pair (the one address A's agent can reach)
 *
 * Karmada's control plane is started by karmada.ts on top of this when a test wants it.
 *
 * A's agent authenticates to A with a ServiceAccount that may impersonate the identities federation
 * controllers get from `tower join` (tower-kubefed, tower-karmada); A's RBAC binds those users to
 * cluster-admin, so A's RBAC, not Tower, decides what KubeFed may do there.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  createNetns, makeTempDir, startControlPlane, type ApiServer, type ControlPlane, type ManagedProcess, type Netns
} from '../../e2e/harness/index.ts'
import {
  serviceAccountToken, startTowerAgent, startTowerServer, verboseLog, type AddedCluster, type TowerProcess, type TowerServerHandle
} from '../../e2e/tunnel-helpers.ts'
import { addFakeNode, startApiServer, startKwokFor, type ExtraApiServer } from './apiserver.ts'
import { federationBinaries, type FederationBinaries } from './binaries.ts'
import { startKubeControllers } from './kubefed.ts'

/** Identities `tower join` gives the federation controllers (the CLI's defaults). */
export const FEDERATION_USERS = ['tower-kubefed', 'tower-karmada']

/** Everything started; `stop()` ends it all. */
export interface Topology {
  ns: Netns
  cp: ControlPlane
  host: ApiServer
  /** Member A, in the network namespace. */
  a: ApiServer
  /** Member B, on the host network. */
  b: ExtraApiServer
  tower: TowerServerHandle
  /** Tower's cluster for A (proxy, impersonate). */
  clusterA: AddedCluster & { port: number }
  /** A's agent; replace with {@link Topology.startAgentA} after stopping it. */
  agentA: TowerProcess
  /** (Re)start A's agent inside the namespace. */
  startAgentA: () => Promise<TowerProcess>
  bin: FederationBinaries
  dir: string
  logDir: string
  /** Processes started for the topology (controllers, kwok of B). */
  procs: ManagedProcess[]
  /** What an agent for A needs: A's URL and CA, and the file with the agent ServiceAccount's token. */
  agentUpstream: { url: string, caPem: string, tokenFile: string }
  stop: () => Promise<void>
}

/** RBAC in A: the agent may impersonate the federation users (and any group), who are cluster-admins of A. */
function memberRbac (users: string[]): object {
  const items: object[] = [
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'tower-e2e-federation-impersonator' },
      rules: [
        { apiGroups: [''], resources: ['users'], verbs: ['impersonate'], resourceNames: users },
        { apiGroups: [''], resources: ['groups'], verbs: ['impersonate'] }
      ]
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'tower-e2e-federation-impersonator' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'tower-e2e-federation-impersonator' },
      subjects: [{ kind: 'ServiceAccount', name: 'tower-agent', namespace: 'tower-system' }]
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'tower-e2e-federation-admins' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
      subjects: users.map((name) => ({ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name }))
    }
  ]
  return { apiVersion: 'v1', kind: 'List', items }
}

const AGENT_SA = {
  apiVersion: 'v1',
  kind: 'List',
  items: [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'tower-system' } },
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'tower-agent', namespace: 'tower-system' } }
  ]
}

/**
 * Start the topology (about a minute on a busy 2-core machine). `tower: false` starts no Tower (the
 * caller runs its own, e.g. in controller mode): `tower`, `clusterA`, `agentA` and `startAgentA` are
 * then absent.
 */
export async function startTopology (opts: { karmada?: boolean, tower?: boolean } = {}): Promise<Topology> {
  const bin = federationBinaries(opts.karmada === true ? ['kubefed', 'karmada', 'kube-controllers'] : ['kubefed', 'kube-controllers'])
  const dir = makeTempDir('federation')
  const logDir = join(dir, 'logs')
  mkdirSync(logDir)
  const procs: ManagedProcess[] = []
  const log = verboseLog
  const ns = await createNetns({ log })
  let cp: ControlPlane | undefined
  let tower: TowerServerHandle | undefined
  let agentA: TowerProcess | undefined
  const stop = async (): Promise<void> => {
    await agentA?.stop()
    await tower?.stop()
    for (const p of [...procs].reverse()) await p.stop()
    await cp?.stop()
    await ns.delete()
  }
  try {
    cp = await startControlPlane({ netns: ns.name, kwok: true, log })
    const a = cp.member
    const b = await startApiServer({ name: 'member-b', etcd: cp.etcd, bin: cp.binaries, dir, logDir, log })
    procs.push(b.process)
    procs.push(await startKwokFor(b, { bin: cp.binaries, dir, logDir, log }))
    for (const m of [a, b]) procs.push(...await startKubeControllers(m, bin, { logDir, log }))
    await Promise.all([addFakeNode(a, 'a-node'), addFakeNode(b, 'b-node')])

    await a.kubectl(['apply', '-f', '-'], { input: JSON.stringify(AGENT_SA) })
    await a.kubectl(['apply', '-f', '-'], { input: JSON.stringify(memberRbac(FEDERATION_USERS)) })
    const tokenFile = join(dir, 'a-agent-sa-token')
    await serviceAccountToken(a, 'tower-system', 'tower-agent', tokenFile)
    const agentUpstream = { url: a.url, caPem: a.caPem, tokenFile }
    if (opts.tower === false) {
      const bare = { ns, cp, host: cp.host, a, b, bin, dir, logDir, procs, stop, agentUpstream }
      return bare as unknown as Topology
    }
    tower = await startTowerServer(dir, { host: ns.hostAddress, logDir })
    const clusterA = await tower.addCluster('a', { mode: 'proxy', impersonate: true })
    const upstream = { url: a.url, caPem: a.caPem, tokenFile }
    let generation = 0
    const t = tower
    const startAgentA = async (): Promise<TowerProcess> => {
      agentA = await startTowerAgent(t, clusterA, upstream, { netns: ns.name, serverHost: ns.hostAddress, logDir, name: `tower-agent-a-${generation++}` })
      return agentA
    }
    await startAgentA()
    writeFileSync(join(dir, 'topology.json'), JSON.stringify({ host: cp.host.url, a: a.url, b: b.url, towerA: clusterA.port, netns: ns.name }, null, 2))
    const top: Topology = {
      ns, cp, host: cp.host, a, b, tower, clusterA, bin, dir, logDir, procs, stop, startAgentA, agentUpstream,
      get agentA () { return agentA! }
    }
    return top
  } catch (err) {
    await stop()
    throw err
  }
}

/**
 * A direct (no Tower) credential for `server`: a ServiceAccount bound to cluster-admin and a token for it,
 * what `kubefedctl join` / `karmadactl join` create in a member.
 */
export async function directToken (server: ApiServer, name: string): Promise<string> {
  const list = {
    apiVersion: 'v1',
    kind: 'List',
    items: [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'federation-direct' } },
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace: 'federation-direct' } },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRoleBinding',
        metadata: { name: `federation-direct-${name}` },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
        subjects: [{ kind: 'ServiceAccount', name, namespace: 'federation-direct' }]
      }
    ]
  }
  await server.kubectl(['apply', '-f', '-'], { input: JSON.stringify(list) })
  return (await server.kubectl(['create', 'token', name, '-n', 'federation-direct', '--duration=2h'])).trim()
}
