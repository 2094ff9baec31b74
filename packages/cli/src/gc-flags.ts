/**
 * The V8 garbage-collector flags of a `tower` process: the rule, without
 * side effects, so launchers (the bench, the e2e harness) can read it too.
 * gc-tuning.ts applies the run-time flags; the launch flags must be on the
 * `node` command line, and are: `bin/tower.js`'s shebang and the image's
 * ENTRYPOINT carry them (a unit test holds both to this list).
 *
 * Why each flag, with the measurements: gc-tuning.ts's header and
 * bench/README.md, Profiles.
 */

/** Flags set at run time by gc-tuning.ts (V8 reads them at each GC decision). */
export const GC_FLAGS = [
  '--external-memory-accounted-in-global-limit',
  '--minor-gc-task-trigger=5',
  '--heap-growing-percent=100'
] as const

/**
 * Flags V8 reads only when it creates the heap, so they go on the command
 * line: `--min-semi-space-size=8` keeps the young generation at 16 MiB or
 * more (V8 starts it at 1 MiB and grows it only as objects survive, which a
 * tunnel's garbage rarely does). With `--minor-gc-task-trigger=5` a young
 * generation of 1-2 MiB means a scavenge per 50-100 KiB allocated, and a
 * scavenge costs about the same however little it frees.
 */
export const GC_LAUNCH_FLAGS = ['--min-semi-space-size=8'] as const

/** True unless `TOWER_GC_TUNING` is `off`, `0` or `false`. */
export function gcTuningEnabled (env: NodeJS.ProcessEnv = process.env): boolean {
  const v = env.TOWER_GC_TUNING?.trim().toLowerCase()
  return !(v === 'off' || v === '0' || v === 'false')
}

/** The launch flags for a `tower` process started with `env`: none when the tuning is off. */
export function gcLaunchFlags (env: NodeJS.ProcessEnv = process.env): string[] {
  return gcTuningEnabled(env) ? [...GC_LAUNCH_FLAGS] : []
}
