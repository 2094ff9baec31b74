/**
 * The scale knobs at their limits: agent admission rate, and streams per
 * agent. Each must refuse with a retryable answer instead of queueing
 * without bound, and recover once there is room again.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import https from 'node:https'
import { WebSocket } from 'ws'
import { AGENT_PATH, HEADER_AGENT_ID, HEADER_CLUSTER, SUBPROTOCOL } from '@tower/transport'
import { defaultServerConfig } from '@tower/server'
import { startUpstream } from './fixtures/upstream.ts'
import { addCluster, startAgent, startTower } from './helpers/tower.ts'
import { callerCert, get, tlsOptions } from './helpers/clients.ts'

test('agent admissions over the accept rate get 503 with Retry-After; the agent gets in on a later try', async (t) => {
  const up = await startUpstream()
  const tower = await startTower({ server: { agentEndpoint: { ...defaultServerConfig.agentEndpoint, acceptPerSecond: 2, acceptBurst: 1 } } })
  const c = await addCluster(tower, 'rate')
  t.after(async () => { await tower.stop(); await up.close() })
  const dial = (): Promise<{ status?: number, retryAfter?: string, ws?: WebSocket }> => new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://127.0.0.1:${tower.server.agentPort}${AGENT_PATH}`, SUBPROTOCOL, { ca: tower.registry.ca.certPem, headers: { authorization: `Bearer ${c.token}`, [HEADER_CLUSTER]: 'rate', [HEADER_AGENT_ID]: 'x' } })
    ws.once('open', () => resolve({ ws }))
    ws.once('unexpected-response', (_req, res) => { resolve({ status: res.statusCode, retryAfter: res.headers['retry-after'] }); res.resume() })
    ws.once('error', reject)
  })
  const first = await dial()
  assert.ok(first.ws !== undefined, 'the first agent is admitted')
  const second = await dial()
  assert.equal(second.status, 503)
  assert.equal(second.retryAfter, '1')
  first.ws.terminate()
  // The real agent backs off and is admitted once the bucket refills.
  const agent = await startAgent(tower, 'rate', c.token, up)
  t.after(() => agent.stop())
  assert.equal(agent.connected, true)
})

test('a crowd sent away at the accept rate is given turns at that rate, and the agent comes back on its turn, not its backoff', async (t) => {
  const up = await startUpstream()
  const tower = await startTower({ server: { agentEndpoint: { ...defaultServerConfig.agentEndpoint, acceptPerSecond: 1, acceptBurst: 1 } } })
  const c = await addCluster(tower, 'crowd')
  t.after(async () => { await tower.stop(); await up.close() })
  // five dials at once: one token, four agents sent away
  const answers = await Promise.all([0, 1, 2, 3, 4].map((i) => new Promise<{ status: number, retryAfter: number }>((resolve, reject) => {
    const ws = new WebSocket(`wss://127.0.0.1:${tower.server.agentPort}${AGENT_PATH}`, SUBPROTOCOL, { ca: tower.registry.ca.certPem, headers: { authorization: `Bearer ${c.token}`, [HEADER_CLUSTER]: 'crowd', [HEADER_AGENT_ID]: `x${i}` } })
    ws.once('open', () => { ws.terminate(); resolve({ status: 101, retryAfter: 0 }) })
    ws.once('unexpected-response', (_req, res) => { resolve({ status: res.statusCode ?? 0, retryAfter: Number(res.headers['retry-after']) }); res.resume() })
    ws.once('error', reject)
  })))
  assert.deepEqual(answers.map((a) => a.status).sort(), [101, 503, 503, 503, 503], JSON.stringify(answers))
  // four turns a second apart, the first when the bucket refills
  const turns = answers.filter((a) => a.status === 503).map((a) => a.retryAfter).sort((a, b) => a - b)
  assert.deepEqual(turns, [1, 2, 3, 4], `turns: ${turns.join(',')}`)
  // The agent is refused too (no token is back yet) and given the fifth turn. With a 15 s minimum
  // backoff, only honouring that turn (about 5 s away) gets it in within 8 s.
  const started = Date.now()
  const agent = await startAgent(tower, 'crowd', c.token, up, { reconnectMinMs: 15_000, reconnectMaxMs: 20_000 })
  t.after(() => agent.stop())
  const waited = Date.now() - started
  assert.ok(waited < 8000, `admitted after ${waited} ms`)
  const asked = tower.logs.find(/server asked to come back later/)
  assert.ok(asked.length >= 1, 'the agent logged the server\'s turn')
  assert.equal(asked[0]!.status, 503)
  assert.ok(asked[0]!.retryInMs <= asked[0]!.retryAfterS * 1000, JSON.stringify(asked[0]))
})

test('streams per agent: at the limit callers get 503 + Retry-After, nothing queues, and room frees up', async (t) => {
  const up = await startUpstream()
  const tower = await startTower({ server: { agentEndpoint: { ...defaultServerConfig.agentEndpoint, maxStreamsPerAgent: 2 } } })
  const c = await addCluster(tower, 'busy')
  const agent = await startAgent(tower, 'busy', c.token, up)
  t.after(async () => { await agent.stop(); await tower.stop(); await up.close() })
  // The server's version probe takes a stream when the agent connects: let it finish (this upstream answers 404) so both slots are free.
  for (const deadline = Date.now() + 5000; tower.logs.find(/^version probe/).length === 0;) {
    assert.ok(Date.now() < deadline, 'the version probe finished')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  const cert = callerCert(tower.registry, 'busy')
  const hanging = [0, 1].map(() => {
    const req = https.request({ ...tlsOptions(tower.registry, c.port, cert), path: '/hang' })
    req.on('error', () => {})
    req.end()
    return req
  })
  while (up.requests.filter((r) => r.url === '/hang').length < 2) await new Promise((resolve) => setTimeout(resolve, 10))
  const seen = up.requests.length
  const refused = await get(tlsOptions(tower.registry, c.port, cert), '/echo')
  assert.equal(refused.status, 503)
  assert.equal(refused.res.headers['retry-after'], '1')
  assert.match(JSON.parse(refused.body).message, /maxStreams \(2\)/)
  assert.equal(up.requests.length, seen, 'the refused request must not reach the member')
  const released = up.hangReleased()
  hanging[0]!.destroy()
  await released
  // The freed stream slot is usable again (the stream table shrinks on close).
  let ok = 0
  for (let i = 0; i < 50 && ok === 0; i++) {
    const r = await get(tlsOptions(tower.registry, c.port, cert), '/echo')
    if (r.status === 200) ok++
    else await new Promise((resolve) => setTimeout(resolve, 20))
  }
  assert.equal(ok, 1)
  hanging[1]!.destroy()
})
