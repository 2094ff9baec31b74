/**
 * Section 2: 64 concurrent GETs of the 1 KB JSON body for a fixed time, with
 * keep-alive and with a new connection per request (TLS sessions are not
 * resumed, so every new connection is a full handshake on every path).
 * Paths are interleaved over several rounds, so a burst of other work on the
 * machine hits every path alike; each figure is the median over the rounds.
 *
 * A third mode, `serial`, sends one keep-alive request at a time for half the
 * duration: the latency a tunnel adds per hop, without the queueing that 64
 * requests in flight on 2 cores add to every path.
 *
 * The paths of H2_PATHS also get h2 client rows: `h2` (the same 64 keep-alive
 * workers, multiplexed on a handful of HTTP/2 sessions as client-go does) and
 * `h2serial` (one request at a time on one session).
 */
import { H2_PATHS, PATHS, targetsOf, type BenchContext } from '../lib/context.ts'
import { median } from '../lib/stats.ts'

/** Figures of one rps run (latencies in milliseconds; steal: % of all CPUs the host took meanwhile, set by this section). */
export interface RpsFigures { rps: number, p50: number, p90: number, p99: number, max: number, requests: number, errors: number, firstError?: string, steal?: number }
/** Medians over the rounds, plus every round's figures. */
export interface RpsSummary extends RpsFigures { rounds: RpsFigures[] }
/** Per path: keep-alive and new-connection figures. */
export type RpsResult = Record<string, { keepalive?: RpsSummary, newconn?: RpsSummary, serial?: RpsSummary, h2?: RpsSummary, h2serial?: RpsSummary, error?: string, h2Error?: string }>

const MODES = ['keepalive', 'newconn', 'serial', 'h2', 'h2serial'] as const
/** The client patterns of one rps row. */
export type RpsMode = typeof MODES[number]
/** HTTP/2 sessions of the h2 client's keep-alive rows ("a handful", like client-go's few connections). */
export const H2_RPS_SESSIONS = 4

function summarise (rounds: RpsFigures[]): RpsSummary {
  const med = (k: 'rps' | 'p50' | 'p90' | 'p99' | 'max'): number => median(rounds.map((r) => r[k]))
  return {
    rps: med('rps'),
    p50: med('p50'),
    p90: med('p90'),
    p99: med('p99'),
    max: Math.max(...rounds.map((r) => r.max)),
    requests: rounds.reduce((a, r) => a + r.requests, 0),
    errors: rounds.reduce((a, r) => a + r.errors, 0),
    firstError: rounds.find((r) => r.firstError !== undefined)?.firstError,
    rounds
  }
}

/** Runs the section. */
export async function rpsSection (ctx: BenchContext): Promise<RpsResult> {
  const out: RpsResult = {}
  const { rpsConcurrency: concurrency, rpsMs: durationMs, rpsWarmupMs: warmupMs, rpsRounds } = ctx.opts
  const runs: Record<string, Record<string, RpsFigures[]>> = {}
  const targets = targetsOf(ctx, PATHS)
  for (let round = 0; round < rpsRounds; round++) {
    for (const t of targets) {
      out[t.name] ??= {}
      runs[t.name] ??= { keepalive: [], newconn: [], serial: [], h2: [], h2serial: [] }
      for (const mode of MODES) {
        const h2 = mode === 'h2' || mode === 'h2serial'
        if (h2 && !(H2_PATHS as readonly string[]).includes(t.name)) continue
        // An h2 failure (e.g. a path that does not negotiate h2) leaves its HTTP/1.1 rows standing, and vice versa.
        if (h2 ? out[t.name].h2Error !== undefined : out[t.name].error !== undefined) continue
        try {
          const serial = mode === 'serial' || mode === 'h2serial'
          const stolen = ctx.stealMeter()
          const r = await ctx.client.run<RpsFigures>({
            kind: 'rps',
            target: t,
            concurrency: serial ? 1 : concurrency,
            durationMs: serial ? durationMs / 2 : durationMs,
            warmupMs,
            newConnection: mode === 'newconn',
            ...(h2 ? { proto: 'h2' as const, h2Sessions: serial ? 1 : H2_RPS_SESSIONS } : {})
          }, durationMs + warmupMs + 60_000)
          r.steal = stolen()
          runs[t.name][mode].push(r)
          ctx.log(`rps ${t.name} ${mode} #${round + 1}: ${r.rps.toFixed(0)} rps, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, ${r.errors} errors (steal ${r.steal} %)`)
        } catch (err) {
          if (h2) out[t.name].h2Error = `${mode}: ${(err as Error).message}`
          else out[t.name].error = `${mode}: ${(err as Error).message}`
          ctx.log(`rps ${t.name} ${mode}: FAILED ${(err as Error).message}`)
        }
      }
    }
  }
  for (const [name, byMode] of Object.entries(runs)) {
    for (const mode of MODES) if (byMode[mode].length > 0) out[name][mode] = summarise(byMode[mode])
  }
  return out
}
