/**
 * Faults on a seeded schedule, and how long the system takes to recover from each: the time from the
 * fault (for a link taken down, from the moment it is up again) to the first successful request through
 * every affected cluster: a GET through the cluster port (controller mode: through the slice balancer)
 * that returns 200 with a complete body, probed from the fault on while the restarts go on. In controller mode a SIGKILLed replica's EndpointSlices and
 * Lease must also go: the time until they have is recorded as the fault's clean-up.
 */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { kubeconfigTls } from '../e2e/tunnel-helpers.ts'
import type { ControllerTopology } from './controller-topology.ts'
import { agentsHeld } from './criteria.ts'
import { fetchOnce } from './fetch.ts'
import type { Rng } from './rng.ts'
import { restartHostApiserver, routeToServer, type SoakAgent, type SoakCluster, type Topology } from './topology.ts'

const execFileAsync = promisify(execFile)

/** Every fault kind the soak injects (server = the standalone server, or a random replica). */
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
  /** ms from the fault to "connected to server" of every agent it cut off (agent and server faults). */
  reconnectMs?: number
  /** ms the link was down (link-down). */
  downMs?: number
  /** Controller mode, replica SIGKILL: ms until the dead replica's slices and Lease were gone (-1: not within the bound). */
  cleanupMs?: number
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

/** When a Tower process wrote log line `l` (its pino `time`), ms since the epoch; now when it has none. */
function loggedAt (l: { time?: unknown }): number {
  const ms = typeof l.time === 'string' ? Date.parse(l.time) : typeof l.time === 'number' ? l.time : NaN
  return Number.isFinite(ms) ? ms : Date.now()
}

/** Injects faults into a topology and measures recoveries. */
export class FaultInjector {
  #t: Topology
  #rng: Rng
  #log: (l: string) => void
  #tls = new Map<string, { url: URL, opts: object }>()
  /** Bound on a dead replica's clean-up (ms). */
  readonly cleanupBoundMs: number
  readonly records: FaultRecord[] = []

  constructor (t: Topology, rng: Rng, log: (l: string) => void, opts: { cleanupBoundMs?: number } = {}) {
    this.#t = t
    this.#rng = rng
    this.#log = log
    this.cleanupBoundMs = opts.cleanupBoundMs ?? RECOVERY_BOUND_MS
  }

  /** A GET through `c`'s port that succeeded (200, complete body). */
  async probe (c: SoakCluster): Promise<boolean> {
    let tls = this.#tls.get(c.name)
    if (tls === undefined) this.#tls.set(c.name, tls = await kubeconfigTls(c.kubeconfig))
    const r = await fetchOnce(new URL(`/api/v1/namespaces/${c.namespace}/configmaps?limit=1`, tls.url), { tls: tls.opts, stallMs: 5000 })
    if (r.status === 200 && r.complete) return true
    this.#lastFailure = `${c.name}: status ${r.status}${r.error !== undefined ? `, ${r.error}` : ''}${r.stalled ? ' (stalled 5 s)' : ''}`
    return false
  }

  #lastFailure = ''

  /** ms from `t0` until every cluster in `clusters` answered a probe; -1 when the bound passed first. */
  async recovery (clusters: SoakCluster[], t0: number): Promise<number> {
    const pending = new Set(clusters)
    let failures = 0
    while (pending.size > 0) {
      if (Date.now() - t0 > RECOVERY_BOUND_MS) return -1
      for (const c of [...pending]) if (await this.probe(c)) pending.delete(c); else failures++
      if (pending.size > 0) await new Promise((resolve) => setTimeout(resolve, 200))
    }
    // Why the slow ones were slow: the last probe that failed.
    if (failures > 0 && Date.now() - t0 > 3000) this.#log(`  (${failures} probes failed before recovery; the last: ${this.#lastFailure})`)
    return Date.now() - t0
  }

  /** ms from `t0` until no slice or Lease of replica `identity` is left; -1 when the bound passed first. */
  async #cleanup (t: ControllerTopology, identity: string, t0: number): Promise<number> {
    for (;;) {
      try {
        const [slices, leases] = await Promise.all([t.slices(), t.leases()])
        if (!slices.some((s) => s.identity === identity) && !leases.some((l) => l.holder === identity)) return Date.now() - t0
      } catch { /* the host apiserver may be restarting: look again */ }
      if (Date.now() - t0 > this.cleanupBoundMs) return -1
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
  }

  /** Inject one fault of `kind` and wait for recovery (or the bound). */
  async inject (kind: FaultKind): Promise<FaultRecord> {
    const t = this.#t
    // The first cluster's agents are never killed: they live through the whole soak (server restarts,
    // link downs, traffic), so their RSS and fds at the end say whether anything leaks.
    const c = this.#rng.pick(kind.startsWith('agent') ? t.clusters.slice(1) : t.clusters)
    let target = c.name
    let note = ''
    let reconnectMs: number | undefined
    let downMs: number | undefined
    let cleanupMs: number | undefined
    let affected = [c]
    let t0 = Date.now()
    // Recovery is probed from the fault on, alongside the restarts: with two agents per cluster or
    // several replicas a cluster may never stop serving, and the restarts must not hide that.
    let recovering: Promise<number> | undefined
    switch (kind) {
      case 'agent-sigkill':
      case 'agent-sigterm': {
        const a = this.#rng.pick(c.agents)
        target = a.slot
        this.#log(`fault ${kind} on ${a.slot} (${a.id})`)
        t0 = Date.now()
        const old = a.proc
        process.kill(old.process.pid, kind === 'agent-sigkill' ? 'SIGKILL' : 'SIGTERM')
        recovering = this.recovery(affected, t0)
        note = await waitExit(old.process, 30_000)
        await old.stop()
        await t.restartAgent(c, a)
        await a.proc.waitFor((l) => l.msg === 'connected to server', RECOVERY_BOUND_MS).then((l) => { reconnectMs = loggedAt(l) - t0 }, () => {})
        break
      }
      case 'server-sigkill':
      case 'server-sigterm': {
        const s = this.#rng.pick(t.servers)
        target = s.slot
        affected = t.clusters
        const held = new Set([...agentsHeld(s.proc.lines).values()].flatMap((ids) => [...ids]))
        const cut: SoakAgent[] = t.clusters.flatMap((x) => x.agents).filter((a) => held.has(a.id))
        const marks = cut.map((a) => a.proc.lines.length)
        const identity = s.identity
        this.#log(`fault ${kind} on ${s.slot} (identity ${identity}, holding ${cut.map((a) => a.id).join(', ') || 'no agent'})`)
        t.markStopping(s)
        t0 = Date.now()
        const old = s.proc
        process.kill(old.process.pid, kind === 'server-sigkill' ? 'SIGKILL' : 'SIGTERM')
        recovering = this.recovery(affected, t0)
        note = await waitExit(old.process, 40_000)
        if (kind === 'server-sigterm') note = `${note ? `${note}; ` : ''}exited ${Date.now() - t0} ms after SIGTERM`
        await old.stop()
        const controller = t.mode === 'controller'
        const fresh = controller && kind === 'server-sigkill'
        if (fresh) (t as ControllerTopology).deadIdentities.add(identity)
        // Reconnects and the clean-up are watched from the kill on, alongside the restart (the agents
        // move to other replicas without waiting for it); reconnects are timed by the agents' own log lines.
        const reconnected = cut.length === 0
          ? Promise.resolve()
          : Promise.all(cut.map((a, i) => a.proc.waitFor((l) => l.msg === 'connected to server', RECOVERY_BOUND_MS, marks[i])))
            .then((lines) => { reconnectMs = Math.max(...lines.map(loggedAt)) - t0 }, () => {})
        const cleaned = fresh ? this.#cleanup(t as ControllerTopology, identity, t0) : Promise.resolve(undefined)
        await t.restartServer(s, fresh)
        await reconnected
        cleanupMs = await cleaned
        break
      }
      case 'link-down': {
        this.#log(`fault ${kind} on ${c.name}`)
        const hold = this.#rng.int(5000, 20000)
        await execFileAsync('ip', ['-n', c.netns.name, 'link', 'set', c.netns.nsInterface, 'down'])
        const down = Date.now()
        await new Promise((resolve) => setTimeout(resolve, hold))
        await execFileAsync('ip', ['-n', c.netns.name, 'link', 'set', c.netns.nsInterface, 'up'])
        await routeToServer(t.serverAddress, c.netns)
        t0 = Date.now()
        downMs = t0 - down
        break
      }
      case 'host-apiserver-restart': {
        this.#log(`fault ${kind}`)
        target = 'host-apiserver'
        affected = t.clusters
        // Probe every cluster while the apiserver is away: in controller mode it is the registry, and
        // the replicas must keep serving from their caches.
        recovering = this.recovery(affected, t0)
        const outage = { ok: 0, failed: 0, done: false }
        const prober = (async () => {
          while (!outage.done) {
            for (const x of t.clusters) if (await this.probe(x)) outage.ok++; else outage.failed++
            await new Promise((resolve) => setTimeout(resolve, 500))
          }
        })()
        await restartHostApiserver(t, this.#log)
        outage.done = true
        await prober
        note = `host apiserver ready again after ${Date.now() - t0} ms; ${outage.ok} of ${outage.ok + outage.failed} probes through the clusters served meanwhile`
        break
      }
    }
    const ms = await (recovering ?? this.recovery(affected, t0))
    const rec: FaultRecord = { kind, target, recoveryMs: ms < 0 ? RECOVERY_BOUND_MS : ms, reconnectMs, downMs, cleanupMs, recovered: ms >= 0, note }
    this.records.push(rec)
    this.#log(`  recovered: ${ms >= 0 ? `${ms} ms` : `NOT within ${RECOVERY_BOUND_MS} ms`}${reconnectMs !== undefined ? `, agents reconnected after ${reconnectMs} ms` : ''}` +
      `${downMs !== undefined ? `, link was down ${downMs} ms` : ''}${cleanupMs !== undefined ? `, dead replica's slices and Lease ${cleanupMs < 0 ? `NOT gone within ${this.cleanupBoundMs} ms` : `gone after ${cleanupMs} ms`}` : ''}${note ? `, ${note}` : ''}`)
    return rec
  }
}
