/** Small numeric helpers for the report: percentiles, medians, rounding. */

/** The p-th percentile (0..100) of `xs` by nearest rank; NaN for an empty list. */
export function percentile (xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  const rank = Math.ceil((p / 100) * s.length)
  return s[Math.min(s.length - 1, Math.max(0, rank - 1))]
}

/** Median of `xs` (mean of the middle two for an even count); NaN for an empty list. */
export function median (xs: readonly number[]): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

/** Rounds to `digits` decimals; passes NaN/undefined through as null (JSON-safe). */
export function round (x: number | undefined | null, digits = 2): number | null {
  if (x === undefined || x === null || !Number.isFinite(x)) return null
  const f = 10 ** digits
  return Math.round(x * f) / f
}

/** a ÷ b, or null when either is missing or b is 0. */
export function ratio (a: number | undefined | null, b: number | undefined | null): number | null {
  if (a === undefined || a === null || b === undefined || b === null || b === 0 || !Number.isFinite(a) || !Number.isFinite(b)) return null
  return a / b
}

/**
 * Median over the rounds of each round's a ÷ b (`a[i]` and `b[i]` measured
 * in the same round, seconds apart); null when no round has both. Paths
 * are interleaved round by round, so a slow spell of the host, or the cold
 * first round, hits both figures of a pair and cancels in their ratio; the
 * ratio of the two medians can pair figures from different rounds.
 */
export function pairedRatio (a: readonly number[] | undefined, b: readonly number[] | undefined): number | null {
  return pairedMedian(a, b, ratio)
}

/** Median over the rounds of each round's a − b, as {@link pairedRatio}. */
export function pairedDiff (a: readonly number[] | undefined, b: readonly number[] | undefined): number | null {
  return pairedMedian(a, b, (x, y) => Number.isFinite(x) && Number.isFinite(y) ? x - y : null)
}

function pairedMedian (a: readonly number[] | undefined, b: readonly number[] | undefined, op: (x: number, y: number) => number | null): number | null {
  if (a === undefined || b === undefined) return null
  const each: number[] = []
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const x = op(a[i], b[i])
    if (x !== null) each.push(x)
  }
  return each.length === 0 ? null : median(each)
}
