/**
 * A/B of the CLI's GC settings (packages/cli/src/gc-tuning.ts, gc-flags.ts)
 * on this noisy 2-core VM: two Tower rigs beside one upstream, one load
 * client and the `secure-relay` ceiling, one with the settings and one
 * without, measured round by round in alternating order. Without means
 * `TOWER_GC_TUNING=off` (no run-time flags, no launch flag); with
 * `--b-node-args` it means the settings plus those node arguments instead,
 * e.g. `--b-node-args=--min-semi-space-size=0` (the later flag wins: V8's
 * default young generation) to measure the launch flag alone.
 * Reports, per rig, CPU ms per GB of the server and agent processes
 * (user+sys from /proc/PID/stat, steadier here than MB/s) for one-stream
 * downloads and uploads in both modes, MB/s, and the serial (one in flight)
 * proxy-mode p99 over HTTP/1.1 keep-alive.
 *
 *   node bench/gc-ab.ts [--mib 256] [--rounds 4] [--serial-seconds 4] [--b-node-args='ARGS']
 */
import { mkdtempSync, mkdirSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { LoadClient } from './lib/client.ts'
import { procTicks } from './lib/machine.ts'
import { writeBenchPki } from './lib/pki.ts'
import { forkReady, stopChild } from './lib/proc.ts'
import { median } from './lib/stats.ts'
import type { Target } from './lib/target.ts'
import { startTower, type TowerRig } from './tower.ts'

const HERE = fileURLToPath(new URL('.', import.meta.url))
const { values } = parseArgs({ options: { mib: { type: 'string', default: '256' }, rounds: { type: 'string', default: '4' }, 'serial-seconds': { type: 'string', default: '4' }, 'b-node-args': { type: 'string' } } })
const bytes = Number(values.mib) * 1024 * 1024
const rounds = Number(values.rounds)
const serialMs = Number(values['serial-seconds']) * 1000
// clock ticks of 10 ms (USER_HZ 100)
const cpuMs = (pid: number): number => procTicks(pid, false) * 10

const workDir = mkdtempSync(join(os.tmpdir(), 'tower-gc-ab-'))
const pki = writeBenchPki(workDir)
const upstream = await forkReady<{ https: number, pid: number }>(join(HERE, 'upstream.ts'), ['--cert', pki.certFile, '--key', pki.keyFile], join(workDir, 'upstream.log'))
const client = await LoadClient.start(join(workDir, 'load.log'))
const up = { host: '127.0.0.1', port: upstream.ready.https }
const exit = await forkReady<{ port: number, pid: number }>(join(HERE, 'secure-relay.ts'), ['--role', 'exit', '--target', `${up.host}:${up.port}`, '--cert', pki.certFile, '--key', pki.keyFile], join(workDir, 'sr-exit.log'))
const entry = await forkReady<{ port: number, pid: number }>(join(HERE, 'secure-relay.ts'), ['--role', 'entry', '--link', `127.0.0.1:${exit.ready.port}`, '--ca', pki.caFile], join(workDir, 'sr-entry.log'))
const rigs: Record<string, TowerRig> = {}
const bNodeArgs = values['b-node-args']?.split(' ').filter((a) => a !== '')
const variants: Array<[string, Record<string, string>, string[]]> = [
  ['tuned', {}, []],
  bNodeArgs === undefined ? ['off', { TOWER_GC_TUNING: 'off' }, []] : ['tuned+args', {}, bNodeArgs]
]
for (const [name, env, nodeArgs] of variants) {
  const dir = join(workDir, name)
  mkdirSync(dir)
  rigs[name] = await startTower({ workDir: dir, upstream: up, upstreamCaFile: pki.caFile, upstreamCaPem: pki.caPem, env, nodeArgs })
}

interface Row { target: Target, pids: number[] }
const rows = (rig: TowerRig): Record<string, Row> => ({
  passthrough: { target: rig.passthrough, pids: [rig.server.pid, rig.passAgentPid] },
  proxy: { target: rig.proxy, pids: [rig.server.pid, rig.proxyAgentPid] }
})
const acc = new Map<string, { gb: number, ms: number, cpu: number, mbps: number[] }>()
const p99 = new Map<string, number[]>()
const sr: Row = { target: { name: 'secure-relay', protocol: 'https', host: '127.0.0.1', port: entry.ready.port, ca: pki.caPem }, pids: [entry.ready.pid, exit.ready.pid] }
const bulk = async (key: string, row: Row, direction: 'down' | 'up'): Promise<void> => {
  const before = row.pids.reduce((a, p) => a + cpuMs(p), 0)
  const r = await client.run<{ mbps: number, ms: number }>({ kind: 'bulk', target: row.target, direction, bytes, timeoutMs: 120_000 }, 130_000)
  const a = acc.get(key) ?? { gb: 0, ms: 0, cpu: 0, mbps: [] }
  a.gb += bytes / 1e9
  a.cpu += row.pids.reduce((s, p) => s + cpuMs(p), 0) - before
  a.mbps.push(r.mbps)
  acc.set(key, a)
}
const names = variants.map(([name]) => name)
for (let round = 0; round < rounds; round++) {
  const order = round % 2 === 0 ? names : [...names].reverse()
  for (const direction of ['down', 'up'] as const) await bulk(`secure-relay ${direction}`, sr, direction)
  for (const name of order) {
    for (const [mode, row] of Object.entries(rows(rigs[name]))) {
      for (const direction of ['down', 'up'] as const) await bulk(`${name} ${mode} ${direction}`, row, direction)
    }
    const s = await client.run<{ p99: number }>({ kind: 'rps', target: rigs[name].proxy, concurrency: 1, durationMs: serialMs, warmupMs: 500, newConnection: false }, serialMs + 30_000)
    p99.set(name, [...(p99.get(name) ?? []), s.p99])
  }
  process.stderr.write(`round ${round + 1}/${rounds} done\n`)
}
console.log('row                         MB/s (median)  server+agent CPU ms per GB')
for (const [key, a] of [...acc.entries()].sort()) console.log(`${key.padEnd(28)} ${median(a.mbps).toFixed(0).padStart(8)}  ${(a.cpu / a.gb).toFixed(0).padStart(8)}`)
for (const [name, v] of p99) console.log(`${name} proxy serial p99 ms: median ${median(v).toFixed(3)} of [${v.map((x) => x.toFixed(3)).join(', ')}]`)
for (const rig of Object.values(rigs)) await rig.stop()
await stopChild(entry.child)
await stopChild(exit.child)
await client.stop()
await stopChild(upstream.child)
process.exit(0)
