/**
 * Parameters for the property and mutation fuzz tests (`*.fuzz.test.ts`).
 *
 * In `npm test` every target runs for a short time budget with a fixed seed,
 * so a failure reproduces on the next run and on any machine. `npm run fuzz`
 * (test/fuzz/run.ts) sets TOWER_FUZZ_MS and TOWER_FUZZ_SEED to run each
 * target longer with a fresh seed; fast-check prints the seed and the shrunk
 * counterexample of any failure, and `--seed` replays it.
 */
import type { Parameters } from 'fast-check'

/** Time budget of one fuzz target in `npm test`, in milliseconds. */
export const DEFAULT_FUZZ_MS = 2500

/** Seed of every fuzz target in `npm test`. */
export const DEFAULT_FUZZ_SEED = 20261201

/** fast-check parameters for one fuzz target: runs until the time budget, at least `minRuns` times. */
export function fuzzParams<T> (minRuns = 50): Parameters<T> {
  const ms = Number(process.env.TOWER_FUZZ_MS ?? DEFAULT_FUZZ_MS)
  const seed = Number(process.env.TOWER_FUZZ_SEED ?? DEFAULT_FUZZ_SEED)
  return {
    seed,
    // The time limit ends the run; numRuns only has to be out of its way.
    numRuns: Math.max(minRuns, 1_000_000_000),
    interruptAfterTimeLimit: ms,
    markInterruptAsFailure: false
  }
}
