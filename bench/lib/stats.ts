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
