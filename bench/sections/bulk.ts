/**
 * Section 1: one-stream bulk download and upload for every path. Paths are
 * interleaved round-robin and each transfer repeated, so slow drift on the
 * machine hits every path alike; the median run is reported.
 */
import { PATHS, targetsOf, type BenchContext } from '../lib/context.ts'
import { median } from '../lib/stats.ts'

/** One direction of one path: the median MB/s, every run, and the steal (% of all CPUs) during each run. */
export interface BulkFigures { mbps: number, runs: number[], steal?: number[] }
/** Per path and direction. */
export type BulkResult = Record<string, { down?: BulkFigures, up?: BulkFigures, error?: string }>

/** Runs the section. */
export async function bulkSection (ctx: BenchContext): Promise<BulkResult> {
  const { bulkBytes: bytes, bulkRepeat } = ctx.opts
  // Slowest path we wait for: 2 MB/s, plus 30 s.
  const timeoutMs = Math.round(bytes / 2e6 * 1000) + 30_000
  const out: BulkResult = {}
  const runs: Record<string, Record<'down' | 'up', { mbps: number[], steal: number[] }>> = {}
  const targets = targetsOf(ctx, PATHS)
  for (let rep = 0; rep < bulkRepeat; rep++) {
    for (const t of targets) {
      if (out[t.name]?.error !== undefined) continue
      runs[t.name] ??= { down: { mbps: [], steal: [] }, up: { mbps: [], steal: [] } }
      for (const direction of ['down', 'up'] as const) {
        try {
          const stolen = ctx.stealMeter()
          const r = await ctx.client.run<{ mbps: number }>({ kind: 'bulk', target: t, direction, bytes, timeoutMs }, timeoutMs + 10_000)
          const steal = stolen()
          runs[t.name][direction].mbps.push(r.mbps)
          runs[t.name][direction].steal.push(steal)
          ctx.log(`bulk ${t.name} ${direction} #${rep + 1}: ${r.mbps.toFixed(1)} MB/s (steal ${steal} %)`)
        } catch (err) {
          out[t.name] = { error: `${direction}: ${(err as Error).message}` }
          ctx.log(`bulk ${t.name} ${direction}: FAILED ${(err as Error).message}`)
          break
        }
      }
    }
  }
  const figures = (x: { mbps: number[], steal: number[] }): BulkFigures => ({ mbps: median(x.mbps), runs: x.mbps, steal: x.steal })
  for (const [name, r] of Object.entries(runs)) {
    out[name] = {
      ...out[name],
      ...(r.down.mbps.length > 0 ? { down: figures(r.down) } : {}),
      ...(r.up.mbps.length > 0 ? { up: figures(r.up) } : {})
    }
  }
  return out
}
