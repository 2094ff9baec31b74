import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { planPort, readPortTable, renderPortTable } from '../src/port-allocator.ts'

const RANGE = { first: 6000, last: 6002 }
const A = { cluster: 'a', uid: '11111111-1111-1111-1111-111111111111' }
const B = { cluster: 'b', uid: '22222222-2222-2222-2222-222222222222' }

describe('port table', () => {
  test('reads valid entries; an unreadable value still holds its port; keys that are not ports are dropped', () => {
    const t = readPortTable({ 6000: `a/${A.uid}`, 6001: 'garbage', x: 'a/1', 70000: 'a/1', __proto__: 'z' })
    assert.deepEqual([...t.keys()].sort(), [6000, 6001])
    assert.deepEqual(t.get(6000), A)
    assert.deepEqual(t.get(6001), { unreadable: 'garbage' })
    assert.deepEqual({ ...renderPortTable(t) }, { 6000: `a/${A.uid}`, 6001: 'garbage' })
    assert.equal(readPortTable(null).size, 0)
    assert.equal(readPortTable('x').size, 0)
  })

  test('allocates the lowest free port, and keeps it on the next plan', () => {
    const t = readPortTable({ 6000: `b/${B.uid}` })
    const p = planPort(t, A, RANGE, undefined)
    assert.deepEqual(p.outcome, { ok: true, port: 6001 })
    assert.deepEqual({ ...p.data }, { 6000: `b/${B.uid}`, 6001: `a/${A.uid}` })
    const again = planPort(readPortTable(p.data), A, RANGE, undefined)
    assert.deepEqual(again, { outcome: { ok: true, port: 6001 } }, 'no write when the entry is there')
  })

  test('a user-set port is kept when free, even outside the range', () => {
    const p = planPort(new Map(), A, RANGE, 7443)
    assert.deepEqual(p.outcome, { ok: true, port: 7443 })
    assert.deepEqual({ ...p.data }, { 7443: `a/${A.uid}` })
  })

  test('a user-set port held by another cluster is a PortConflict; nothing is written', () => {
    const t = readPortTable({ 6000: `b/${B.uid}` })
    const p = planPort(t, A, RANGE, 6000)
    assert.equal(p.outcome.ok, false)
    assert.equal(!p.outcome.ok && p.outcome.reason, 'PortConflict')
    assert.match(!p.outcome.ok ? p.outcome.message : '', /cluster b/)
    assert.equal(p.data, undefined)
  })

  test('reserved ports (the agent endpoint) are never given', () => {
    assert.equal(planPort(new Map(), A, RANGE, undefined, new Set([6000])).outcome.ok && (planPort(new Map(), A, RANGE, undefined, new Set([6000])).outcome as { port: number }).port, 6001)
    const p = planPort(new Map(), A, RANGE, 6000, new Set([6000]))
    assert.equal(!p.outcome.ok && p.outcome.reason, 'PortConflict')
  })

  test('out of range and exhausted', () => {
    for (const bad of [0, 65536, 1e20, 1.5, -1]) {
      const p = planPort(new Map(), A, RANGE, bad)
      assert.equal(!p.outcome.ok && p.outcome.reason, 'PortOutOfRange', String(bad))
    }
    const full = readPortTable({ 6000: `b/${B.uid}`, 6001: 'x/1', 6002: 'junk' })
    const p = planPort(full, A, RANGE, undefined)
    assert.equal(!p.outcome.ok && p.outcome.reason, 'PortRangeExhausted')
  })

  test('a re-created cluster (new uid) frees the old entry; moving to a user-set port frees the old one', () => {
    const t = readPortTable({ 6000: 'a/00000000-0000-0000-0000-000000000000' })
    const p = planPort(t, A, RANGE, undefined)
    assert.deepEqual(p.outcome, { ok: true, port: 6000 })
    assert.deepEqual({ ...p.data }, { 6000: `a/${A.uid}` })
    const moved = planPort(readPortTable(p.data), A, RANGE, 6002)
    assert.deepEqual(moved.outcome, { ok: true, port: 6002 })
    assert.deepEqual({ ...moved.data }, { 6002: `a/${A.uid}` })
  })
})
