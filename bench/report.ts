/**
 * Turns one run's raw figures into the summary keys of latest.json and the
 * text of BENCHMARKS.md. Every number comes from the run's results object;
 * nothing here is typed in by hand. Where a key names no Tower mode, the
 * worse of the two modes is used, so a claim never rests on the better one.
 */
import type { BulkResult } from './sections/bulk.ts'
import type { RpsResult } from './sections/rps.ts'
import { HOL_PATHS, type HolResult } from './sections/hol.ts'
import { IDLE_PATHS, type IdleResult } from './sections/idle.ts'
import type { AgentsResult } from './sections/agents.ts'
import type { Machine } from './lib/machine.ts'
import { PATHS } from './lib/context.ts'
import { ratio, round } from './lib/stats.ts'

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
  agents?: AgentsResult
}

type Num = number | null

const minOf = (...xs: Num[]): Num => xs.some((x) => x === null) ? null : Math.min(...(xs as number[]))
const maxOf = (...xs: Num[]): Num => xs.some((x) => x === null) ? null : Math.max(...(xs as number[]))
const v = (x: number | undefined): Num => x === undefined || !Number.isFinite(x) ? null : x

/** The summary keys (see BENCHMARKS.md "How each key is computed"). */
export function summaryKeys (r: RunResults): Record<string, Num> {
  const b = r.bulk ?? {}
  const q = r.rps ?? {}
  const down = (p: string): Num => v(b[p]?.down?.mbps)
  const up = (p: string): Num => v(b[p]?.up?.mbps)
  const ka = (p: string): Num => v(q[p]?.keepalive?.rps)
  const p99 = (p: string): Num => v(q[p]?.keepalive?.p99)
  const idleBytes = (p: string): Num => v(r.idle?.[p]?.bytesPerStream)
  const idleOpened = (p: string): Num => v(r.idle?.[p]?.opened)
  const p99Over = maxOf(p99('tower-proxy'), p99('tower-passthrough'))
  const p99s = (p: string): Num => v(q[p]?.serial?.p99)
  const p99sOver = maxOf(p99s('tower-proxy'), p99s('tower-passthrough'))
  return {
    passthrough_vs_relay: ratio(down('tower-passthrough'), down('relay')),
    passthrough_vs_relay_upload: ratio(up('tower-passthrough'), up('relay')),
    proxy_vs_direct: ratio(down('tower-proxy'), down('direct')),
    proxy_vs_direct_upload: ratio(up('tower-proxy'), up('direct')),
    rps_vs_direct: ratio(minOf(ka('tower-proxy'), ka('tower-passthrough')), ka('direct')),
    p99_overhead_ms: p99Over === null || p99('direct') === null ? null : p99Over - (p99('direct') as number),
    p99_overhead_serial_ms: p99sOver === null || p99s('direct') === null ? null : p99sOver - (p99s('direct') as number),
    vs_chisel_bulk: minOf(ratio(down('tower-passthrough'), down('chisel')), ratio(up('tower-passthrough'), up('chisel'))),
    vs_konnectivity_rps: ratio(minOf(ka('tower-proxy'), ka('tower-passthrough')), ka('konnectivity')),
    hol_ratio: minOf(v(r.hol?.['tower-passthrough']?.ratio), v(r.hol?.['tower-proxy']?.ratio)),
    bytes_per_idle_stream: maxOf(idleBytes('tower-proxy'), idleBytes('tower-passthrough')),
    idle_streams_opened: minOf(idleOpened('tower-proxy'), idleOpened('tower-passthrough')),
    idle_streams_requested: v(r.idle?.['tower-proxy']?.requested ?? r.idle?.['tower-passthrough']?.requested),
    rss_1000_agents_mb: v(r.agents?.serverRssMb),
    reconnect_1000_s: v(r.agents?.reconnectS)
  }
}

/** Targets from issues 2 and 4: key → [comparison, bound, text]. */
export const TARGETS: Record<string, ['>=' | '<=', number, string]> = {
  passthrough_vs_relay: ['>=', 0.6, '≥ 0.6 (issues 2, 4)'],
  proxy_vs_direct: ['>=', 0.4, '≥ 0.4 (issue 2)'],
  rps_vs_direct: ['>=', 0.6, '≥ 0.6 (issue 2)'],
  p99_overhead_ms: ['<=', 2, '≤ 2 ms (issues 2, 4)'],
  vs_chisel_bulk: ['>=', 3, '≥ 3 (issue 4)'],
  vs_konnectivity_rps: ['>=', 1, '≥ 1 (issue 4)'],
  hol_ratio: ['>=', 0.9, '≥ 0.9 (issue 4)'],
  bytes_per_idle_stream: ['<=', 50_000, '≤ 50 KB = 50,000 B (issue 4)'],
  rss_1000_agents_mb: ['<=', 300, '≤ 300 MB (issue 4)'],
  reconnect_1000_s: ['<=', 30, '≤ 30 s (issue 4)']
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
  if (key === 'bytes_per_idle_stream' && keys.idle_streams_opened !== keys.idle_streams_requested) {
    return `**missed**: only ${keys.idle_streams_opened} of ${keys.idle_streams_requested} streams opened`
  }
  return (t[0] === '>=' ? value >= t[1] : value <= t[1]) ? 'met' : '**missed**'
}

const f = (x: number | undefined | null, d = 1): string => x === undefined || x === null || !Number.isFinite(x) ? '–' : (round(x, d) as number).toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d })
const rat = (a: number | undefined | null, b: number | undefined | null): string => f(ratio(a, b), 2)
const row = (cells: string[]): string => `| ${cells.join(' | ')} |`
const head = (cells: string[]): string => `${row(cells)}\n${row(cells.map((c, i) => i === 0 ? '---' : '---:'))}`

/** Renders BENCHMARKS.md. */
export function renderMarkdown (r: RunResults, keys: Record<string, Num>): string {
  const m = r.machine
  const o = r.options as Record<string, any>
  const L: string[] = []
  L.push('# Benchmarks', '')
  L.push(`Generated by \`npm run bench\` (bench/run.ts) on ${r.date}, in one run of ${f(r.durationS, 0)} s, Tower at \`${r.towerCommit}\`. Do not edit by hand: rerun the bench. Raw figures: \`bench/results/latest.json\`. Method and caveats: \`bench/README.md\`.`, '')
  L.push('## Machine', '')
  L.push(head(['', 'value']))
  L.push(row(['CPUs (nproc)', String(m.nproc)]), row(['CPU model', m.cpu]), row(['memory', `${f(m.memMiB / 1024, 1)} GiB`]),
    row(['node', m.node]), row(['kernel', m.kernel]), row(['load average (1 min) at start / end', `${m.loadavg1} / ${r.loadavgEnd}`]),
    row(['CPU used by other processes during each section, % of all CPUs', Object.entries(r.otherCpuBySection).map(([k, l]) => `${k} ${l}`).join(', ')]),
    row(['peers', Object.entries(r.versions).map(([k, ver]) => `${k} ${ver}`).join(', ') || '–']), '')
  const busiest = Math.max(0, ...Object.values(r.otherCpuBySection))
  if (m.loadavg1 > 0.5 || busiest > 10) {
    L.push(`> Other work shared the machine during this run (load ${m.loadavg1} at the start; up to ${busiest} % of the CPUs used by processes outside the run in a section): absolute figures are lower than on a quiet machine; ratios, measured side by side and interleaved, suffer less.`, '')
  }
  if (r.notes.length > 0) {
    L.push('## Not measured or failed in this run', '')
    for (const n of r.notes) L.push(`- ${n}`)
    L.push('')
  }

  L.push('## Targets', '')
  L.push(head(['key', 'value', 'target', 'verdict']))
  for (const [k, t] of Object.entries(TARGETS)) L.push(row([`\`${k}\``, f(keys[k], 2), t[2], verdict(k, keys[k], keys)]))
  L.push('')

  if (r.bulk !== undefined) {
    const b = r.bulk
    L.push(`## 1. One-stream bulk transfer (${f(o.bulkBytes / 1024 / 1024, 0)} MiB, median of ${o.bulkRepeat})`, '')
    L.push('MB/s = 10^6 bytes per second. Ratios are against direct HTTPS; the relay column is against the plain Node relay (same TLS end to end as passthrough).', '')
    L.push(head(['path', 'download MB/s', '÷ direct', '÷ relay', 'upload MB/s', '÷ direct', '÷ relay']))
    for (const p of PATHS) {
      const x = b[p]
      if (x === undefined) continue
      if (x.error !== undefined && x.down === undefined) { L.push(row([p, `failed: ${x.error}`, '', '', '', '', ''])); continue }
      L.push(row([p, f(x.down?.mbps), rat(x.down?.mbps, b.direct?.down?.mbps), rat(x.down?.mbps, b.relay?.down?.mbps),
        f(x.up?.mbps), rat(x.up?.mbps, b.direct?.up?.mbps), rat(x.up?.mbps, b.relay?.up?.mbps)]))
    }
    L.push('')
  }

  if (r.rps !== undefined) {
    const q = r.rps
    L.push(`## 2. Small requests (${o.rpsConcurrency} concurrent GETs of 1 KB JSON, ${o.rpsRounds} interleaved rounds of ${f(o.rpsMs / 1000, 0)} s)`, '')
    L.push('Medians over the rounds; latency in milliseconds. "new conn" opens a connection (and a full TLS handshake, no session resumption) per request. "1 in flight" sends one keep-alive request at a time: the latency each path adds without queueing.', '')
    L.push(head(['path', 'keep-alive rps', '÷ direct', 'p50', 'p99', 'new-conn rps', '÷ direct', 'p50', 'p99', '1 in flight p50', 'p99']))
    for (const p of PATHS) {
      const x = q[p]
      if (x === undefined) continue
      L.push(row([p + (x.error !== undefined ? ` (error: ${x.error})` : ''),
        f(x.keepalive?.rps, 0), rat(x.keepalive?.rps, q.direct?.keepalive?.rps), f(x.keepalive?.p50, 2), f(x.keepalive?.p99, 2),
        f(x.newconn?.rps, 0), rat(x.newconn?.rps, q.direct?.newconn?.rps), f(x.newconn?.p50, 2), f(x.newconn?.p99, 2),
        f(x.serial?.p50, 2), f(x.serial?.p99, 2)]))
    }
    L.push('')
  }

  if (r.hol !== undefined) {
    L.push(`## 3. Head-of-line blocking (${o.holStreams} streams × ${f(o.holBytes / 1024 / 1024, 0)} MiB through one tunnel, one extra stream's reader stalled)`, '')
    L.push(`Aggregate MB/s of the ${o.holStreams} streams alone and with the stalled stream, alternating over ${o.holRounds} stalled runs (alone, stalled, alone, …, alone); ratio = median stalled ÷ median alone. \`direct\` shares nothing and shows the noise floor.`, '')
    L.push('A stalled run is cut at 10× the first run alone (at least 15 s); "done" counts the streams that finished by then in each stalled run.', '')
    L.push(head(['path', 'alone MB/s (median)', 'stalled MB/s (median)', 'done', 'ratio', '÷ direct\'s ratio']))
    for (const p of HOL_PATHS) {
      const x = r.hol[p]
      if (x === undefined) continue
      if (x.error !== undefined) { L.push(row([p, `failed: ${x.error}`, '', '', '', ''])); continue }
      const errs = x.stalledErrors !== undefined ? ` (${x.stalledErrors.join('; ')})` : ''
      L.push(row([p, f(x.alone), f(x.stalled), `${(x.stalledCompleted ?? []).map((c) => `${c}/${o.holStreams}`).join(', ')}${errs}`, f(x.ratio, 3), rat(x.ratio, r.hol.direct?.ratio)]))
    }
    L.push('')
  }

  if (r.idle !== undefined) {
    L.push(`## 4. Idle watch-like streams on one agent (${Number(o.idleStreams).toLocaleString('en-US')} requested)`, '')
    L.push('RSS in MB (10^6 bytes) from /proc/<pid>/status, 2 s after the last stream opened. Bytes per stream = (Δ server RSS + Δ agent RSS) ÷ streams opened.', '')
    L.push('`direct` holds the watches on the upstream itself, a plain Node HTTPS server (its row\'s server column): the floor a hop pays for each TLS + HTTP/1.1 watch connection it terminates. Tower\'s proxy mode terminates two per watch (the caller\'s at the server, the kube-apiserver\'s at the agent); passthrough, chisel and Konnectivity none.', '')
    L.push(head(['path', 'opened', 'time to open s', 'server RSS before → after', 'agent RSS before → after', 'bytes / stream']))
    for (const p of IDLE_PATHS) {
      const x = r.idle[p]
      if (x === undefined) continue
      if (x.error !== undefined) { L.push(row([p, `failed: ${x.error}`, '', '', '', ''])); continue }
      const mb = (b: number | undefined): string => f(b === undefined ? undefined : b / 1e6)
      L.push(row([p + (x.firstError !== undefined ? ` (first error: ${x.firstError})` : ''), `${x.opened} / ${x.requested}`, f((x.openMs ?? NaN) / 1000, 2),
        `${mb(x.serverRssBefore)} → ${mb(x.serverRssAfter)}`, p === 'direct' ? '–' : `${mb(x.agentRssBefore)} → ${mb(x.agentRssAfter)}`, f(x.bytesPerStream, 0)]))
    }
    L.push('')
  }

  if (r.agents !== undefined) {
    const a = r.agents
    L.push(`## 5. Agents per server (${a.agents} agents, each its own cluster and port, in ${a.fleetProcesses} fleet process${a.fleetProcesses === 1 ? '' : 'es'})`, '')
    if (a.error !== undefined) L.push(`Failed: ${a.error}`, '')
    L.push(head(['figure', 'value']))
    L.push(row(['register clusters (Registry API), s', f(a.registerS, 2)]), row(['server start with all ports, s', f(a.serverBootS, 2)]),
      row(['server RSS, no agents, MB', f(a.serverRssIdleMb)]), row(['time for all agents to connect (simultaneous start), s', f(a.connectS, 2)]),
      row(['**server RSS with all agents, MB**', f(a.serverRssMb)]), row(['fleet processes RSS (sum), MB', f(a.fleetRssMb)]),
      row(['restart: server stop (SIGTERM → exit), s', f(a.restartStopS, 2)]), row(['restart: new server listening, s', f(a.restartBootS, 2)]),
      row(['**all agents reconnected, s after SIGTERM**', f(a.reconnectS, 2)]), row(['… of which after the new server listened, s', f(a.reconnectAfterListeningS, 2)]),
      row(['server RSS after the reconnect, MB', f(a.serverRssAfterReconnectMb)]))
    if (a.fleetLogs !== undefined && Object.keys(a.fleetLogs).length > 0) {
      L.push('', 'Agent warnings and errors during the run (counts):', '')
      for (const [k, n] of Object.entries(a.fleetLogs).sort((x, y) => y[1] - x[1]).slice(0, 10)) L.push(`- ${n} × ${k}`)
    }
    L.push('')
  }

  L.push('## How each key is computed', '')
  L.push('- `passthrough_vs_relay`: Tower passthrough ÷ plain Node relay, one-stream download MB/s (`_upload` for upload).')
  L.push('- `proxy_vs_direct`: Tower proxy mode ÷ direct HTTPS, one-stream download MB/s (`_upload` for upload).')
  L.push('- `rps_vs_direct`: the lower keep-alive rps of Tower\'s two modes ÷ direct keep-alive rps.')
  L.push('- `p99_overhead_ms`: the higher keep-alive p99 of Tower\'s two modes − direct keep-alive p99.')
  L.push('- `p99_overhead_serial_ms` (no target, for reading `p99_overhead_ms`): the same difference with one request in flight.')
  L.push('- `vs_chisel_bulk`: Tower passthrough ÷ chisel MB/s, the lower of download and upload.')
  L.push('- `vs_konnectivity_rps`: the lower keep-alive rps of Tower\'s two modes ÷ Konnectivity keep-alive rps.')
  L.push('- `hol_ratio`: the lower head-of-line ratio of Tower\'s two modes.')
  L.push('- `bytes_per_idle_stream`: the higher of Tower\'s two modes (over the streams that opened); missed when `idle_streams_opened` (the lower of the two modes) is below the count requested.')
  L.push('- `rss_1000_agents_mb`, `reconnect_1000_s`: section 5 (the agent count is in its heading).')
  L.push('')
  return L.join('\n')
}
