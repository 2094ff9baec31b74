import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { startHeartbeat } from '../src/heartbeat.ts'
import { wsPair } from './ws-pair.ts'

test('a peer that answers pings keeps the socket open', async (t) => {
  const pair = await wsPair()
  t.after(() => pair.close())
  let timedOut = false
  const hb = startHeartbeat(pair.client, { intervalMs: 20, timeoutMs: 60, onTimeout: () => { timedOut = true } })
  t.after(() => hb.stop())
  let pings = 0
  await new Promise<void>((resolve) => {
    pair.server.on('ping', () => { if (++pings === 10) resolve() })
  })
  assert.equal(timedOut, false)
  assert.equal(pair.client.readyState, pair.client.OPEN)
})

test('a peer that stops answering is terminated after the timeout', async (t) => {
  const pair = await wsPair({ autoPong: false })
  t.after(() => pair.close())
  const started = Date.now()
  let timeoutErr: { code: string } | undefined
  startHeartbeat(pair.client, { intervalMs: 20, timeoutMs: 100, onTimeout: (err) => { timeoutErr = err } })
  const [code] = await once(pair.client, 'close')
  assert.equal(code, 1006)
  assert.equal(timeoutErr?.code, 'TOWER_ERR_HEARTBEAT_TIMEOUT')
  assert.ok(Date.now() - started >= 100)
})

test('options are validated', async (t) => {
  const pair = await wsPair()
  t.after(() => pair.close())
  assert.throws(() => startHeartbeat(pair.client, { intervalMs: 0, timeoutMs: 10 }), { code: 'TOWER_ERR_INVALID_ARG' })
  assert.throws(() => startHeartbeat(pair.client, { intervalMs: 10, timeoutMs: 10 }), { code: 'TOWER_ERR_INVALID_ARG' })
})
