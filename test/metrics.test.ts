/**
 * Metrics and health end to end: a real server and agent, /metrics scraped
 * over HTTP and parsed, each metric seen to move as traffic moves; /readyz
 * flipping with draining and with the registry's sync.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import https from 'node:https'
import { once } from 'node:events'
import { WebSocket } from 'ws'
import { AGENT_PATH, HEADER_AGENT_ID, HEADER_CLUSTER, HealthServer, SUBPROTOCOL } from '@tower/transport'
import { createMetricsRegistry, serverMetricNames, type TowerServer } from '@tower/server'
import { Agent, agentMetricNames, createMetricsRegistry as createAgentRegistry } from '@tower/agent'
import { startUpstream } from './fixtures/upstream.ts'
import { addCluster, startAgent, startTower, type TestTower } from './helpers/tower.ts'
import { callerCert, get, tlsOptions } from './helpers/clients.ts'
import { httpGet, scrape } from './helpers/scrape.ts'

async function serveHealth (t: { after: (fn: () => Promise<void>) => void }, tower: TestTower): Promise<number> {
  const server: TowerServer = tower.server
  const health = new HealthServer({
    host: '127.0.0.1',
    port: 0,
    metrics: async () => ({ contentType: server.metrics.registry.contentType, body: await server.metrics.registry.metrics() }),
    readiness: () => server.readiness(),
    logger: tower.logger
  })
  t.after(() => health.close())
  return await health.listen()
}

async function rawAgent (port: number, caPem: string, headers: Record<string, string>): Promise<{ status?: number, ws?: WebSocket }> {
  const ws = new WebSocket(`wss://127.0.0.1:${port}${AGENT_PATH}`, SUBPROTOCOL, { ca: caPem, headers })
  return await new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ ws }))
    ws.once('unexpected-response', (_req, res) => { resolve({ status: res.statusCode }); res.resume() })
    ws.once('error', reject)
  })
}

test('server /metrics: every metric is exported, and requests, refusals, handshakes, agents, bytes and GoAways move with traffic', async (t) => {
  const up = await startUpstream()
  const tower = await startTower({ server: { metricsRegistry: createMetricsRegistry() } })
  t.after(async () => { await tower.stop(); await up.close() })
  const port = await serveHealth(t, tower)
  const { token, port: clusterPort } = await addCluster(tower, 'alpha')

  const before = await scrape(port)
  for (const name of serverMetricNames()) {
    const base = name.replace(/_(bucket|sum|count)$/, '')
    assert.ok(before.has(name) || before.has(base), `${name} is not exported`)
  }
  assert.ok(before.value('process_resident_memory_bytes') > 0, 'default process metrics are on')
  assert.equal(before.value('tower_server_agents_connected', { cluster: 'alpha' }), 0)
  assert.equal(before.value('tower_server_clusters'), 1)
  assert.equal(before.value('tower_server_cluster_listeners_up'), 1)
  assert.equal(before.value('tower_server_agent_endpoint_up'), 1)
  assert.equal(before.value('tower_server_registry_synced'), 1)

  const agent = await startAgent(tower, 'alpha', token, up, { agentId: 'agent-one' })
  t.after(() => agent.stop())
  const connected = await scrape(port)
  assert.equal(connected.value('tower_server_agents_connected', { cluster: 'alpha' }), 1)
  assert.equal(connected.value('tower_server_agent_handshakes_total', { result: 'ok' }), 1)

  // Requests through the real agent: list, get, create, a 404 outside the API, a watch.
  const opts = tlsOptions(tower.registry, clusterPort, callerCert(tower.registry, 'alpha'))
  assert.equal((await get(opts, '/api/v1/namespaces/default/pods')).status, 200)
  assert.equal((await get(opts, '/api/v1/namespaces/default/pods')).status, 200)
  assert.equal((await get(opts, '/api/v1/namespaces/default/pods/p1')).status, 200)
  assert.equal((await get(opts, '/nope')).status, 404)
  const post = https.request({ ...opts, method: 'POST', path: '/api/v1/namespaces/default/configmaps', headers: { 'content-type': 'application/json' } })
  post.end('{}')
  const [postRes] = await once(post, 'response') as [import('node:http').IncomingMessage]
  postRes.resume()
  await once(postRes, 'end')
  // A bad token and no credential at all.
  assert.equal((await get(tlsOptions(tower.registry, clusterPort), '/api/v1/pods', { authorization: 'Bearer tower-caller_bad' })).status, 401)
  assert.equal((await get(tlsOptions(tower.registry, clusterPort), '/api/v1/pods')).status, 401)

  const after = await scrape(port)
  const req = (verb: string, code: string): number => after.value('tower_server_requests_total', { cluster: 'alpha', verb, code })
  assert.equal(req('list', '200'), 2)
  assert.equal(req('get', '200'), 1)
  assert.equal(req('get', '404'), 1)
  assert.equal(req('create', '200'), 1)
  assert.equal(req('list', '401'), 2)
  assert.equal(after.value('tower_server_request_duration_seconds_count', { cluster: 'alpha', verb: 'list', code: '200' }), 2)
  assert.ok(after.value('tower_server_request_duration_seconds_sum', { cluster: 'alpha', verb: 'list', code: '200' }) > 0)
  assert.equal(after.value('tower_server_request_duration_seconds_bucket', { cluster: 'alpha', verb: 'list', code: '200', le: '+Inf' }), 2)
  assert.equal(after.value('tower_server_caller_auth_failures_total', { cluster: 'alpha', reason: 'token-unknown' }), 1)
  assert.equal(after.value('tower_server_caller_auth_failures_total', { cluster: 'alpha', reason: 'no-credentials' }), 1)
  assert.ok(after.value('tower_server_cluster_received_bytes_total', { cluster: 'alpha' }) > before.value('tower_server_cluster_received_bytes_total', { cluster: 'alpha' }))
  assert.ok(after.value('tower_server_cluster_sent_bytes_total', { cluster: 'alpha' }) > 1000)

  // An upload the upstream never reads (/hang): the server's writes to the agent wait for its window.
  assert.equal(after.value('tower_server_mux_window_stalls_total', { cluster: 'alpha' }), 0)
  const upload = https.request({ ...opts, method: 'POST', path: '/hang', headers: { 'content-type': 'application/octet-stream' } })
  upload.on('error', () => {})
  const chunk = Buffer.alloc(1024 * 1024)
  const pump = (): void => { while (upload.write(chunk)); }
  upload.on('drain', pump)
  pump()
  await until(async () => (await scrape(port)).value('tower_server_mux_window_stalls_total', { cluster: 'alpha' }) > 0)
  upload.off('drain', pump)
  upload.destroy()

  // Handshake refusals by result; the same agent id again is a reconnect.
  const ca = tower.registry.ca.certPem
  assert.equal((await rawAgent(tower.server.agentPort, ca, { authorization: 'Bearer nope', [HEADER_CLUSTER]: 'alpha' })).status, 401)
  assert.equal((await rawAgent(tower.server.agentPort, ca, { authorization: `Bearer ${token}` })).status, 400)
  const first = await rawAgent(tower.server.agentPort, ca, { authorization: `Bearer ${token}`, [HEADER_CLUSTER]: 'alpha', [HEADER_AGENT_ID]: 'raw-1' })
  first.ws!.terminate()
  await until(async () => tower.server.tunnels.count('alpha') === 1)
  const again = await rawAgent(tower.server.agentPort, ca, { authorization: `Bearer ${token}`, [HEADER_CLUSTER]: 'alpha', [HEADER_AGENT_ID]: 'raw-1' })
  assert.ok(again.ws !== undefined)
  const refused = await scrape(port)
  assert.equal(refused.value('tower_server_agent_handshakes_total', { result: 'wrong-token' }), 1)
  assert.equal(refused.value('tower_server_agent_handshakes_total', { result: 'invalid-name' }), 1)
  assert.equal(refused.value('tower_server_agent_handshakes_total', { result: 'ok' }), 3)
  assert.equal(refused.value('tower_server_agent_reconnects_total', { cluster: 'alpha' }), 1)
  assert.equal(refused.value('tower_server_agents_connected', { cluster: 'alpha' }), 2)
  again.ws!.terminate()

  // A watch: counted with verb watch once it ends.
  const watch = await get(opts, '/watch?n=2&gapMs=5')
  assert.equal(watch.status, 200)
  await until(async () => (await scrape(port)).value('tower_server_requests_total', { cluster: 'alpha', verb: 'get', code: '200' }) === 2)

  // Stop: the server's GoAway(normal) to the agent is counted as sent.
  await until(async () => tower.server.tunnels.count('alpha') === 1)
  const goneBefore = (await scrape(port)).value('tower_server_goaways_total', { direction: 'sent', code: '0' })
  await agent.stop()
  const gone = await scrape(port)
  assert.ok(gone.value('tower_server_goaways_total', { direction: 'received', code: '0' }) >= 1, 'the agent\'s GoAway is counted as received')
  assert.equal(gone.value('tower_server_goaways_total', { direction: 'sent', code: '0' }), goneBefore)
  assert.equal(gone.value('tower_server_agents_connected', { cluster: 'alpha' }), 0)

  // A removed cluster takes its series with it.
  await tower.registry.remove('alpha')
  await tower.server.synced()
  const removed = await scrape(port)
  assert.equal(removed.find('tower_server_requests_total', { cluster: 'alpha' }).length, 0)
  assert.equal(removed.find('tower_server_agents_connected', { cluster: 'alpha' }).length, 0)
  assert.equal(removed.find('tower_server_caller_auth_failures_total', { cluster: 'alpha' }).length, 0)
})

test('health listener: /livez, /readyz flips with draining and with the registry sync, 404 and 405', async (t) => {
  const tower = await startTower()
  t.after(() => tower.stop())
  const port = await serveHealth(t, tower)
  assert.deepEqual(await plain(port, '/livez'), { status: 200, body: 'ok\n' })
  assert.deepEqual(await plain(port, '/readyz'), { status: 200, body: 'ok\n' })
  tower.server.setDraining(true)
  assert.deepEqual(await plain(port, '/readyz'), { status: 503, body: 'not ready: draining\n' })
  assert.equal((await scrape(port)).value('tower_server_draining'), 1)
  tower.server.setDraining(false)
  assert.equal((await plain(port, '/readyz')).status, 200)
  // A backend that reports it lost its sync (the kubernetes one: its informers).
  let synced = false
  ;(tower.registry as unknown as { synced: () => boolean }).synced = () => synced
  assert.deepEqual(await plain(port, '/readyz'), { status: 503, body: 'not ready: registry not synced\n' })
  assert.equal((await scrape(port)).value('tower_server_registry_synced'), 0)
  synced = true
  assert.equal((await plain(port, '/readyz')).status, 200)
  assert.equal((await plain(port, '/readyz?verbose')).status, 200)
  assert.equal((await plain(port, '/healthz')).status, 404)
  assert.equal((await plain(port, '/metrics', 'POST')).status, 405)
  const head = await httpGet(port, '/metrics', 'HEAD')
  assert.equal(head.status, 200)
  assert.equal(head.body, '')
  // A stopped server is not ready.
  await tower.server.stop()
  assert.equal((await plain(port, '/readyz')).status, 503)
  assert.equal((await plain(port, '/livez')).status, 200)
})

async function plain (port: number, path: string, method = 'GET'): Promise<{ status: number, body: string }> {
  const r = await httpGet(port, path, method)
  return { status: r.status, body: r.body }
}

async function until (check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

test('agent /metrics: tunnel up, upstream dials and failures, GoAway counted on both sides, reconnects; /readyz after the first connect', async (t) => {
  const up = await startUpstream()
  // No registry passed: each server instance has a private one, so a restart registers afresh.
  const tower = await startTower()
  t.after(async () => { await tower.stop(); await up.close() })
  const serverPort = await serveHealth(t, tower)
  const { token, port: clusterPort } = await addCluster(tower, 'beta')
  const agent = new Agent({
    serverUrl: `wss://127.0.0.1:${tower.server.agentPort}`,
    cluster: 'beta',
    token,
    caPem: tower.registry.ca.certPem,
    upstream: { kind: 'url', url: up.url, caPem: up.caPem, token: 'agent-sa-token' },
    reconnectMinMs: 50,
    reconnectMaxMs: 200,
    metricsRegistry: createAgentRegistry(),
    logger: tower.logger
  })
  t.after(() => agent.stop())
  const health = new HealthServer({
    host: '127.0.0.1',
    port: 0,
    metrics: async () => ({ contentType: agent.metrics.registry.contentType, body: await agent.metrics.registry.metrics() }),
    readiness: () => agent.readiness(),
    logger: tower.logger
  })
  t.after(() => health.close())
  const port = await health.listen()
  assert.deepEqual(await plain(port, '/readyz'), { status: 503, body: 'not ready: tunnel never connected\n' })
  const first = await scrape(port)
  for (const name of agentMetricNames()) {
    const base = name.replace(/_(bucket|sum|count)$/, '')
    assert.ok(first.has(name) || first.has(base), `${name} is not exported`)
  }
  assert.equal(first.value('tower_agent_tunnel_connected'), 0)

  const connected = once(agent, 'connected')
  agent.start()
  await connected
  assert.equal((await plain(port, '/readyz')).status, 200)
  const opts = tlsOptions(tower.registry, clusterPort, callerCert(tower.registry, 'beta'))
  assert.equal((await get(opts, '/api/v1/namespaces')).status, 200)
  const up1 = await scrape(port)
  assert.equal(up1.value('tower_agent_tunnel_connected'), 1)
  assert.ok(up1.value('tower_agent_upstream_dial_duration_seconds_count') >= 1, 'the upstream dial is timed')
  assert.equal(up1.value('tower_agent_reconnects_total'), 0)

  // A caller that does not read a large response: the agent's writes wait for the server's window.
  assert.equal(up1.value('tower_agent_mux_window_stalls_total'), 0)
  const slow = https.request({ ...opts, path: '/bytes?n=67108864' })
  slow.end()
  const [slowRes] = await once(slow, 'response') as [import('node:http').IncomingMessage]
  slowRes.pause()
  await until(async () => (await scrape(port)).value('tower_agent_mux_window_stalls_total') > 0)
  slowRes.destroy()

  // The server restarts: its GoAway(normal) is counted as sent there and received here; the agent reconnects.
  assert.equal((await scrape(serverPort)).value('tower_server_goaways_total', { direction: 'sent', code: '0' }), 0)
  const disconnected = once(agent, 'disconnected')
  const reconnected = once(agent, 'connected')
  await tower.restart()
  await disconnected
  assert.ok((await scrape(port)).value('tower_agent_goaways_total', { direction: 'received', code: '0' }) >= 1)
  // serverPort still serves the stopped instance's registry.
  assert.equal((await scrape(serverPort)).value('tower_server_goaways_total', { direction: 'sent', code: '0' }), 1, 'the server counts its GoAway')
  await reconnected
  const again = await scrape(port)
  assert.equal(again.value('tower_agent_reconnects_total'), 1)
  assert.equal(again.value('tower_agent_tunnel_connected'), 1)
  assert.equal((await plain(port, '/readyz')).status, 200)

  await agent.stop()
  assert.deepEqual(await plain(port, '/readyz'), { status: 503, body: 'not ready: stopping\n' })
  assert.ok((await scrape(port)).value('tower_agent_goaways_total', { direction: 'sent', code: '0' }) >= 1, 'the agent\'s own GoAway on stop')
})

test('agent: a refused upstream connection is counted by reason', async (t) => {
  const up = await startUpstream()
  const tower = await startTower()
  const { token, port: clusterPort } = await addCluster(tower, 'gamma')
  // A port nothing listens on: the dial is refused.
  const closedPort = up.port
  await up.close()
  const agent = await startAgent(tower, 'gamma', token, { ...up, url: `https://127.0.0.1:${closedPort}` }, { metricsRegistry: createAgentRegistry() })
  t.after(async () => { await agent.stop(); await tower.stop() })
  const r = await get(tlsOptions(tower.registry, clusterPort, callerCert(tower.registry, 'gamma')), '/api/v1/pods')
  assert.equal(r.status, 502)
  const text = await agent.metrics.registry.metrics()
  assert.match(text, /tower_agent_upstream_dial_failures_total\{reason="refused"\} [1-9]/)
})
