/**
 * chisel as a peer: `chisel server --reverse` plays Tower's server and
 * `chisel client … R:127.0.0.1:A:<upstream>` plays the agent, so the
 * server's port A reaches the upstream through chisel's SSH-over-WebSocket
 * tunnel, the way chisel is used as a reverse tunnel. No TLS on the chisel
 * hop: SSH already encrypts it, and adding TLS would only slow chisel down.
 */
import type { ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { freePortInRange, spawnLogged, stopChild, waitForTcp } from '../lib/proc.ts'
import { peerBinary, type Tunnel } from '../lib/tunnel.ts'

/** chisel version built by build.sh (v1.11.5 is refused by the module proxy; see bench/README.md). */
export const CHISEL_VERSION = process.env.CHISEL_VERSION ?? 'v1.11.3'

/** Starts a chisel server and reverse client to `upstream`; resolves once the reverse port accepts. */
export async function startChisel (upstream: { host: string, port: number }, workDir: string): Promise<Tunnel> {
  const bin = peerBinary('chisel', CHISEL_VERSION, 'chisel')
  const serverPort = await freePortInRange()
  const entryPort = await freePortInRange()
  const server = spawnLogged(bin, ['server', '--host', '127.0.0.1', '--port', String(serverPort), '--reverse'],
    join(workDir, 'chisel-server.log'))
  let client: ChildProcess | undefined
  try {
    await waitForTcp('127.0.0.1', serverPort)
    client = spawnLogged(bin, ['client', `http://127.0.0.1:${serverPort}`,
      `R:127.0.0.1:${entryPort}:${upstream.host}:${upstream.port}`], join(workDir, 'chisel-client.log'))
    await waitForTcp('127.0.0.1', entryPort)
    const c = client
    return {
      name: 'chisel',
      host: '127.0.0.1',
      port: entryPort,
      serverPid: server.pid ?? 0,
      agentPid: c.pid ?? 0,
      version: CHISEL_VERSION,
      async stop () { await Promise.all([stopChild(c), stopChild(server)]) }
    }
  } catch (err) {
    await Promise.all([client === undefined ? undefined : stopChild(client), stopChild(server)])
    throw err
  }
}
