/**
 * Section 6: N agents (5,000 in a full run), each with its own cluster and port, against one
 * `tower server` process. Reports the server's RSS with all of them
 * connected, the time for all to connect from a simultaneous start, and the
 * time for all to be connected again after a server restart (SIGTERM, then a
 * new server process on the same state directory), counted from the SIGTERM.
 *
 * The N clusters are registered through @tower/server's FileRegistry — the code
 * `tower cluster add` runs — in this process, because N CLI processes would
 * take minutes. The agents are `@tower/agent` Agent instances in a few fleet
 * processes (bench/agent-fleet.ts), with the product's default reconnect
 * settings.
 *
 * File descriptors: the server holds one listener and one agent connection
 * per cluster (2N + its own), each fleet process one connection per agent.
 * The section reads the soft open-file limit (/proc/self/limits; children
 * inherit it) and refuses to start when it cannot hold that, instead of
 * failing with EMFILE half way.
 */
import type { ChildProcess } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as delay } from 'node:timers/promises'
import { FileRegistry, defaultServerConfig } from '@tower/server'
import type { BenchContext } from '../lib/context.ts'
import { forkReady, rssBytes, stopChild, waitFor } from '../lib/proc.ts'
import { TowerServerProc } from '../tower.ts'

const AGENT_MAX_CONNECTIONS_DEFAULT = defaultServerConfig.agentEndpoint.maxConnections
const FLEET = fileURLToPath(new URL('../agent-fleet.ts', import.meta.url))

/** Figures of the section. Times in seconds, RSS in MB (10^6 bytes). */
export interface AgentsResult {
  agents: number
  fleetProcesses: number
  registerS?: number
  serverBootS?: number
  serverRssIdleMb?: number
  connectS?: number
  serverRssMb?: number
  fleetRssMb?: number
  restartStopS?: number
  restartBootS?: number
  reconnectS?: number
  reconnectAfterListeningS?: number
  /** Seconds after the start by which 50 % and 90 % of the agents had connected (whole seconds). */
  connectHalfS?: number
  connect90S?: number
  /** Seconds after SIGTERM by which 50 % and 90 % had reconnected (whole seconds). */
  reconnectHalfS?: number
  reconnect90S?: number
  serverRssAfterReconnectMb?: number
  fleetLogs?: Record<string, number>
  /** Soft open-file limit of this process (and so of the server and fleet processes it starts). */
  fdLimit?: number
  error?: string
}

/** fds a process needs beyond its sockets (node itself, pipes, log files, the state dir). */
const FD_SLACK = 512

/** The soft "Max open files" limit of this process, or undefined off Linux. */
export function openFileLimit (): number | undefined {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'))
    if (m === null) return undefined
    return m[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[1])
  } catch { return undefined }
}

interface FleetStatus { connected: number, sinceMark: number, total: number, firstAt: number, lastAt: number, perSecond: number[], logs: Record<string, number> }

/** Seconds after the mark by which `share` of `n` agents had connected (whole seconds, from the per-second counts). */
function secondsUntil (perSecond: number[], n: number, share: number): number {
  let sum = 0
  for (const [s, k] of perSecond.entries()) {
    sum += k
    if (sum >= share * n) return s + 1
  }
  return perSecond.length
}

function ask<T> (child: ChildProcess, cmd: string, type: string, timeoutMs = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { child.off('message', on); reject(new Error(`fleet: no ${type} in ${timeoutMs} ms`)) }, timeoutMs)
    const on = (m: any): void => {
      if (m?.type !== type) return
      clearTimeout(t)
      child.off('message', on)
      resolve(m as T)
    }
    child.on('message', on)
    child.send({ cmd })
  })
}

const mb = (b: number): number => b / 1e6

/** Runs the section. */
export async function agentsSection (ctx: BenchContext): Promise<AgentsResult> {
  const n = ctx.opts.agents
  const procs = Math.min(ctx.opts.agentProcs, n)
  const out: AgentsResult = { agents: n, fleetProcesses: procs, fdLimit: openFileLimit() }
  const stateDir = join(ctx.workDir, 'fleet-state')
  const server = new TowerServerProc(ctx.workDir, stateDir, ctx.towerNodeArgs, ctx.towerEnv)
  const fleet: ChildProcess[] = []
  try {
    const perFleet = Math.ceil(n / procs)
    if (out.fdLimit !== undefined && (2 * n + FD_SLACK > out.fdLimit || perFleet + FD_SLACK > out.fdLimit)) {
      throw new Error(`open-file limit ${out.fdLimit} is too low for ${n} agents (the server needs about ${2 * n + FD_SLACK}, each of ${procs} fleet processes ${perFleet + FD_SLACK}): raise ulimit -n or use fewer --agents / more --agent-procs`)
    }
    // The agent endpoint's connection cap (default 16,384) must hold every agent plus reconnect overlap;
    // raised only past it, and everything else (accept rate, backoff) stays at the product's defaults,
    // which is what is measured.
    const serverArgs = n + 1024 > AGENT_MAX_CONNECTIONS_DEFAULT ? ['--agent-max-connections', String(n + 1024)] : []
    let t = Date.now()
    const registry = await FileRegistry.open({ stateDir, server: { portRange: '0', advertiseHost: '127.0.0.1', sans: ['127.0.0.1'] } })
    const agents: Array<{ cluster: string, token: string }> = []
    for (let i = 0; i < n; i++) {
      const cluster = `fleet-${String(i).padStart(4, '0')}`
      agents.push({ cluster, token: (await registry.add(cluster, { mode: 'passthrough' })).token })
    }
    const caPem = registry.ca.certPem
    await registry.close()
    out.registerS = (Date.now() - t) / 1000
    ctx.log(`agents: registered ${n} clusters in ${out.registerS.toFixed(1)} s`)

    t = Date.now()
    await server.start(serverArgs, 120_000)
    await waitFor(`${n} cluster listeners`, () =>
      server.tap.lines.filter((o) => o.msg === 'cluster listener ready').length >= n, 300_000, 200)
    out.serverBootS = (Date.now() - t) / 1000
    await delay(2000)
    out.serverRssIdleMb = mb(rssBytes(server.pid))
    ctx.log(`agents: server up with ${n} ports in ${out.serverBootS.toFixed(1)} s, RSS ${out.serverRssIdleMb.toFixed(1)} MB`)

    const per = Math.ceil(n / procs)
    for (let p = 0; p < procs; p++) {
      const spec = join(ctx.workDir, `fleet-${p}.json`)
      writeFileSync(spec, JSON.stringify({
        serverUrl: `wss://127.0.0.1:${server.agentPort}`,
        caPem,
        upstreamUrl: `https://127.0.0.1:${ctx.upstream.https}`,
        upstreamCaPem: ctx.pki.caPem,
        agents: agents.slice(p * per, (p + 1) * per)
      }))
      fleet.push((await forkReady(FLEET, ['--spec', spec], join(ctx.workDir, `fleet-${p}.log`), 60_000)).child)
    }
    const status = async (): Promise<FleetStatus> => {
      const all = await Promise.all(fleet.map((f) => ask<FleetStatus>(f, 'status', 'status')))
      const logs: Record<string, number> = {}
      for (const s of all) for (const [k, v] of Object.entries(s.logs)) logs[k] = (logs[k] ?? 0) + v
      const perSecond: number[] = []
      for (const s of all) for (const [i, k] of s.perSecond.entries()) perSecond[i] = (perSecond[i] ?? 0) + k
      return {
        connected: all.reduce((a, s) => a + s.connected, 0),
        sinceMark: all.reduce((a, s) => a + s.sinceMark, 0),
        total: all.reduce((a, s) => a + s.total, 0),
        firstAt: Math.min(...all.map((s) => s.firstAt || Infinity)),
        lastAt: Math.max(...all.map((s) => s.lastAt)),
        perSecond: Array.from(perSecond, (k) => k ?? 0),
        logs
      }
    }
    const until = async (what: string, timeoutMs: number): Promise<FleetStatus> => {
      let last: FleetStatus | undefined
      try {
        await waitFor(what, async () => {
          last = await status()
          return last.sinceMark === n && last.connected === n
        }, timeoutMs, 100)
      } catch (err) {
        throw new Error(`${(err as Error).message}: ${last?.connected ?? 0}/${n} connected, ${last?.sinceMark ?? 0} since mark`)
      }
      return last as FleetStatus
    }

    await Promise.all(fleet.map((f) => ask(f, 'mark', 'marked')))
    const t0 = Date.now()
    await Promise.all(fleet.map((f) => ask(f, 'start', 'started')))
    const s1 = await until(`${n} agents connected`, 300_000)
    out.connectS = (s1.lastAt - t0) / 1000
    out.connectHalfS = secondsUntil(s1.perSecond, n, 0.5)
    out.connect90S = secondsUntil(s1.perSecond, n, 0.9)
    await delay(2000)
    out.serverRssMb = mb(rssBytes(server.pid))
    out.fleetRssMb = fleet.reduce((a, f) => a + mb(rssBytes(f.pid ?? 0)), 0)
    ctx.log(`agents: ${n} connected in ${out.connectS.toFixed(2)} s (half by ${out.connectHalfS} s, 90 % by ${out.connect90S} s); server RSS ${out.serverRssMb.toFixed(1)} MB`)

    await Promise.all(fleet.map((f) => ask(f, 'mark', 'marked')))
    const tKill = Date.now()
    await server.stop()
    out.restartStopS = (Date.now() - tKill) / 1000
    const tBoot = Date.now()
    await server.start(serverArgs, 120_000)
    const tListening = Date.now()
    out.restartBootS = (tListening - tBoot) / 1000
    const s2 = await until(`${n} agents reconnected`, 300_000)
    out.reconnectS = (s2.lastAt - tKill) / 1000
    out.reconnectAfterListeningS = (s2.lastAt - tListening) / 1000
    // the mark was taken just before SIGTERM
    out.reconnectHalfS = secondsUntil(s2.perSecond, n, 0.5)
    out.reconnect90S = secondsUntil(s2.perSecond, n, 0.9)
    await delay(2000)
    out.serverRssAfterReconnectMb = mb(rssBytes(server.pid))
    out.fleetLogs = s2.logs
    ctx.log(`agents: all ${n} reconnected ${out.reconnectS.toFixed(2)} s after SIGTERM (${out.reconnectAfterListeningS.toFixed(2)} s after the new server listened; half by ${out.reconnectHalfS} s, 90 % by ${out.reconnect90S} s)`)
  } catch (err) {
    out.error = (err as Error).message
    ctx.log(`agents: FAILED ${out.error}`)
  } finally {
    await Promise.all(fleet.map((f) => stopChild(f, 10_000)))
    await server.stop()
  }
  return out
}
