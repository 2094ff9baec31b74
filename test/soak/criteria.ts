/**
 * The soak's pass criteria that are pure functions of what was observed, so unit tests can show each
 * one failing: which agents a server process holds (from its own log, not from the controller's
 * slices), whether the EndpointSlices list exactly the replicas that hold each cluster's agents,
 * leftovers of dead replicas, and RSS/fd growth per process.
 */
import type { LogLine } from '../e2e/tunnel-helpers.ts'
import type { ProcStats } from './report.ts'

/** One EndpointSlice as the checks need it. */
export interface SliceView {
  name: string
  /** Its kubernetes.io/service-name label (mc-<cluster>). */
  service: string
  /** Its tower.kubesphere.io/replica-identity annotation. */
  identity: string
  /** Addresses of its ready endpoints. */
  ready: string[]
}

/** One replica Lease. */
export interface LeaseView {
  name: string
  holder: string
}

/**
 * The agents a server holds now, per cluster, replayed from its log: `agent connected` adds
 * (agentId, remote), `agent disconnected` removes that same pair (a replaced session's late disconnect
 * does not remove the new one).
 */
export function agentsHeld (lines: readonly LogLine[]): Map<string, Set<string>> {
  const sessions = new Map<string, { cluster: string, agentId: string }>()
  for (const l of lines) {
    if (typeof l?.cluster !== 'string' || typeof l.agentId !== 'string') continue
    const key = `${l.agentId}\n${String(l.remote)}`
    if (l.msg === 'agent connected') sessions.set(key, { cluster: l.cluster, agentId: l.agentId })
    else if (l.msg === 'agent disconnected') sessions.delete(key)
  }
  const out = new Map<string, Set<string>>()
  for (const { cluster, agentId } of sessions.values()) {
    let s = out.get(cluster)
    if (s === undefined) out.set(cluster, s = new Set())
    s.add(agentId)
  }
  return out
}

/** `cluster -> replica addresses` that must be listed, from each live replica's address and log. */
export function expectedEndpoints (replicas: ReadonlyArray<{ address: string, lines: readonly LogLine[] }>): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>()
  for (const r of replicas) {
    for (const [cluster, agents] of agentsHeld(r.lines)) {
      if (agents.size === 0) continue
      let s = out.get(cluster)
      if (s === undefined) out.set(cluster, s = new Set())
      s.add(r.address)
    }
  }
  return out
}

/** Differences between the ready addresses of each cluster's slices and `expected`; empty = they agree. */
export function sliceMismatches (clusters: readonly string[], expected: ReadonlyMap<string, ReadonlySet<string>>, slices: readonly SliceView[]): string[] {
  const out: string[] = []
  for (const c of clusters) {
    const want = [...(expected.get(c) ?? [])].sort()
    const got = [...new Set(slices.filter((s) => s.service === `mc-${c}`).flatMap((s) => s.ready))].sort()
    if (want.join(',') !== got.join(',')) out.push(`${c}: slices list [${got.join(', ')}], the replicas holding its agents are [${want.join(', ')}]`)
  }
  return out
}

/** Slices and Leases whose replica identity is not one of `live`; empty = none left. */
export function deadLeftovers (live: ReadonlySet<string>, slices: readonly SliceView[], leases: readonly LeaseView[]): string[] {
  return [
    ...slices.filter((s) => !live.has(s.identity)).map((s) => `EndpointSlice ${s.name} of replica ${s.identity || '(none)'}`),
    ...leases.filter((l) => !live.has(l.holder)).map((l) => `Lease ${l.name} of replica ${l.holder || '(none)'}`)
  ]
}

/** Bounds on a process's growth over the soak. */
export interface GrowthBounds {
  /** fds allowed above the baseline. */
  fdSlack: number
  /** RSS may be this many times the baseline ... */
  rssFactor: number
  /** ... plus this many bytes. */
  rssSlackBytes: number
}

/** Why `after` is out of bounds against `baseline` (empty = within). */
export function growthProblems (key: string, baseline: ProcStats, after: ProcStats, b: GrowthBounds): string[] {
  const out: string[] = []
  if (after.fds > baseline.fds + b.fdSlack) out.push(`${key}: ${after.fds} fds after the soak, baseline ${baseline.fds} (slack ${b.fdSlack})`)
  if (after.rssBytes > baseline.rssBytes * b.rssFactor + b.rssSlackBytes) out.push(`${key}: RSS ${(after.rssBytes / 1e6).toFixed(1)} MB after the soak, baseline ${(baseline.rssBytes / 1e6).toFixed(1)} MB`)
  return out
}
