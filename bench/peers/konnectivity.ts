/**
 * Konnectivity (apiserver-network-proxy) as a peer: proxy-server in
 * `http-connect` mode with its frontend on a Unix socket (how kube-apiserver
 * talks to it), and one proxy-agent connected over TLS to its agent port.
 *
 * A caller reaches the upstream by sending `CONNECT host:port` on the Unix
 * socket. Two ways in are offered:
 *   - `connect` (used for the figures): the load client speaks CONNECT on the
 *     socket itself, as kube-apiserver does — no extra hop;
 *   - `port`: a small Node adapter in this process that turns each TCP
 *     connection into a CONNECT on the socket, for tools that need a port.
 */
import net from 'node:net'
import { join } from 'node:path'
import { freePortInRange, spawnLogged, stopChild, waitFor } from '../lib/proc.ts'
import { connectThrough } from '../lib/target.ts'
import { peerBinary, type Tunnel } from '../lib/tunnel.ts'
import type { BenchPki } from '../lib/pki.ts'

/** Konnectivity version pinned by bench/peers/konnectivity/go.mod. */
export const KONNECTIVITY_VERSION = process.env.KONNECTIVITY_VERSION ?? 'v0.36.0'

/** A running Konnectivity pair. */
export interface KonnectivityTunnel extends Tunnel {
  /** The proxy-server's HTTP-CONNECT Unix socket and the authority to CONNECT to. */
  connect: { socketPath: string, authority: string }
}

/** A TCP listener on 127.0.0.1:0 that CONNECTs every accepted connection through `via`. */
async function startAdapter (via: { socketPath: string, authority: string }): Promise<{ port: number, close (): Promise<void> }> {
  const conns = new Set<net.Socket>()
  const srv = net.createServer({ allowHalfOpen: true, noDelay: true }, (down) => {
    conns.add(down)
    down.pause()
    down.once('close', () => conns.delete(down))
    down.once('error', () => down.destroy())
    connectThrough(via).then((up) => {
      conns.add(up)
      up.once('close', () => { conns.delete(up); down.destroy() })
      up.once('error', () => down.destroy())
      down.once('close', () => up.destroy())
      down.pipe(up)
      up.pipe(down)
      down.resume()
    }, () => down.destroy())
  })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  return {
    port: (srv.address() as net.AddressInfo).port,
    async close () {
      for (const c of conns) c.destroy()
      await new Promise<void>((resolve) => srv.close(() => resolve()))
    }
  }
}

/**
 * Starts proxy-server and proxy-agent; resolves once the server's /readyz
 * says an agent is connected. `pki` supplies the agent-port certificate and
 * the CA the agent verifies it with.
 */
export async function startKonnectivity (upstream: { host: string, port: number }, workDir: string,
  pki: BenchPki): Promise<KonnectivityTunnel> {
  const server = peerBinary('konnectivity', KONNECTIVITY_VERSION, 'proxy-server')
  const agent = peerBinary('konnectivity', KONNECTIVITY_VERSION, 'proxy-agent')
  const socketPath = join(workDir, 'konnectivity.sock')
  // Konnectivity refuses port 0 and anything outside 1024..49151.
  const [agentPort, adminPort, healthPort, agentAdmin, agentHealth] = await Promise.all(
    Array.from({ length: 5 }, () => freePortInRange()))
  const srv = spawnLogged(server, [
    '--mode=http-connect', `--uds-name=${socketPath}`, '--server-port=0',
    '--agent-bind-address=127.0.0.1', `--agent-port=${agentPort}`,
    '--admin-bind-address=127.0.0.1', `--admin-port=${adminPort}`,
    '--health-bind-address=127.0.0.1', `--health-port=${healthPort}`,
    `--cluster-cert=${pki.certFile}`, `--cluster-key=${pki.keyFile}`,
    '--server-count=1', '--server-id=bench-server'
  ], join(workDir, 'konnectivity-server.log'))
  const agt = spawnLogged(agent, [
    '--proxy-server-host=127.0.0.1', `--proxy-server-port=${agentPort}`, `--ca-cert=${pki.caFile}`,
    '--admin-bind-address=127.0.0.1', `--admin-server-port=${agentAdmin}`,
    '--health-server-host=127.0.0.1', `--health-server-port=${agentHealth}`,
    '--agent-id=bench-agent'
  ], join(workDir, 'konnectivity-agent.log'))
  const stopAll = async (): Promise<void> => { await Promise.all([stopChild(agt), stopChild(srv)]) }
  try {
    await waitFor('konnectivity proxy-server /readyz', async () => {
      try {
        const r = await fetch(`http://127.0.0.1:${healthPort}/readyz`, { signal: AbortSignal.timeout(1000) })
        return r.status === 200
      } catch { return false }
    }, 30_000, 100)
    const connect = { socketPath, authority: `${upstream.host}:${upstream.port}` }
    const adapter = await startAdapter(connect)
    return {
      name: 'konnectivity',
      host: '127.0.0.1',
      port: adapter.port,
      connect,
      serverPid: srv.pid ?? 0,
      agentPid: agt.pid ?? 0,
      version: KONNECTIVITY_VERSION,
      async stop () { await adapter.close(); await stopAll() }
    }
  } catch (err) {
    await stopAll()
    throw err
  }
}
