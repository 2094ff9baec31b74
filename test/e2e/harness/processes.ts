/**
 * Child processes and temp dirs of the e2e harness, with cleanup that also runs when a test fails,
 * the runner is interrupted (SIGINT/SIGTERM) or the test process just exits.
 *
 * Every child runs in its own process group (detached), so stopping it also ends what it started
 * (kwok runs the commands of `kubectl exec` as its children); descendants that left the group are
 * collected from /proc and killed too. `ip netns exec NS cmd` execs `cmd`
 * in place, so the pid we hold is the real process inside the namespace.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream, mkdtempSync, readdirSync, readFileSync, rmSync, type WriteStream } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import { createInterface } from 'node:readline'

/** How a child ended. */
export interface ExitStatus { code: number | null, signal: NodeJS.Signals | null }

/** A child process started by the harness. */
export interface ManagedProcess {
  /** Short name used in logs and errors, e.g. 'etcd', 'kube-apiserver[member]'. */
  readonly name: string
  readonly pid: number
  readonly child: ChildProcess
  /** Resolves when the process has exited. */
  readonly exited: Promise<ExitStatus>
  /** Non-null once exited. */
  exitStatus: ExitStatus | null
  /** Path of the file with its whole output (stderr, and stdout unless rawStdout), or undefined without logDir. */
  readonly logFile: string | undefined
  /** The last lines of its output (for error messages). */
  tail (lines?: number): string
  /**
   * Resolves with the first output line (seen so far or later) matching `re`; rejects when the process
   * exits first or after `timeoutMs` (ms). Log lines are the only "I am serving" event some tools give.
   */
  waitForLine (re: RegExp, timeoutMs: number): Promise<string>
  /**
   * SIGTERM to the process group, SIGKILL to the group after `graceMs` (ms) or once the leader is gone
   * (so that its children cannot outlive it). Idempotent.
   */
  stop (graceMs?: number): Promise<void>
}

/** Options of {@link startProcess}. */
export interface StartOptions {
  /** Extra environment (added to process.env). */
  env?: Record<string, string>
  cwd?: string
  /** Run inside this network namespace (`ip netns exec NAME`). */
  netns?: string
  /** Folder for the output file `<name>.log`; without it the output is only kept in memory (tail). */
  logDir?: string
  /** Receives every output line, prefixed with the process name. */
  log?: (line: string) => void
  /** Give the child a stdin pipe (child.stdin) instead of /dev/null. */
  stdin?: boolean
  /** Leave child.stdout to the caller (binary data, e.g. kubectl exec); only stderr is line-captured. */
  rawStdout?: boolean
}

const live = new Set<ManagedProcess>()
const tempDirs = new Set<string>()
const cleanups = new Set<() => void>()
let hooked = false

/**
 * Last-resort cleanup, synchronous because 'exit' handlers cannot wait: SIGKILL every live process group,
 * run registered sync cleanups (netns deletion), remove temp dirs.
 */
function cleanupSync (): void {
  for (const p of live) {
    const tree = p.exitStatus === null ? descendants(p.pid) : []
    killGroup(p.pid, 'SIGKILL')
    for (const pid of tree) signal(pid, 'SIGKILL')
  }
  live.clear()
  for (const fn of cleanups) {
    try { fn() } catch { /* best effort at exit */ }
  }
  cleanups.clear()
  if (!keepTempDirs()) for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true })
  tempDirs.clear()
}

function hookExit (): void {
  if (hooked) return
  hooked = true
  process.on('exit', cleanupSync)
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      cleanupSync()
      // Re-raise with the default action so the exit status still says "killed by signal".
      process.kill(process.pid, sig)
    })
  }
}

/** Register a synchronous cleanup that also runs on exit/SIGINT; returns a function that unregisters it. */
export function registerCleanup (fn: () => void): () => void {
  hookExit()
  cleanups.add(fn)
  return () => { cleanups.delete(fn) }
}

/** A fresh temp dir `tower-e2e-<prefix>-XXXXXX`, removed by {@link removeTempDir} or at exit at the latest. */
export function makeTempDir (prefix: string): string {
  hookExit()
  const dir = mkdtempSync(join(tmpdir(), `tower-e2e-${prefix}-`))
  tempDirs.add(dir)
  return dir
}

/** True when TOWER_E2E_KEEP is set: temp dirs (with every process's log) are kept for debugging. */
export function keepTempDirs (): boolean {
  return (process.env.TOWER_E2E_KEEP ?? '') !== ''
}

/** Remove a dir made by {@link makeTempDir} (unless {@link keepTempDirs}). */
export function removeTempDir (dir: string): void {
  tempDirs.delete(dir)
  if (!keepTempDirs()) rmSync(dir, { recursive: true, force: true })
}

function signal (target: number, sig: NodeJS.Signals): void {
  try {
    process.kill(target, sig)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err
  }
}

function killGroup (pid: number, sig: NodeJS.Signals): void {
  signal(-pid, sig)
}

/**
 * All descendants of `pid` (children, grandchildren, ...) from /proc. The process group covers what a
 * child starts in the normal case (kwok's exec'ed commands stay in kwok's group); this also catches
 * anything that left the group (setsid, e.g. kwok's fork mode), which once its parent is gone is
 * re-parented to init and can no longer be found.
 */
export function descendants (pid: number): number[] {
  const children = new Map<number, number[]>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let stat: string
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
    } catch {
      continue // exited meanwhile
    }
    // Fields after the parenthesised command name (which may itself contain spaces and parentheses).
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
    const list = children.get(ppid) ?? []
    list.push(Number(entry))
    children.set(ppid, list)
  }
  const out: number[] = []
  const queue = [pid]
  while (queue.length > 0) {
    for (const c of children.get(queue.shift()!) ?? []) {
      out.push(c)
      queue.push(c)
    }
  }
  return out
}

/** Spawn `cmd args` in its own process group (and netns, if given), capturing its output. */
export function startProcess (name: string, cmd: string, args: string[], opts: StartOptions): ManagedProcess {
  hookExit()
  const [file, argv] = opts.netns === undefined
    ? [cmd, args]
    : ['ip', ['netns', 'exec', opts.netns, cmd, ...args]]
  const child = spawn(file, argv, {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    detached: true,
    stdio: [opts.stdin === true ? 'pipe' : 'ignore', 'pipe', 'pipe']
  })
  // Listen before anything can throw: an 'error' event without a listener would crash the test process.
  let spawnError: Error | undefined
  child.on('error', (err) => { spawnError = err })
  if (child.pid === undefined) {
    // spawn reports ENOENT asynchronously; say it now, with the command.
    throw new Error(`${name}: cannot spawn ${file}`)
  }
  const logFile = opts.logDir === undefined ? undefined : join(opts.logDir, `${name.replace(/[^\w.-]+/g, '_')}.log`)
  const out: WriteStream | undefined = logFile === undefined ? undefined : createWriteStream(logFile)
  const recent: string[] = []
  const waiters = new Set<(line: string) => void>()
  const onLine = (line: string): void => {
    out?.write(line + '\n')
    recent.push(line)
    if (recent.length > 400) recent.shift()
    opts.log?.(`[${name}] ${line}`)
    for (const w of waiters) w(line)
  }
  const captured = opts.rawStdout === true ? [child.stderr!] : [child.stdout!, child.stderr!]
  for (const input of captured) createInterface({ input }).on('line', onLine)

  let stopping: Promise<void> | undefined
  const proc: ManagedProcess = {
    name,
    pid: child.pid,
    child,
    logFile,
    exitStatus: null,
    exited: once(child, 'exit').then(([code, signal]) => {
      proc.exitStatus = { code, signal }
      return proc.exitStatus
    }),
    tail: (lines = 40) => recent.slice(-lines).join('\n'),
    waitForLine: (re, timeoutMs) => new Promise<string>((resolve, reject) => {
      const seen = recent.find((l) => re.test(l))
      if (seen !== undefined) { resolve(seen); return }
      const done = (): void => { waiters.delete(onMatch); clearTimeout(timer) }
      const onMatch = (line: string): void => { if (re.test(line)) { done(); resolve(line) } }
      const timer = setTimeout(() => {
        done()
        reject(new Error(`${name}: no output line matching ${re} within ${timeoutMs} ms:\n${proc.tail()}`))
      }, timeoutMs).unref()
      waiters.add(onMatch)
      void proc.exited.then((st) => {
        done()
        reject(new Error(`${name} exited (code ${st.code}, signal ${st.signal}) before printing ${re}:\n${proc.tail()}`))
      })
    }),
    stop: (graceMs = 10_000) => {
      stopping ??= (async () => {
        let tree: number[] = []
        if (proc.exitStatus === null) {
          tree = descendants(proc.pid)
          killGroup(proc.pid, 'SIGTERM')
          for (const pid of tree) signal(pid, 'SIGTERM')
        }
        let timer: NodeJS.Timeout | undefined
        await Promise.race([
          proc.exited,
          new Promise<void>((resolve) => { timer = setTimeout(resolve, graceMs).unref() })
        ])
        clearTimeout(timer)
        if (proc.exitStatus === null) tree = [...new Set([...tree, ...descendants(proc.pid)])]
        killGroup(proc.pid, 'SIGKILL')
        for (const pid of tree) signal(pid, 'SIGKILL')
        await proc.exited
        // Wait for the captured pipes to drain so the log file is complete.
        await Promise.all(captured.map((input) => input.closed ? null : once(input, 'close')))
        if (out !== undefined) {
          out.end()
          await once(out, 'close')
        }
        live.delete(proc)
      })()
      return stopping
    }
  }
  live.add(proc)
  child.on('error', (err) => onLine(`process error: ${err.message}`))
  if (spawnError !== undefined) onLine(`process error: ${spawnError.message}`)
  return proc
}

/**
 * Poll `check` every `intervalMs` until it returns a value other than undefined. There is no event to
 * wait on for "this server is ready"; polling with a deadline is the honest form. Fails early, with the
 * process's output, when `proc` exits first.
 */
export async function waitFor<T> (what: string, check: () => Promise<T | undefined>,
  opts: { timeoutMs: number, intervalMs?: number, proc?: ManagedProcess }): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs
  let lastErr: unknown
  for (;;) {
    if (opts.proc?.exitStatus) {
      const st = opts.proc.exitStatus
      throw new Error(`${opts.proc.name} exited (code ${st.code}, signal ${st.signal}) while waiting for ${what}:\n${opts.proc.tail()}`)
    }
    try {
      const v = await check()
      if (v !== undefined) return v
    } catch (err) {
      lastErr = err
    }
    if (Date.now() > deadline) {
      const detail = lastErr instanceof Error ? `; last error: ${lastErr.message}` : ''
      const out = opts.proc ? `\n${opts.proc.name} output:\n${opts.proc.tail()}` : ''
      throw new Error(`timed out after ${opts.timeoutMs} ms waiting for ${what}${detail}${out}`)
    }
    await new Promise((resolve) => setTimeout(resolve, opts.intervalMs ?? 200).unref())
  }
}

/** Pids of live processes whose command line mentions `needle` (e.g. a control plane's temp dir). */
export async function processesMentioning (needle: string): Promise<Array<{ pid: number, cmdline: string }>> {
  const found: Array<{ pid: number, cmdline: string }> = []
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue
    let cmdline: string
    try {
      cmdline = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).replaceAll('\0', ' ')
    } catch {
      continue // exited meanwhile
    }
    if (cmdline.includes(needle)) found.push({ pid: Number(entry), cmdline: cmdline.trim() })
  }
  return found
}
