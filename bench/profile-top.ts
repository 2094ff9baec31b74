/**
 * Summarises V8 .cpuprofile files (from `node bench/run.ts --cpu-prof`):
 * the functions with the most self time, and the share of idle and GC.
 *
 *   node bench/profile-top.ts bench/results/profiles/*.cpuprofile [--top N]
 */
import { readFileSync } from 'node:fs'
import { basename } from 'node:path'
import { parseArgs } from 'node:util'

interface ProfileNode { id: number, callFrame: { functionName: string, url: string, lineNumber: number }, hitCount?: number }
interface Profile { nodes: ProfileNode[], startTime: number, endTime: number, samples: number[], timeDeltas: number[] }

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '25' } } })
for (const file of positionals) {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile
  const byId = new Map(p.nodes.map((n) => [n.id, n]))
  const self = new Map<string, number>()
  let total = 0
  for (let i = 0; i < p.samples.length; i++) {
    const n = byId.get(p.samples[i])
    const dt = p.timeDeltas[i] ?? 0
    if (n === undefined) continue
    const cf = n.callFrame
    const where = cf.url === '' ? '' : ` ${cf.url.replace(/^file:\/\/.*?\/(node_modules|packages)\//, '$1/').replace(/^node:/, 'node:')}:${cf.lineNumber + 1}`
    const key = `${cf.functionName || '(anonymous)'}${where}`
    self.set(key, (self.get(key) ?? 0) + dt)
    total += dt
  }
  const busy = total - (self.get('(idle)') ?? 0)
  console.log(`\n${basename(file)}: ${(total / 1e6).toFixed(1)} s sampled, ${(busy / 1e6).toFixed(1)} s busy`)
  // Percentages are of busy time, so (idle) is left out of the table.
  const rows = [...self.entries()].filter(([k]) => k !== '(idle)').sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))
  for (const [k, us] of rows) console.log(`${(us / 1e3).toFixed(0).padStart(8)} ms ${(100 * us / busy).toFixed(1).padStart(5)} % of busy  ${k}`)
}
