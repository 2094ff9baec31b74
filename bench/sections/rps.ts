/**
 * Section 2: 64 concurrent GETs of the 1 KB JSON body for a fixed time, with
 * keep-alive and with a new connection per request (TLS sessions are not
 * resumed, so every new connection is a full handshake on every path).
 */
import { PATHS, targetsOf, type BenchContext } from '../lib/context.ts'

/** Figures of one rps run (latencies in milliseconds). */
export interface RpsFigures { rps: number, p50: number, p90: number, p99: number, max: number, requests: number, errors: number, firstError?: string }
/** Per path: keep-alive and new-connection figures. */
export type RpsResult = Record<string, { keepalive?: RpsFigures, newconn?: RpsFigures, error?: string }>

/** Runs the section. */
export async function rpsSection (ctx: BenchContext): Promise<RpsResult> {
  const out: RpsResult = {}
  const { rpsConcurrency: concurrency, rpsMs: durationMs, rpsWarmupMs: warmupMs } = ctx.opts
  for (const t of targetsOf(ctx, PATHS)) {
    out[t.name] = {}
    for (const mode of ['keepalive', 'newconn'] as const) {
      try {
        const r = await ctx.client.run<RpsFigures>({ kind: 'rps', target: t, concurrency, durationMs, warmupMs, newConnection: mode === 'newconn' },
          durationMs + warmupMs + 60_000)
        out[t.name][mode] = r
        ctx.log(`rps ${t.name} ${mode}: ${r.rps.toFixed(0)} rps, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, ${r.errors} errors`)
      } catch (err) {
        out[t.name].error = `${mode}: ${(err as Error).message}`
        ctx.log(`rps ${t.name} ${mode}: FAILED ${(err as Error).message}`)
      }
    }
  }
  return out
}
