// The package's public surface for the rules shared with other packages
// ("One concept, one place" in issue 8).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as transport from '../src/index.ts'

test('transport exports the one agent-id rule and the max-streams header, and no cluster-name rule (that is @tower/pki isClusterName)', () => {
  assert.equal(transport.HEADER_MAX_STREAMS, 'tower-max-streams')
  assert.ok(transport.AGENT_ID_PATTERN.test('agent-1.a_b'))
  assert.ok(!transport.AGENT_ID_PATTERN.test('a b'))
  assert.equal(Object.hasOwn(transport, 'CLUSTER_NAME_PATTERN'), false)
  assert.equal(Object.hasOwn(transport, 'MAX_CLUSTER_NAME_LENGTH'), false)
})
