/**
 * Section 5: a real client-go workload against a real kube-apiserver (the
 * e2e harness's member, v1.36), run directly, through Tower's passthrough
 * port and through proxy mode. The program is test/e2e/tools/clientgo
 * (`clientgo workload`, workload.go): informers on 10 types (time to sync),
 * a list storm of the ConfigMaps (median time of one full list), a
 * server-side-apply storm, then N idle watches for memory per watch.
 *
 * Each Tower mode gets its own `tower server` process (and agent), so the
 * RSS growth of one mode's watches is not hidden by memory the other mode's
 * left behind. The ConfigMaps are created once, directly, before any path
 * runs. The idle watches come first, in a run of their own (informers synced,
 * no storms): a Node process keeps and reuses the memory of what it held
 * before, so watches after the storms would look almost free. Then the
 * timed runs, paths interleaved over the rounds, the median reported.
 */
import { spawn } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import type { BenchContext } from '../lib/context.ts'
import { clientgoBinary } from '../lib/clientgo-bin.ts'
import { rssBytes } from '../lib/proc.ts'
import { median } from '../lib/stats.ts'
import { startControlPlane, type ControlPlane } from '../../test/e2e/harness/index.ts'
import { applyRepoManifest, serviceAccountToken, startTowerAgent, startTowerServer, type TowerProcess, type TowerServerHandle } from '../../test/e2e/tunnel-helpers.ts'

/** Paths of the section, in run and report order. */
export const CLIENTGO_PATHS = ['direct', 'tower-passthrough', 'tower-proxy'] as const

/** What one `clientgo workload --phase run` printed (milliseconds), plus the RSS the bench read around its watches (bytes). */
export interface ClientgoRun {
  proto: string
  types: number
  syncMs: number
  listItems: number
  listMedianMs: number
  listStormMs: number
  applies: number
  applyStormMs: number
  applyP50Ms: number
  applyP99Ms: number
  watches: number
  watchOpenMs: number
  serverRssBefore?: number
  serverRssAfter?: number
  agentRssBefore?: number
  agentRssAfter?: number
}

/** Per path: medians over the rounds (milliseconds) and memory per watch (bytes). */
export interface ClientgoPath {
  proto?: string
  syncMs?: number
  listMs?: number
  applyStormMs?: number
  applyP99Ms?: number
  watches?: number
  serverBytesPerWatch?: number
  agentBytesPerWatch?: number
  runs: ClientgoRun[]
  error?: string
}

/** Figures of the section. */
export interface ClientgoResult {
  apiserver?: string
  configmaps: number
  lists: number
  applies: number
  rounds: number
  setupMs?: number
  paths: Record<string, ClientgoPath>
  error?: string
}

const SETTLE_MS = 2000
const RUN_TIMEOUT_MS = 15 * 60_000

/**
 * Runs the workload program once; `onReady` runs when it is about to open its
 * idle watches (it waits for it), `onHolding` while it holds them.
 */
function workload (bin: string, args: string[], hooks: { onReady?: () => void, onHolding?: () => Promise<void> } = {}): Promise<any> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['workload', ...args, '--timeout', `${RUN_TIMEOUT_MS / 1000}s`], { stdio: ['pipe', 'pipe', 'pipe'] })
    let stderr = ''
    let buf = ''
    let result: any
    const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS + 30_000)
    child.stderr.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000) })
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString()
      let i
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i)
        buf = buf.slice(i + 1)
        let o: any
        try { o = JSON.parse(line) } catch { continue }
        if (o.event === 'ready-for-watches') {
          hooks.onReady?.()
          child.stdin.write('go\n')
        } else if (o.event === 'holding') {
          void (hooks.onHolding?.() ?? Promise.resolve()).finally(() => child.stdin.end())
        } else result = o
      }
    })
    child.once('error', (err) => { clearTimeout(timer); reject(err) })
    child.once('exit', (code, sig) => {
      clearTimeout(timer)
      if (code === 0 && result !== undefined) resolve(result)
      else reject(new Error(`clientgo workload exited ${code ?? sig}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`))
    })
  })
}

/** Runs the section. */
export async function clientgoSection (ctx: BenchContext): Promise<ClientgoResult> {
  const o = ctx.opts
  const rounds = o.quick ? 1 : 3
  const out: ClientgoResult = { configmaps: o.clientgoConfigMaps, lists: o.clientgoLists, applies: o.clientgoApplies, rounds, paths: {} }
  let cp: ControlPlane | undefined
  const towers: TowerServerHandle[] = []
  const agents: TowerProcess[] = []
  try {
    const bin = await clientgoBinary(ctx.log)
    const t0 = Date.now()
    cp = await startControlPlane({})
    out.apiserver = cp.member.version
    ctx.log(`clientgo: kube-apiserver ${cp.member.version} ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
    const dir = join(ctx.workDir, 'clientgo')
    mkdirSync(dir, { recursive: true })
    await applyRepoManifest(cp.member, 'deploy/agent/rbac.yaml')
    await applyRepoManifest(cp.member, 'deploy/agent/rbac-admin.yaml')
    const tokenFile = join(dir, 'sa-token')
    await serviceAccountToken(cp.member, 'tower-system', 'tower-agent', tokenFile)
    const upstream = { url: cp.member.url, caPem: cp.member.caPem, tokenFile }
    const kubeconfigs = new Map<string, string>([['direct', cp.member.adminKubeconfigPath]])
    const pids = new Map<string, { server: number, agent: number }>()
    for (const mode of ['passthrough', 'proxy'] as const) {
      const tdir = join(dir, mode)
      mkdirSync(tdir, { recursive: true })
      const tower = await startTowerServer(tdir, { logDir: tdir })
      towers.push(tower)
      const cluster = await tower.addCluster(`cg-${mode}`, { mode })
      const agent = await startTowerAgent(tower, cluster, upstream, { logDir: tdir })
      agents.push(agent)
      kubeconfigs.set(`tower-${mode}`, mode === 'proxy'
        ? await tower.kubeconfig(cluster.name)
        : await tower.kubeconfig(cluster.name, { from: cp.member.adminKubeconfigPath }))
      pids.set(`tower-${mode}`, { server: tower.server.process.pid, agent: agent.process.pid })
    }

    const setup = await workload(bin, ['--phase', 'setup', '--kubeconfig', cp.member.adminKubeconfigPath, '--configmaps', String(o.clientgoConfigMaps)])
    out.setupMs = setup.setupMs
    ctx.log(`clientgo: ${setup.setupCreated} ConfigMaps created in ${(setup.setupMs / 1000).toFixed(1)} s`)

    // One run of the workload on `path`; with `watchOnly`, no storms and the idle watches held, RSS read around them.
    const once = async (path: string, watchOnly: boolean): Promise<ClientgoRun> => {
      const ends = pids.get(path)
      const rss: Partial<ClientgoRun> = {}
      const r = await workload(bin, ['--kubeconfig', kubeconfigs.get(path) as string, '--configmaps', String(o.clientgoConfigMaps),
        '--lists', watchOnly ? '0' : String(o.clientgoLists), '--applies', watchOnly ? '0' : String(o.clientgoApplies),
        '--watches', watchOnly ? String(o.clientgoWatches) : '0'], {
        onReady: () => {
          if (ends === undefined) return
          rss.serverRssBefore = rssBytes(ends.server)
          rss.agentRssBefore = rssBytes(ends.agent)
        },
        onHolding: async () => {
          if (ends === undefined) return
          await delay(SETTLE_MS)
          rss.serverRssAfter = rssBytes(ends.server)
          rss.agentRssAfter = rssBytes(ends.agent)
        }
      }) as ClientgoRun
      if (!watchOnly && r.listItems !== o.clientgoConfigMaps) throw new Error(`a list returned ${r.listItems} of ${o.clientgoConfigMaps} ConfigMaps`)
      return { ...r, ...rss }
    }

    // Watches first, on servers and agents that only synced informers so far: the storms' large
    // responses would leave heap behind that the watches then reuse, hiding their cost.
    for (const path of CLIENTGO_PATHS) {
      if (!pids.has(path) || o.clientgoWatches === 0) continue
      const p = out.paths[path] ??= { runs: [] }
      try {
        const w = await once(path, true)
        p.watches = w.watches
        p.serverBytesPerWatch = ((w.serverRssAfter as number) - (w.serverRssBefore as number)) / w.watches
        p.agentBytesPerWatch = ((w.agentRssAfter as number) - (w.agentRssBefore as number)) / w.watches
        ctx.log(`clientgo ${path}: ${w.watches} idle watches (${w.proto}) open in ${w.watchOpenMs.toFixed(0)} ms, ` +
          `server ${p.serverBytesPerWatch.toFixed(0)} B/watch, agent ${p.agentBytesPerWatch.toFixed(0)} B/watch`)
      } catch (err) {
        p.error = `watches: ${(err as Error).message}`
        ctx.log(`clientgo ${path}: FAILED ${p.error}`)
      }
    }

    for (let round = 0; round < rounds; round++) {
      for (const path of CLIENTGO_PATHS) {
        const p = out.paths[path] ??= { runs: [] }
        if (p.error !== undefined) continue
        try {
          const r = await once(path, false)
          p.runs.push(r)
          ctx.log(`clientgo ${path} #${round + 1}: ${r.proto}, sync ${r.syncMs.toFixed(0)} ms, list ${r.listMedianMs.toFixed(0)} ms (median of ${o.clientgoLists}), ` +
            `${r.applies} applies in ${r.applyStormMs.toFixed(0)} ms (p99 ${r.applyP99Ms.toFixed(1)} ms)`)
        } catch (err) {
          p.error = (err as Error).message
          ctx.log(`clientgo ${path}: FAILED ${p.error}`)
        }
      }
    }
    for (const p of Object.values(out.paths)) {
      if (p.runs.length === 0) continue
      p.proto = p.runs[0].proto
      p.syncMs = median(p.runs.map((r) => r.syncMs))
      p.listMs = median(p.runs.map((r) => r.listMedianMs))
      p.applyStormMs = median(p.runs.map((r) => r.applyStormMs))
      p.applyP99Ms = median(p.runs.map((r) => r.applyP99Ms))
    }
  } catch (err) {
    out.error = (err as Error).message
    ctx.log(`clientgo: FAILED ${out.error}`)
  } finally {
    for (const a of agents) await a.stop().catch(() => {})
    for (const t of towers) await t.stop().catch(() => {})
    await cp?.stop()
  }
  return out
}
