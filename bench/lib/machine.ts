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

/** Clock ticks per second of /proc (USER_HZ, 100 on every Linux architecture Node runs on). */
const TICKS_PER_S = 100

/** CPU time in clock ticks: all CPUs busy, and this process tree's share. */
export interface CpuSnapshot {
  /**
   * Busy ticks of the whole machine in process context (user+nice+system),
   * /proc/stat. irq and softirq are left out: loopback TCP is processed in
   * softirq, so the run's own traffic would otherwise count as "other".
   */
  machine: number
  /** Ticks of this process, its reaped children and its live children `pids`. */
  ours: number
  /**
   * Steal ticks of the whole machine (/proc/stat): time this VM's CPUs were
   * ready to run but the host ran something else. No process here shows it,
   * yet it slows every row that runs while it lasts.
   */
  steal: number
}

/** CPU ticks (user+sys; with `withReaped`, also its reaped children's) of `pid`, from /proc; 0 when unreadable. */
export function procTicks (pid: number | 'self', withReaped: boolean): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the ")" that closes the command name; utime is field 14.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number)
    return f[11] + f[12] + (withReaped ? f[13] + f[14] : 0)
  } catch { return 0 }
}

/** Reads the CPU counters (Linux only; zeros elsewhere). */
export function cpuSnapshot (livePids: number[]): CpuSnapshot {
  let machine = 0
  let steal = 0
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
    machine = f[0] + f[1] + f[2]
    steal = f[7] ?? 0
  } catch { /* not Linux */ }
  // Reaped children count in our cutime/cstime; live ones are read one by one.
  return { machine, steal, ours: procTicks('self', true) + livePids.reduce((a, p) => a + procTicks(p, true), 0) }
}

/**
 * Share of all CPUs used by processes outside this run between two
 * snapshots, in percent. A child that exits between the snapshots moves its
 * ticks from "live" to "reaped", which this accounts for only approximately.
 */
export function otherCpuPercent (a: CpuSnapshot, b: CpuSnapshot, seconds: number, nproc: number): number {
  const other = (b.machine - a.machine) - (b.ours - a.ours)
  return Math.max(0, 100 * other / (TICKS_PER_S * seconds * nproc))
}

/** Share of all CPUs the host took from this VM (steal) between two snapshots, in percent. */
export function stealCpuPercent (a: CpuSnapshot, b: CpuSnapshot, seconds: number, nproc: number): number {
  return Math.max(0, 100 * (b.steal - a.steal) / (TICKS_PER_S * seconds * nproc))
}

/**
 * Starts measuring steal; the returned function gives the share of all CPUs
 * the host took since then, in percent to one decimal (0 off Linux). One
 * per measurement, so a figure the host slowed can be told from one it did not.
 */
export function stealMeter (nproc: number): () => number {
  const a = cpuSnapshot([])
  const t0 = Date.now()
  return () => {
    const seconds = Math.max(0.001, (Date.now() - t0) / 1000)
    return Math.round(stealCpuPercent(a, cpuSnapshot([]), seconds, nproc) * 10) / 10
  }
}
