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
 * The settings: three that V8 reads at each GC decision, so they take
 * effect when set at run time, and one launch flag:
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
 * - `--min-semi-space-size=8`, a launch flag (gc-flags.ts): the 5 % trigger
 *   is 5 % of the young generation's current size, which V8 starts at 1 MiB
 *   and grows only as objects survive. A tunnel's garbage dies young, so the
 *   young generation kept shrinking back (1-4 MiB in a third of the samples
 *   of one bulk run), and at 1 MiB a scavenge runs per 50 KiB allocated.
 *   Over 2 x 256 MiB each way of each mode, the proxy-mode agent went from
 *   825 scavenges (993 ms) to 434 (564 ms) with a 16 MiB floor, and the
 *   server, carrying both modes, from 942 (1,198 ms) to 433 (767 ms)
 *   (`--trace-gc`); in a later A/B the scavenge time fell 36-51 %
 *   in each process (`node bench/gc-ab.ts --b-node-args=--min-semi-space-size=0`).
 *   CPU per GB of server plus agent fell 9-16 % per row in the first A/B
 *   and moved +5 to -15 % in three later ones: within this VM's noise.
 *
 * With them the same download ran 1-2 mark-compacts per process (from
 * 37-43), and Tower's two processes used 14-31 % less CPU per GB of
 * passthrough bulk (bench/gc-ab.ts; figures in bench/README.md). An idle
 * process allocates nothing, so the run-time flags cost it nothing; the
 * launch flag's larger young generation costs a fresh one 5-9 MB of RSS
 * (server 145 -> 154 MB, agent 127 -> 132 MB).
 *
 * A flag given on the node command line (or in NODE_OPTIONS) is left as
 * given: `node --minor-gc-task-trigger=20 … tower server` runs with 20.
 *
 * `TOWER_GC_TUNING=off` leaves V8's defaults, for comparison (`bench/gc-ab.ts`;
 * launchers that read gc-flags.ts then leave out the launch flag too)
 * or if a future V8 drops a flag (an unrecognized flag makes V8 print one
 * "unrecognized flag" line on stderr; the process runs on).
 */
import v8 from 'node:v8'
import { gcTuningEnabled, runtimeGcFlags } from './gc-flags.ts'

if (gcTuningEnabled()) {
  for (const flag of runtimeGcFlags()) v8.setFlagsFromString(flag)
}
