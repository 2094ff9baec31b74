/**
 * What every tunnel starter (Tower, chisel, Konnectivity) returns: a local
 * TCP port that reaches the upstream through the tunnel, the pids of the two
 * tunnel ends (for RSS), and a stop().
 */
import { homedir } from 'node:os'
import { join } from 'node:path'
import { existsSync } from 'node:fs'

/** A running tunnel. */
export interface Tunnel {
  /** Row label, e.g. `chisel`. */
  name: string
  /** Host of the local entry port. */
  host: string
  /** Local entry port: connecting here reaches the upstream through the tunnel. */
  port: number
  /** pid of the server end (the side callers connect to). */
  serverPid: number
  /** pid of the agent / client end (the side that dials the upstream). */
  agentPid: number
  /** Version string of the tool, for the report. */
  version: string
  /** Stops both ends (and any adapter). */
  stop (): Promise<void>
}

/** Where bench/peers/build.sh put the binaries. */
export function benchCache (): string {
  return process.env.TOWER_BENCH_CACHE ?? join(homedir(), '.cache', 'tower-bench')
}

/** Path of a built peer binary, or an error telling how to build it. */
export function peerBinary (tool: string, version: string, bin: string): string {
  const p = join(benchCache(), `${tool}-${version}`, bin)
  if (!existsSync(p)) throw new Error(`${p} missing: run bench/peers/build.sh`)
  return p
}
