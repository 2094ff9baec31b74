/**
 * What the soak runs on in standalone mode: one real control plane (etcd, host and member
 * kube-apiservers, kwok), a Tower server with the file registry on the host, and one Tower cluster per
 * network namespace with its agent inside that namespace. The types here are shared with controller
 * mode (controller-topology.ts): a topology is servers, clusters with their agents, and how to restart
 * each, so the fault injector does not care which mode it is in.
 *
 * Every namespace reaches only the host side of its own veth. The server listens on the host-side
 * address of the first namespace, and the others get a /32 route to it over their own veth, so one
 * listener serves all agents while taking one namespace's link down cuts only that agent. The member
 * apiserver listens on the host's loopback, where no namespace can go: a TCP relay on the server's
 * address carries the agents' upstream traffic to it (the agents verify the apiserver's certificate by
 * the name `kubernetes`, one of its SANs). The clusters share the one member apiserver; each works in its
 * own Kubernetes namespace, so their objects and informers are separate.
 */
import { execFile } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createConnection, createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'
import {
  createNetns,
  kubectl,
  startControlPlane,
  startProcess,
  waitFor,
  type ControlPlane,
  type ManagedProcess,
  type Netns
} from '../e2e/harness/index.ts'
import { startTower, towerOk, type TowerProcess } from '../e2e/tunnel-helpers.ts'

const execFileAsync = promisify(execFile)

/** The pod port kwok forwards to the byte server. */
export const BYTES_POD_PORT = 8000

/** One agent slot of a cluster: the process now in it and how many have been. */
export interface SoakAgent {
  /** Stable name of the slot, e.g. `soak-c1` or `soak-c1-b` (the report's key). */
  slot: string
  /** The current process's --agent-id (`<slot>-g<generation>`). */
  id: string
  proc: TowerProcess
  /** How many processes were started in this slot (1 = the first is still running). */
  generation: number
  /** When the current process was started (ms since the epoch). */
  startedAt: number
}

/** One server slot: the standalone server, or one controller-mode replica. */
export interface SoakServer {
  /** Stable name of the slot, `server` or `replica-<n>` (the report's key). */
  slot: string
  /** The address its cluster ports listen on (controller mode: its EndpointSlices' address). */
  address: string
  /** Controller mode: its --identity (the Lease's holder); standalone: the slot. */
  identity: string
  proc: TowerProcess
  /** Port of its agent endpoint, on the topology's serverAddress. */
  agentPort: number
  generation: number
  startedAt: number
}

/** One Tower cluster: its agents' namespace, its port and its caller kubeconfig. */
export interface SoakCluster {
  name: string
  /** Kubernetes namespace on the member where this cluster's objects live. */
  namespace: string
  netns: Netns
  port: number
  /** Caller kubeconfig (standalone: `tower kubeconfig`; controller: the Secret, via the slice balancer). */
  kubeconfig: string
  agents: SoakAgent[]
}

/** The running system, in either mode. */
export interface Topology {
  mode: 'standalone' | 'controller'
  cp: ControlPlane
  dir: string
  logDir: string
  /** Host-side address of the first namespace: the agent endpoints (and the upstream relay) listen here. */
  serverAddress: string
  servers: SoakServer[]
  clusters: SoakCluster[]
  /** The current host kube-apiserver process (replaced by restartHostApiserver). */
  hostApiserver: ManagedProcess
  /** Start a new process in a server slot whose process has exited (`fresh`: with a new identity). */
  restartServer (s: SoakServer, fresh: boolean): Promise<void>
  /** Called before a server slot's process is signalled (controller mode: the agents' round robin leaves it out). */
  markStopping (s: SoakServer): void
  /** Start a new process in an agent slot whose process has exited; resolves without waiting for it to connect. */
  restartAgent (c: SoakCluster, a: SoakAgent): Promise<void>
  /** Stop everything started. */
  stop (): Promise<void>
}

/** The command line of an agent in `dir` (join-token, tower-ca.crt, upstream.kubeconfig) dialing `server`. */
export function agentArgs (dir: string, server: string, cluster: string, id: string): string[] {
  return ['agent',
    '--server', server,
    '--cluster', cluster,
    '--token-file', join(dir, 'join-token'),
    '--ca-file', join(dir, 'tower-ca.crt'),
    '--kubeconfig', join(dir, 'upstream.kubeconfig'),
    '--agent-id', id,
    '--reconnect-min-ms', '200', '--reconnect-max-ms', '2000']
}

/** Start the next process of agent slot `a` of cluster `c` in its namespace, dialing `server`. */
export function spawnAgent (t: { dir: string, logDir: string }, c: SoakCluster, a: Omit<SoakAgent, 'proc'> & { proc?: TowerProcess }, server: string): SoakAgent {
  a.generation++
  a.startedAt = Date.now()
  a.id = `${a.slot}-g${a.generation}`
  a.proc = startTower(`tower-agent-${a.slot}-${a.generation}`, agentArgs(join(t.dir, `agent-${c.name}`), server, c.name, a.id), { netns: c.netns.name, logDir: t.logDir })
  return a as SoakAgent
}

/** Write an agent directory: its join token, the Tower CA, and the upstream kubeconfig. */
export function writeAgentDir (dir: string, token: string, caPem: string, upstreamKubeconfig: string): void {
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'join-token'), token + '\n', { mode: 0o600 })
  writeFileSync(join(dir, 'tower-ca.crt'), caPem, { mode: 0o600 })
  writeFileSync(join(dir, 'upstream.kubeconfig'), upstreamKubeconfig, { mode: 0o600 })
}

/** The agents' upstream kubeconfig: the member apiserver through the relay, as admin. */
export function upstreamKubeconfig (cp: ControlPlane, host: string, port: number): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'member', cluster: { server: `https://${host}:${port}`, 'tls-server-name': 'kubernetes', 'certificate-authority-data': Buffer.from(cp.member.caPem).toString('base64') } }],
    users: [{ name: 'agent', user: { 'client-certificate-data': Buffer.from(cp.member.adminCertPem).toString('base64'), 'client-key-data': Buffer.from(cp.member.adminKeyPem).toString('base64') } }],
    contexts: [{ name: 'member', context: { cluster: 'member', user: 'agent' } }],
    'current-context': 'member'
  })
}

function serverArgs (stateDir: string, serverAddress: string, port: number): string[] {
  return ['server', '--state-dir', stateDir, '--listen', `${serverAddress}:${port}`, '--port-range', '0',
    '--advertise-host', '127.0.0.1', '--san', '127.0.0.1', '--san', serverAddress, '--cluster-host', '127.0.0.1']
}

/** A TCP relay from `host`:0 to 127.0.0.1:`target`. */
async function startRelay (host: string, target: number): Promise<{ port: number, close (): void }> {
  const sockets = new Set<Socket>()
  const server: Server = createServer((inbound) => {
    const outbound = createConnection(target, '127.0.0.1')
    for (const s of [inbound, outbound]) {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
      s.on('error', () => { inbound.destroy(); outbound.destroy() })
    }
    inbound.pipe(outbound).pipe(inbound)
  })
  server.listen(0, host)
  await once(server, 'listening')
  return { port: (server.address() as { port: number }).port, close: () => { for (const s of sockets) s.destroy(); server.close() } }
}

/** Add the /32 route from a namespace to the server address (again after its link was down). */
export async function routeToServer (serverAddress: string, ns: Netns): Promise<void> {
  if (ns.hostAddress === serverAddress) return
  await execFileAsync('ip', ['-n', ns.name, 'route', 'replace', `${serverAddress}/32`, 'dev', ns.nsInterface])
}

/** What both topologies start from: see {@link startBase}. */
export interface Base {
  namespaces: Netns[]
  cp: ControlPlane
  logDir: string
  /** The first namespace's host-side address, where the servers listen. */
  serverAddress: string
  /** The TCP relay from `serverAddress` to the member apiserver. */
  relay: { port: number, close (): void }
}

/**
 * `count` network namespaces, the control plane (kwok forwards the pods'
 * port to the byte server), `<dir>/logs`, and the relay to the member.
 */
export async function startBase (opts: { count: number, bytesPort: number, log: (l: string) => void, dir: string }): Promise<Base> {
  const started = Date.now()
  const logDir = join(opts.dir, 'logs')
  mkdirSync(logDir, { recursive: true })
  const namespaces: Netns[] = []
  for (let i = 0; i < opts.count; i++) namespaces.push(await createNetns())
  const cp = await startControlPlane({ kwok: { portForwards: [{ port: BYTES_POD_PORT, address: '127.0.0.1', targetPort: opts.bytesPort }] } })
  opts.log(`control plane ${cp.member.version} ready in ${Date.now() - started} ms`)
  const serverAddress = namespaces[0]!.hostAddress
  const relay = await startRelay(serverAddress, cp.member.port)
  return { namespaces, cp, logDir, serverAddress, relay }
}

/** Build the standalone system; `count` clusters. */
export async function startTopology (opts: { count: number, bytesPort: number, log: (l: string) => void, dir: string }): Promise<Topology> {
  const { log, dir } = opts
  const { namespaces, cp, logDir, serverAddress, relay } = await startBase(opts)
  const stateDir = join(dir, 'state')
  const server: SoakServer = { slot: 'server', address: '127.0.0.1', identity: 'server', proc: undefined as never, agentPort: 0, generation: 0, startedAt: 0 }
  const agentUrl = (): string => `wss://${serverAddress}:${server.agentPort}`
  const t: Topology = {
    mode: 'standalone', cp, dir, logDir, serverAddress, servers: [server], clusters: [], hostApiserver: cp.host.process,
    // Start (or restart) the server on the state dir; resolves when every known cluster port listens.
    async restartServer (s) {
      s.generation++
      s.startedAt = Date.now()
      s.proc = startTower(`tower-server-${s.generation}`, serverArgs(stateDir, serverAddress, s.agentPort), { logDir })
      const listening = await s.proc.waitFor((l) => l.msg === 'agent endpoint listening', 60_000)
      s.agentPort = Number(listening.port)
      for (const c of t.clusters) await s.proc.waitFor((l) => l.msg === 'cluster listener ready' && l.cluster === c.name, 60_000)
      log(`tower server generation ${s.generation} (pid ${s.proc.process.pid}) listening on ${serverAddress}:${s.agentPort}`)
    },
    markStopping () {},
    async restartAgent (c, a) {
      spawnAgent(t, c, a, agentUrl())
    },
    async stop () {
      for (const c of t.clusters) for (const a of c.agents) await a.proc.stop()
      await server.proc?.stop()
      relay.close()
      if (t.hostApiserver !== cp.host.process) await t.hostApiserver.stop()
      await cp.stop()
      for (const ns of namespaces) await ns.delete()
    }
  }
  await t.restartServer(server, false)
  const upstream = upstreamKubeconfig(cp, serverAddress, relay.port)
  for (let i = 0; i < opts.count; i++) {
    const name = `soak-c${i + 1}`
    const ns = namespaces[i]!
    await routeToServer(serverAddress, ns)
    const added = JSON.parse(await towerOk(['cluster', 'add', name, '--state-dir', stateDir, '--output', 'json'])) as { token: string, caPem: string }
    const ready = await server.proc.waitFor((l) => l.msg === 'cluster listener ready' && l.cluster === name, 60_000)
    writeAgentDir(join(dir, `agent-${name}`), added.token, added.caPem, upstream)
    const kubeconfig = join(dir, `${name}.kubeconfig`)
    await towerOk(['kubeconfig', name, '--state-dir', stateDir, '--out', kubeconfig])
    const c: SoakCluster = { name, namespace: name, netns: ns, port: Number(ready.port), kubeconfig, agents: [] }
    t.clusters.push(c)
    const a = spawnAgent(t, c, { slot: name, id: '', generation: 0, startedAt: 0 }, agentUrl())
    c.agents.push(a)
    await a.proc.waitFor((l) => l.msg === 'connected to server', 60_000)
    log(`cluster ${name}: port ${c.port}, agent in netns ${ns.name} (${ns.nsAddress})`)
  }
  return t
}

/**
 * Restart the host kube-apiserver with the command line it runs with (read from /proc): SIGTERM, wait
 * for the exit, start again, wait for /readyz.
 */
export async function restartHostApiserver (t: Topology, log: (l: string) => void): Promise<void> {
  const old = t.hostApiserver
  const argv = readFileSync(`/proc/${old.pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '')
  process.kill(old.pid, 'SIGTERM')
  await old.exited
  const proc = startProcess(`kube-apiserver[host]-restart-${Date.now()}`, argv[0]!, argv.slice(1), { logDir: t.logDir })
  t.hostApiserver = proc
  await waitFor('host kube-apiserver /readyz after restart', async () => {
    const r = await kubectl(t.cp.host.adminKubeconfigPath, ['get', '--raw=/readyz'], { timeoutMs: 10_000 })
    return r.code === 0 && r.stdout.trim() === 'ok' ? true : undefined
  }, { timeoutMs: 180_000, intervalMs: 500, proc })
  log(`host kube-apiserver restarted (pid ${proc.pid})`)
}
