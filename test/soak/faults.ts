/**
 * Faults on a seeded schedule, and how long the system takes to recover from each: the time from the
 * fault (for a link taken down, from the moment it is up again) to the first successful request through
 * every affected cluster: a GET through the cluster port that returns 200 with a complete body.
 */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { kubeconfigTls } from '../e2e/tunnel-helpers.ts'
import { fetchOnce } from './fetch.ts'
import type { Rng } from './rng.ts'
import { restartHostApiserver, routeToServer, startAgent, startServer, type SoakCluster, type Topology } from './topology.ts'

const execFileAsync = promisify(execFile)

/** Every fault kind the soak injects. */
export const FAULT_KINDS = ['agent-sigkill', 'agent-sigterm', 'server-sigkill', 'server-sigterm', 'link-down', 'host-apiserver-restart'] as const
/** One fault kind. */
export type FaultKind = typeof FAULT_KINDS[number]

/**
 * A fault not recovered within this bound fails the soak (ms). Quiet-machine recoveries are a few
 * seconds at most (agent reconnect backoff 200 ms-2 s, server start ~2 s, TCP retransmission after a
 * link comes back); the bound leaves room for a loaded CI box without hiding a stuck tunnel.
 */
export const RECOVERY_BOUND_MS = 60_000

/** What one fault did and how long recovery took. */
export interface FaultRecord {
  kind: FaultKind
  target: string
  /** ms from the fault (link: from link up) to the first successful request through every affected cluster. */
  recoveryMs: number
  /** ms from the fault to the agents' "connected to server" (agent and server faults). */
  reconnectMs?: number
  /** ms the link was down (link-down). */
  downMs?: number
  recovered: boolean
  note: string
}

async function waitExit (p: { exitStatus: unknown, exited: Promise<unknown>, pid: number }, graceMs: number): Promise<string> {
  let timer: NodeJS.Timeout | undefined
  const timedOut = await Promise.race([
    p.exited.then(() => false),
    new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(true), graceMs) })
  ])
  clearTimeout(timer)
  if (!timedOut) return ''
  process.kill(p.pid, 'SIGKILL')
  await p.exited
  return `did not exit within ${graceMs} ms of SIGTERM (SIGKILLed)`
}

/** Injects faults into a topology and measures recoveries. */
export class FaultInjector {
  #t: Topology
  #rng: Rng
  #log: (l: string) => void
  #tls = new Map<string, { url: URL, opts: object }>()
  readonly records: FaultRecord[] = []

  constructor (t: Topology, rng: Rng, log: (l: string) => void) {
    this.#t = t
    this.#rng = rng
    this.#log = log
  }

  /** A GET through `c`'s port that succeeded (200, complete body). */
  async probe (c: SoakCluster): Promise<boolean> {
    let tls = this.#tls.get(c.name)
    if (tls === undefined) this.#tls.set(c.name, tls = await kubeconfigTls(c.kubeconfig))
    const r = await fetchOnce(new URL(`/api/v1/namespaces/${c.namespace}/configmaps?limit=1`, tls.url), { tls: tls.opts, stallMs: 5000 })
    return r.status === 200 && r.complete
  }

  /** ms from `t0` until every cluster in `clusters` answered a probe; -1 when the bound passed first. */
  async recovery (clusters: SoakCluster[], t0: number): Promise<number> {
    const pending = new Set(clusters)
    while (pending.size > 0) {
      if (Date.now() - t0 > RECOVERY_BOUND_MS) return -1
      for (const c of [...pending]) if (await this.probe(c)) pending.delete(c)
      if (pending.size > 0) await new Promise((resolve) => setTimeout(resolve, 200))
    }
    return Date.now() - t0
  }

  /** Inject one fault of `kind` and wait for recovery (or the bound). */
  async inject (kind: FaultKind): Promise<FaultRecord> {
    const t = this.#t
    // The first cluster's agent is never killed: one agent process lives through the whole soak (server
    // restarts, link downs, traffic), so its RSS and fds at the end say whether anything leaks.
    const c = this.#rng.pick(kind.startsWith('agent') ? t.clusters.slice(1) : t.clusters)
    let target = c.name
    let note = ''
    let reconnectMs: number | undefined
    let downMs: number | undefined
    let affected = [c]
    let t0 = Date.now()
    this.#log(`fault ${kind} on ${kind.startsWith('agent') || kind === 'link-down' ? c.name : kind.startsWith('server') ? 'the server' : 'the host apiserver'}`)
    switch (kind) {
      case 'agent-sigkill':
      case 'agent-sigterm': {
        const old = c.agent
        process.kill(old.process.pid, kind === 'agent-sigkill' ? 'SIGKILL' : 'SIGTERM')
        note = await waitExit(old.process, 30_000)
        await old.stop()
        await startAgent(t, c, { wait: false })
        await c.agent.waitFor((l) => l.msg === 'connected to server', RECOVERY_BOUND_MS).then(() => { reconnectMs = Date.now() - t0 }, () => {})
        break
      }
      case 'server-sigkill':
      case 'server-sigterm': {
        target = 'server'
        affected = t.clusters
        const marks = t.clusters.map((x) => x.agent.lines.length)
        const old = t.server
        process.kill(old.process.pid, kind === 'server-sigkill' ? 'SIGKILL' : 'SIGTERM')
        note = await waitExit(old.process, 40_000)
        await old.stop()
        await startServer(t, this.#log)
        await Promise.all(t.clusters.map((x, i) => x.agent.waitFor((l) => l.msg === 'connected to server', RECOVERY_BOUND_MS, marks[i]))).then(() => { reconnectMs = Date.now() - t0 }, () => {})
        break
      }
      case 'link-down': {
        const hold = this.#rng.int(5000, 20000)
        await execFileAsync('ip', ['-n', c.netns.name, 'link', 'set', c.netns.nsInterface, 'down'])
        const down = Date.now()
        await new Promise((resolve) => setTimeout(resolve, hold))
        await execFileAsync('ip', ['-n', c.netns.name, 'link', 'set', c.netns.nsInterface, 'up'])
        await routeToServer(t, c.netns)
        t0 = Date.now()
        downMs = t0 - down
        break
      }
      case 'host-apiserver-restart': {
        target = 'host-apiserver'
        affected = t.clusters
        await restartHostApiserver(t, this.#log)
        note = `host apiserver ready again after ${Date.now() - t0} ms`
        break
      }
    }
    const ms = await this.recovery(affected, t0)
    const rec: FaultRecord = { kind, target, recoveryMs: ms < 0 ? RECOVERY_BOUND_MS : ms, reconnectMs, downMs, recovered: ms >= 0, note }
    this.records.push(rec)
    this.#log(`  recovered: ${rec.recovered ? `${ms} ms` : `NOT within ${RECOVERY_BOUND_MS} ms`}${reconnectMs !== undefined ? `, agents reconnected after ${reconnectMs} ms` : ''}${downMs !== undefined ? `, link was down ${downMs} ms` : ''}${note ? `, ${note}` : ''}`)
    return rec
  }
}
