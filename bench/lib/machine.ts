/** The machine a run happened on, for the report header. */
import os from 'node:os'
import { readFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'

/** Description of the host. */
export interface Machine {
  /** `nproc` (CPUs available to this process). */
  nproc: number
  /** CPU model name from /proc/cpuinfo. */
  cpu: string
  /** Total memory, MiB. */
  memMiB: number
  /** Node version. */
  node: string
  /** Kernel release. */
  kernel: string
  /** 1-minute load average when the run started (other work on the machine skews figures). */
  loadavg1: number
}

/** Reads the machine description. */
export function describeMachine (): Machine {
  let cpu = 'unknown'
  try {
    cpu = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpu
  } catch { /* not Linux: keep 'unknown' */ }
  let nproc = os.availableParallelism()
  try { nproc = Number(execFileSync('nproc', { encoding: 'utf8' }).trim()) || nproc } catch { /* no nproc: keep node's figure */ }
  return {
    nproc,
    cpu,
    memMiB: Math.round(os.totalmem() / 1024 / 1024),
    node: process.version,
    kernel: os.release(),
    loadavg1: Math.round(os.loadavg()[0] * 100) / 100
  }
}

/** The repository's HEAD commit (short), or 'unknown'. */
export function gitHead (cwd: string): string {
  try {
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd, encoding: 'utf8' }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd, encoding: 'utf8' }).trim() !== ''
    return dirty ? `${sha}+dirty` : sha
  } catch { return 'unknown' }
}
