/**
 * Turns one run's raw figures into the summary keys of latest.json, their
 * targets and the text that says how each is computed (the markdown itself
 * is report-md.ts). Every number comes from the run's results object;
 * nothing here is typed in by hand. Where a key names no Tower mode, the
 * worse of the two modes is used, so a claim never rests on the better one;
 * "the lower of download and upload" where both exist.
 *
 *   node bench/report.ts --write-key-docs   rewrites the "How each key is computed"
 *                                           section of BENCHMARKS.md from KEY_DOCS
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { BulkResult } from './sections/bulk.ts'
import { H2_RPS_SESSIONS, type RpsMode, type RpsResult } from './sections/rps.ts'
import type { HolResult } from './sections/hol.ts'
import type { IdleResult } from './sections/idle.ts'
import type { ClientgoResult } from './sections/clientgo.ts'
import type { AgentsResult } from './sections/agents.ts'
import type { Machine } from './lib/machine.ts'
import { pairedDiff, pairedRatio, ratio } from './lib/stats.ts'

/** Everything one run measured. */
export interface RunResults {
  date: string
  machine: Machine
  /** 1-minute load average at the end of the run. */
  loadavgEnd: number
  /** 1-minute load average when each section started (includes the bench's own processes). */
  loadBySection: Record<string, number>
  /** Percent of all CPUs used by processes outside the run during each section. */
  otherCpuBySection: Record<string, number>
  /** Percent of all CPUs the host took from this VM (steal) during each section; absent in runs before it was recorded. */
  stealCpuBySection?: Record<string, number>
  durationS: number
  towerCommit: string
  versions: Record<string, string>
  options: Record<string, unknown>
  sections: string[]
  notes: string[]
  bulk?: BulkResult
  rps?: RpsResult
  hol?: HolResult
  idle?: IdleResult
  clientgo?: ClientgoResult
  agents?: AgentsResult
}

/** A key's value; null when not measured. */
export type Num = number | null

const minOf = (...xs: Num[]): Num => xs.some((x) => x === null) ? null : Math.min(...(xs as number[]))
const maxOf = (...xs: Num[]): Num => xs.some((x) => x === null) ? null : Math.max(...(xs as number[]))
const v = (x: number | undefined): Num => x === undefined || !Number.isFinite(x) ? null : x
const diff = (a: Num, b: Num): Num => a === null || b === null ? null : a - b
const sum = (a: Num, b: Num): Num => a === null || b === null ? null : a + b

/** The summary keys (see KEY_DOCS): targets first, then informational keys. */
export function summaryKeys (r: RunResults): Record<string, Num> {
  const b = r.bulk ?? {}
  const q = r.rps ?? {}
  const down = (p: string): Num => v(b[p]?.down?.mbps)
  const up = (p: string): Num => v(b[p]?.up?.mbps)
  const bulkRatio = (p: string, base: string): Num => minOf(ratio(down(p), down(base)), ratio(up(p), up(base)))
  const runs = (p: string, d: 'down' | 'up'): number[] | undefined => b[p]?.[d]?.runs
  const bulkPaired = (p: string, base: string): Num => minOf(pairedRatio(runs(p, 'down'), runs(base, 'down')), pairedRatio(runs(p, 'up'), runs(base, 'up')))
  const rounds = (p: string, mode: RpsMode, k: 'rps' | 'p99'): number[] | undefined => q[p]?.[mode]?.rounds.map((x) => x[k])
  const roundsMax = (x: number[] | undefined, y: number[] | undefined): number[] | undefined =>
    x === undefined || y === undefined ? undefined : x.slice(0, Math.min(x.length, y.length)).map((xi, i) => Math.max(xi, y[i]))
  const ka = (p: string): Num => v(q[p]?.keepalive?.rps)
  const h2 = (p: string): Num => v(q[p]?.h2?.rps)
  const p99 = (p: string): Num => v(q[p]?.keepalive?.p99)
  const p99s = (p: string): Num => v(q[p]?.serial?.p99)
  const p99h2s = (p: string): Num => v(q[p]?.h2serial?.p99)
  const idleBytes = (k: string): Num => v(r.idle?.[k]?.bytesPerStream)
  const idleOpened = (k: string): Num => v(r.idle?.[k]?.opened)
  const cg = (p: string) => r.clientgo?.paths[p]
  const a = r.agents
  const agentsAt = (n: number, x: number | undefined): Num => a?.agents === n && a.error === undefined ? v(x) : null
  return {
    passthrough_vs_secure_relay: bulkPaired('tower-passthrough', 'secure-relay'),
    proxy_vs_l7_chain: bulkPaired('tower-proxy', 'l7-chain'),
    proxy_rps_vs_l7_chain: pairedRatio(rounds('tower-proxy', 'h2', 'rps'), rounds('l7-chain', 'h2', 'rps')),
    bytes_per_idle_watch_h2: idleBytes('tower-proxy h2'),
    bytes_per_idle_stream: maxOf(idleBytes('tower-proxy'), idleBytes('tower-passthrough')),
    vs_chisel_bulk: bulkPaired('tower-passthrough', 'chisel'),
    vs_konnectivity_rps: pairedRatio(roundsMax(rounds('tower-proxy', 'keepalive', 'rps'), rounds('tower-passthrough', 'keepalive', 'rps')), rounds('konnectivity', 'keepalive', 'rps')),
    p99_overhead_serial_ms: pairedDiff(rounds('tower-proxy', 'serial', 'p99'), rounds('direct', 'serial', 'p99')),
    clientgo_sync_ratio: ratio(v(cg('tower-proxy')?.syncMs), v(cg('direct')?.syncMs)),
    clientgo_list_ratio: ratio(v(cg('tower-proxy')?.listMs), v(cg('direct')?.listMs)),
    hol_ratio: minOf(v(r.hol?.['tower-passthrough']?.ratio), v(r.hol?.['tower-proxy']?.ratio)),
    rss_5000_agents_mb: agentsAt(5000, a?.serverRssMb),
    reconnect_5000_s: agentsAt(5000, a?.reconnectS),
    // informational: the round-paired targets above, as the ratio (or difference) of the medians
    passthrough_vs_secure_relay_of_medians: bulkRatio('tower-passthrough', 'secure-relay'),
    proxy_vs_l7_chain_of_medians: bulkRatio('tower-proxy', 'l7-chain'),
    proxy_rps_vs_l7_chain_of_medians: ratio(h2('tower-proxy'), h2('l7-chain')),
    vs_chisel_bulk_of_medians: bulkRatio('tower-passthrough', 'chisel'),
    vs_konnectivity_rps_of_medians: ratio(maxOf(ka('tower-proxy'), ka('tower-passthrough')), ka('konnectivity')),
    p99_overhead_serial_ms_of_medians: diff(p99s('tower-proxy'), p99s('direct')),
    // informational
    secure_relay_vs_direct: bulkRatio('secure-relay', 'direct'),
    l7_chain_vs_direct: bulkRatio('l7-chain', 'direct'),
    l7_chain_rps_h2_vs_direct: ratio(h2('l7-chain'), h2('direct')),
    proxy_rps_h2_vs_h1: ratio(h2('tower-proxy'), ka('tower-proxy')),
    p99_overhead_serial_h2_ms: diff(p99h2s('tower-proxy'), p99h2s('direct')),
    p99_overhead_serial_passthrough_ms: diff(p99s('tower-passthrough'), p99s('direct')),
    p99_overhead_serial_l7_chain_ms: diff(p99s('l7-chain'), p99s('direct')),
    bytes_per_idle_watch_h2_passthrough: idleBytes('tower-passthrough h2'),
    l7_chain_bytes_per_idle_watch_h2: idleBytes('l7-chain h2'),
    l7_chain_bytes_per_idle_stream: idleBytes('l7-chain'),
    idle_watch_h2_vs_l7_chain: ratio(idleBytes('tower-proxy h2'), idleBytes('l7-chain h2')),
    idle_stream_vs_l7_chain: ratio(idleBytes('tower-proxy'), idleBytes('l7-chain')),
    idle_watches_h2_opened: idleOpened('tower-proxy h2'),
    idle_streams_opened: minOf(idleOpened('tower-proxy'), idleOpened('tower-passthrough')),
    idle_streams_requested: v(r.idle?.['tower-proxy']?.requested ?? r.idle?.['tower-passthrough']?.requested),
    clientgo_sync_ratio_passthrough: ratio(v(cg('tower-passthrough')?.syncMs), v(cg('direct')?.syncMs)),
    clientgo_list_ratio_passthrough: ratio(v(cg('tower-passthrough')?.listMs), v(cg('direct')?.listMs)),
    clientgo_apply_ratio: ratio(v(cg('tower-proxy')?.applyStormMs), v(cg('direct')?.applyStormMs)),
    clientgo_server_bytes_per_watch: v(cg('tower-proxy')?.serverBytesPerWatch),
    clientgo_agent_bytes_per_watch: v(cg('tower-proxy')?.agentBytesPerWatch),
    clientgo_passthrough_bytes_per_watch: sum(v(cg('tower-passthrough')?.serverBytesPerWatch), v(cg('tower-passthrough')?.agentBytesPerWatch)),
    agents_count: v(a?.agents),
    agents_server_rss_mb: v(a?.serverRssMb),
    agents_connect_s: v(a?.connectS),
    agents_reconnect_s: v(a?.reconnectS),
    // retired targets (issues 2 and 4), kept as informational rows
    passthrough_vs_relay: ratio(down('tower-passthrough'), down('relay')),
    passthrough_vs_relay_upload: ratio(up('tower-passthrough'), up('relay')),
    proxy_vs_direct: ratio(down('tower-proxy'), down('direct')),
    proxy_vs_direct_upload: ratio(up('tower-proxy'), up('direct')),
    rps_vs_direct: ratio(minOf(ka('tower-proxy'), ka('tower-passthrough')), ka('direct')),
    p99_overhead_ms: diff(maxOf(p99('tower-proxy'), p99('tower-passthrough')), p99('direct')),
    rss_1000_agents_mb: agentsAt(1000, a?.serverRssMb),
    reconnect_1000_s: agentsAt(1000, a?.reconnectS)
  }
}

/** Targets of issue 12: key → [comparison, bound, text]. */
export const TARGETS: Record<string, ['>=' | '<=', number, string]> = {
  passthrough_vs_secure_relay: ['>=', 0.9, '≥ 0.9'],
  proxy_vs_l7_chain: ['>=', 0.9, '≥ 0.9'],
  proxy_rps_vs_l7_chain: ['>=', 1.0, '≥ 1.0'],
  bytes_per_idle_watch_h2: ['<=', 10_000, '≤ 10,000 B'],
  bytes_per_idle_stream: ['<=', 80_000, '≤ 80,000 B'],
  vs_chisel_bulk: ['>=', 1.3, '≥ 1.3'],
  vs_konnectivity_rps: ['>=', 1.2, '≥ 1.2'],
  p99_overhead_serial_ms: ['<=', 0.5, '≤ 0.5 ms'],
  clientgo_sync_ratio: ['<=', 1.3, '≤ 1.3'],
  clientgo_list_ratio: ['<=', 1.3, '≤ 1.3'],
  hol_ratio: ['>=', 0.95, '≥ 0.95'],
  rss_5000_agents_mb: ['<=', 1000, '≤ 1,000 MB'],
  reconnect_5000_s: ['<=', 60, '≤ 60 s']
}

/** How each key is computed, in key order: the text of BENCHMARKS.md's last section. */
export const KEY_DOCS: Record<string, string> = {
  passthrough_vs_secure_relay: 'Tower passthrough ÷ `secure-relay` (two plain Node TCP relays joined by a TLS link, the caller\'s TLS end to end), one-stream MB/s, the lower of download and upload. Paired by round: the median over the rounds of each round\'s ratio (the paths are interleaved, so both figures of a round were measured seconds apart); `_of_medians` is the ratio of the two medians.',
  proxy_vs_l7_chain: 'Tower proxy mode ÷ `l7-chain` (two plain Node HTTP proxies: TLS termination offering h2 and http/1.1, one h2 session over a TLS link (HTTP/1.1 on a keep-alive pool with `--l7-link h1`), re-origination over TLS, h2 when the upstream offers it), one-stream MB/s, the lower of download and upload, paired by round as `passthrough_vs_secure_relay`.',
  proxy_rps_vs_l7_chain: `keep-alive rps of the h2 client (64 in flight on ${H2_RPS_SESSIONS} HTTP/2 sessions), Tower proxy mode ÷ \`l7-chain\`, paired by round.`,
  bytes_per_idle_watch_h2: 'proxy mode on a fresh Tower (server and agent used for nothing else), watches from an h2 client on as few sessions as the server allows: (Δ server RSS + Δ agent RSS) ÷ watches opened; missed when `idle_watches_h2_opened` is below the count requested.',
  bytes_per_idle_stream: 'HTTP/1.1 callers (one connection per watch), each mode on a fresh Tower: the higher of Tower\'s two modes (over the streams that opened); missed when `idle_streams_opened` (the lower of the two modes) is below the count requested.',
  vs_chisel_bulk: 'Tower passthrough ÷ chisel MB/s, the lower of download and upload, paired by round.',
  vs_konnectivity_rps: 'the higher keep-alive rps (HTTP/1.1 client) of Tower\'s two modes ÷ Konnectivity keep-alive rps, paired by round (the higher mode of each round).',
  p99_overhead_serial_ms: 'proxy mode\'s p99 with one keep-alive HTTP/1.1 request in flight − direct\'s, paired by round (the median of each round\'s difference).',
  clientgo_sync_ratio: 'the client-go workload\'s time until the informers on 10 types have synced, proxy mode ÷ direct (median over the rounds).',
  clientgo_list_ratio: 'the client-go workload\'s median time of one full list of the ConfigMaps (5,000 in a full run) in its list storm, proxy mode ÷ direct (median over the rounds).',
  hol_ratio: 'the lower head-of-line ratio of Tower\'s two modes.',
  rss_5000_agents_mb: 'section 6 at 5,000 agents: the `tower server` process\'s RSS with all of them connected (not measured at another count, or when not all connected).',
  reconnect_5000_s: 'section 6 at 5,000 agents: from the server\'s SIGTERM until every agent is connected to the new server process.',
  passthrough_vs_secure_relay_of_medians: 'informational: `passthrough_vs_secure_relay` as the ratio of the two paths\' medians (how it was computed before run 10).',
  proxy_vs_l7_chain_of_medians: 'informational: `proxy_vs_l7_chain` as the ratio of the medians.',
  proxy_rps_vs_l7_chain_of_medians: 'informational: `proxy_rps_vs_l7_chain` as the ratio of the medians.',
  vs_chisel_bulk_of_medians: 'informational: `vs_chisel_bulk` as the ratio of the medians.',
  vs_konnectivity_rps_of_medians: 'informational: `vs_konnectivity_rps` as the ratio of the medians.',
  p99_overhead_serial_ms_of_medians: 'informational: `p99_overhead_serial_ms` as the difference of the medians.',
  secure_relay_vs_direct: 'informational: `secure-relay` ÷ direct, the lower of download and upload (the scale of the passthrough ceiling).',
  l7_chain_vs_direct: 'informational: `l7-chain` ÷ direct, the lower of download and upload.',
  l7_chain_rps_h2_vs_direct: 'informational: h2 keep-alive rps, `l7-chain` ÷ direct.',
  proxy_rps_h2_vs_h1: 'informational: proxy mode\'s h2 keep-alive rps ÷ its HTTP/1.1 keep-alive rps.',
  p99_overhead_serial_h2_ms: 'informational: proxy mode\'s p99 with one h2 request in flight − direct\'s.',
  p99_overhead_serial_passthrough_ms: 'informational: `p99_overhead_serial_ms` for passthrough.',
  p99_overhead_serial_l7_chain_ms: 'informational: `p99_overhead_serial_ms` for `l7-chain`, proxy mode\'s ceiling: what two plain Node proxies add at p99 with one request in flight.',
  bytes_per_idle_watch_h2_passthrough: 'informational: `bytes_per_idle_watch_h2` for passthrough (h2 end to end; the upstream holds the h2 streams).',
  l7_chain_bytes_per_idle_watch_h2: 'informational: `bytes_per_idle_watch_h2` for a fresh `l7-chain` (entry + exit RSS), proxy mode\'s ceiling: what node:http2 itself charges per relayed idle watch.',
  l7_chain_bytes_per_idle_stream: 'informational: `bytes_per_idle_stream` for a fresh `l7-chain` (HTTP/1.1 callers; entry + exit RSS).',
  idle_watch_h2_vs_l7_chain: 'informational: `bytes_per_idle_watch_h2` ÷ `l7_chain_bytes_per_idle_watch_h2` (1.0 = Tower holds an idle h2 watch for what plain Node proxies pay).',
  idle_stream_vs_l7_chain: 'informational: proxy mode\'s `bytes_per_idle_stream` ÷ `l7_chain_bytes_per_idle_stream`.',
  idle_watches_h2_opened: 'informational: h2 watches that opened in proxy mode.',
  idle_streams_opened: 'informational: HTTP/1.1 watches that opened, the lower of Tower\'s two modes.',
  idle_streams_requested: 'informational: watches requested per row.',
  clientgo_sync_ratio_passthrough: 'informational: `clientgo_sync_ratio` for passthrough.',
  clientgo_list_ratio_passthrough: 'informational: `clientgo_list_ratio` for passthrough.',
  clientgo_apply_ratio: 'informational: the client-go server-side-apply storm\'s total time, proxy mode ÷ direct.',
  clientgo_server_bytes_per_watch: 'informational: client-go\'s extra idle watches through proxy mode: Δ server RSS ÷ watches.',
  clientgo_agent_bytes_per_watch: 'informational: the same, Δ agent RSS ÷ watches.',
  clientgo_passthrough_bytes_per_watch: 'informational: the same through passthrough, (Δ server + Δ agent RSS) ÷ watches.',
  agents_count: 'informational: agents in section 6.',
  agents_server_rss_mb: 'informational: section 6\'s server RSS with all agents connected, at whatever count ran.',
  agents_connect_s: 'informational: section 6\'s time until all agents connected from a simultaneous start.',
  agents_reconnect_s: 'informational: section 6\'s reconnect time, at whatever count ran.',
  passthrough_vs_relay: 'retired target (issues 2, 4): Tower passthrough ÷ the one-hop plain Node relay, download MB/s (`_upload` for upload).',
  proxy_vs_direct: 'retired target (issue 2): Tower proxy mode ÷ direct HTTPS, download MB/s (`_upload` for upload).',
  rps_vs_direct: 'retired target (issue 2): the lower keep-alive rps of Tower\'s two modes ÷ direct.',
  p99_overhead_ms: 'retired target (issues 2, 4): the higher keep-alive p99 (64 in flight) of Tower\'s two modes − direct\'s.',
  rss_1000_agents_mb: 'retired target (issue 4): `rss_5000_agents_mb` when section 6 ran 1,000 agents (`--agents 1000`).',
  reconnect_1000_s: 'retired target (issue 4): `reconnect_5000_s` when section 6 ran 1,000 agents.'
}

/** Keys whose figure only counts when every requested stream opened: key → [opened key, requested key]. */
const NEEDS_ALL_OPEN: Record<string, [string, string]> = {
  bytes_per_idle_stream: ['idle_streams_opened', 'idle_streams_requested'],
  bytes_per_idle_watch_h2: ['idle_watches_h2_opened', 'idle_streams_requested']
}

/**
 * 'met', 'missed' or 'not measured'. Memory per idle stream only counts as
 * met when every requested stream opened: a path that caps streams below
 * the target count has not shown the figure at that count.
 */
export function verdict (key: string, value: Num, keys: Record<string, Num> = {}): string {
  const t = TARGETS[key]
  if (t === undefined) return ''
  if (value === null) return 'not measured'
  const need = NEEDS_ALL_OPEN[key]
  if (need !== undefined && keys[need[0]] !== keys[need[1]]) {
    return `**missed**: only ${keys[need[0]]} of ${keys[need[1]]} streams opened`
  }
  return (t[0] === '>=' ? value >= t[1] : value <= t[1]) ? 'met' : '**missed**'
}

/** The "How each key is computed" section, as markdown lines. */
export function keyDocLines (): string[] {
  const L = ['## How each key is computed', '']
  for (const [k, text] of Object.entries(KEY_DOCS)) L.push(`- \`${k}\`${TARGETS[k] !== undefined ? ` (target ${TARGETS[k][2]})` : ''}: ${text}`)
  L.push('')
  return L
}

if (import.meta.main && process.argv.includes('--write-key-docs')) {
  const file = join(import.meta.dirname, '..', 'BENCHMARKS.md')
  const md = readFileSync(file, 'utf8')
  const at = md.indexOf('## How each key is computed')
  if (at < 0) throw new Error(`${file}: no "How each key is computed" section`)
  writeFileSync(file, md.slice(0, at) + keyDocLines().join('\n'))
  process.stdout.write(`rewrote the key section of ${file}\n`)
}
