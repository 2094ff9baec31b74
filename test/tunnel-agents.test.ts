/**
 * The agent side of the tunnel end to end: authentication of agents,
 * reconnects, several agents per cluster, passthrough mode, and a peer that
 * sends garbage.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import https from 'node:https'
import { once } from 'node:events'
import { WebSocket } from 'ws'
import { AGENT_PATH, HEADER_AGENT_ID, HEADER_CLUSTER, SUBPROTOCOL } from '@tower/transport'
import { issueKubeconfig } from '@tower/server'
import { startUpstream } from './fixtures/upstream.ts'
import { addCluster, startAgent, startTower, tempFile, type TestTower } from './helpers/tower.ts'
import { callerCert, get, kubectl, tlsOptions } from './helpers/clients.ts'

/** Opens a raw agent WebSocket; resolves with the HTTP status of a refusal, or the open socket. */
async function dialAgent (port: number, caPem: string, headers: Record<string, string>, protocol = SUBPROTOCOL): Promise<{ status?: number, ws?: WebSocket }> {
  const ws = new WebSocket(`wss://127.0.0.1:${port}${AGENT_PATH}`, protocol, { ca: caPem, headers })
  return await new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ ws }))
    ws.once('unexpected-response', (_req, res) => { resolve({ status: res.statusCode }); res.resume() })
    ws.once('error', reject)
  })
}

test('agents are authenticated before the upgrade: wrong token, other cluster\'s token, missing header, bad protocol', async (t) => {
  const tower = await startTower()
  t.after(() => tower.stop())
  const a = await addCluster(tower, 'alpha')
  await addCluster(tower, 'beta')
  const ca = tower.registry.ca.certPem
  const port = tower.server.agentPort
  const before = JSON.stringify(tower.registry.clusters())
  assert.equal((await dialAgent(port, ca, { authorization: 'Bearer nope', [HEADER_CLUSTER]: 'alpha' })).status, 401)
  assert.equal((await dialAgent(port, ca, { authorization: `Bearer ${a.token}`, [HEADER_CLUSTER]: 'beta' })).status, 401)
  assert.equal((await dialAgent(port, ca, { authorization: `Bearer ${a.token}`, [HEADER_CLUSTER]: 'ghost' })).status, 401)
  assert.equal((await dialAgent(port, ca, { authorization: `Bearer ${a.token}` })).status, 400)
  assert.equal((await dialAgent(port, ca, { authorization: `Bearer ${a.token}`, [HEADER_CLUSTER]: 'alpha' }, 'chat')).status, 400)
  assert.equal(tower.server.tunnels.count('alpha') + tower.server.tunnels.count('beta'), 0)
  assert.equal(JSON.stringify(tower.registry.clusters()), before, 'a refused agent changed the registry')
  const refusals = tower.logs.find('agent rejected')
  assert.equal(refusals.length, 5)
  assert.ok(refusals.every((l) => !JSON.stringify(l).includes(a.token)), 'a token reached the logs')
  const ok = await dialAgent(port, ca, { authorization: `Bearer ${a.token}`, [HEADER_CLUSTER]: 'alpha', [HEADER_AGENT_ID]: 'raw-1' })
  assert.ok(ok.ws !== undefined)
  ok.ws.terminate()
})

test('an agent with a wrong token is refused each time and retries at the long delay', async (t) => {
  const up = await startUpstream()
  const tower = await startTower()
  await addCluster(tower, 'rot')
  const { Agent } = await import('@tower/agent')
  const agent = new Agent({ serverUrl: `wss://127.0.0.1:${tower.server.agentPort}`, cluster: 'rot', token: 'tower-agent_wrong', caPem: tower.registry.ca.certPem, upstream: { kind: 'url', url: up.url, caPem: up.caPem }, reconnectMinMs: 20, reconnectMaxMs: 200, logger: tower.logger })
  t.after(async () => { await agent.stop(); await tower.stop(); await up.close() })
  agent.start()
  while (tower.logs.find('agent rejected').length < 3) await new Promise((resolve) => setTimeout(resolve, 20))
  assert.equal(agent.connected, false)
  const agentSide = tower.logs.find(/agent token rejected by server \(401\)/)
  assert.ok(agentSide.length >= 2)
  // A rejected token is not a network blip: the agent waits the longest delay, not the shortest.
  assert.ok(agentSide.every((l) => l.retryInMs === 200), JSON.stringify(agentSide.map((l) => l.retryInMs)))
})

test('the agent reconnects after a server restart: same port, same kubeconfig', async (t) => {
  const up = await startUpstream()
  const tower = await startTower()
  const c = await addCluster(tower, 'restart')
  const agent = await startAgent(tower, 'restart', c.token, up)
  t.after(async () => { await agent.stop(); await tower.stop(); await up.close() })
  const kc = tempFile(t, 'kc', await issueKubeconfig(tower.registry, { cluster: 'restart' }))
  assert.equal(JSON.parse(await kubectl(['--kubeconfig', kc, 'get', '--raw', '/echo'])).url, '/echo')
  const reconnected = once(agent, 'connected')
  const disconnected = once(agent, 'disconnected') as Promise<[Error | undefined]>
  await tower.restart()
  assert.equal(tower.server.clusterPort('restart'), c.port)
  // A shutdown is GoAway and a WebSocket Close, not a dropped connection (1006).
  const [why] = await disconnected
  assert.equal(why, undefined, `agent saw an error: ${why?.message}`)
  await reconnected
  assert.equal(JSON.parse(await kubectl(['--kubeconfig', kc, 'get', '--raw', '/echo'])).url, '/echo')
})

test('several agents per cluster share the streams, and traffic moves to the survivor', async (t) => {
  const up = await startUpstream()
  const tower = await startTower()
  const c = await addCluster(tower, 'multi')
  const one = await startAgent(tower, 'multi', c.token, up, { upstream: { kind: 'url', url: up.url, caPem: up.caPem, token: 'agent-one' } })
  const two = await startAgent(tower, 'multi', c.token, up, { upstream: { kind: 'url', url: up.url, caPem: up.caPem, token: 'agent-two' } })
  t.after(async () => { await two.stop(); await tower.stop(); await up.close() })
  assert.equal(tower.server.tunnels.count('multi'), 2)
  const cert = callerCert(tower.registry, 'multi')
  const seen = new Set<string>()
  // A fresh connection per request, so no keep-alive stream pins one agent.
  for (let i = 0; i < 8; i++) seen.add(JSON.parse((await get(tlsOptions(tower.registry, c.port, cert), '/echo')).body).headers.authorization)
  assert.deepEqual([...seen].sort(), ['Bearer agent-one', 'Bearer agent-two'])
  await one.stop()
  while (tower.server.tunnels.count('multi') !== 1) await new Promise((resolve) => setTimeout(resolve, 10))
  for (let i = 0; i < 4; i++) {
    const r = await get(tlsOptions(tower.registry, c.port, cert), '/echo')
    assert.equal(r.status, 200)
    assert.equal(JSON.parse(r.body).headers.authorization, 'Bearer agent-two')
  }
})

test('no agent connected: 503 with a Kubernetes Status naming the cluster', async (t) => {
  const tower = await startTower()
  t.after(() => tower.stop())
  const c = await addCluster(tower, 'lonely')
  const r = await get(tlsOptions(tower.registry, c.port, callerCert(tower.registry, 'lonely')), '/api')
  assert.equal(r.status, 503)
  const status = JSON.parse(r.body)
  assert.equal(status.kind, 'Status')
  assert.match(status.message, /no agent connected for cluster "lonely"/)
})

test('passthrough: TLS runs end to end with the member\'s own certificate', async (t) => {
  const up = await startUpstream()
  const tower = await startTower()
  const c = await addCluster(tower, 'pass', { mode: 'passthrough' })
  const agent = await startAgent(tower, 'pass', c.token, up)
  t.after(async () => { await agent.stop(); await tower.stop(); await up.close() })
  // The caller trusts the upstream's CA, not Tower's: the tunnel only relays bytes.
  const r = await get({ host: '127.0.0.1', port: c.port, ca: up.caPem, servername: 'localhost', agent: false }, '/echo', { authorization: 'Bearer member-own-token' })
  assert.equal(r.status, 200)
  assert.equal(JSON.parse(r.body).headers.authorization, 'Bearer member-own-token')
  const req = https.request({ host: '127.0.0.1', port: c.port, ca: tower.registry.ca.certPem, path: '/echo', agent: false })
  req.end()
  const [err] = await once(req, 'error') as [NodeJS.ErrnoException]
  assert.match(String(err.code), /UNABLE_TO_VERIFY|SELF_SIGNED|CERT/)
})

// A tower with one cluster and a raw WebSocket "agent" that will misbehave.
// `stillServes` then proves the server is unharmed: a real agent still works.
async function hostilePeer (t: { after: (fn: () => Promise<void> | void) => void }, cluster: string): Promise<{ tower: TestTower, ws: WebSocket, stillServes: () => Promise<void> }> {
  const up = await startUpstream()
  const tower = await startTower()
  const c = await addCluster(tower, cluster)
  t.after(async () => { await tower.stop(); await up.close() })
  const { ws } = await dialAgent(tower.server.agentPort, tower.registry.ca.certPem, { authorization: `Bearer ${c.token}`, [HEADER_CLUSTER]: cluster, [HEADER_AGENT_ID]: 'evil' })
  assert.ok(ws !== undefined)
  const stillServes = async (): Promise<void> => {
    const agent = await startAgent(tower, cluster, c.token, up)
    t.after(() => agent.stop())
    const r = await get(tlsOptions(tower.registry, c.port, callerCert(tower.registry, cluster)), '/echo')
    assert.equal(r.status, 200)
  }
  return { tower, ws, stillServes }
}

test('a peer breaking WebSocket framing gets a Close with the RFC code and a logged reason; the server keeps serving', async (t) => {
  const { tower, ws, stillServes } = await hostilePeer(t, 'badws')
  ws.send('a text frame on a binary transport')
  const [code] = await once(ws, 'close') as [number]
  assert.equal(code, 1003)
  // the operator sees why: the session's warning carries the framing error
  const logged = tower.logs.lines.filter((l) => l.level >= 40 && /websocket protocol error: text frame on a binary transport/.test(l.err?.message ?? ''))
  assert.ok(logged.length >= 1, 'the session close is logged with the framing error')
  await stillServes()
})

test('a peer sending malformed frames gets GoAway and a logged protocol error; the server keeps serving', async (t) => {
  const { tower, ws, stillServes } = await hostilePeer(t, 'bad')
  const frames: Buffer[] = []
  ws.on('message', (d: Buffer) => frames.push(d))
  // Version 7 is not yamux.
  ws.send(Buffer.from([7, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]))
  await once(ws, 'close')
  // Walk the yamux frames (12-byte headers; data frames carry a body): the
  // server may have opened a stream first (the version probe).
  const all = Buffer.concat(frames)
  let goAway = -1
  for (let i = 0; i + 12 <= all.length; i += 12 + (all[i + 1] === 0 ? all.readUInt32BE(i + 8) : 0)) {
    if (all[i + 1] === 3) { goAway = i; break }
  }
  assert.ok(goAway >= 0, 'no GoAway frame received')
  assert.equal(all.readUInt32BE(goAway + 8), 1, 'GoAway code must be protocol error')
  assert.ok(tower.logs.lines.some((l) => l.err?.code === 'TOWER_ERR_PROTOCOL' || /protocol/i.test(l.msg)))
  await stillServes()
})
