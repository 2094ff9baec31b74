/**
 * Section 3: head-of-line blocking. Through one tunnel, 8 concurrent bulk
 * downloads run three times: alone, while one extra download's reader is
 * stalled, and alone again. The ratio is the stalled run's aggregate MB/s
 * over the mean of the two runs alone. `direct` (separate TCP connections,
 * nothing shared) is the control: it shows the noise floor of the ratio.
 */
import { targetsOf, type BenchContext } from '../lib/context.ts'

/** Paths measured, in report order. */
export const HOL_PATHS = ['direct', 'tower-passthrough', 'tower-proxy', 'chisel', 'konnectivity'] as const

/** Per path: aggregate MB/s of the three runs, the ratio, and how the stalled run ended. */
export type HolResult = Record<string, {
  alone1?: number
  stalled?: number
  alone2?: number
  ratio?: number
  /** Streams of the stalled run that completed before its deadline. */
  stalledCompleted?: number
  /** Deadline of the stalled run, milliseconds. */
  stalledDeadlineMs?: number
  stalledErrors?: string[]
  error?: string
}>

/** Milliseconds the stalled stream gets to fill every buffer on its way before the measured run. */
const STALL_SETTLE_MS = 1000

interface HolRun { mbps: number, ms: number, completed: number, errors: string[] }

/**
 * Runs the section. Each path gets a discarded warm-up run first. A run
 * alone must complete every stream; the stalled run is cut at 10× the time
 * of the first run alone (at least 15 s) and counts the bytes that arrived,
 * so a tunnel that blocks scores near 0 instead of failing.
 */
export async function holSection (ctx: BenchContext): Promise<HolResult> {
  const out: HolResult = {}
  const { holStreams: streams, holBytes: bytesPerStream } = ctx.opts
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
      const a1 = await one(false, aloneTimeoutMs)
      const stalledDeadlineMs = Math.max(15_000, Math.round(10 * a1.ms))
      const s = await one(true, stalledDeadlineMs)
      const a2 = await one(false, aloneTimeoutMs)
      const ratio = s.mbps / ((a1.mbps + a2.mbps) / 2)
      out[t.name] = { alone1: a1.mbps, stalled: s.mbps, alone2: a2.mbps, ratio, stalledCompleted: s.completed, stalledDeadlineMs, ...(s.errors.length > 0 ? { stalledErrors: [...new Set(s.errors)] } : {}) }
      ctx.log(`hol ${t.name}: alone ${a1.mbps.toFixed(1)}/${a2.mbps.toFixed(1)} MB/s, stalled ${s.mbps.toFixed(1)} MB/s (${s.completed}/${streams} done) → ratio ${ratio.toFixed(3)}`)
    } catch (err) {
      out[t.name] = { error: (err as Error).message }
      ctx.log(`hol ${t.name}: FAILED ${(err as Error).message}`)
    }
  }
  return out
}
