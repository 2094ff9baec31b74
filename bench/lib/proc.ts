/**
 * Child processes for the benchmark: start them with their output in a log
 * file, wait for real readiness (an IPC message, a log line, or a TCP
 * connect) with bounded loops, read their RSS from /proc, and stop every one
 * of them when the run ends — including when it ends by an exception.
 */
import { spawn, fork, type ChildProcess } from 'node:child_process'
import { openSync, closeSync, readFileSync, writeSync } from 'node:fs'
import net from 'node:net'
import { once } from 'node:events'
import { setTimeout as delay } from 'node:timers/promises'

const children = new Set<ChildProcess>()

process.once('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
})

/** pids of the children this process started that are still running. */
export function childPids (): number[] {
  return [...children].flatMap((c) => c.pid === undefined || c.exitCode !== null || c.signalCode !== null ? [] : [c.pid])
}

/** Where a child's stdout and stderr go: a file, so a failure can be read afterwards. */
export interface ChildLog {
  /** Path of the log file (stdout and stderr interleaved). */
  file: string
}

/**
 * Spawns a binary with stdout+stderr appended to `logFile`. When `pipeStdout`
 * is set, stdout is a pipe instead (for JSON log lines the caller parses).
 */
export function spawnLogged (cmd: string, args: string[], logFile: string,
  opts: { env?: NodeJS.ProcessEnv, cwd?: string, pipeStdout?: boolean } = {}): ChildProcess {
  const fd = openSync(logFile, 'a')
  const child = spawn(cmd, args, {
    stdio: ['ignore', opts.pipeStdout === true ? 'pipe' : fd, fd],
    env: opts.env ?? process.env,
    cwd: opts.cwd
  })
  closeSync(fd)
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

/**
 * Forks a Node script (a .ts file; node 24 strips the types) with an IPC
 * channel and waits, at most `timeoutMs`, for its first message, which must
 * be `{ type: 'ready', ... }`.
 */
export async function forkReady<T extends object> (script: string, args: string[], logFile: string,
  timeoutMs = 30_000, execArgv: string[] = []): Promise<{ child: ChildProcess, ready: T }> {
  const fd = openSync(logFile, 'a')
  const child = fork(script, args, { stdio: ['ignore', fd, fd, 'ipc'], execArgv })
  closeSync(fd)
  children.add(child)
  child.once('exit', () => children.delete(child))
  const ac = new AbortController()
  const timer = setTimeout(() => ac.abort(), timeoutMs).unref()
  try {
    const exited = once(child, 'exit', { signal: ac.signal }).then(([code, sig]) => {
      throw new Error(`${script} exited (${code ?? sig}) before ready; see ${logFile}`)
    })
    const [msg] = await Promise.race([once(child, 'message', { signal: ac.signal }), exited]) as [any]
    if (msg?.type !== 'ready') throw new Error(`${script}: unexpected first message ${JSON.stringify(msg)}`)
    return { child, ready: msg as T }
  } catch (err) {
    child.kill('SIGKILL')
    if (ac.signal.aborted) throw new Error(`${script} not ready after ${timeoutMs} ms; see ${logFile}`)
    throw err
  } finally {
    clearTimeout(timer)
    ac.abort()
  }
}

/** Polls a TCP connect to host:port until it succeeds; at most `timeoutMs`, every `everyMs`. */
export async function waitForTcp (host: string, port: number, timeoutMs = 20_000, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (let i = 0; Date.now() < deadline && i < timeoutMs / everyMs + 1; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host, port })
      s.once('connect', () => { s.destroy(); resolve(true) })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    await delay(everyMs)
  }
  throw new Error(`nothing listening on ${host}:${port} after ${timeoutMs} ms`)
}

/** Polls `check` until it returns true; at most `timeoutMs`, every `everyMs`. */
export async function waitFor (what: string, check: () => boolean | Promise<boolean>,
  timeoutMs = 20_000, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (let i = 0; Date.now() < deadline && i < timeoutMs / everyMs + 1; i++) {
    if (await check()) return
    await delay(everyMs)
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
}

/** Resident set size of a process in bytes (VmRSS from /proc/<pid>/status). */
export function rssBytes (pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  if (m === null) throw new Error(`no VmRSS for pid ${pid}`)
  return Number(m[1]) * 1024
}

/**
 * A TCP port in [lo, hi) that is free right now, for tools that refuse port 0
 * (Konnectivity rejects ports outside 1024..49151). Bounded attempts.
 */
export async function freePortInRange (lo = 20_000, hi = 32_000): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = lo + Math.floor(Math.random() * (hi - lo))
    const ok = await new Promise<boolean>((resolve) => {
      const srv = net.createServer()
      srv.once('error', () => resolve(false))
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)))
    })
    if (ok) return port
  }
  throw new Error(`no free port in ${lo}..${hi} after 50 tries`)
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the child has exited. */
export async function stopChild (child: ChildProcess, graceMs = 3_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGTERM')
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs).unref()
  await exited
  clearTimeout(t)
}

/**
 * Reads a child's stdout as JSON lines (pino logs): keeps draining it for the
 * child's whole life (so the pipe never fills and blocks the child), appends
 * every line to `logFile`, and lets callers wait for a line that matches.
 */
export class JsonLineTap {
  /** Every JSON object seen so far, in order. */
  readonly lines: any[] = []
  #waiters = new Set<{ match: (o: any) => boolean, resolve: (o: any) => void }>()

  constructor (child: ChildProcess, logFile: string) {
    const fd = openSync(logFile, 'a')
    let buf = ''
    child.stdout?.on('data', (d: Buffer) => {
      writeSync(fd, d)
      buf += d.toString('utf8')
      let i
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i)
        buf = buf.slice(i + 1)
        let o: any
        try { o = JSON.parse(line) } catch { continue }
        this.lines.push(o)
        for (const w of this.#waiters) if (w.match(o)) { this.#waiters.delete(w); w.resolve(o) }
      }
    })
    child.stdout?.once('close', () => closeSync(fd))
  }

  /**
   * The first line (already seen or still to come) for which `match` is
   * true; rejects after `timeoutMs`.
   */
  async waitFor (match: (o: any) => boolean, timeoutMs: number, what: string): Promise<any> {
    const seen = this.lines.find(match)
    if (seen !== undefined) return seen
    let w: { match: (o: any) => boolean, resolve: (o: any) => void } | undefined
    let t: NodeJS.Timeout | undefined
    try {
      return await new Promise((resolve, reject) => {
        w = { match, resolve }
        this.#waiters.add(w)
        t = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs)
      })
    } finally {
      clearTimeout(t)
      if (w !== undefined) this.#waiters.delete(w)
    }
  }
}
