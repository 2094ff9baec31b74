/**
 * What the soak runs on: one real control plane (etcd, host and member kube-apiservers, kwok), a Tower
 * server in standalone mode (file registry) on the host, and one Tower cluster per network namespace with
 * its agent inside that namespace.
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

/** One Tower cluster: its agent's namespace, its port and its caller kubeconfig. */
export interface SoakCluster {
  name: string
  /** Kubernetes namespace on the member where this cluster's objects live. */
  namespace: string
  netns: Netns
  port: number
  /** Kubeconfig issued by `tower kubeconfig` (client certificate, proxy mode). */
  kubeconfig: string
  token: string
  caPem: string
  agent: TowerProcess
  /** How many agent processes were started for this cluster (1 = the first is still running). */
  agentGeneration: number
  /** When the current agent process was started (ms since the epoch). */
  agentStartedAt: number
}

/** The running system. */
export interface Topology {
  cp: ControlPlane
  dir: string
  logDir: string
  stateDir: string
  serverAddress: string
  agentPort: number
  server: TowerProcess
  serverGeneration: number
  /** When the current server process was started (ms since the epoch). */
  serverStartedAt: number
  clusters: SoakCluster[]
  /** The current host kube-apiserver process (replaced by restartHostApiserver). */
  hostApiserver: ManagedProcess
}

function serverArgs (t: { stateDir: string, serverAddress: string }, port: number): string[] {
  return ['server', '--state-dir', t.stateDir, '--listen', `${t.serverAddress}:${port}`, '--port-range', '0',
    '--advertise-host', '127.0.0.1', '--san', '127.0.0.1', '--san', t.serverAddress, '--cluster-host', '127.0.0.1']
}

/** Start (or restart) the Tower server on the state dir; resolves when every known cluster port listens. */
export async function startServer (t: Topology, log: (l: string) => void): Promise<void> {
  t.serverGeneration++
  t.serverStartedAt = Date.now()
  const server = startTower(`tower-server-${t.serverGeneration}`, serverArgs(t, t.agentPort), { logDir: t.logDir })
  t.server = server
  const listening = await server.waitFor((l) => l.msg === 'agent endpoint listening', 60_000)
  t.agentPort = Number(listening.port)
  for (const c of t.clusters) {
    await server.waitFor((l) => l.msg === 'cluster listener ready' && l.cluster === c.name, 60_000)
  }
  log(`tower server generation ${t.serverGeneration} (pid ${server.process.pid}) listening on ${t.serverAddress}:${t.agentPort}`)
}

/** Start (or restart) the agent of `c` inside its namespace; resolves once it has connected. */
export async function startAgent (t: Topology, c: SoakCluster, opts: { wait: boolean }): Promise<void> {
  c.agentGeneration++
  c.agentStartedAt = Date.now()
  const dir = join(t.dir, `agent-${c.name}`)
  const args = ['agent',
    '--server', `wss://${t.serverAddress}:${t.agentPort}`,
    '--cluster', c.name,
    '--token-file', join(dir, 'join-token'),
    '--ca-file', join(dir, 'tower-ca.crt'),
    '--kubeconfig', join(dir, 'upstream.kubeconfig'),
    '--agent-id', `${c.name}-g${c.agentGeneration}`,
    '--reconnect-min-ms', '200', '--reconnect-max-ms', '2000']
  c.agent = startTower(`tower-agent-${c.name}-${c.agentGeneration}`, args, { netns: c.netns.name, logDir: t.logDir })
  if (opts.wait) await c.agent.waitFor((l) => l.msg === 'connected to server', 60_000)
}

/** A TCP relay from `host`:0 to 127.0.0.1:`target`. */
async function startRelay (host: string, target: number): Promise<{ port: number, server: Server, sockets: Set<Socket> }> {
  const sockets = new Set<Socket>()
  const server = createServer((inbound) => {
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
  return { port: (server.address() as { port: number }).port, server, sockets }
}

/** Add the /32 route from a namespace to the server address (again after its link was down). */
export async function routeToServer (t: Topology, ns: Netns): Promise<void> {
  if (ns.hostAddress === t.serverAddress) return
  await execFileAsync('ip', ['-n', ns.name, 'route', 'replace', `${t.serverAddress}/32`, 'dev', ns.nsInterface])
}

/** Build everything; `count` clusters. */
export async function startTopology (opts: { count: number, bytesPort: number, log: (l: string) => void, dir: string }): Promise<Topology & { stop (): Promise<void> }> {
  const { log, dir } = opts
  const logDir = join(dir, 'logs')
  mkdirSync(logDir, { recursive: true })
  const started = Date.now()
  const namespaces: Netns[] = []
  for (let i = 0; i < opts.count; i++) namespaces.push(await createNetns())
  const cp = await startControlPlane({ kwok: { portForwards: [{ port: BYTES_POD_PORT, address: '127.0.0.1', targetPort: opts.bytesPort }] } })
  log(`control plane ${cp.member.version} ready in ${Date.now() - started} ms`)
  const serverAddress = namespaces[0]!.hostAddress
  const relay = await startRelay(serverAddress, cp.member.port)
  const t: Topology = {
    cp, dir, logDir, stateDir: join(dir, 'state'), serverAddress, agentPort: 0,
    server: undefined as never, serverGeneration: 0, serverStartedAt: 0, clusters: [], hostApiserver: cp.host.process
  }
  await startServer(t, log)
  const upstreamKubeconfig = JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'member', cluster: { server: `https://${serverAddress}:${relay.port}`, 'tls-server-name': 'kubernetes', 'certificate-authority-data': Buffer.from(cp.member.caPem).toString('base64') } }],
    users: [{ name: 'agent', user: { 'client-certificate-data': Buffer.from(cp.member.adminCertPem).toString('base64'), 'client-key-data': Buffer.from(cp.member.adminKeyPem).toString('base64') } }],
    contexts: [{ name: 'member', context: { cluster: 'member', user: 'agent' } }],
    'current-context': 'member'
  })
  for (let i = 0; i < opts.count; i++) {
    const name = `soak-c${i + 1}`
    const ns = namespaces[i]!
    await routeToServer(t, ns)
    const added = JSON.parse(await towerOk(['cluster', 'add', name, '--state-dir', t.stateDir, '--output', 'json'])) as { token: string, caPem: string }
    const ready = await t.server.waitFor((l) => l.msg === 'cluster listener ready' && l.cluster === name, 60_000)
    const adir = join(dir, `agent-${name}`)
    mkdirSync(adir, { recursive: true })
    writeFileSync(join(adir, 'join-token'), added.token + '\n', { mode: 0o600 })
    writeFileSync(join(adir, 'tower-ca.crt'), added.caPem, { mode: 0o600 })
    writeFileSync(join(adir, 'upstream.kubeconfig'), upstreamKubeconfig, { mode: 0o600 })
    const kubeconfig = join(dir, `${name}.kubeconfig`)
    await towerOk(['kubeconfig', name, '--state-dir', t.stateDir, '--out', kubeconfig])
    const c: SoakCluster = {
      name, namespace: name, netns: ns, port: Number(ready.port), kubeconfig, token: added.token, caPem: added.caPem,
      agent: undefined as never, agentGeneration: 0, agentStartedAt: 0
    }
    t.clusters.push(c)
    await startAgent(t, c, { wait: true })
    log(`cluster ${name}: port ${c.port}, agent in netns ${ns.name} (${ns.nsAddress})`)
  }
  const stop = async (): Promise<void> => {
    for (const c of t.clusters) await c.agent.stop()
    await t.server?.stop()
    for (const s of relay.sockets) s.destroy()
    relay.server.close()
    if (t.hostApiserver !== cp.host.process) await t.hostApiserver.stop()
    await cp.stop()
    for (const ns of namespaces) await ns.delete()
  }
  return Object.assign(t, { stop })
}

/**
 * Restart the host kube-apiserver with the command line it runs with (read from /proc): SIGTERM, wait
 * for the exit, start again, wait for /readyz. Returns ms until it was ready again.
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
