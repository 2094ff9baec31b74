/**
 * `npm run bench`: measures Tower and its baselines and peers in ONE run, on
 * this machine, and writes bench/results/latest.json and BENCHMARKS.md.
 *
 * Processes: this orchestrator (idle while measuring), the upstream, the
 * load client, the relay, the two ends of the secure-relay and of the
 * l7-chain baselines, Tower's server and agents, chisel's server and
 * client, Konnectivity's proxy-server and proxy-agent — each its own
 * process, all on 127.0.0.1. The clientgo section brings its own real
 * kube-apiserver and Tower.
 *
 *   node bench/run.ts                      full run → latest.json + BENCHMARKS.md
 *   node bench/run.ts --quick              smoke sizes → bench/results/smoke.{json,md}
 *   node bench/run.ts --only bulk,rps      some sections → smoke files
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { writeBenchPki } from './lib/pki.ts'
import { childPids, forkReady, stopChild } from './lib/proc.ts'
import { LoadClient } from './lib/client.ts'
import { isFullRun, parseBenchOptions, type Section } from './lib/options.ts'
import { cpuSnapshot, describeMachine, gitHead, otherCpuPercent, stealCpuPercent, stealMeter } from './lib/machine.ts'
import type { BenchContext, FreshPath } from './lib/context.ts'
import type { Tunnel } from './lib/tunnel.ts'
import { REPO, startTower, towerCliAvailable } from './tower.ts'
import { startChisel } from './peers/chisel.ts'
import { startKonnectivity } from './peers/konnectivity.ts'
import { ensurePeers } from './peers/ensure.ts'
import { bulkSection } from './sections/bulk.ts'
import { rpsSection } from './sections/rps.ts'
import { holSection } from './sections/hol.ts'
import { idleSection } from './sections/idle.ts'
import { agentsSection } from './sections/agents.ts'
import { clientgoSection } from './sections/clientgo.ts'
import { summaryKeys, TARGETS, verdict, type RunResults } from './report.ts'
import { renderMarkdown } from './report-md.ts'

const HERE = fileURLToPath(new URL('.', import.meta.url))
const opts = parseBenchOptions(process.argv.slice(2))
const started = Date.now()
const machine = describeMachine()
const log = (msg: string): void => { process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`) }
const workDir = mkdtempSync(join(os.tmpdir(), 'tower-bench-'))
log(`sections: ${opts.only.join(', ')}${opts.quick ? ' (quick)' : ''}; scratch dir ${workDir}; load ${machine.loadavg1}`)

const pki = writeBenchPki(workDir)
const upstream = await forkReady<{ https: number, http: number, pid: number }>(join(HERE, 'upstream.ts'),
  ['--cert', pki.certFile, '--key', pki.keyFile], join(workDir, 'upstream.log'))
const client = await LoadClient.start(join(workDir, 'load.log'))
const up = { host: '127.0.0.1', port: upstream.ready.https }
const profDir = join(HERE, 'results', 'profiles')
if (opts.cpuProf) mkdirSync(profDir, { recursive: true })
const ctx: BenchContext = {
  opts, workDir, pki, client, log,
  towerNodeArgs: [...opts.towerNodeArgs, ...(opts.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [])],
  towerEnv: opts.towerEnv,
  upstream: upstream.ready,
  targets: new Map(),
  pids: new Map(),
  notes: [],
  stealMeter: () => stealMeter(machine.nproc)
}
const versions: Record<string, string> = {}
const stops: Array<() => Promise<void>> = []
const needs = (...s: Section[]): boolean => s.some((x) => opts.only.includes(x))

ctx.targets.set('direct', { name: 'direct', protocol: 'https', host: '127.0.0.1', port: up.port, ca: pki.caPem })
ctx.targets.set('direct-http', { name: 'direct-http', protocol: 'http', host: '127.0.0.1', port: upstream.ready.http })

/**
 * Starts a two-process baseline (exit, then entry, each its own process as
 * Tower's server and agent are) as path `name`; `logName` names its logs in
 * the work dir.
 */
const startPair = async (name: string, logName: string, script: string, exitArgs: string[], entryArgs: (exitPort: number) => string[]): Promise<FreshPath> => {
  const exit = await forkReady<{ port: number, pid: number, upstreamProto?: string }>(join(HERE, script), ['--role', 'exit', ...exitArgs], join(workDir, `${logName}-exit.log`))
  try {
    const entry = await forkReady<{ port: number, pid: number }>(join(HERE, script), ['--role', 'entry', ...entryArgs(exit.ready.port)], join(workDir, `${logName}-entry.log`))
    log(`${logName}: entry port ${entry.ready.port}${exit.ready.upstreamProto !== undefined ? `, exit → upstream over ${exit.ready.upstreamProto}` : ''}`)
    return {
      target: { name, protocol: 'https', host: '127.0.0.1', port: entry.ready.port, ca: pki.caPem },
      pids: { server: entry.ready.pid, agent: exit.ready.pid },
      stop: async () => { await stopChild(entry.child); await stopChild(exit.child) }
    }
  } catch (err) {
    await stopChild(exit.child)
    throw err
  }
}
const tlsFiles = ['--cert', pki.certFile, '--key', pki.keyFile, '--ca', pki.caFile]
ctx.freshL7Chain = async (logName) => await startPair('l7-chain', logName, 'l7-chain.ts', ['--target', `https://${up.host}:${up.port}`, ...tlsFiles], (p) => ['--link', `127.0.0.1:${p}`, '--link-proto', opts.l7Link, ...tlsFiles])

if (needs('bulk', 'rps')) {
  const relay = await forkReady<{ port: number, pid: number }>(join(HERE, 'relay.ts'), ['--target', `${up.host}:${up.port}`], join(workDir, 'relay.log'))
  stops.push(() => stopChild(relay.child))
  ctx.targets.set('relay', { name: 'relay', protocol: 'https', host: '127.0.0.1', port: relay.ready.port, ca: pki.caPem })

  // The two ceilings, each end its own process (as Tower's server and agent are).
  const baseline = async (name: string, start: () => Promise<FreshPath>): Promise<void> => {
    try {
      const b = await start()
      stops.push(() => b.stop())
      ctx.targets.set(name, b.target)
      ctx.pids.set(name, b.pids)
    } catch (err) {
      ctx.notes.push(`${name} did not start: ${(err as Error).message}`)
      log(`${name}: FAILED ${(err as Error).message}`)
    }
  }
  await baseline('secure-relay', () => startPair('secure-relay', 'secure-relay', 'secure-relay.ts', ['--target', `${up.host}:${up.port}`, ...tlsFiles], (p) => ['--link', `127.0.0.1:${p}`, '--ca', pki.caFile]))
  await baseline('l7-chain', () => ctx.freshL7Chain!('l7-chain'))
  // Open l7-chain's link (its h2 session, or with --l7-link h1 one connection per request in flight) before
  // any measurement, as Tower's one wss link is open before its rows; otherwise the first row times handshakes.
  const l7 = ctx.targets.get('l7-chain')
  if (l7 !== undefined) {
    await client.run({ kind: 'rps', target: l7, concurrency: opts.rpsConcurrency, durationMs: 1000, warmupMs: 0, newConnection: false }, 60_000)
      .catch((err: Error) => log(`l7-chain warm-up: ${err.message}`))
  }
}

if (needs('bulk', 'rps', 'hol', 'idle')) {
  if (await towerCliAvailable()) {
    try {
      const rig = await startTower({ workDir, upstream: up, upstreamCaFile: pki.caFile, upstreamCaPem: pki.caPem, nodeArgs: ctx.towerNodeArgs, env: ctx.towerEnv })
      ctx.freshTower = async (name) => {
        const dir = join(workDir, name)
        mkdirSync(dir, { recursive: true })
        return await startTower({ workDir: dir, upstream: up, upstreamCaFile: pki.caFile, upstreamCaPem: pki.caPem, nodeArgs: ctx.towerNodeArgs, env: ctx.towerEnv })
      }
      stops.push(() => rig.stop())
      ctx.tower = rig
      ctx.targets.set('tower-passthrough', rig.passthrough)
      ctx.targets.set('tower-proxy', rig.proxy)
      ctx.pids.set('tower-passthrough', { server: rig.server.pid, agent: rig.passAgentPid })
      ctx.pids.set('tower-proxy', { server: rig.server.pid, agent: rig.proxyAgentPid })
      log(`tower: proxy port ${rig.proxy.port}, passthrough port ${rig.passthrough.port}`)
    } catch (err) {
      ctx.notes.push(`Tower did not start: ${(err as Error).message}`)
      log(`tower: FAILED ${(err as Error).message}`)
    }
  } else {
    ctx.notes.push('Tower paths: `node packages/cli/src/main.ts --help` does not list the agent command yet')
  }

  const peer = async (name: string, start: () => Promise<Tunnel & { connect?: { socketPath: string, authority: string } }>): Promise<void> => {
    try {
      const t = await start()
      stops.push(() => t.stop())
      versions[name] = t.version
      ctx.targets.set(name, { name, protocol: 'https', host: t.host, port: t.port, ca: pki.caPem, ...(t.connect !== undefined ? { connect: t.connect, servername: 'localhost' } : {}) })
      ctx.pids.set(name, { server: t.serverPid, agent: t.agentPid })
      if (t.connect !== undefined) ctx.targets.set(`${name}-adapter`, { name: `${name}-adapter`, protocol: 'https', host: t.host, port: t.port, ca: pki.caPem })
      log(`${name} ${t.version}: ready`)
    } catch (err) {
      ctx.notes.push(`${name} did not start: ${(err as Error).message}`)
      log(`${name}: FAILED ${(err as Error).message}`)
    }
  }
  if (opts.noPeers) ctx.notes.push('chisel and Konnectivity skipped (--no-peers)')
  else {
    const missing = await ensurePeers(join(workDir, 'peers-build.log'), log)
    if (missing.length > 0) ctx.notes.push(`bench/peers/build.sh left ${missing.join(', ')} unbuilt (log: peers-build.log in the scratch dir)`)
    await peer('chisel', () => startChisel(up, workDir))
    await peer('konnectivity', () => startKonnectivity(up, workDir, pki))
  }
}

const stealBySection: Record<string, number> = {}
const results: RunResults = {
  date: new Date().toISOString(),
  machine,
  loadavgEnd: 0,
  loadBySection: {},
  otherCpuBySection: {},
  stealCpuBySection: stealBySection,
  durationS: 0,
  towerCommit: gitHead(REPO),
  versions,
  options: { ...opts },
  sections: opts.only,
  notes: ctx.notes
}
let failed = false
const sections = { bulk: bulkSection, rps: rpsSection, hol: holSection, idle: idleSection, clientgo: clientgoSection, agents: agentsSection } as const
for (const s of opts.only) {
  results.loadBySection[s] = Math.round(os.loadavg()[0] * 100) / 100
  log(`── section ${s} (load ${results.loadBySection[s]})`)
  const cpu0 = cpuSnapshot(childPids())
  const t0 = Date.now()
  try {
    const r = await sections[s](ctx)
    ;(results as any)[s] = r
    if ((r as { error?: string }).error !== undefined) failed = true
  } catch (err) {
    failed = true
    ctx.notes.push(`section ${s} failed: ${(err as Error).message}`)
    log(`section ${s}: FAILED ${(err as Error).stack ?? String(err)}`)
  }
  const cpu1 = cpuSnapshot(childPids())
  const seconds = (Date.now() - t0) / 1000
  results.otherCpuBySection[s] = Math.round(otherCpuPercent(cpu0, cpu1, seconds, machine.nproc) * 10) / 10
  const steal = Math.round(stealCpuPercent(cpu0, cpu1, seconds, machine.nproc) * 10) / 10
  stealBySection[s] = steal
  log(`section ${s}: other processes used ${results.otherCpuBySection[s]} % of the CPUs; the host took ${steal} % (steal)`)
}

for (const stop of stops.reverse()) await stop().catch((err: Error) => log(`stop: ${err.message}`))
await client.stop()
await stopChild(upstream.child)
results.loadavgEnd = Math.round(os.loadavg()[0] * 100) / 100
results.durationS = (Date.now() - started) / 1000

const keys = summaryKeys(results)
const full = isFullRun(opts)
const outDir = join(HERE, 'results')
mkdirSync(outDir, { recursive: true })
const json = { ...keys, verdicts: Object.fromEntries(Object.keys(TARGETS).map((k) => [k, verdict(k, keys[k], keys).replaceAll('*', '')])), ...results }
const jsonFile = join(outDir, full ? 'latest.json' : 'smoke.json')
const mdFile = full ? join(REPO, 'BENCHMARKS.md') : join(outDir, 'smoke.md')
writeFileSync(jsonFile, JSON.stringify(json, null, 2) + '\n')
writeFileSync(mdFile, renderMarkdown(results, keys))
log(`wrote ${jsonFile} and ${mdFile}`)
for (const [k, v] of Object.entries(keys)) log(`  ${k.padEnd(28)} ${v === null ? '–' : v.toFixed(3).padStart(10)}  ${verdict(k, v, keys).replaceAll('*', '')}`)
if (failed || ctx.notes.length > 0 || opts.keep) log(`scratch dir kept: ${workDir}`)
else rmSync(workDir, { recursive: true, force: true })
process.exit(0)
