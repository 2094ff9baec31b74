/**
 * The agent endpoint against hostile and broken peers: names that are
 * properties of Object.prototype, handlers that throw, bad-token floods,
 * secrets in parse errors, and what the operator's log says.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import tls from 'node:tls'
import { AGENT_PATH, HEADER_MAX_STREAMS, SUBPROTOCOL } from '@tower/transport'
import { createAgentEndpoint } from '../src/agent-endpoint.ts'
import { TunnelPool } from '../src/tunnels.ts'
import { defaultServerConfig } from '../src/config.ts'
import type { FileRegistry } from '../src/registry/file-registry.ts'
import { dialAgent, rawTlsRequest, sinkLogger, startServer, statusOf, until } from './helpers.ts'

function upgradeRequest (cluster: string, token: string, extra = ''): string {
  return `GET ${AGENT_PATH} HTTP/1.1\r\nhost: localhost\r\nupgrade: websocket\r\nconnection: Upgrade\r\n` +
    `sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-protocol: ${SUBPROTOCOL}\r\n` +
    `tower-cluster: ${cluster}\r\ntower-agent-id: a1\r\nauthorization: Bearer ${token}\r\n${extra}\r\n`
}

async function healthz (port: number, caPem: string): Promise<number> {
  return statusOf(await rawTlsRequest(port, caPem, 'GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n'))
}

test('cluster names that are Object.prototype properties get an error answer and the server keeps serving', async (t) => {
  const ts = await startServer(t)
  await ts.registry.add('real')
  for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', 'prototype']) {
    const answer = await rawTlsRequest(ts.server.agentPort, ts.registry.ca.certPem, upgradeRequest(name, 'tower-agent_x'))
    assert.ok([400, 401].includes(statusOf(answer)), `${name}: ${answer.split('\r\n')[0]}`)
  }
  assert.equal(await healthz(ts.server.agentPort, ts.registry.ca.certPem), 200)
})

test('a handler that throws costs its own connection only', async (t) => {
  const ts = await startServer(t)
  const { logs, logger } = sinkLogger()
  const broken = {
    authenticateAgent () { throw new Error('injected handler bug') },
    verifyAgentToken () { throw new Error('injected handler bug') },
    find () { throw new Error('injected handler bug') }
  } as unknown as FileRegistry
  const endpoint = createAgentEndpoint({ registry: broken, tunnels: new TunnelPool(), tls: ts.registry.serverCertificate(), limits: defaultServerConfig.agentEndpoint, logger })
  endpoint.listen(0, '127.0.0.1')
  await once(endpoint, 'listening')
  t.after(() => { endpoint.closeAllConnections(); endpoint.close() })
  const port = (endpoint.address() as { port: number }).port
  const answer = await rawTlsRequest(port, ts.registry.ca.certPem, upgradeRequest('real', 'tower-agent_x'))
  assert.equal(answer, '', 'the failed connection is destroyed without an answer')
  assert.equal(await healthz(port, ts.registry.ca.certPem), 200, 'the endpoint keeps serving')
  const line = logs.find(/handler failed/)[0]
  assert.ok(line !== undefined, 'the failure is logged')
  assert.equal(line.err.message, 'injected handler bug')
})

test('a flood of bad-token handshakes does not keep a good agent out (authentication before admission)', async (t) => {
  const ts = await startServer(t, { agentEndpoint: { ...defaultServerConfig.agentEndpoint, acceptPerSecond: 0.001, acceptBurst: 1 } })
  const { token } = await ts.registry.add('good')
  for (let i = 0; i < 20; i++) {
    const answer = await rawTlsRequest(ts.server.agentPort, ts.registry.ca.certPem, upgradeRequest('good', 'tower-agent_wrong' + i))
    assert.equal(statusOf(answer), 401)
  }
  const agent = await dialAgent(ts, 'good', token)
  t.after(() => agent.session.destroy())
  assert.equal(ts.server.tunnels.count('good'), 1)
})

test('a draining server sends authenticated agents away with spread turns, and answers a bad token 401', async (t) => {
  const ts = await startServer(t, { agentEndpoint: { ...defaultServerConfig.agentEndpoint, acceptPerSecond: 0.5, acceptBurst: 10 } })
  const { token } = await ts.registry.add('drain')
  ts.server.setDraining(true)
  const retryAfter = (answer: string): number => Number(/\r\nretry-after: (\d+)\r\n/i.exec(answer)?.[1])
  const turns: number[] = []
  for (let i = 0; i < 4; i++) {
    const answer = await rawTlsRequest(ts.server.agentPort, ts.registry.ca.certPem, upgradeRequest('drain', token))
    assert.equal(statusOf(answer), 503)
    turns.push(retryAfter(answer))
  }
  // one turn every 2 s from now (the time between dials shortens the later ones by up to a second):
  // the draining replica's agents do not all come back in the same second
  assert.equal(turns[0], 1)
  for (const [k, s] of turns.entries()) assert.ok(k === 0 || (s <= 2 * k && s >= 2 * k - 1), `turns: ${turns.join(',')}`)
  const bad = await rawTlsRequest(ts.server.agentPort, ts.registry.ca.certPem, upgradeRequest('drain', 'tower-agent_wrong'))
  assert.equal(statusOf(bad), 401, 'no turn for an unauthenticated dial')
  const next = retryAfter(await rawTlsRequest(ts.server.agentPort, ts.registry.ca.certPem, upgradeRequest('drain', token)))
  // the fifth turn is 8 s from the first; had the bad dial taken one, it would be 10 s
  assert.ok(next <= 8 && next >= 7, `the bad dial took no turn: ${next}`)
  const logged = ts.logs.find('agent rejected').filter((l) => l.why === 'draining')
  assert.deepEqual(logged.map((l) => l.retryAfterS), [...turns, next], 'the log names each turn')
})

test('the 101 tells the agent the server\'s streams-per-agent limit', async (t) => {
  const ts = await startServer(t, { agentEndpoint: { ...defaultServerConfig.agentEndpoint, maxStreamsPerAgent: 77 } })
  const { token } = await ts.registry.add('lim')
  const socket = tls.connect({ host: '127.0.0.1', port: ts.server.agentPort, ca: ts.registry.ca.certPem, servername: 'localhost' })
  t.after(() => socket.destroy())
  await once(socket, 'secureConnect')
  socket.write(upgradeRequest('lim', token))
  const [head] = await once(socket, 'data') as [Buffer]
  assert.match(head.toString(), /^HTTP\/1\.1 101/)
  assert.match(head.toString(), new RegExp(`\r\n${HEADER_MAX_STREAMS}: 77\r\n`, 'i'))
})

test('a parse error is logged without the raw request bytes; a refused request without its query', async (t) => {
  const ts = await startServer(t)
  const secret = 'tower-agent_SECRETSECRETSECRET'
  // A header line without a colon is a parse error after the token was read.
  await rawTlsRequest(ts.server.agentPort, ts.registry.ca.certPem, `GET ${AGENT_PATH} HTTP/1.1\r\nauthorization: Bearer ${secret}\r\nbroken header line\r\n\r\n`)
  await rawTlsRequest(ts.server.agentPort, ts.registry.ca.certPem, upgradeRequest('x', 'y').replace(AGENT_PATH, `/other?token=${secret}`))
  await ts.logs.waitFor(/agent rejected/)
  await ts.logs.waitFor(/bad request/)
  for (const line of ts.logs.raw) {
    assert.ok(!line.includes('rawPacket'), `raw packet logged: ${line}`)
    assert.ok(!line.includes(secret), `secret logged: ${line}`)
    assert.ok(!line.includes('SECRET'), `secret logged: ${line}`)
  }
  assert.ok(ts.logs.find(/agent rejected/).some((l) => l.path === '/other'), 'the path is logged without its query')
})

test('unknown cluster and wrong token: same answer to the agent, different log lines', async (t) => {
  const ts = await startServer(t)
  await ts.registry.add('known')
  const unknown = await rawTlsRequest(ts.server.agentPort, ts.registry.ca.certPem, upgradeRequest('nosuch', 'tower-agent_x'))
  const wrong = await rawTlsRequest(ts.server.agentPort, ts.registry.ca.certPem, upgradeRequest('known', 'tower-agent_x'))
  assert.equal(statusOf(unknown), 401)
  const body = (a: string): string => a.slice(a.indexOf('\r\n\r\n'))
  assert.equal(body(unknown), body(wrong))
  await until(() => ts.logs.find('agent rejected').length >= 2, 5000, 'two rejections logged')
  const [a, b] = ts.logs.find('agent rejected')
  assert.equal(a!.why, 'unknown-cluster')
  assert.equal(b!.why, 'wrong-token')
})

test('session log lines carry one component key; a clean agent disconnect is info without a stack', async (t) => {
  const ts = await startServer(t)
  const { token } = await ts.registry.add('logs')
  const agent = await dialAgent(ts, 'logs', token)
  await until(() => ts.server.tunnels.count('logs') === 1, 5000, 'agent registered')
  agent.session.close()
  const line = await ts.logs.waitFor('agent disconnected')
  assert.equal(line.level, 30, 'info')
  assert.equal(line.err, undefined, 'no error or stack for a clean close')
  const muxLines = ts.logs.raw.filter((l) => l.includes('"cluster":"logs"') && l.includes('"agentId"'))
  assert.ok(muxLines.length > 0)
  for (const l of muxLines) assert.ok((l.match(/"component":/g) ?? []).length <= 1, `duplicate component key: ${l}`)
})

test('an agent that ends its WebSocket with Close 1000 is logged at info, without a stack', async (t) => {
  const ts = await startServer(t)
  const { token } = await ts.registry.add('bye')
  const agent = await dialAgent(ts, 'bye', token)
  t.after(() => agent.session.destroy())
  await until(() => ts.server.tunnels.count('bye') === 1, 5000, 'agent registered')
  agent.transport.end()
  const line = await ts.logs.waitFor('agent disconnected')
  assert.equal(line.level, 30, 'info')
  assert.equal(line.err, undefined)
})

test('streams the agent opens are refused and hold nothing on the server', async (t) => {
  const ts = await startServer(t)
  // Passthrough: the server opens no stream of its own (no version probe), so it holds only what the agent opened.
  const { token } = await ts.registry.add('inbound', { mode: 'passthrough' })
  const agent = await dialAgent(ts, 'inbound', token)
  t.after(() => agent.session.destroy())
  await until(() => ts.server.tunnels.count('inbound') === 1, 5000, 'agent registered')
  const resets: string[] = []
  for (let i = 0; i < 8; i++) {
    const s = agent.session.open()
    s.on('error', (err: Error & { code?: string }) => resets.push(err.code ?? ''))
    s.write(Buffer.alloc(16 * 1024))
  }
  // Frames are handled in order: once the ping's answer is back, the SYNs were seen.
  await agent.session.ping()
  assert.equal(ts.server.tunnels.tunnels('inbound')[0]!.session.numStreams, 0)
  await until(() => resets.length === 8, 5000, 'every inbound stream reset')
  assert.ok(resets.every((c) => c === 'TOWER_ERR_STREAM_RESET'))
})

test('an agent that reconnects with the same id replaces its old session', async (t) => {
  const ts = await startServer(t)
  const { token } = await ts.registry.add('blip')
  const first = await dialAgent(ts, 'blip', token, 'same-id')
  t.after(() => first.session.destroy())
  await until(() => ts.server.tunnels.count('blip') === 1, 5000, 'first agent registered')
  const old = ts.server.tunnels.tunnels('blip')[0]!.session
  const second = await dialAgent(ts, 'blip', token, 'same-id')
  t.after(() => second.session.destroy())
  await until(() => old.closed, 5000, 'the old session to close')
  assert.equal(ts.server.tunnels.count('blip'), 1)
  assert.notEqual(ts.server.tunnels.tunnels('blip')[0]!.session, old)
})
