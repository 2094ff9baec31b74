/**
 * Serial latency, per request, of proxy mode beside its ceiling: one
 * keep-alive GET of the 1 KB JSON at a time (the rps section's `serial`
 * mode) through Tower's proxy mode, passthrough and `l7-chain`, rounds
 * alternated, on one fresh rig. Beside the latencies it reports what each
 * path's two processes spend per request: CPU (user + sys, /proc/PID/stat)
 * and voluntary context switches (/proc/PID/status), the two that explain
 * `p99_overhead_serial_ms` on this 2-core machine, where every extra wakeup
 * of a process waits for a core. Not part of `npm run bench`; run it alone:
 *
 *   node bench/serial-latency.ts [--seconds 5] [--rounds 4] [--paths proxy,passthrough,l7-chain]
 *        [--tower-env='TOWER_AUDIT_LEVEL=None'] [--tower-node-args='--cpu-prof']
 *
 * Figures per process are "server/agent" (Tower) and "entry/exit" (l7-chain).
 */
import { mkdtempSync, readFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { LoadClient } from './lib/client.ts'
import { procTicks } from './lib/machine.ts'
import { writeBenchPki } from './lib/pki.ts'
import { forkReady, stopChild } from './lib/proc.ts'
import type { Target } from './lib/target.ts'
import { startTower } from './tower.ts'
import type { RpsFigures } from './sections/rps.ts'

const HERE = fileURLToPath(new URL('.', import.meta.url))
const PATHS = ['proxy', 'passthrough', 'l7-chain'] as const
type PathName = typeof PATHS[number]

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '4' },
    paths: { type: 'string', default: PATHS.join(',') },
    'tower-env': { type: 'string', default: '' },
    'tower-node-args': { type: 'string', default: '' }
  }
})
const seconds = Number(values.seconds)
const rounds = Number(values.rounds)
if (!(seconds > 0) || !Number.isInteger(rounds) || rounds < 1) throw new Error('--seconds must be above 0 and --rounds a positive integer')
const paths = values.paths.split(',').map((p) => p.trim()) as PathName[]
for (const p of paths) if (!PATHS.includes(p)) throw new Error(`--paths: unknown path "${p}" (known: ${PATHS.join(', ')})`)
const env = Object.fromEntries(values['tower-env'].split(' ').filter((kv) => kv !== '').map((kv) => {
  const at = kv.indexOf('=')
  if (at <= 0) throw new Error(`--tower-env: "${kv}" is not NAME=VALUE`)
  return [kv.slice(0, at), kv.slice(at + 1)]
}))
const nodeArgs = values['tower-node-args'].split(' ').filter((a) => a !== '')

// clock ticks of 10 ms (USER_HZ 100)
const cpuMs = (pid: number): number => procTicks(pid, false) * 10
function switches (pid: number): number {
  const m = /^voluntary_ctxt_switches:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  if (m === null) throw new Error(`/proc/${pid}/status has no voluntary_ctxt_switches`)
  return Number(m[1])
}

const workDir = mkdtempSync(join(os.tmpdir(), 'tower-serial-'))
const pki = writeBenchPki(workDir)
const upstream = await forkReady<{ https: number, pid: number }>(join(HERE, 'upstream.ts'), ['--cert', pki.certFile, '--key', pki.keyFile], join(workDir, 'upstream.log'))
const client = await LoadClient.start(join(workDir, 'load.log'))
const up = { host: '127.0.0.1', port: upstream.ready.https }
const tls = ['--cert', pki.certFile, '--key', pki.keyFile, '--ca', pki.caFile]
const exit = await forkReady<{ port: number, pid: number }>(join(HERE, 'l7-chain.ts'), ['--role', 'exit', '--target', `https://${up.host}:${up.port}`, ...tls], join(workDir, 'l7-exit.log'))
const entry = await forkReady<{ port: number, pid: number }>(join(HERE, 'l7-chain.ts'), ['--role', 'entry', '--link', `127.0.0.1:${exit.ready.port}`, '--link-proto', 'h2', ...tls], join(workDir, 'l7-entry.log'))
const rig = await startTower({ workDir, upstream: up, upstreamCaFile: pki.caFile, upstreamCaPem: pki.caPem, nodeArgs, env })
const rows: Record<PathName, { target: Target, pids: [number, number] }> = {
  proxy: { target: rig.proxy, pids: [rig.server.pid, rig.proxyAgentPid] },
  passthrough: { target: rig.passthrough, pids: [rig.server.pid, rig.passAgentPid] },
  'l7-chain': { target: { name: 'l7-chain', protocol: 'https', host: '127.0.0.1', port: entry.ready.port, ca: pki.caPem }, pids: [entry.ready.pid, exit.ready.pid] }
}
const pair = (a: number[], digits: number): string => a.map((x) => x.toFixed(digits)).join('/')
try {
  for (let round = 1; round <= rounds; round++) {
    for (const name of paths) {
      const { target, pids } = rows[name]
      // warm the path up first, so the counters below cover the measured requests only
      await client.run<RpsFigures>({ kind: 'rps', target, concurrency: 1, durationMs: 500, warmupMs: 0, newConnection: false }, 30_000)
      const cpu0 = pids.map(cpuMs)
      const sw0 = pids.map(switches)
      const r = await client.run<RpsFigures>({ kind: 'rps', target, concurrency: 1, durationMs: seconds * 1000, warmupMs: 0, newConnection: false }, seconds * 1000 + 30_000)
      const n = Math.max(1, r.requests)
      const cpu = pids.map((p, i) => (cpuMs(p) - cpu0[i]!) * 1000 / n)
      const sw = pids.map((p, i) => (switches(p) - sw0[i]!) / n)
      console.log(`${name.padEnd(11)} #${round}: ${r.rps.toFixed(0).padStart(5)} rps  p50 ${r.p50.toFixed(2)}  p90 ${r.p90.toFixed(2)}  p99 ${r.p99.toFixed(2)} ms  ` +
        `CPU µs/request ${pair(cpu, 0)}  context switches/request ${pair(sw, 2)}${r.errors > 0 ? `  ${r.errors} errors (${r.firstError})` : ''}`)
    }
  }
} finally {
  await rig.stop()
  await stopChild(entry.child)
  await stopChild(exit.child)
  await client.stop()
  await stopChild(upstream.child)
}
process.exit(0)
