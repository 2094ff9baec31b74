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

/**
 * The run-time flags gc-tuning.ts sets: {@link GC_FLAGS} without those the
 * node command line or NODE_OPTIONS already gives (`--name`, `--name=v`,
 * `--no-name`, with `-` or `_`), so an operator's own value of one wins.
 */
export function runtimeGcFlags (execArgv: readonly string[] = process.execArgv, env: NodeJS.ProcessEnv = process.env): string[] {
  const given = new Set([...execArgv, ...(env.NODE_OPTIONS ?? '').split(/\s+/)].map(v8FlagName).filter((n) => n !== ''))
  return GC_FLAGS.filter((f) => !given.has(v8FlagName(f)))
}

function v8FlagName (arg: string): string {
  if (!arg.startsWith('--')) return ''
  return arg.slice(2).split('=')[0]!.replace(/_/g, '-').replace(/^no-/, '')
}

/** True unless `TOWER_GC_TUNING` is `off`, `0` or `false`. */
export function gcTuningEnabled (env: NodeJS.ProcessEnv = process.env): boolean {
  const v = env.TOWER_GC_TUNING?.trim().toLowerCase()
  return !(v === 'off' || v === '0' || v === 'false')
}

/** The launch flags for a `tower` process started with `env`: none when the tuning is off. */
export function gcLaunchFlags (env: NodeJS.ProcessEnv = process.env): string[] {
  return gcTuningEnabled(env) ? [...GC_LAUNCH_FLAGS] : []
}
