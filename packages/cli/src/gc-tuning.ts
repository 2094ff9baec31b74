/**
 * V8 garbage-collector settings for a `tower` process, applied before any
 * other module loads (main.ts imports this first).
 *
 * Why: a tunnel allocates few JS objects per byte but one socket-read buffer
 * (an ArrayBuffer outside the JS heap) per 16-64 KiB moved. The young
 * generation then fills slowly, so scavenges, which free those buffers for
 * almost nothing, are rare; instead V8 starts a full mark-compact each time
 * about 64 MiB of buffers have piled up ("external memory pressure"). At
 * 300 MB/s that is a mark-compact of the whole ~14 MiB live heap every
 * 60-200 ms. Measured with `--trace-gc` and `--trace-incremental-marking`
 * on 2 × 256 MiB of passthrough each way: 43 mark-compacts in the agent,
 * each started by "external memory pressure"; perf put major-GC work at
 * about a quarter of its CPU.
 *
 * The settings (all read by V8 at each GC decision, so they take effect
 * when set at run time):
 * - `--external-memory-accounted-in-global-limit`: buffer bytes count in the
 *   heap's global limit instead of triggering a mark-compact of their own;
 * - `--minor-gc-task-trigger=5`: a scavenge task is posted once the young
 *   generation is 5 % full (V8's default is 80 %), so buffers that died
 *   young are freed by cheap scavenges (0.4-0.7 ms here) long before
 *   they reach that limit;
 * - `--heap-growing-percent=100`: after a mark-compact the limit is twice
 *   the live size (V8 otherwise derives the factor, 1.1-4, from its speed
 *   estimates). With the other two flags alone the same download still ran
 *   7-9 mark-compacts per process; with this one, 1-2.
 *
 * With them the same download ran 1-2 mark-compacts per process (from
 * 37-43), and Tower's two processes used 14-31 % less CPU per GB of
 * passthrough bulk (bench/gc-ab.ts; figures in bench/README.md). An idle
 * process allocates nothing, so the settings cost it nothing.
 *
 * `TOWER_GC_TUNING=off` leaves V8's defaults, for comparison (`bench/gc-ab.ts`)
 * or if a future V8 drops a flag (an unrecognized flag makes V8 print one
 * "unrecognized flag" line on stderr; the process runs on).
 */
import v8 from 'node:v8'

/** The V8 flags set at start-up, in order. */
export const GC_FLAGS = [
  '--external-memory-accounted-in-global-limit',
  '--minor-gc-task-trigger=5',
  '--heap-growing-percent=100'
] as const

/** True unless `TOWER_GC_TUNING` is `off`, `0` or `false`. */
export function gcTuningEnabled (env: NodeJS.ProcessEnv = process.env): boolean {
  const v = env.TOWER_GC_TUNING?.trim().toLowerCase()
  return !(v === 'off' || v === '0' || v === 'false')
}

if (gcTuningEnabled()) {
  for (const flag of GC_FLAGS) v8.setFlagsFromString(flag)
}
