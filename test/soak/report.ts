/**
 * Figures of the soak's report: percentiles of recovery times per fault kind, and RSS and open fds of
 * the Tower processes from /proc.
 */
import { readdirSync, readFileSync } from 'node:fs'
import type { FaultRecord } from './faults.ts'

/** RSS (bytes) and open file descriptors of a process. */
export interface ProcStats { pid: number, rssBytes: number, fds: number }

/** Read a process's RSS and fd count from /proc. */
export function procStats (pid: number): ProcStats {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN)
  return { pid, rssBytes: kb * 1024, fds: readdirSync(`/proc/${pid}/fd`).length }
}

/** The p-th percentile (nearest rank) of non-empty `values`. */
export function percentile (values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!
}

/** One line per fault kind: count, p50 and max of recovery (and of reconnect where measured). */
export function faultTable (records: FaultRecord[]): string[] {
  const kinds = [...new Set(records.map((r) => r.kind))].sort()
  return kinds.map((k) => {
    const rs = records.filter((r) => r.kind === k)
    const rec = rs.map((r) => r.recoveryMs)
    const recon = rs.map((r) => r.reconnectMs).filter((v): v is number => v !== undefined)
    const down = rs.map((r) => r.downMs).filter((v): v is number => v !== undefined)
    const clean = rs.map((r) => r.cleanupMs).filter((v): v is number => v !== undefined && v >= 0)
    return `${k.padEnd(24)} n=${rs.length} recovery p50=${percentile(rec, 50)} ms max=${Math.max(...rec)} ms` +
      (recon.length > 0 ? `; agent reconnect p50=${percentile(recon, 50)} ms max=${Math.max(...recon)} ms` : '') +
      (down.length > 0 ? `; link down ${Math.min(...down)}-${Math.max(...down)} ms` : '') +
      (clean.length > 0 ? `; dead replica's slices and Lease gone p50=${percentile(clean, 50)} ms max=${Math.max(...clean)} ms` : '') +
      (rs.some((r) => !r.recovered) ? `; ${rs.filter((r) => !r.recovered).length} NOT RECOVERED` : '')
  })
}

/** MB with one decimal. */
export function mb (bytes: number): string {
  return (bytes / 1e6).toFixed(1)
}
