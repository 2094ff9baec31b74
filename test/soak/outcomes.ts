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

/** Endings whose reasons are tallied: they pass, but an operator wants to know why they happened. */
const EXPLAINED: ReadonlySet<Outcome> = new Set(['refused', 'interrupted'])

/** Distinct reasons kept per workload and ending; further ones are counted as `other`. */
export const MAX_REASONS = 12

/**
 * A short, stable reason for a refused or interrupted transfer: the HTTP status when a response head
 * arrived, else the error's code (`ECONNRESET`) or its first words, without numbers (ports, byte
 * counts) so that one cause is one key.
 */
export function reasonOf (r: { status?: number, error?: string, code?: number | null }): string {
  if (r.status !== undefined && r.status > 0) return `HTTP ${r.status}`
  if (r.error !== undefined && r.error !== '') {
    const code = /\b(E[A-Z]{3,}|ERR_[A-Z_]+)\b/.exec(r.error)
    if (code !== null) return code[1]!
    return r.error.replace(/\d+/g, 'N').replace(/\s+/g, ' ').trim().slice(0, 60)
  }
  if (r.code !== undefined && r.code !== null) return `exit ${r.code}`
  return 'unknown'
}

/** Counters of outcomes per workload, plus the first few details of each failing one. */
export class Outcomes {
  #counts = new Map<string, Map<Outcome, number>>()
  #bytes = new Map<string, number>()
  // workload → "ending: reason" → count, for refused and interrupted endings
  #reasons = new Map<string, Map<string, number>>()
  /** Details of failing outcomes (at most 50 kept). */
  readonly failures: string[] = []

  /**
   * Record one transfer of `workload`; `bytes` are verified bytes received; `reason` (see
   * {@link reasonOf}) is tallied for refused and interrupted endings.
   */
  add (workload: string, outcome: Outcome, detail = '', bytes = 0, reason = 'unknown'): void {
    let m = this.#counts.get(workload)
    if (m === undefined) this.#counts.set(workload, m = new Map())
    m.set(outcome, (m.get(outcome) ?? 0) + 1)
    if (EXPLAINED.has(outcome)) {
      let r = this.#reasons.get(workload)
      if (r === undefined) this.#reasons.set(workload, r = new Map())
      let key = `${outcome}: ${reason}`
      if (!r.has(key) && r.size >= MAX_REASONS) key = `${outcome}: other`
      r.set(key, (r.get(key) ?? 0) + 1)
    }
    if (outcome === 'ok') this.#bytes.set(workload, (this.#bytes.get(workload) ?? 0) + bytes)
    if (FAILING.has(outcome) && this.failures.length < 50) this.failures.push(`${workload}: ${outcome} at ${new Date().toISOString()}: ${detail}`)
  }

  /** Count of `outcome` for `workload` (all workloads when undefined). */
  count (outcome: Outcome, workload?: string): number {
    let n = 0
    for (const [w, m] of this.#counts) if (workload === undefined || w === workload) n += m.get(outcome) ?? 0
    return n
  }

  /** The tally of reasons for `workload`'s refused and interrupted endings, most frequent first. */
  reasons (workload: string): Array<[string, number]> {
    return [...(this.#reasons.get(workload) ?? new Map<string, number>()).entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
  }

  /**
   * One line per workload: `name ok=… refused=… … verified=… MB`, followed by one indented line with the
   * reasons of its refused and interrupted endings when it has any.
   */
  table (): string[] {
    const kinds: Outcome[] = ['ok', 'refused', 'interrupted', 'hung', 'truncated', 'corrupt']
    return [...this.#counts.keys()].sort().flatMap((w) => {
      const m = this.#counts.get(w)!
      const mb = ((this.#bytes.get(w) ?? 0) / 1e6).toFixed(1)
      const line = `${w.padEnd(22)} ${kinds.map((k) => `${k}=${m.get(k) ?? 0}`).join(' ')} verified=${mb} MB`
      const why = this.reasons(w)
      return why.length === 0 ? [line] : [line, `${''.padEnd(22)}   why: ${why.map(([k, n]) => `${k} ×${n}`).join(', ')}`]
    })
  }
}
