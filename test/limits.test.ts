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
