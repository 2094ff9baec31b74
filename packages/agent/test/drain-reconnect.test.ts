// A server replica that drains closes its sessions cleanly (GoAway, then Close): the agent must be
// back through the Service at once, not after its reconnect backoff.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { rig, waitForLog } from './harness.ts'

test('a clean close of a session that lived reconnects within 250 ms, even with a 300 ms minimum backoff', async (t) => {
  const { server, agent, logs } = await rig(t, { agent: { reconnectMinMs: 300, reconnectMaxMs: 5000 } })
  const session = await server.nextSession()
  await sleep(350)
  const disconnected = once(agent, 'disconnected')
  session.close()
  const [err] = await disconnected
  assert.equal(err, undefined, 'the server closed the session cleanly')
  const line = await waitForLog(logs, (e) => /disconnected from server; reconnecting/.test(e.msg ?? ''))
  assert.equal(line.level, 'info')
  assert.ok(Number(line.obj.retryInMs) <= 250, `retry in ${String(line.obj.retryInMs)} ms`)
  const started = Date.now()
  await once(agent, 'connected')
  assert.ok(Date.now() - started < 300, `reconnected after ${Date.now() - started} ms`)
})
