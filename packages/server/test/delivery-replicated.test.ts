import assert from 'node:assert/strict'
import { test } from 'node:test'
import { NoAgentError } from '../src/errors.ts'
import { deliveryFailure } from '../src/status.ts'

test('no session: standalone says 502 "offline" after the grace; a replica answers 503 + Retry-After at once, saying so', () => {
  const now = Date.now()
  const err = new NoAgentError('m1', now - 60_000)
  const standalone = deliveryFailure(err, 10_000, now)
  assert.equal(standalone.code, 502)
  assert.equal(standalone.headers['retry-after'], undefined)
  const within = deliveryFailure(new NoAgentError('m1', now - 1000), 10_000, now)
  assert.equal(within.code, 503)
  const replica = deliveryFailure(err, 10_000, now, true)
  assert.equal(replica.code, 503)
  assert.equal(replica.headers['retry-after'], '1')
  assert.equal(replica.text, false)
  assert.match(replica.message, /no agent connected for cluster "m1" on this server replica/)
})
