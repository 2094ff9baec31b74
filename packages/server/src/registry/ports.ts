/**
 * The cluster port range. `0` means "let the OS choose at first bind": the
 * chosen port is then persisted, so a cluster keeps its port across restarts.
 */
import { InvalidArgumentError } from '@tower/mux'
import { PortRangeExhaustedError } from '../errors.ts'

/** An inclusive port range; `{ first: 0, last: 0 }` is the ephemeral range. */
export interface PortRange {
  /** First port of the range, inclusive. */
  first: number
  /** Last port of the range, inclusive. */
  last: number
}

/** Parses `6000-6999`, `6443` or `0`. */
export function parsePortRange (text: string): PortRange {
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text.trim())
  if (m === null) throw new InvalidArgumentError(`--port-range must look like 6000-6999, 6443 or 0, got "${text}"`)
  const first = Number(m[1])
  const last = m[2] === undefined ? first : Number(m[2])
  if (first === 0 && last === 0) return { first, last }
  if (first < 1 || last > 65535 || first > last) throw new InvalidArgumentError(`--port-range ${text} is not within 1-65535 with first <= last`)
  return { first, last }
}

/** The range as the operator wrote it. */
export function formatPortRange (r: PortRange): string {
  return r.first === r.last ? String(r.first) : `${r.first}-${r.last}`
}

/** The lowest port of the range not in `taken`; 0 for the ephemeral range. */
export function allocatePort (range: PortRange, taken: Iterable<number>): number {
  if (range.first === 0) return 0
  const used = new Set(taken)
  for (let p = range.first; p <= range.last; p++) {
    if (!used.has(p)) return p
  }
  throw new PortRangeExhaustedError(formatPortRange(range))
}
