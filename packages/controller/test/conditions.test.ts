import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { conditionsEqual, conditionTime, MAX_CONDITION_MESSAGE, removeCondition, setCondition } from '../src/conditions.ts'
import { agentCondition } from '../src/reconciler.ts'

const T0 = '2026-12-01T10:00:00Z'
const T1 = '2026-12-01T11:00:00Z'
const T2 = '2026-12-01T12:00:00Z'

describe('conditions', () => {
  test('a new condition gets both times', () => {
    const list = setCondition([], { type: 'Initialized', status: 'True', reason: 'Initialized', message: 'ok' }, T0)
    assert.deepEqual(list, [{ type: 'Initialized', status: 'True', reason: 'Initialized', message: 'ok', lastUpdateTime: T0, lastTransitionTime: T0 }])
  })

  test('nothing changed: the same array, times kept (no write)', () => {
    const a = setCondition([], { type: 'AgentAvailable', status: 'True', reason: 'AgentConnected', message: '1 agent(s) connected' }, T0)
    const b = setCondition(a, { type: 'AgentAvailable', status: 'True', reason: 'AgentConnected', message: '1 agent(s) connected' }, T1)
    assert.equal(b, a)
    assert.equal(conditionsEqual(a, b), true)
  })

  test('a new message moves lastUpdateTime only; a new status moves both', () => {
    const a = setCondition([], { type: 'AgentAvailable', status: 'True', reason: 'AgentConnected', message: '1 agent(s) connected' }, T0)
    const b = setCondition(a, { type: 'AgentAvailable', status: 'True', reason: 'AgentConnected', message: '2 agent(s) connected' }, T1)
    assert.equal(b[0]?.lastTransitionTime, T0)
    assert.equal(b[0]?.lastUpdateTime, T1)
    assert.equal(conditionsEqual(a, b), false)
    const c = setCondition(b, { type: 'AgentAvailable', status: 'False', reason: 'AgentDisconnected', message: 'gone' }, T2)
    assert.equal(c[0]?.lastTransitionTime, T2)
    assert.equal(c[0]?.lastUpdateTime, T2)
  })

  test('other conditions are kept in place; compare is order-insensitive', () => {
    const a = setCondition(setCondition([], { type: 'A', status: 'True', reason: 'r', message: 'm' }, T0), { type: 'B', status: 'False', reason: 'r', message: 'm' }, T0)
    const b = setCondition(a, { type: 'A', status: 'False', reason: 'r2', message: 'm' }, T1)
    assert.deepEqual(b.map((c) => c.type), ['A', 'B'])
    assert.equal(b[1], a[1])
    assert.equal(conditionsEqual(a, [...a].reverse()), true)
    assert.deepEqual(removeCondition(a, 'A').map((c) => c.type), ['B'])
    assert.equal(removeCondition(a, 'C'), a)
  })

  test('a huge message is cut', () => {
    const list = setCondition([], { type: 'Initialized', status: 'False', reason: 'InvalidSpec', message: 'x'.repeat(1_000_000) }, T0)
    assert.equal(list[0]?.message?.length, MAX_CONDITION_MESSAGE)
  })

  test('conditionTime is RFC 3339 without fractions', () => {
    assert.equal(conditionTime(new Date('2026-12-01T10:00:00.123Z')), '2026-12-01T10:00:00Z')
  })
})

describe('AgentAvailable from the server report', () => {
  test('no report yet: left alone', () => {
    assert.equal(agentCondition(undefined, undefined), undefined)
  })
  test('connected agents, last agent left, none yet', () => {
    assert.deepEqual(agentCondition({ agents: [{ id: 'a', remote: '127.0.0.1:1', since: T0 }, { id: 'b', remote: '127.0.0.1:2', since: T0 }] }, undefined),
      { type: 'AgentAvailable', status: 'True', reason: 'AgentConnected', message: '2 agent(s) connected' })
    const left = agentCondition({ agents: [], lastAgentLeftAt: T1 }, undefined)
    assert.equal(left?.status, 'False')
    assert.equal(left?.reason, 'AgentDisconnected')
    assert.match(left?.message ?? '', /2026-12-01T11:00:00Z/)
    assert.equal(agentCondition({ agents: [] }, undefined)?.reason, 'NoAgentYet')
  })
  test('a restarted server that no longer knows when the agent left keeps the earlier message', () => {
    const current = { type: 'AgentAvailable', status: 'False' as const, reason: 'AgentDisconnected', message: `the last agent disconnected at ${T1}` }
    assert.deepEqual(agentCondition({ agents: [] }, current), { type: 'AgentAvailable', status: 'False', reason: 'AgentDisconnected', message: current.message })
  })
})
