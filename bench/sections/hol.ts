/**
 * Section 3: head-of-line blocking. Through one tunnel, 8 concurrent bulk
 * downloads run alone and while one extra download's reader is stalled,
 * alternating over several rounds (alone, stalled, alone, stalled, …,
 * alone). The ratio is the median stalled run's aggregate MB/s over the
 * median run alone. `direct` (separate TCP connections, nothing shared) is
 * the control: it shows the noise floor of the ratio.
 */
import { targetsOf, type BenchContext } from '../lib/context.ts'
import { median } from '../lib/stats.ts'

/** Paths measured, in report order. */
export const HOL_PATHS = ['direct', 'tower-passthrough', 'tower-proxy', 'chisel', 'konnectivity'] as const

/** Per path: median aggregate MB/s alone and stalled, the ratio, and how the stalled runs ended. */
export type HolResult = Record<string, {
  alone?: number
  stalled?: number
  ratio?: number
  aloneRuns?: number[]
  stalledRuns?: number[]
  /** Streams of each stalled run that completed before its deadline. */
  stalledCompleted?: number[]
  /** Deadline of a stalled run, milliseconds. */
  stalledDeadlineMs?: number
  stalledErrors?: string[]
  error?: string
}>

/** Milliseconds the stalled stream gets to fill every buffer on its way before the measured run. */
const STALL_SETTLE_MS = 1000

interface HolRun { mbps: number, ms: number, completed: number, errors: string[] }

/**
 * Runs the section. Each path gets a discarded warm-up run first. A run
 * alone must complete every stream; a stalled run is cut at 10× the time of
 * the first run alone (at least 15 s) and counts the bytes that arrived, so
 * a tunnel that blocks scores near 0 instead of failing.
 */
export async function holSection (ctx: BenchContext): Promise<HolResult> {
  const out: HolResult = {}
  const { holStreams: streams, holBytes: bytesPerStream, holRounds } = ctx.opts
  const aloneTimeoutMs = Math.round(streams * bytesPerStream / 2e6 * 1000) + 30_000
  for (const t of targetsOf(ctx, HOL_PATHS)) {
    try {
      const one = async (stall: boolean, timeoutMs: number): Promise<HolRun> => {
        const r = await ctx.client.run<HolRun>({ kind: 'hol', target: t, streams, bytesPerStream, stall, stallSettleMs: STALL_SETTLE_MS, timeoutMs },
          timeoutMs + STALL_SETTLE_MS + 30_000)
        if (!stall && r.completed !== streams) throw new Error(`only ${r.completed} of ${streams} streams completed without a stall: ${r.errors[0]}`)
        return r
      }
      await one(false, aloneTimeoutMs)
      const alone = [await one(false, aloneTimeoutMs)]
      const stalledDeadlineMs = Math.max(15_000, Math.round(10 * alone[0].ms))
      const stalled: HolRun[] = []
      for (let i = 0; i < holRounds; i++) {
        stalled.push(await one(true, stalledDeadlineMs))
        alone.push(await one(false, aloneTimeoutMs))
      }
      const a = median(alone.map((r) => r.mbps))
      const s = median(stalled.map((r) => r.mbps))
      const errors = [...new Set(stalled.flatMap((r) => r.errors))]
      out[t.name] = {
        alone: a,
        stalled: s,
        ratio: s / a,
        aloneRuns: alone.map((r) => r.mbps),
        stalledRuns: stalled.map((r) => r.mbps),
        stalledCompleted: stalled.map((r) => r.completed),
        stalledDeadlineMs,
        ...(errors.length > 0 ? { stalledErrors: errors } : {})
      }
      ctx.log(`hol ${t.name}: alone ${alone.map((r) => r.mbps.toFixed(0)).join('/')} MB/s, stalled ${stalled.map((r) => `${r.mbps.toFixed(0)} (${r.completed}/${streams})`).join('/')} MB/s → ratio ${(s / a).toFixed(3)}`)
    } catch (err) {
      out[t.name] = { error: (err as Error).message }
      ctx.log(`hol ${t.name}: FAILED ${(err as Error).message}`)
    }
  }
  return out
}
