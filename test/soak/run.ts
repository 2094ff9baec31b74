/**
 * The fault soak (issue 11): `npm run soak -- --minutes N [--seed S] [--mode standalone|controller] [--replicas R]`.
 *
 * Mixed traffic through several Tower clusters (informers on three types per cluster while a writer
 * changes them, lists of 5,000 objects, exec and port-forward with sha256-checked bytes, 100 MB
 * downloads) while faults are injected on a seeded schedule: agent SIGKILL/SIGTERM, server (controller
 * mode: a random replica) SIGKILL/SIGTERM, a namespace's link down and up, the host apiserver
 * restarting. The run lasts at least N minutes and until every fault kind has happened once. Then
 * traffic stops and it checks: no corrupted byte, no silently truncated or hung transfer, every informer
 * equal to the member's list, every fault recovered within the bound, and the servers' and agents' RSS
 * and fds near baseline; in controller mode also that each cluster's EndpointSlices list exactly the
 * replicas that hold its agents and that no slice or Lease of a dead replica is left.
 * Exit code 0 only when all of that holds; the report lists what failed.
 *
 * Standalone mode: file registry, one server process (topology.ts). Controller mode: the host apiserver
 * is the registry, R replicas, two agents per cluster (controller-topology.ts). Needs root (network
 * namespaces) and the e2e binaries (bash test/e2e/tools/build.sh).
 */
import { parseArgs } from 'node:util'
import { bulkCreateConfigMaps } from '../e2e/tunnel-helpers.ts'
import { createFakeNodeAndPod, makeTempDir, netnsSupport, type ManagedProcess } from '../e2e/harness/index.ts'
import { startByteServer } from './byte-server.ts'
import { LEASE_DURATION_MS, startControllerTopology, type ControllerTopology } from './controller-topology.ts'
import { deadLeftovers, expectedEndpoints, growthProblems, sliceMismatches } from './criteria.ts'
import { FAULT_KINDS, FaultInjector, RECOVERY_BOUND_MS } from './faults.ts'
import { WatchWorkload } from './informers.ts'
import { Outcomes } from './outcomes.ts'
import { faultTable, mb, procStats, type ProcStats } from './report.ts'
import { DeterministicStream, Rng } from './rng.ts'
import { FaultSchedule } from './schedule.ts'
import { startTopology, type Topology } from './topology.ts'
import { BULK_COUNT, BULK_NS, TransferWorkload } from './transfers.ts'

/** Clusters (each with its agents in its own network namespace). */
const CLUSTERS = 3
/** Informers must equal the member's lists within this long after the writers stop (ms). */
const CONVERGE_MS = 60_000
/** After the soak, fds may exceed the baseline by this many (keep-alive upstream connections). */
const FD_SLACK = 24
/** After the soak, RSS may be this many times the baseline, plus RSS_SLACK_BYTES (V8 returns memory lazily). */
const RSS_FACTOR = 2
const RSS_SLACK_BYTES = 64 * 1024 * 1024
/**
 * Controller mode: a SIGKILLed replica's slices and Lease must be gone within this long (ms). The
 * leader sees the Lease unchanged for one lease duration on its own clock, then the next leader pass
 * deletes; a lease duration and a half is the floor, the rest is room for a loaded machine.
 */
const CLEANUP_BOUND_MS = 3 * LEASE_DURATION_MS + 15_000
/** Controller mode: the slices must match the replicas holding the agents within this long at the end (ms). */
const SLICES_SETTLE_MS = 60_000

const started = Date.now()
const log = (line: string): void => {
  console.log(`[soak +${((Date.now() - started) / 1000).toFixed(1)}s] ${line}`)
}

function args (): { minutes: number, seed: number, mode: 'standalone' | 'controller', replicas: number } {
  const { values } = parseArgs({
    options: { minutes: { type: 'string', default: '3' }, seed: { type: 'string' }, mode: { type: 'string', default: 'standalone' }, replicas: { type: 'string', default: '3' } }
  })
  const minutes = Number(values.minutes)
  if (!(minutes > 0 && minutes <= 24 * 60)) throw new Error(`--minutes must be in (0, 1440], got ${values.minutes}`)
  const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed)
  if (!Number.isInteger(seed)) throw new Error(`--seed must be an integer, got ${values.seed}`)
  if (values.mode !== 'standalone' && values.mode !== 'controller') throw new Error(`--mode must be standalone or controller, got ${values.mode}`)
  const replicas = Number(values.replicas)
  if (!Number.isInteger(replicas) || replicas < 2 || replicas > 5) throw new Error(`--replicas must be 2..5, got ${values.replicas}`)
  return { minutes, seed, mode: values.mode, replicas }
}

/** Stats of each server and agent slot, keyed by slot; `exited` says how a process that is gone ended. */
function towerStats (t: Topology): Map<string, ProcStats & { generation: number, since: number, exited?: string }> {
  const m = new Map<string, ProcStats & { generation: number, since: number, exited?: string }>()
  const stats = (p: ManagedProcess): ProcStats & { exited?: string } => {
    if (p.exitStatus === null) {
      try { return procStats(p.pid) } catch { /* it has just exited: reported below */ }
    }
    return { pid: p.pid, rssBytes: 0, fds: 0, exited: `exited by itself: ${JSON.stringify(p.exitStatus)}; last output: ${p.tail(5)}` }
  }
  for (const s of t.servers) m.set(s.slot, { ...stats(s.proc.process), generation: s.generation, since: s.startedAt })
  for (const c of t.clusters) for (const a of c.agents) m.set(`agent ${a.slot}`, { ...stats(a.proc.process), generation: a.generation, since: a.startedAt })
  return m
}

/**
 * Controller mode, after the run: poll until each cluster's slices list exactly the live replicas that
 * hold its agents (from the replicas' own logs) and no slice or Lease of another identity is left.
 */
async function checkSlices (t: ControllerTopology): Promise<string[]> {
  const t0 = Date.now()
  const live = new Set(t.servers.map((s) => s.identity))
  let problems: string[] = []
  for (;;) {
    try {
      const [slices, leases] = await Promise.all([t.slices(), t.leases()])
      const expected = expectedEndpoints(t.servers.map((s) => ({ address: s.address, lines: s.proc.lines })))
      problems = [...sliceMismatches(t.clusters.map((c) => c.name), expected, slices), ...deadLeftovers(live, slices, leases)]
      if (problems.length === 0) {
        const per = t.clusters.map((c) => `${c.name} [${[...(expected.get(c.name) ?? [])].sort().join(', ')}]`).join('; ')
        log(`EndpointSlices list exactly the replicas holding each cluster's agents (${per}); no slice or Lease of ${t.deadIdentities.size} dead identities left; settled after ${Date.now() - t0} ms`)
        return []
      }
    } catch (err) {
      problems = [`reading slices and Leases: ${(err as Error).message}`]
    }
    if (Date.now() - t0 > SLICES_SETTLE_MS) return problems.map((p) => `after ${SLICES_SETTLE_MS} ms: ${p}`)
    await new Promise((resolve) => setTimeout(resolve, 500))
  }
}

async function main (): Promise<number> {
  const { minutes, seed, mode, replicas } = args()
  const support = netnsSupport()
  if (!support.supported) throw new Error(`the soak needs network namespaces: ${support.reason}`)
  const modeText = mode === 'standalone' ? 'standalone mode (file registry, one server process)' : `controller mode (${replicas} replicas on the host apiserver, 2 agents per cluster)`
  log(`soak: ${minutes} min, seed ${seed}, ${CLUSTERS} clusters, ${modeText}`)
  const rng = new Rng(seed)
  const stream = new DeterministicStream(seed)
  const bytes = await startByteServer(stream)
  const dir = makeTempDir('soak')
  const t = mode === 'standalone'
    ? await startTopology({ count: CLUSTERS, bytesPort: bytes.port, log, dir })
    : await startControllerTopology({ count: CLUSTERS, replicas, bytesPort: bytes.port, log, dir })
  const outcomes = new Outcomes()
  const failures: string[] = []
  try {
    const watch = new WatchWorkload(t.cp.member, rng)
    await watch.prepare([...t.clusters.map((c) => c.namespace), BULK_NS])
    for (const c of t.clusters) await createFakeNodeAndPod(t.cp.member, { name: 'bytes', namespace: c.namespace, node: 'soak-node' })
    const bulkStart = Date.now()
    await bulkCreateConfigMaps(t.cp.member, BULK_NS, BULK_COUNT)
    log(`${BULK_COUNT} ConfigMaps created on the member in ${Date.now() - bulkStart} ms`)
    const baseline = towerStats(t)
    for (const [k, s] of baseline) log(`baseline ${k}: pid ${s.pid}, RSS ${mb(s.rssBytes)} MB, ${s.fds} fds`)

    for (const c of t.clusters) watch.startInformers(c.name, c.namespace, c.kubeconfig)
    watch.startWriters(t.clusters.map((c) => c.namespace))
    const transfers = new TransferWorkload(t.clusters, outcomes, rng, stream, 'bytes')
    await transfers.start()
    const soakStart = Date.now()
    const soakEnd = soakStart + minutes * 60_000
    log(`traffic started; faults from +20 s until ${minutes} min have passed and every kind has run`)

    const faults = new FaultInjector(t, rng, log, { cleanupBoundMs: CLEANUP_BOUND_MS })
    await new Promise((resolve) => setTimeout(resolve, 20_000))
    const schedule = new FaultSchedule(rng, FAULT_KINDS, { lastFaultBy: soakEnd - 20_000, serverFaultsUntil: soakStart + (minutes * 60_000 * 2) / 3 })
    for (let kind = schedule.next(Date.now()); kind !== undefined; kind = schedule.next(Date.now())) {
      await faults.inject(kind)
      await new Promise((resolve) => setTimeout(resolve, rng.int(8000, 16000)))
    }
    const left = soakEnd - Date.now()
    if (left > 0) await new Promise((resolve) => setTimeout(resolve, left))
    log('faults over; checking that every cluster serves, then stopping traffic')
    const final = await faults.recovery(t.clusters, Date.now())
    if (final < 0) failures.push(`a cluster did not serve within ${RECOVERY_BOUND_MS} ms after the last fault`)
    if (t.mode === 'controller') failures.push(...await checkSlices(t as ControllerTopology))

    await watch.stopWriters()
    const convergeStart = Date.now()
    let diffs = await watch.differences()
    while (diffs.length > 0 && Date.now() - convergeStart < CONVERGE_MS) {
      await new Promise((resolve) => setTimeout(resolve, 1000))
      diffs = await watch.differences()
    }
    const ws = watch.summary()
    log(`informers: ${ws.informers} (${ws.cached} objects cached, ${ws.errors} watch errors restarted); writes ${watch.writes.ok} ok, ${watch.writes.failed} refused; ${diffs.length === 0 ? `equal to the member's lists after ${Date.now() - convergeStart} ms` : 'DIFFER'}`)
    for (const d of diffs) failures.push(`informer differs from the member: ${d}`)
    await transfers.stop()
    await watch.stop()
    // Let the closed connections of the clients drain through the server and agents.
    await new Promise((resolve) => setTimeout(resolve, 10_000))
    const after = towerStats(t)

    console.log('\n=== soak report ===')
    console.log(`seed ${seed}; ${minutes} min requested, ${((Date.now() - soakStart) / 60_000).toFixed(1)} min of traffic; ${faults.records.length} faults; ${modeText}`)
    console.log('--- transfers (refused = the client got an error before any byte; interrupted = an error the client saw mid-transfer)')
    for (const line of outcomes.table()) console.log(line)
    console.log(`--- faults (recovery = fault, or link up, to the first successful request through every affected cluster; bound ${RECOVERY_BOUND_MS} ms)`)
    for (const line of faultTable(faults.records)) console.log(line)
    console.log('--- processes: baseline (before traffic) -> after the soak (traffic stopped, 10 s later)')
    for (const [k, b] of baseline) {
      const a = after.get(k)!
      const life = `${((Date.now() - a.since) / 60_000).toFixed(1)} min old`
      const same = a.pid === b.pid ? `the same process, ${life}` : `process generation ${a.generation}, ${life}`
      console.log(`${k.padEnd(18)} RSS ${mb(b.rssBytes)} -> ${mb(a.rssBytes)} MB, fds ${b.fds} -> ${a.fds} (${same})`)
      if (a.exited !== undefined) failures.push(`${k} (pid ${a.pid}): ${a.exited}`)
      else failures.push(...growthProblems(k, b, a, { fdSlack: FD_SLACK, rssFactor: RSS_FACTOR, rssSlackBytes: RSS_SLACK_BYTES }))
    }
    for (const r of faults.records) {
      if (!r.recovered) failures.push(`fault ${r.kind} on ${r.target} not recovered within ${RECOVERY_BOUND_MS} ms`)
      if (r.cleanupMs === -1) failures.push(`fault ${r.kind} on ${r.target}: the dead replica's slices or Lease still there after ${CLEANUP_BOUND_MS} ms`)
    }
    failures.push(...outcomes.failures)
    for (const need of ['list-5000', 'exec-websocket', 'exec-spdy', 'port-forward-4MiB', 'port-forward-100MB']) {
      if (outcomes.count('ok', need) === 0) failures.push(`no successful ${need} transfer`)
    }
  } finally {
    await t.stop()
    await bytes.close()
  }
  if (failures.length > 0) {
    console.log('--- FAILED')
    for (const f of failures) console.log(`- ${f}`)
    return 1
  }
  console.log('--- PASSED')
  return 0
}

main().then((code) => { process.exitCode = code }, (err: unknown) => {
  console.error(err)
  // A start that failed half-way leaves processes and sockets that keep the loop alive; exiting runs
  // the harness's exit clean-up (processes, namespaces) instead of hanging.
  process.exit(2)
})
