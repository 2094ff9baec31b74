// The bench report names the measurements the host slowed (steal), so a
// reader can tell a disturbed figure from a clean one.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mostStolen, renderMarkdown } from '../bench/report-md.ts'
import { summaryKeys, type RunResults } from '../bench/report.ts'
import { stealMeter } from '../bench/lib/machine.ts'
import { pairedDiff, pairedRatio } from '../bench/lib/stats.ts'
import type { RpsFigures } from '../bench/sections/rps.ts'

const rpsRound = (rps: number, steal?: number): RpsFigures => ({ rps, p50: 1, p90: 2, p99: 3, max: 4, requests: rps, errors: 0, ...(steal === undefined ? {} : { steal }) })

function results (): RunResults {
  return {
    date: '2026-12-03T00:00:00.000Z',
    machine: { nproc: 2, cpu: 'test', memMiB: 1024, node: 'v24', kernel: 'k', loadavg1: 0 },
    loadavgEnd: 0,
    loadBySection: { bulk: 0, rps: 0 },
    otherCpuBySection: { bulk: 0, rps: 0 },
    stealCpuBySection: { bulk: 9, rps: 1 },
    durationS: 1,
    towerCommit: 'abc',
    versions: {},
    options: { bulkBytes: 1024 * 1024, bulkRepeat: 2 },
    sections: ['bulk', 'rps'],
    notes: [],
    bulk: {
      'secure-relay': { down: { mbps: 300, runs: [250, 350], steal: [31.5, 0.4] }, up: { mbps: 300, runs: [300, 300], steal: [4.9, 5] } },
      'tower-passthrough': { down: { mbps: 280, runs: [280, 280], steal: [12, 7.5] } }
    },
    rps: {
      'tower-proxy': { serial: { ...rpsRound(1000), rounds: [rpsRound(900, 20.1), rpsRound(1100, 1)] } },
      // a run from before steal was recorded per measurement
      direct: { keepalive: { ...rpsRound(5000), rounds: [rpsRound(5000)] } }
    }
  }
}

test('mostStolen: measurements at 5 % steal or more, worst first, at most n, across bulk and rps', () => {
  const r = results()
  assert.deepEqual(mostStolen(r, 10), [
    { name: 'bulk secure-relay down #1', steal: 31.5 },
    { name: 'rps tower-proxy serial #1', steal: 20.1 },
    { name: 'bulk tower-passthrough down #1', steal: 12 },
    { name: 'bulk tower-passthrough down #2', steal: 7.5 },
    { name: 'bulk secure-relay up #2', steal: 5 }
  ])
  assert.deepEqual(mostStolen(r, 2).map((m) => m.name), ['bulk secure-relay down #1', 'rps tower-proxy serial #1'])
})

test('mostStolen: a run without per-measurement steal names nothing', () => {
  const r = results()
  for (const x of Object.values(r.bulk ?? {})) { delete x.down?.steal; delete x.up?.steal }
  delete r.rps
  assert.deepEqual(mostStolen(r, 5), [])
})

test('BENCHMARKS.md names the most disturbed measurements, and says nothing of them when there are none', () => {
  const r = results()
  const md = renderMarkdown(r, summaryKeys(r))
  const line = md.split('\n').find((l) => l.startsWith('> The measurements the host took most from'))
  assert.ok(line !== undefined, 'no line naming the disturbed measurements')
  assert.match(line, /bulk secure-relay down #1 31\.5 %, rps tower-proxy serial #1 20\.1 %, bulk tower-passthrough down #1 12 %/)
  r.bulk = {}
  delete r.rps
  assert.doesNotMatch(renderMarkdown(r, summaryKeys(r)), /The measurements the host took most from/)
})

test('stealMeter reads a share of the CPUs between 0 and 100 %', async () => {
  const stolen = stealMeter(2)
  await new Promise((resolve) => setTimeout(resolve, 50))
  const s = stolen()
  assert.equal(typeof s, 'number')
  assert.ok(s >= 0 && s <= 100, `steal ${s} %`)
})

test('pairedRatio and pairedDiff: the median of each round\'s ratio or difference; rounds without both figures are left out', () => {
  assert.equal(pairedRatio([100, 200, 300], [100, 400, 200]), 1)
  assert.equal(pairedRatio([1, 2], [2, 2, 9]), 0.75)
  assert.equal(pairedRatio([1, 2], [0, 4]), 0.5)
  assert.equal(pairedRatio([], [1]), null)
  assert.equal(pairedRatio(undefined, [1]), null)
  assert.equal(pairedDiff([3, 5, 10], [1, 1, 1]), 4)
  assert.equal(pairedDiff([1], [Number.NaN]), null)
})

test('summaryKeys: bulk and rps targets are paired by round, and the ratio of the medians stays as an informational key', () => {
  const r = results()
  // A cold first round (every path slow) and a slow spell of the host in the
  // second: paired, passthrough keeps up with its ceiling in every round.
  r.bulk = {
    'secure-relay': { down: { mbps: 400, runs: [200, 400, 500] }, up: { mbps: 400, runs: [200, 400, 500] } },
    'tower-passthrough': { down: { mbps: 300, runs: [190, 300, 500] }, up: { mbps: 300, runs: [190, 300, 500] } }
  }
  r.rps = {
    direct: { serial: { ...rpsRound(1), rounds: [{ ...rpsRound(1), p99: 1 }, { ...rpsRound(1), p99: 4 }, { ...rpsRound(1), p99: 1 }] } },
    'tower-proxy': { serial: { ...rpsRound(1), rounds: [{ ...rpsRound(1), p99: 2 }, { ...rpsRound(1), p99: 5 }, { ...rpsRound(1), p99: 5 }] } }
  }
  r.rps.direct.serial!.p99 = 1
  r.rps['tower-proxy'].serial!.p99 = 5
  const k = summaryKeys(r)
  assert.equal(k.passthrough_vs_secure_relay, 0.95)
  assert.equal(k.passthrough_vs_secure_relay_of_medians, 0.75)
  assert.equal(k.p99_overhead_serial_ms, 1)
  assert.equal(k.p99_overhead_serial_ms_of_medians, 4)
})
