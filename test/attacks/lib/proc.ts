/**
 * What the kernel says about a process: open file descriptors, resident
 * memory (now and peak), and its TCP sockets stuck in CLOSE-WAIT. The attack
 * suite compares these before and after each attack.
 */
import fs from 'node:fs'

/** A point-in-time reading of a process. */
export interface ProcSnapshot {
  /** Open file descriptors. */
  fds: number
  /** Resident set size, in bytes. */
  rss: number
}

/** Open file descriptors of `pid`. */
export function fdCount (pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length
}

/** A field of /proc/<pid>/status in bytes (VmRSS, VmHWM: the kernel reports kB). */
function statusBytes (pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)
  if (m === null) throw new Error(`no ${field} in /proc/${pid}/status: the process has exited`)
  return Number(m[1]) * 1024
}

/** Resident set size of `pid`, in bytes. */
export function rssBytes (pid: number): number {
  return statusBytes(pid, 'VmRSS')
}

/** Peak resident set size of `pid` since start or the last {@link resetPeakRss}, in bytes. */
export function peakRssBytes (pid: number): number {
  return statusBytes(pid, 'VmHWM')
}

/**
 * Resets the peak RSS (VmHWM) of `pid` to its current RSS, so a later
 * {@link peakRssBytes} measures one attack only. Returns false when the
 * kernel does not allow it (then the peak is since process start).
 */
export function resetPeakRss (pid: number): boolean {
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, '5')
    return true
  } catch {
    return false
  }
}

/** Reads fds and RSS of `pid`. */
export function snapshot (pid: number): ProcSnapshot {
  return { fds: fdCount(pid), rss: rssBytes(pid) }
}

/** Socket inodes held open by `pid`. */
function socketInodes (pid: number): Set<string> {
  const out = new Set<string>()
  const dir = `/proc/${pid}/fd`
  for (const fd of fs.readdirSync(dir)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`${dir}/${fd}`))
      if (m !== null) out.add(m[1]!)
    } catch {
      // closed between readdir and readlink
    }
  }
  return out
}

// /proc/net/tcp state codes (include/net/tcp_states.h).
const TCP_STATES = new Map([
  ['01', 'ESTABLISHED'], ['02', 'SYN_SENT'], ['03', 'SYN_RECV'], ['04', 'FIN_WAIT1'], ['05', 'FIN_WAIT2'],
  ['06', 'TIME_WAIT'], ['07', 'CLOSE'], ['08', 'CLOSE_WAIT'], ['09', 'LAST_ACK'], ['0A', 'LISTEN'], ['0B', 'CLOSING']
])

/** How many TCP sockets `pid` holds in each state (ESTABLISHED, CLOSE_WAIT, …). */
export function tcpStates (pid: number): Map<string, number> {
  const inodes = socketInodes(pid)
  const counts = new Map<string, number>()
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string
    try {
      text = fs.readFileSync(file, 'utf8')
    } catch {
      continue
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/)
      if (cols.length < 10 || !inodes.has(cols[9]!)) continue
      const state = TCP_STATES.get(cols[3]!) ?? cols[3]!
      counts.set(state, (counts.get(state) ?? 0) + 1)
    }
  }
  return counts
}

/** Sockets of `pid` in CLOSE-WAIT: the peer left, and the process never closed its end. */
export function closeWaitCount (pid: number): number {
  return tcpStates(pid).get('CLOSE_WAIT') ?? 0
}

/** True while `pid` runs: it exists, is not a zombie, and still has its memory (a process tearing down has none). */
export function isAlive (pid: number): boolean {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
    return !/^State:\s+[ZX]/m.test(status) && /^VmRSS:/m.test(status)
  } catch {
    return false
  }
}
