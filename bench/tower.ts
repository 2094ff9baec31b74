/**
 * Tower under test, driven only through its CLI contract
 * (`node packages/cli/src/main.ts …`): a server and one agent per cluster,
 * each a SEPARATE child process, with a state directory in the run's tmp dir.
 *
 * Readiness is read from the server's JSON log lines ("agent endpoint
 * listening", "cluster listener ready", "agent connected"), with `cluster
 * list --output json` as the fallback for agent counts.
 */
import { execFile, type ChildProcess } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import YAML from 'yaml'
import { gcLaunchFlags } from '../packages/cli/src/gc-flags.ts'
import { JsonLineTap, spawnLogged, stopChild, waitFor } from './lib/proc.ts'
import type { Target } from './lib/target.ts'

const run = promisify(execFile)

/** Repository root and the CLI entry point. */
export const REPO = fileURLToPath(new URL('..', import.meta.url))
const CLI = join(REPO, 'packages', 'cli', 'src', 'main.ts')

/**
 * The environment for Tower processes: the CLI maps every TOWER_* variable
 * onto a flag (yargs .env('TOWER'), strict), so the bench's own TOWER_BENCH_*
 * settings must not leak into it.
 */
export function towerEnv (extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TOWER_')) env[k] = v
  return { ...env, ...extra }
}

/** Runs one CLI command to completion and returns its stdout. */
export async function towerCli (args: string[], timeoutMs = 60_000): Promise<string> {
  const { stdout } = await run(process.execPath, [CLI, ...args], { cwd: REPO, env: towerEnv(), timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 })
  return stdout
}

/** True once `node packages/cli/src/main.ts --help` works and lists the agent command. */
export async function towerCliAvailable (): Promise<boolean> {
  try {
    return /\bagent\b/.test(await towerCli(['--help'], 30_000))
  } catch { return false }
}

/** A running `tower server` child. */
export class TowerServerProc {
  /** The state directory. */
  readonly stateDir: string
  #workDir: string
  #child: ChildProcess | undefined
  #tap: JsonLineTap | undefined
  #starts = 0
  #nodeArgs: string[]
  #env: Record<string, string>
  /** Port of the agent endpoint (wss), once started. */
  agentPort = 0

  /**
   * `nodeArgs` go before the script, e.g. `--cpu-prof`, after the GC launch flags (gc-flags.ts) that
   * `bin/tower.js` and the image use; `env` is added to the process's environment (`TOWER_GC_TUNING=off` drops those flags too).
   */
  constructor (workDir: string, stateDir = join(workDir, 'tower-state'), nodeArgs: string[] = [], env: Record<string, string> = {}) {
    this.#workDir = workDir
    this.stateDir = stateDir
    this.#nodeArgs = nodeArgs
    this.#env = env
  }

  /** pid of the server process. */
  get pid (): number { return this.#child?.pid ?? 0 }

  /** The JSON log lines of the current server process. */
  get tap (): JsonLineTap {
    if (this.#tap === undefined) throw new Error('tower server not started')
    return this.#tap
  }

  /**
   * Starts `tower server` and waits for "agent endpoint listening". A restart
   * listens on the agent port of the first start, as a real server keeps its
   * address: agents only know that one.
   */
  async start (extraArgs: string[] = [], timeoutMs = 60_000): Promise<void> {
    this.#starts++
    const log = join(this.#workDir, `tower-server-${basename(this.stateDir)}-${this.#starts}.log`)
    this.#child = spawnLogged(process.execPath, [...gcLaunchFlags(towerEnv(this.#env)), ...this.#nodeArgs, CLI, 'server', '--state-dir', this.stateDir,
      '--listen', `127.0.0.1:${this.agentPort}`, '--cluster-host', '127.0.0.1', '--port-range', '0',
      '--advertise-host', '127.0.0.1', '--san', '127.0.0.1', '--log-level', 'info',
      // the idle section holds 10,000 connections on one cluster port, above the default cap of 1,024
      '--max-connections', '20000',
      // every bench client (10,000 idle callers, 5,000 agents) shares 127.0.0.1, where real ones come
      // from many addresses: the per-source cap of 64 connections still handshaking would refuse most
      '--max-unauthenticated-per-source', '20000', ...extraArgs],
    log, { env: towerEnv(this.#env), cwd: REPO, pipeStdout: true })
    this.#tap = new JsonLineTap(this.#child, log)
    const line = await this.#tap.waitFor((o) => o.msg === 'agent endpoint listening' && typeof o.port === 'number',
      timeoutMs, `tower server listening (see ${log})`)
    this.agentPort = line.port
  }

  /** The port of a cluster's listener, waiting for its "cluster listener ready" line. */
  async clusterPort (name: string, timeoutMs = 30_000): Promise<number> {
    const line = await this.tap.waitFor((o) => o.msg === 'cluster listener ready' && o.cluster === name,
      timeoutMs, `cluster listener ${name}`)
    return line.port
  }

  /** Waits until `n` agents of `cluster` are connected (log lines, then `cluster list` as a fallback). */
  async waitAgents (cluster: string, n = 1, timeoutMs = 30_000): Promise<void> {
    let polls = 0
    await waitFor(`${n} agent(s) of ${cluster}`, async () => {
      const fromLog = this.tap.lines.filter((o) => o.msg === 'agent connected' && o.cluster === cluster).length
      if (fromLog >= n) return true
      if (++polls % 20 !== 0) return false
      const rows = JSON.parse(await towerCli(['cluster', 'list', '--state-dir', this.stateDir, '--output', 'json'])) as Array<{ name: string, agents: number }>
      return (rows.find((r) => r.name === cluster)?.agents ?? 0) >= n
    }, timeoutMs, 100)
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop (graceMs = 5_000): Promise<void> {
    if (this.#child !== undefined) await stopChild(this.#child, graceMs)
  }
}

/** `tower cluster add NAME --mode M --output json`. */
export async function addCluster (stateDir: string, name: string, mode: 'proxy' | 'passthrough'): Promise<{ token: string, caPem: string }> {
  const out = JSON.parse(await towerCli(['cluster', 'add', name, '--state-dir', stateDir, '--mode', mode, '--output', 'json']))
  return { token: out.token, caPem: out.caPem }
}

/** Client certificate, key and CA from `tower kubeconfig NAME` (proxy mode). */
export async function kubeconfigCredentials (stateDir: string, name: string): Promise<{ server: string, ca: string, cert: string, key: string }> {
  const kc = YAML.parse(await towerCli(['kubeconfig', name, '--state-dir', stateDir]))
  const b64 = (s: string | undefined, what: string): string => {
    if (typeof s !== 'string') throw new Error(`kubeconfig ${name}: ${what} missing`)
    return Buffer.from(s, 'base64').toString('utf8')
  }
  const cluster = kc.clusters?.[0]?.cluster ?? {}
  const user = kc.users?.[0]?.user ?? {}
  return {
    server: cluster.server,
    ca: b64(cluster['certificate-authority-data'], 'certificate-authority-data'),
    cert: b64(user['client-certificate-data'], 'client-certificate-data'),
    key: b64(user['client-key-data'], 'client-key-data')
  }
}

/** Starts `tower agent` for one cluster as its own process. */
export function spawnAgent (o: { workDir: string, agentPort: number, cluster: string, token: string, caFile: string,
  upstreamUrl: string, upstreamCaFile: string, extraArgs?: string[], nodeArgs?: string[], env?: Record<string, string> }): ChildProcess {
  const log = join(o.workDir, `tower-agent-${o.cluster}.log`)
  const child = spawnLogged(process.execPath, [...gcLaunchFlags(towerEnv(o.env)), ...(o.nodeArgs ?? []), CLI, 'agent', '--server', `wss://127.0.0.1:${o.agentPort}`,
    '--cluster', o.cluster, '--token', o.token, '--ca-file', o.caFile,
    '--upstream', o.upstreamUrl, '--upstream-ca-file', o.upstreamCaFile, '--log-level', 'info', ...(o.extraArgs ?? [])],
  log, { env: towerEnv(o.env), cwd: REPO, pipeStdout: true })
  // Drain stdout into the log so the pipe never fills.
  new JsonLineTap(child, log)
  return child
}

/** Tower with one proxy-mode and one passthrough-mode cluster, both to the same upstream. */
export interface TowerRig {
  server: TowerServerProc
  /** pid of the proxy-mode agent process. */
  proxyAgentPid: number
  /** pid of the passthrough-mode agent process. */
  passAgentPid: number
  /** Proxy mode: HTTPS to Tower's cluster port with the kubeconfig's client certificate. */
  proxy: Target
  /** Passthrough mode: TLS end to end to the upstream through Tower's cluster port. */
  passthrough: Target
  stop (): Promise<void>
}

/**
 * Starts the server, registers `bench-proxy` and `bench-pass`, starts one
 * agent each, and resolves when both agents are connected.
 */
export async function startTower (o: { workDir: string, upstream: { host: string, port: number },
  upstreamCaFile: string, upstreamCaPem: string, agentArgs?: string[], nodeArgs?: string[], env?: Record<string, string> }): Promise<TowerRig> {
  const server = new TowerServerProc(o.workDir, undefined, o.nodeArgs, o.env)
  await server.start()
  const agents: ChildProcess[] = []
  try {
    const proxy = await addCluster(server.stateDir, 'bench-proxy', 'proxy')
    const pass = await addCluster(server.stateDir, 'bench-pass', 'passthrough')
    const caFile = join(o.workDir, 'tower-ca.pem')
    writeFileSync(caFile, proxy.caPem)
    const [proxyPort, passPort] = await Promise.all([server.clusterPort('bench-proxy'), server.clusterPort('bench-pass')])
    const upstreamUrl = `https://${o.upstream.host}:${o.upstream.port}`
    for (const [cluster, token] of [['bench-proxy', proxy.token], ['bench-pass', pass.token]]) {
      agents.push(spawnAgent({ workDir: o.workDir, agentPort: server.agentPort, cluster, token, caFile, upstreamUrl, upstreamCaFile: o.upstreamCaFile, extraArgs: o.agentArgs, nodeArgs: o.nodeArgs, env: o.env }))
    }
    await Promise.all([server.waitAgents('bench-proxy'), server.waitAgents('bench-pass')])
    const kc = await kubeconfigCredentials(server.stateDir, 'bench-proxy')
    const kcPort = Number(new URL(kc.server).port)
    if (kcPort !== proxyPort) throw new Error(`kubeconfig server ${kc.server} is not the listener port ${proxyPort}`)
    return {
      server,
      proxyAgentPid: agents[0].pid ?? 0,
      passAgentPid: agents[1].pid ?? 0,
      proxy: { name: 'tower-proxy', protocol: 'https', host: '127.0.0.1', port: proxyPort, ca: kc.ca, cert: kc.cert, key: kc.key },
      passthrough: { name: 'tower-passthrough', protocol: 'https', host: '127.0.0.1', port: passPort, ca: o.upstreamCaPem },
      async stop () {
        await Promise.all(agents.map((a) => stopChild(a)))
        await server.stop()
      }
    }
  } catch (err) {
    await Promise.all(agents.map((a) => stopChild(a)))
    await server.stop()
    throw err
  }
}
