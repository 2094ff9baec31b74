// The soak's outcome tally: counts per ending, and why transfers were refused or interrupted.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MAX_REASONS, Outcomes, reasonOf } from './outcomes.ts'

test('reasonOf: the status when a head arrived, else the error code, else the message without numbers', () => {
  assert.equal(reasonOf({ status: 503, error: 'socket hang up' }), 'HTTP 503')
  assert.equal(reasonOf({ status: 0, error: 'connect ECONNREFUSED 127.0.0.1:6001' }), 'ECONNREFUSED')
  assert.equal(reasonOf({ error: 'write ERR_STREAM_DESTROYED' }), 'ERR_STREAM_DESTROYED')
  assert.equal(reasonOf({ error: 'no progress for 90000 ms' }), 'no progress for N ms')
  assert.equal(reasonOf({ error: 'port-forward to 127.0.0.1:41234 did not start in 30000 ms' }), reasonOf({ error: 'port-forward to 127.0.0.1:40001 did not start in 30000 ms' }))
  assert.equal(reasonOf({ error: '', code: 1 }), 'exit 1')
  assert.equal(reasonOf({}), 'unknown')
})

test('Outcomes tallies reasons for refused and interrupted endings only, bounded per workload', () => {
  const o = new Outcomes()
  o.add('list', 'ok', '', 100, 'ignored')
  o.add('list', 'refused', '', 0, 'HTTP 503')
  o.add('list', 'refused', '', 0, 'HTTP 503')
  o.add('list', 'interrupted', '', 0, 'ECONNRESET')
  o.add('list', 'corrupt', 'bad bytes', 0, 'not tallied')
  assert.deepEqual(o.reasons('list'), [['refused: HTTP 503', 2], ['interrupted: ECONNRESET', 1]])
  assert.equal(o.count('refused'), 2)
  const table = o.table()
  assert.equal(table.length, 2)
  assert.match(table[0]!, /^list\s+ok=1 refused=2 interrupted=1 hung=0 truncated=0 corrupt=1 verified=0\.0 MB$/)
  assert.match(table[1]!, /why: refused: HTTP 503 ×2, interrupted: ECONNRESET ×1$/)
  assert.deepEqual(o.failures.length, 1)

  for (let i = 0; i < MAX_REASONS + 5; i++) o.add('many', 'refused', '', 0, `reason ${String.fromCharCode(97 + i)}`)
  const many = o.reasons('many')
  assert.equal(many.length, MAX_REASONS + 1, 'the distinct reasons stop at the bound, then one "other"')
  assert.deepEqual(many.find(([k]) => k === 'refused: other'), ['refused: other', 5])
})
