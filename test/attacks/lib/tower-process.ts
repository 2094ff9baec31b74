/**
 * The real Tower server as a child process, for the attack suite: `tower
 * server` on 127.0.0.1 with OS-chosen ports, clusters added and credentials
 * issued through the `tower` CLI, exactly as an operator would. The test
 * reads the process's fds and memory from /proc and counts its log lines.
 *
 * TOWER_ATTACK_ROOT points the harness at another checkout (e.g. an export
 * of an older commit, to confirm that a test fails there); by default it is
 * this repository.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { isAlive, peakRssBytes, resetPeakRss, snapshot, type ProcSnapshot } from './proc.ts'

/** Checkout whose `packages/cli/bin/tower.js` is run. */
export const TOWER_ROOT = process.env.TOWER_ATTACK_ROOT ?? path.resolve(import.meta.dirname, '../../..')
const TOWER_BIN = path.join(TOWER_ROOT, 'packages/cli/bin/tower.js')

/** Most log lines kept for inspection; later ones are only counted. */
const MAX_KEPT_LINES = 20_000

/** Runs a `tower` CLI command; resolves with stdout, rejects with stderr on a non-zero exit. */
export function towerCli (args: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [TOWER_BIN, ...args], { timeout: opts.timeoutMs ?? 30_000, maxBuffer: 16 * 1024 * 1024, env: cleanEnv() }, (err, stdout, stderr) => {
      if (err !== null) reject(Object.assign(new Error(`tower ${args.join(' ')} failed: ${stderr || err.message}`), { stdout, stderr }))
      else resolve(stdout)
    })
  })
}

// The CLI reads TOWER_* variables: none of the test runner's may leak in.
function cleanEnv (): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TOWER_')) env[k] = v
  return env
}

/** The server's JSON log lines, counted, the first {@link MAX_KEPT_LINES} kept. */
export class LogCapture {
  /** Lines seen so far. */
  count = 0
  /** Bytes seen so far. */
  bytes = 0
  readonly lines: Array<Record<string, any>> = []
  #partial = ''
  #waiters: Array<{ pred: (l: Record<string, any>) => boolean, resolve: (l: Record<string, any>) => void }> = []

  /** Feeds a chunk of stdout. */
  push (chunk: string): void {
    this.bytes += Buffer.byteLength(chunk)
    const parts = (this.#partial + chunk).split('\n')
    this.#partial = parts.pop() ?? ''
    for (const text of parts) {
      if (text === '') continue
      this.count++
      let line: Record<string, any>
      try {
        line = JSON.parse(text)
      } catch {
        line = { msg: text, unparsed: true }
      }
      if (this.lines.length < MAX_KEPT_LINES) this.lines.push(line)
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.pred(line)) return true
        w.resolve(line)
        return false
      })
    }
  }

  /** Kept lines logged after `mark` (a previous {@link count}). */
  since (mark: number): Array<Record<string, any>> {
    return this.lines.slice(mark)
  }

  /** Resolves with the first line (kept or future) matching `pred`; rejects after `timeoutMs`. */
  waitFor (pred: (l: Record<string, any>) => boolean, timeoutMs: number, what = 'log line'): Promise<Record<string, any>> {
    const seen = this.lines.find(pred)
    if (seen !== undefined) return Promise.resolve(seen)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w.resolve !== done)
        reject(new Error(`no ${what} within ${timeoutMs} ms`))
      }, timeoutMs)
      const done = (l: Record<string, any>): void => { clearTimeout(timer); resolve(l) }
      this.#waiters.push({ pred, resolve: done })
    })
  }
}

/** A cluster registered with the CLI. */
export interface ClusterInfo {
  name: string
  mode: 'proxy' | 'passthrough'
  /** Join token of the cluster's agents. */
  token: string
  /** Port the server bound for it. */
  port: number
}

/** Options of {@link TowerProcess.start}. */
export interface TowerProcessOptions {
  /**
   * Extra `tower server` flags by name without the dashes. A name the server
   * does not list in its --help is left out and reported in
   * {@link TowerProcess.missingFlags}, so one missing knob fails only the
   * tests that need it.
   */
  flags?: Record<string, string | number | boolean>
  /** --log-level; default info, as in production. */
  logLevel?: string
}

/** A running `tower server` child process. */
export class TowerProcess {
  readonly child: ChildProcess
  readonly stateDir: string
  readonly agentPort: number
  /** PEM of the state dir's CA: what agents verify the server against. */
  readonly caPem: string
  readonly log: LogCapture
  /** Flags asked for in the options that this server does not have. */
  readonly missingFlags: string[]
  readonly #stderr: { text: string }
  #exit: { code: number | null, signal: string | null } | undefined
  readonly #tmp: string

  private constructor (child: ChildProcess, tmp: string, agentPort: number, log: LogCapture, stderr: { text: string }, missingFlags: string[]) {
    this.child = child
    this.#stderr = stderr
    this.#tmp = tmp
    this.stateDir = path.join(tmp, 'state')
    this.agentPort = agentPort
    this.caPem = fs.readFileSync(path.join(this.stateDir, 'ca.crt'), 'utf8')
    this.log = log
    this.missingFlags = missingFlags
    child.once('exit', (code, signal) => { this.#exit = { code, signal } })
  }

  /** Starts `tower server` on a fresh state directory; resolves once it wrote its ready file. */
  static async start (opts: TowerProcessOptions = {}): Promise<TowerProcess> {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tower-attack-'))
    const stateDir = path.join(tmp, 'state')
    const ready = path.join(tmp, 'ready.json')
    const known = await serverFlags()
    const missing: string[] = []
    const args = [TOWER_BIN, 'server', '--state-dir', stateDir, '--listen', '127.0.0.1:0', '--cluster-host', '127.0.0.1',
      '--port-range', '0', '--ready-file', ready, '--log-level', opts.logLevel ?? 'info']
    for (const [name, value] of Object.entries(opts.flags ?? {})) {
      if (!known.has(name)) { missing.push(name); continue }
      args.push(`--${name}`, String(value))
    }
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: cleanEnv() })
    const log = new LogCapture()
    child.stdout!.setEncoding('utf8').on('data', (c: string) => log.push(c))
    const stderr = { text: '' }
    child.stderr!.setEncoding('utf8').on('data', (c: string) => { if (stderr.text.length < 64 * 1024) stderr.text += c })
    const exited = once(child, 'exit')
    let agentPort = 0
    for (let i = 0; i < 600 && agentPort === 0; i++) {
      if (child.exitCode !== null || child.signalCode !== null) break
      try {
        agentPort = JSON.parse(fs.readFileSync(ready, 'utf8')).agentPort
      } catch {
        await Promise.race([new Promise((resolve) => setTimeout(resolve, 50)), exited])
      }
    }
    if (agentPort === 0) {
      child.kill('SIGKILL')
      throw new Error(`tower server did not start: ${stderr.text}`)
    }
    return new TowerProcess(child, tmp, agentPort, log, stderr, missing)
  }

  /** What the server wrote to stderr (bounded). */
  get stderr (): string { return this.#stderr.text }

  get pid (): number { return this.child.pid! }

  /** True while the server process runs. */
  alive (): boolean {
    return this.#exit === undefined && isAlive(this.pid)
  }

  /** Why the process is gone, for assertion messages. */
  exitInfo (): string {
    const e = this.#exit
    const last = this.log.lines.filter((l) => (l.level ?? 0) >= 50).slice(-3).map((l) => `${l.msg} ${l.err?.message ?? ''}`)
    return `${e === undefined ? 'running' : `exited code=${e.code} signal=${e.signal}`}; last errors: ${JSON.stringify(last)}; stderr: ${this.stderr.slice(-2000)}`
  }

  /** fds and RSS now. */
  snapshot (): ProcSnapshot {
    return snapshot(this.pid)
  }

  /** Resets the peak-RSS counter; see {@link peakRss}. */
  resetPeak (): void {
    resetPeakRss(this.pid)
  }

  /** Peak RSS since the last {@link resetPeak}, in bytes. */
  peakRss (): number {
    return peakRssBytes(this.pid)
  }

  /** Runs a `tower` command on this server's state directory. */
  cli (args: string[]): Promise<string> {
    return towerCli([...args, '--state-dir', this.stateDir])
  }

  /** `tower cluster add`; resolves once the server listens on the cluster's port. */
  async addCluster (name: string, mode: 'proxy' | 'passthrough' = 'proxy', extra: string[] = []): Promise<ClusterInfo> {
    const out = JSON.parse(await this.cli(['cluster', 'add', name, '--output', 'json', '--mode', mode, ...extra])) as { token: string }
    const port = await this.#waitForPort(name)
    return { name, mode, token: out.token, port }
  }

  async #waitForPort (name: string): Promise<number> {
    const file = path.join(this.stateDir, 'status.json')
    for (let i = 0; i < 400; i++) {
      try {
        const c = JSON.parse(fs.readFileSync(file, 'utf8')).clusters?.[name]
        if (c?.listening === true && typeof c.port === 'number' && c.port > 0) return c.port
      } catch {
        // not written yet, or mid-rename
      }
      if (!this.alive()) break
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    throw new Error(`the server did not open a port for cluster ${name}: ${this.exitInfo()}`)
  }

  /** A client certificate for `cluster`, from `tower kubeconfig`. */
  async callerCert (cluster: string, user = 'alice', groups: string[] = ['devs']): Promise<{ certPem: string, keyPem: string }> {
    const out = path.join(this.#tmp, `kubeconfig-${cluster}-${user}-${Date.now()}-${Math.random()}`)
    await this.cli(['kubeconfig', cluster, '--user', user, ...groups.flatMap((g) => ['--group', g]), '--out', out])
    const yaml = fs.readFileSync(out, 'utf8')
    fs.rmSync(out)
    return { certPem: field(yaml, 'client-certificate-data'), keyPem: field(yaml, 'client-key-data') }
  }

  /** A new caller token for `cluster`, from `tower kubeconfig --token`. */
  async callerToken (cluster: string): Promise<string> {
    const out = path.join(this.#tmp, `kubeconfig-${cluster}-token-${Date.now()}-${Math.random()}`)
    await this.cli(['kubeconfig', cluster, '--token', '--out', out])
    const m = /^\s*token:\s*(\S+)\s*$/m.exec(fs.readFileSync(out, 'utf8'))
    fs.rmSync(out)
    if (m === null) throw new Error('no token in the kubeconfig')
    return m[1]!
  }

  /** SIGTERM, then SIGKILL after 10 s; removes the state directory. */
  async stop (): Promise<void> {
    if (this.#exit === undefined && this.child.exitCode === null) {
      const exited = once(this.child, 'exit')
      this.child.kill('SIGTERM')
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000)
      await exited
      clearTimeout(timer)
    }
    fs.rmSync(this.#tmp, { recursive: true, force: true })
  }
}

function field (yaml: string, name: string): string {
  const m = new RegExp(`^\\s*${name}:\\s*(\\S+)\\s*$`, 'm').exec(yaml)
  if (m === null) throw new Error(`no ${name} in the kubeconfig`)
  return Buffer.from(m[1]!, 'base64').toString('utf8')
}

let flagsOnce: Promise<Set<string>> | undefined

/** Flag names `tower server --help` lists. */
export function serverFlags (): Promise<Set<string>> {
  flagsOnce ??= towerCli(['server', '--help']).then((help) => new Set([...help.matchAll(/^\s+--([a-z][a-z0-9-]*)/gm)].map((m) => m[1]!)))
  return flagsOnce
}

/** The first `tower server` flag whose name matches `re`, or undefined. */
export async function findServerFlag (re: RegExp): Promise<string | undefined> {
  return [...await serverFlags()].find((f) => re.test(f))
}

/** The value to pass a duration flag meaning `ms` milliseconds: Tower's duration flags take milliseconds, unless the name ends in a seconds unit. */
export function durationValue (flag: string, ms: number): string {
  if (/-(s|sec|secs|seconds)$/.test(flag)) return String(ms / 1000)
  return String(ms)
}
