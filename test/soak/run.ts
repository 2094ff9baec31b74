/**
 * The fault soak (issue 11): `npm run soak -- --minutes N [--seed S]`.
 *
 * Mixed traffic through several Tower clusters (informers on three types per cluster while a writer
 * changes them, lists of 5,000 objects, exec and port-forward with sha256-checked bytes, 100 MB
 * downloads) while faults are injected on a seeded schedule: agent SIGKILL/SIGTERM, server
 * SIGKILL/SIGTERM, a namespace's link down and up, the host apiserver restarting. The run lasts at
 * least N minutes and until every fault kind has happened once. Then traffic stops and it checks:
 * no corrupted byte, no silently truncated or hung transfer, every informer equal to the member's list,
 * every fault recovered within the bound, and the server's and agents' RSS and fds near baseline.
 * Exit code 0 only when all of that holds; the report lists what failed.
 *
 * Standalone mode (file registry, one server process). Needs root (network namespaces) and the e2e
 * binaries (bash test/e2e/tools/build.sh).
 */
import { parseArgs } from 'node:util'
import { bulkCreateConfigMaps } from '../e2e/tunnel-helpers.ts'
import { createFakeNodeAndPod, makeTempDir, netnsSupport } from '../e2e/harness/index.ts'
import { startByteServer } from './byte-server.ts'
import { FAULT_KINDS, FaultInjector, RECOVERY_BOUND_MS, type FaultKind } from './faults.ts'
import { WatchWorkload } from './informers.ts'
import { Outcomes } from './outcomes.ts'
import { faultTable, mb, procStats, type ProcStats } from './report.ts'
import { DeterministicStream, Rng } from './rng.ts'
import { startTopology, type Topology } from './topology.ts'
import { BULK_COUNT, BULK_NS, TransferWorkload } from './transfers.ts'

/** Clusters (each an agent in its own network namespace). */
const CLUSTERS = 3
/** Informers must equal the member's lists within this long after the writers stop (ms). */
const CONVERGE_MS = 60_000
/** After the soak, fds may exceed the baseline by this many (keep-alive upstream connections). */
const FD_SLACK = 24
/** After the soak, RSS may be this many times the baseline, plus RSS_SLACK_BYTES (V8 returns memory lazily). */
const RSS_FACTOR = 2
const RSS_SLACK_BYTES = 64 * 1024 * 1024

const started = Date.now()
const log = (line: string): void => {
  console.log(`[soak +${((Date.now() - started) / 1000).toFixed(1)}s] ${line}`)
}

function args (): { minutes: number, seed: number } {
  const { values } = parseArgs({ options: { minutes: { type: 'string', default: '3' }, seed: { type: 'string' } } })
  const minutes = Number(values.minutes)
  if (!(minutes > 0 && minutes <= 24 * 60)) throw new Error(`--minutes must be in (0, 1440], got ${values.minutes}`)
  const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed)
  if (!Number.isInteger(seed)) throw new Error(`--seed must be an integer, got ${values.seed}`)
  return { minutes, seed }
}

/** Stats of the server and each agent, keyed by role. */
function towerStats (t: Topology): Map<string, ProcStats & { generation: number, since: number }> {
  const m = new Map<string, ProcStats & { generation: number, since: number }>()
  m.set('server', { ...procStats(t.server.process.pid), generation: t.serverGeneration, since: t.serverStartedAt })
  for (const c of t.clusters) m.set(`agent ${c.name}`, { ...procStats(c.agent.process.pid), generation: c.agentGeneration, since: c.agentStartedAt })
  return m
}

async function main (): Promise<number> {
  const { minutes, seed } = args()
  const support = netnsSupport()
  if (!support.supported) throw new Error(`the soak needs network namespaces: ${support.reason}`)
  log(`soak: ${minutes} min, seed ${seed}, ${CLUSTERS} clusters, standalone mode (file registry, one server process)`)
  const rng = new Rng(seed)
  const stream = new DeterministicStream(seed)
  const bytes = await startByteServer(stream)
  const dir = makeTempDir('soak')
  const t = await startTopology({ count: CLUSTERS, bytesPort: bytes.port, log, dir })
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

    const faults = new FaultInjector(t, rng, log)
    await new Promise((resolve) => setTimeout(resolve, 20_000))
    let queue: FaultKind[] = []
    const seen = new Set<FaultKind>()
    // No server fault in the last third: the final server process then carries a third of the soak.
    const serverFaultsUntil = soakStart + (minutes * 60_000 * 2) / 3
    while (Date.now() < soakEnd - 20_000 || seen.size < FAULT_KINDS.length) {
      if (queue.length === 0) queue = rng.shuffle(FAULT_KINDS)
      const kind = queue.shift()!
      if (kind.startsWith('server') && Date.now() > serverFaultsUntil && seen.has(kind)) continue
      await faults.inject(kind)
      seen.add(kind)
      await new Promise((resolve) => setTimeout(resolve, rng.int(8000, 16000)))
    }
    const left = soakEnd - Date.now()
    if (left > 0) await new Promise((resolve) => setTimeout(resolve, left))
    log('faults over; checking that every cluster serves, then stopping traffic')
    const final = await faults.recovery(t.clusters, Date.now())
    if (final < 0) failures.push(`a cluster did not serve within ${RECOVERY_BOUND_MS} ms after the last fault`)

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
    console.log(`seed ${seed}; ${minutes} min requested, ${((Date.now() - soakStart) / 60_000).toFixed(1)} min of traffic; ${faults.records.length} faults; standalone mode`)
    console.log('--- transfers (refused = the client got an error before any byte; interrupted = an error the client saw mid-transfer)')
    for (const line of outcomes.table()) console.log(line)
    console.log(`--- faults (recovery = fault, or link up, to the first successful request through every affected cluster; bound ${RECOVERY_BOUND_MS} ms)`)
    for (const line of faultTable(faults.records)) console.log(line)
    console.log('--- processes: baseline (before traffic) -> after the soak (traffic stopped, 10 s later)')
    for (const [k, b] of baseline) {
      const a = after.get(k)!
      const life = `${((Date.now() - a.since) / 60_000).toFixed(1)} min old`
      const same = a.pid === b.pid ? `the same process, ${life}` : `process generation ${a.generation}, ${life}`
      console.log(`${k.padEnd(16)} RSS ${mb(b.rssBytes)} -> ${mb(a.rssBytes)} MB, fds ${b.fds} -> ${a.fds} (${same})`)
      if (a.fds > b.fds + FD_SLACK) failures.push(`${k}: ${a.fds} fds after the soak, baseline ${b.fds} (slack ${FD_SLACK})`)
      if (a.rssBytes > b.rssBytes * RSS_FACTOR + RSS_SLACK_BYTES) failures.push(`${k}: RSS ${mb(a.rssBytes)} MB after the soak, baseline ${mb(b.rssBytes)} MB`)
    }
    for (const r of faults.records) if (!r.recovered) failures.push(`fault ${r.kind} on ${r.target} not recovered within ${RECOVERY_BOUND_MS} ms`)
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
  process.exitCode = 2
})
