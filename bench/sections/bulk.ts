/**
 * Section 1: one-stream bulk download and upload for every path. Paths are
 * interleaved round-robin and each transfer repeated, so slow drift on the
 * machine hits every path alike; the median run is reported.
 */
import { PATHS, targetsOf, type BenchContext } from '../lib/context.ts'
import { median } from '../lib/stats.ts'

/** Per path and direction: median MB/s, and every run. */
export type BulkResult = Record<string, { down?: { mbps: number, runs: number[] }, up?: { mbps: number, runs: number[] }, error?: string }>

/** Runs the section. */
export async function bulkSection (ctx: BenchContext): Promise<BulkResult> {
  const { bulkBytes: bytes, bulkRepeat } = ctx.opts
  // Slowest path we wait for: 2 MB/s, plus 30 s.
  const timeoutMs = Math.round(bytes / 2e6 * 1000) + 30_000
  const out: BulkResult = {}
  const runs: Record<string, { down: number[], up: number[] }> = {}
  const targets = targetsOf(ctx, PATHS)
  for (let rep = 0; rep < bulkRepeat; rep++) {
    for (const t of targets) {
      if (out[t.name]?.error !== undefined) continue
      runs[t.name] ??= { down: [], up: [] }
      for (const direction of ['down', 'up'] as const) {
        try {
          const r = await ctx.client.run<{ mbps: number }>({ kind: 'bulk', target: t, direction, bytes, timeoutMs }, timeoutMs + 10_000)
          runs[t.name][direction].push(r.mbps)
          ctx.log(`bulk ${t.name} ${direction} #${rep + 1}: ${r.mbps.toFixed(1)} MB/s`)
        } catch (err) {
          out[t.name] = { error: `${direction}: ${(err as Error).message}` }
          ctx.log(`bulk ${t.name} ${direction}: FAILED ${(err as Error).message}`)
          break
        }
      }
    }
  }
  for (const [name, r] of Object.entries(runs)) {
    out[name] = {
      ...out[name],
      ...(r.down.length > 0 ? { down: { mbps: median(r.down), runs: r.down } } : {}),
      ...(r.up.length > 0 ? { up: { mbps: median(r.up), runs: r.up } } : {})
    }
  }
  return out
}
