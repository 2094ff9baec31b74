// A server replica that drains closes its sessions cleanly (GoAway, then Close): the agent must be
// back through the Service at once, not after its reconnect backoff.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Session } from '@tower/mux'
import { fetchText } from './fixtures/fake-server.ts'
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

test('make before break: on GoAway the agent dials a new session at once, and a request in flight finishes on the old one', async (t) => {
  const { server, agent, upstream, logs } = await rig(t, { agent: { reconnectMinMs: 300, reconnectMaxMs: 5000 } })
  const old = await server.nextSession()
  await sleep(350)
  const slowSeen = new Promise<void>((resolve) => {
    const onRequest = (rec: { path?: string, url?: string }): void => {
      if ((rec.path ?? rec.url) === '/slow') { upstream.events.off('request', onRequest); resolve() }
    }
    upstream.events.on('request', onRequest)
  })
  const pending = fetchText(server.request('/slow'))
  await slowSeen
  const next = once(server.events, 'session') as Promise<[Session]>
  let oldClosed = false
  old.once('close', () => { oldClosed = true })
  old.close()
  const [fresh] = await next
  assert.notEqual(fresh, old)
  assert.equal(oldClosed, false, 'the new session is up while the old one still carries the request')
  assert.ok(logs.some((e) => /GoAway; connecting again/.test(e.msg ?? '')))
  upstream.releaseSlow()
  const res = await pending
  assert.equal(res.status, 200)
  assert.equal(res.body, 'slow done')
  // the request's keep-alive stream is the old session's last: the server ends it (a real one drops idle streams)
  const oldGone = oldClosed ? Promise.resolve() : once(old, 'close')
  old.destroy()
  await oldGone
  assert.equal(agent.connected, true, 'the agent stays connected on the new session')
  const again = await fetchText(server.request('/api/v1/namespaces'))
  assert.equal(again.status, 200, 'the new session serves')
})
