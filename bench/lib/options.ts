/**
 * Command-line options of `node bench/run.ts` and the sizes each section
 * uses. `--quick` shrinks every size for a smoke run; each size can also be
 * set on its own. A run with `--quick` or `--only` writes smoke results and
 * leaves BENCHMARKS.md and latest.json alone (unless `--write-report`).
 */
import { parseArgs } from 'node:util'

/** The sections, in run order. */
export const SECTIONS = ['bulk', 'rps', 'hol', 'idle', 'clientgo', 'agents'] as const
/** One section name. */
export type Section = typeof SECTIONS[number]

/** Resolved options. */
export interface BenchOptions {
  /** Sections to run. */
  only: Section[]
  /** Smoke-run sizes. */
  quick: boolean
  /** Bytes per one-stream bulk transfer. */
  bulkBytes: number
  /** Repetitions of each bulk transfer (the median is reported). */
  bulkRepeat: number
  /** Concurrent requests in the rps section. */
  rpsConcurrency: number
  /** Measured milliseconds per rps run (after the warm-up). */
  rpsMs: number
  /** Rounds of the rps section: every path once per round, the median reported. */
  rpsRounds: number
  /** Warm-up milliseconds per rps run. */
  rpsWarmupMs: number
  /** Streams in the head-of-line section. */
  holStreams: number
  /** Bytes per head-of-line stream. */
  holBytes: number
  /** Stalled runs per path in the head-of-line section (each followed by a run alone). */
  holRounds: number
  /** Concurrent idle watch streams. */
  idleStreams: number
  /** ConfigMaps the clientgo workload lists (created once in the real kube-apiserver). */
  clientgoConfigMaps: number
  /** Full lists of those ConfigMaps in the clientgo list storm. */
  clientgoLists: number
  /** Server-side applies in the clientgo apply storm. */
  clientgoApplies: number
  /** Idle watches the clientgo workload holds for the memory-per-watch figures. */
  clientgoWatches: number
  /** Agents in the agents section. */
  agents: number
  /** Node processes that host the agents of the agents section. */
  agentProcs: number
  /** The l7-chain baseline's link between its two proxies: one h2 session (`h2`) or an HTTP/1.1 keep-alive pool (`h1`). */
  l7Link: 'h1' | 'h2'
  /** Skip chisel and Konnectivity. */
  noPeers: boolean
  /** Write latest.json and BENCHMARKS.md even for a quick or partial run. */
  writeReport: boolean
  /** Keep the scratch directory (logs, state dirs) even when nothing failed. */
  keep: boolean
  /** Run Tower's processes with `--cpu-prof`, profiles into bench/results/profiles/. */
  cpuProf: boolean
  /** Extra node flags for Tower's processes (space-separated), e.g. `--trace-gc`. */
  towerNodeArgs: string[]
  /** Extra environment of Tower's processes (`K=V`, space-separated), e.g. `TOWER_GC_TUNING=off`. */
  towerEnv: Record<string, string>
}

const MiB = 1024 * 1024

/** Parses argv (without node and script). */
export function parseBenchOptions (argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      only: { type: 'string' },
      quick: { type: 'boolean', default: false },
      'bulk-mib': { type: 'string' },
      'bulk-repeat': { type: 'string' },
      'rps-seconds': { type: 'string' },
      'rps-rounds': { type: 'string' },
      'hol-mib': { type: 'string' },
      'idle-streams': { type: 'string' },
      'clientgo-configmaps': { type: 'string' },
      'clientgo-watches': { type: 'string' },
      agents: { type: 'string' },
      'agent-procs': { type: 'string' },
      'no-peers': { type: 'boolean', default: false },
      'l7-link': { type: 'string', default: 'h2' },
      'write-report': { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      'cpu-prof': { type: 'boolean', default: false },
      'tower-node-args': { type: 'string', default: '' },
      'tower-env': { type: 'string', default: '' },
      help: { type: 'boolean', default: false }
    }
  })
  if (values.help === true) {
    console.log(`usage: node bench/run.ts [--quick] [--only ${SECTIONS.join(',')}] [--no-peers]
  [--bulk-mib N] [--bulk-repeat N] [--rps-seconds N] [--rps-rounds N] [--hol-mib N] [--idle-streams N]
  [--l7-link h2|h1] [--clientgo-configmaps N] [--clientgo-watches N] [--agents N] [--agent-procs N] [--write-report] [--keep] [--cpu-prof] [--tower-node-args='--flag ...'] [--tower-env='K=V ...']`)
    process.exit(0)
  }
  const only = values.only === undefined ? [...SECTIONS] : values.only.split(',').map((s) => s.trim())
  for (const s of only) if (!(SECTIONS as readonly string[]).includes(s)) throw new Error(`--only: unknown section "${s}" (known: ${SECTIONS.join(', ')})`)
  const q = values.quick === true
  const num = (v: string | undefined, dflt: number, what: string): number => {
    if (v === undefined) return dflt
    const n = Number(v)
    if (!Number.isFinite(n) || n <= 0) throw new Error(`${what} must be a positive number, got "${v}"`)
    return n
  }
  return {
    only: SECTIONS.filter((s) => only.includes(s)),
    quick: q,
    bulkBytes: Math.round(num(values['bulk-mib'], q ? 32 : 256, '--bulk-mib') * MiB),
    bulkRepeat: Math.round(num(values['bulk-repeat'], q ? 1 : 3, '--bulk-repeat')),
    rpsConcurrency: 64,
    rpsMs: num(values['rps-seconds'], q ? 2 : 4, '--rps-seconds') * 1000,
    rpsRounds: Math.round(num(values['rps-rounds'], q ? 1 : 3, '--rps-rounds')),
    rpsWarmupMs: q ? 500 : 1000,
    holStreams: 8,
    holBytes: Math.round(num(values['hol-mib'], q ? 8 : 64, '--hol-mib') * MiB),
    // 5, not 3: single runs alone vary ±15 % on this 2-core VM, and with 3
    // rounds one slow stalled run moved a path's median below 0.9
    holRounds: q ? 1 : 5,
    idleStreams: Math.round(num(values['idle-streams'], q ? 500 : 10_000, '--idle-streams')),
    clientgoConfigMaps: Math.round(num(values['clientgo-configmaps'], q ? 500 : 5000, '--clientgo-configmaps')),
    clientgoLists: q ? 3 : 10,
    clientgoApplies: q ? 50 : 500,
    clientgoWatches: Math.round(num(values['clientgo-watches'], q ? 100 : 1000, '--clientgo-watches')),
    agents: Math.round(num(values.agents, q ? 50 : 5000, '--agents')),
    // 625 agents (and sockets) per fleet process at 5,000: well under the fd limit of each
    agentProcs: Math.round(num(values['agent-procs'], q ? 1 : 8, '--agent-procs')),
    l7Link: values['l7-link'] === 'h1' ? 'h1' : values['l7-link'] === 'h2' ? 'h2' : (() => { throw new Error(`--l7-link must be h2 or h1, got "${values['l7-link']}"`) })(),
    noPeers: values['no-peers'] === true,
    writeReport: values['write-report'] === true,
    keep: values.keep === true,
    cpuProf: values['cpu-prof'] === true,
    towerNodeArgs: values['tower-node-args'].split(' ').filter((a) => a !== ''),
    towerEnv: Object.fromEntries(values['tower-env'].split(' ').filter((a) => a !== '').map((kv) => {
      const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(kv)
      if (m === null) throw new Error(`--tower-env: "${kv}" is not NAME=VALUE`)
      return [m[1]!, m[2]!]
    }))
  }
}

/** True when this run should produce the committed report files. */
export function isFullRun (o: BenchOptions): boolean {
  return o.writeReport || (!o.quick && o.only.length === SECTIONS.length && !o.noPeers)
}
