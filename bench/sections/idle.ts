/**
 * Section 4: N concurrent idle watch-like streams (GET /watch, held open by
 * the upstream after one event) through one agent. Reports the RSS of the
 * tunnel's server and agent processes before and after, the bytes per
 * stream ((Δserver + Δagent) / opened) and the time to open all of them.
 * RSS is read 2 s after the last stream opened, without forcing a GC: it is
 * what the operator would see.
 *
 * `direct` comes first: the client holds the watches on the upstream itself,
 * a plain Node HTTPS server, and its RSS growth per stream is the floor any
 * hop pays for each TLS + HTTP/1.1 connection it terminates per watch (Tower's
 * proxy mode terminates two: the caller's at the server, the kube-apiserver's
 * at the agent). It must run first: a Node process keeps the RSS of closed
 * connections, so the upstream's later growth would say nothing.
 *
 * `l7-chain` rows are proxy mode's ceiling for memory as for speed: two
 * plain Node proxies (bench/l7-chain.ts), fresh for each row, holding the
 * same watches with node:http2 and node:https and nothing of Tower's. What
 * they cost per watch is what Node itself charges for that work.
 */
import { setTimeout as delay } from 'node:timers/promises'
import { targetsOf, type BenchContext } from '../lib/context.ts'
import { rssBytes } from '../lib/proc.ts'
import type { FreshPath } from '../lib/context.ts'
import type { TowerRig } from '../tower.ts'

/** Rows measured, in run and report order: a path and the client's protocol. */
export const IDLE_ROWS: ReadonlyArray<{ path: string, proto: 'h1' | 'h2' }> = [
  { path: 'direct', proto: 'h1' },
  { path: 'l7-chain', proto: 'h2' },
  { path: 'l7-chain', proto: 'h1' },
  { path: 'tower-proxy', proto: 'h2' },
  { path: 'tower-passthrough', proto: 'h2' },
  { path: 'tower-proxy', proto: 'h1' },
  { path: 'tower-passthrough', proto: 'h1' },
  { path: 'chisel', proto: 'h1' },
  { path: 'konnectivity', proto: 'h1' }
]

/** The result key of a row: the path for HTTP/1.1, `<path> h2` for the h2 client. */
export const idleKey = (path: string, proto: 'h1' | 'h2'): string => proto === 'h2' ? `${path} h2` : path

/** Per path figures. RSS in bytes, times in milliseconds. */
export type IdleResult = Record<string, {
  requested?: number
  opened?: number
  failed?: number
  firstError?: string
  /** h2 rows: sessions the client needed. */
  sessions?: number
  openMs?: number
  serverRssBefore?: number
  serverRssAfter?: number
  agentRssBefore?: number
  agentRssAfter?: number
  bytesPerStream?: number
  error?: string
}>

const SETTLE_MS = 2000

/** Runs the section. */
export async function idleSection (ctx: BenchContext): Promise<IdleResult> {
  const out: IdleResult = {}
  const n = ctx.opts.idleStreams
  const timeoutMs = Math.max(60_000, n * 10)
  for (const { path, proto } of IDLE_ROWS) {
    const key = idleKey(path, proto)
    const fresh = path === 'l7-chain' ? ctx.freshL7Chain : undefined
    let [t] = fresh === undefined ? targetsOf(ctx, [path]) : []
    if (t === undefined && fresh === undefined) continue
    // direct: the upstream is the only process holding the streams
    let pids = path === 'direct' ? { server: ctx.upstream.pid, agent: undefined as number | undefined } : ctx.pids.get(path)
    if (pids === undefined && fresh === undefined) continue
    let rig: TowerRig | undefined
    let chain: FreshPath | undefined
    try {
      if (fresh !== undefined) {
        chain = await fresh(`idle-${key.replace(' ', '-')}`)
        t = chain.target
        pids = chain.pids
        await delay(SETTLE_MS)
      } else if (path.startsWith('tower-') && ctx.freshTower !== undefined) {
        rig = await ctx.freshTower(`idle-${key.replace(' ', '-')}`)
        const proxy = path === 'tower-proxy'
        t = proxy ? rig.proxy : rig.passthrough
        pids = { server: rig.server.pid, agent: proxy ? rig.proxyAgentPid : rig.passAgentPid }
        await delay(SETTLE_MS)
      }
      if (t === undefined || pids === undefined) throw new Error(`${key}: no path to measure`)
      const serverRssBefore = rssBytes(pids.server)
      const agentRssBefore = pids.agent === undefined ? 0 : rssBytes(pids.agent)
      const r = await ctx.client.run<{ requested: number, opened: number, failed: number, firstError?: string, ms: number, sessions?: number }>(
        { kind: 'idle-open', target: t, n, openConcurrency: 200, timeoutMs, proto }, timeoutMs + 30_000)
      await delay(SETTLE_MS)
      const serverRssAfter = rssBytes(pids.server)
      const agentRssAfter = pids.agent === undefined ? 0 : rssBytes(pids.agent)
      await ctx.client.run({ kind: 'idle-close' }, 60_000)
      const bytesPerStream = r.opened > 0 ? ((serverRssAfter - serverRssBefore) + (agentRssAfter - agentRssBefore)) / r.opened : undefined
      out[key] = { requested: r.requested, opened: r.opened, failed: r.failed, firstError: r.firstError, openMs: r.ms, sessions: r.sessions, serverRssBefore, serverRssAfter, agentRssBefore, agentRssAfter, bytesPerStream }
      ctx.log(`idle ${key}: ${r.opened}/${n} open${r.sessions !== undefined ? ` on ${r.sessions} h2 sessions` : ''} in ${(r.ms / 1000).toFixed(1)} s, server ${mb(serverRssBefore)}→${mb(serverRssAfter)} MB, agent ${mb(agentRssBefore)}→${mb(agentRssAfter)} MB, ${bytesPerStream === undefined ? '-' : bytesPerStream.toFixed(0)} B/stream`)
      // Let both ends notice the closes before the next path is measured.
      await delay(SETTLE_MS)
    } catch (err) {
      out[key] = { error: (err as Error).message }
      ctx.log(`idle ${key}: FAILED ${(err as Error).message}`)
      await ctx.client.run({ kind: 'idle-close' }, 60_000).catch(() => {})
    } finally {
      await rig?.stop()
      await chain?.stop()
    }
  }
  return out
}

/** MB = 10^6 bytes, as in the report. */
function mb (b: number): string {
  return (b / 1e6).toFixed(1)
}
