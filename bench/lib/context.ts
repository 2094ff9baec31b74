/** What every section gets from run.ts: options, the paths under test, the load client. */
import type { BenchOptions } from './options.ts'
import type { BenchPki } from './pki.ts'
import type { LoadClient } from './client.ts'
import type { Target } from './target.ts'
import type { TowerRig } from '../tower.ts'

/**
 * Names of the paths of the bulk and rps sections, in report order.
 * `konnectivity` is the load client speaking CONNECT on the proxy-server's
 * Unix socket itself (as kube-apiserver does); `konnectivity-adapter` goes
 * through the extra Node hop that turns a TCP port into CONNECTs, shown so
 * the cost of that hop is visible. `secure-relay` and `l7-chain` are the
 * ceilings of passthrough and proxy mode (bench/secure-relay.ts, bench/l7-chain.ts).
 */
export const PATHS = ['direct', 'direct-http', 'relay', 'secure-relay', 'tower-passthrough', 'l7-chain', 'tower-proxy', 'chisel', 'konnectivity', 'konnectivity-adapter'] as const

/** Paths with h2 client rows in the small-requests section. */
export const H2_PATHS = ['direct', 'l7-chain', 'tower-proxy'] as const

/** A two-process path started for one measurement. */
export interface FreshPath {
  target: Target
  pids: { server: number, agent: number }
  stop: () => Promise<void>
}

/** The shared state of one run. */
export interface BenchContext {
  opts: BenchOptions
  /** Scratch directory of this run (state dirs, logs, certificates). */
  workDir: string
  pki: BenchPki
  /** The upstream child: its ports and pid. */
  upstream: { https: number, http: number, pid: number }
  client: LoadClient
  /** Every path that started, keyed by name (see {@link PATHS}). */
  targets: Map<string, Target>
  /** pids of the two ends of each tunnel path, keyed by path name. */
  pids: Map<string, { server: number, agent: number }>
  /** Tower, when its CLI is available. */
  tower?: TowerRig
  /**
   * Starts another, fresh Tower (server + proxy and passthrough agents) in
   * its own subdirectory `name` of the work dir, for figures that need
   * processes nothing else has used (RSS growth). The caller stops it.
   */
  freshTower?: (name: string) => Promise<TowerRig>
  /**
   * Starts a fresh `l7-chain` (entry and exit processes nothing else has
   * used), logs named after `name`, for the idle section's ceiling rows.
   * The caller stops it.
   */
  freshL7Chain?: (name: string) => Promise<FreshPath>
  /** Things skipped or failed, for the report. */
  notes: string[]
  /** Node flags for Tower's processes (`--cpu-prof …` with --cpu-prof). */
  towerNodeArgs: string[]
  /** Extra environment of Tower's processes (`--tower-env`). */
  towerEnv: Record<string, string>
  /** Progress line on stderr. */
  log (msg: string): void
  /**
   * Starts measuring the CPU the host takes from this VM (lib/machine.ts
   * `stealMeter`): call it before one measurement, and its result after.
   */
  stealMeter (): () => number
}

/** The targets of `names` that are running, in that order. */
export function targetsOf (ctx: BenchContext, names: readonly string[]): Target[] {
  return names.flatMap((n) => {
    const t = ctx.targets.get(n)
    return t === undefined ? [] : [t]
  })
}
