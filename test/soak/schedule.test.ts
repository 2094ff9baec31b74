// The fault schedule: the same seed gives the same order, every kind runs before the schedule ends, and
// no server fault comes after serverFaultsUntil once each server kind has run.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { FAULT_KINDS } from './faults.ts'
import { Rng } from './rng.ts'
import { FaultSchedule } from './schedule.ts'

/** Drive a schedule on a fake clock: each fault takes `stepMs`. */
function run (seed: number, times: { lastFaultBy: number, serverFaultsUntil: number }, stepMs: number): Array<{ at: number, kind: string }> {
  const s = new FaultSchedule(new Rng(seed), FAULT_KINDS, times)
  const out: Array<{ at: number, kind: string }> = []
  for (let now = 0, k = s.next(now); k !== undefined; now += stepMs, k = s.next(now)) {
    out.push({ at: now, kind: k })
    assert.ok(out.length < 10_000, 'the schedule ends')
  }
  return out
}

test('same seed, same schedule; another seed, another order', () => {
  const times = { lastFaultBy: 600_000, serverFaultsUntil: 400_000 }
  assert.deepEqual(run(11, times, 10_000), run(11, times, 10_000))
  assert.notDeepEqual(run(11, times, 10_000).map((f) => f.kind), run(12, times, 10_000).map((f) => f.kind))
})

test('every kind runs at least once, even when the time is up at once', () => {
  const faults = run(3, { lastFaultBy: 0, serverFaultsUntil: 0 }, 10_000)
  assert.deepEqual(new Set(faults.map((f) => f.kind)), new Set(FAULT_KINDS))
  assert.equal(faults.length, FAULT_KINDS.length)
})

test('no server fault after serverFaultsUntil once both server kinds ran, and none at or after lastFaultBy', () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    const faults = run(seed, { lastFaultBy: 300_000, serverFaultsUntil: 200_000 }, 10_000)
    const late = faults.filter((f) => f.kind.startsWith('server') && f.at > 200_000)
    assert.deepEqual(late, [], `seed ${seed}`)
    assert.ok(faults.every((f) => f.at < 300_000), `seed ${seed}`)
    assert.ok(faults.some((f) => f.at > 200_000), `seed ${seed}: other faults go on in the last third`)
  }
})

test('a schedule of server kinds only is refused (it could never skip to anything)', () => {
  assert.throws(() => new FaultSchedule(new Rng(1), ['server-sigkill'], { lastFaultBy: 0, serverFaultsUntil: 0 }), /not a server fault/)
})
