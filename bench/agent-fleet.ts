/**
 * Many Tower agents in one Node process, for the agents-per-server section:
 * 1,000 agent processes would not fit on a 2-core machine, so a few fleet
 * processes each run a slice of `@tower/agent` `Agent` instances with the
 * product's default reconnect settings.
 *
 * Run as a child: `node bench/agent-fleet.ts --spec FILE` where FILE is JSON
 * `{ serverUrl, caPem, upstreamUrl, upstreamCaPem, agents: [{ cluster, token }] }`.
 * It sends `{ type: 'ready' }`, then obeys IPC commands:
 *   { cmd: 'start' }   start every agent (all at once)
 *   { cmd: 'mark' }    start counting reconnects from now
 *   { cmd: 'status' }  → { connected, sinceMark, total, firstAt, lastAt, perSecond, logs }
 * `lastAt` / `firstAt` are Date.now() of the latest / earliest 'connected'
 * event since the start or the last mark; `perSecond[s]` counts the agents
 * first connected in second s after the mark.
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { Agent } from '@tower/agent'
import type { Logger } from '@tower/mux'

interface Spec {
  serverUrl: string
  caPem: string
  upstreamUrl: string
  upstreamCaPem: string
  agents: Array<{ cluster: string, token: string }>
}

/** Counts info, warn and error log lines by message (first 80 characters), so failures and paced retries show up in the report. */
function countingLogger (counts: Map<string, number>): Logger {
  const count = (level: string) => (_o: object, msg?: string): void => {
    const k = `${level}: ${(msg ?? '').replace(/\d+(\.\d+)?/g, 'N').slice(0, 80)}`
    counts.set(k, (counts.get(k) ?? 0) + 1)
  }
  const l: Logger = { trace () {}, debug () {}, info: count('info'), warn: count('warn'), error: count('error'), child: () => l }
  return l
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { spec: { type: 'string' } } })
  if (values.spec === undefined) throw new Error('usage: agent-fleet.ts --spec FILE')
  const spec = JSON.parse(readFileSync(values.spec, 'utf8')) as Spec
  const logs = new Map<string, number>()
  const logger = countingLogger(logs)
  let markAt = 0
  let firstAt = 0
  let lastAt = 0
  const since = new Set<number>()
  // agents first connected since the mark, by whole seconds after it
  let perSecond: number[] = []
  const up = new Set<number>()
  const agents = spec.agents.map((a, i) => {
    const agent = new Agent({
      serverUrl: spec.serverUrl,
      cluster: a.cluster,
      token: a.token,
      caPem: spec.caPem,
      upstream: { kind: 'url', url: spec.upstreamUrl, caPem: spec.upstreamCaPem },
      logger
    })
    agent.on('connected', () => {
      const now = Date.now()
      up.add(i)
      if (now >= markAt) {
        if (!since.has(i)) {
          const second = Math.floor((now - markAt) / 1000)
          while (perSecond.length <= second) perSecond.push(0)
          perSecond[second]!++
        }
        since.add(i)
        if (firstAt === 0) firstAt = now
        lastAt = now
      }
    })
    agent.on('disconnected', () => { up.delete(i) })
    return agent
  })
  process.on('message', (m: { cmd: string }) => {
    if (m.cmd === 'start') {
      for (const a of agents) a.start()
      process.send?.({ type: 'started' })
    } else if (m.cmd === 'mark') {
      markAt = Date.now()
      since.clear()
      perSecond = []
      firstAt = 0
      lastAt = 0
      process.send?.({ type: 'marked' })
    } else if (m.cmd === 'status') {
      process.send?.({ type: 'status', connected: up.size, sinceMark: since.size, total: agents.length, firstAt, lastAt, perSecond, logs: Object.fromEntries(logs) })
    }
  })
  const stop = (): void => { void Promise.all(agents.map((a) => a.stop())).finally(() => process.exit(0)) }
  process.once('SIGTERM', stop)
  process.once('disconnect', stop)
  process.send?.({ type: 'ready', pid: process.pid })
}
