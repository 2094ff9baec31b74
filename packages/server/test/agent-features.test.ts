import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { agentFeatures, MAX_FEATURES, MAX_FEATURES_LENGTH } from '../src/agent-endpoint.ts'

test('tower-features: comma-separated tokens, trimmed, unknown ones kept for the caller to ignore', () => {
  assert.deepEqual([...agentFeatures('hframe')], ['hframe'])
  assert.deepEqual([...agentFeatures(' future , HFrame,,')], ['future', 'hframe'])
  assert.equal(agentFeatures(undefined).size, 0)
  assert.equal(agentFeatures('').size, 0)
  assert.equal(agentFeatures(['hframe']).size, 0, 'not a string')
})

test('tower-features: an over-long value announces nothing, and only the first 16 tokens count', () => {
  assert.equal(agentFeatures('hframe,' + 'x'.repeat(MAX_FEATURES_LENGTH)).size, 0)
  const many = Array.from({ length: MAX_FEATURES }, (_, i) => `f${i}`).join(',') + ',hframe'
  assert.equal(agentFeatures(many).has('hframe'), false)
  assert.equal(agentFeatures(many).size, MAX_FEATURES)
})

test('tower-features: any input is a bounded set, never a throw', () => {
  fc.assert(fc.property(fc.anything(), (v) => {
    const out = agentFeatures(v)
    assert.ok(out.size <= MAX_FEATURES)
  }))
  fc.assert(fc.property(fc.string({ maxLength: 400 }), (v) => {
    assert.ok(agentFeatures(v).size <= MAX_FEATURES)
  }))
})
