/**
 * How each transfer of the soak ended. Only three endings fail the soak: bytes that differ from what was
 * sent (corrupt), a body that ended as if complete but was not (silently truncated), and a transfer that
 * neither finished nor failed within its stall bound (hung). A transfer the faults interrupted is fine
 * as long as the client saw an error: those are counted, not hidden.
 */

/** The ending of one transfer. */
export type Outcome = 'ok' | 'refused' | 'interrupted' | 'hung' | 'truncated' | 'corrupt'

/** Endings that fail the soak. */
export const FAILING: ReadonlySet<Outcome> = new Set(['hung', 'truncated', 'corrupt'])

/** Counters of outcomes per workload, plus the first few details of each failing one. */
export class Outcomes {
  #counts = new Map<string, Map<Outcome, number>>()
  #bytes = new Map<string, number>()
  /** Details of failing outcomes (at most 50 kept). */
  readonly failures: string[] = []

  /** Record one transfer of `workload`; `bytes` are verified bytes received. */
  add (workload: string, outcome: Outcome, detail = '', bytes = 0): void {
    let m = this.#counts.get(workload)
    if (m === undefined) this.#counts.set(workload, m = new Map())
    m.set(outcome, (m.get(outcome) ?? 0) + 1)
    if (outcome === 'ok') this.#bytes.set(workload, (this.#bytes.get(workload) ?? 0) + bytes)
    if (FAILING.has(outcome) && this.failures.length < 50) this.failures.push(`${workload}: ${outcome} at ${new Date().toISOString()}: ${detail}`)
  }

  /** Count of `outcome` for `workload` (all workloads when undefined). */
  count (outcome: Outcome, workload?: string): number {
    let n = 0
    for (const [w, m] of this.#counts) if (workload === undefined || w === workload) n += m.get(outcome) ?? 0
    return n
  }

  /** One line per workload: `name ok=… refused=… … verified=… MB`. */
  table (): string[] {
    const kinds: Outcome[] = ['ok', 'refused', 'interrupted', 'hung', 'truncated', 'corrupt']
    return [...this.#counts.keys()].sort().map((w) => {
      const m = this.#counts.get(w)!
      const mb = ((this.#bytes.get(w) ?? 0) / 1e6).toFixed(1)
      return `${w.padEnd(22)} ${kinds.map((k) => `${k}=${m.get(k) ?? 0}`).join(' ')} verified=${mb} MB`
    })
  }
}
