// The agent's connection to the server: TLS, token, reconnect, backoff, proxy.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { Agent } from '../src/index.ts'
import { captureLogger, JOIN_TOKEN, rig, waitForLog } from './harness.ts'
import { fetchText, startFakeServer } from './fixtures/fake-server.ts'
import { startTestUpstream } from './fixtures/upstream.ts'
import { startConnectProxy } from './fixtures/connect-proxy.ts'
import { createTestCa } from './fixtures/tls.ts'
import { AGENT_PATH, HEADER_CLUSTER, HEADER_MAX_STREAMS, SUBPROTOCOL } from '@tower/transport'
import type { MuxStream } from '@tower/mux'

async function fixtures (t: import('node:test').TestContext) {
  const upstream = await startTestUpstream()
  t.after(() => upstream.close())
  return { upstream, upstreamConfig: { kind: 'url' as const, url: upstream.url, caPem: upstream.caPem, token: 'sa' } }
}

test('wss: the server certificate is verified against the CA and the handshake carries token, cluster, agent id, subprotocol', async (t) => {
  const { upstream, upstreamConfig } = await fixtures(t)
  const ca = createTestCa('tower server ca')
  const server = await startFakeServer({ token: JOIN_TOKEN, tls: ca.issue({ cn: 'tower', ips: ['127.0.0.1'] }) })
  t.after(() => server.close())
  const agent = new Agent({ serverUrl: server.url, cluster: 'prod-eu', token: JOIN_TOKEN, caPem: ca.certPem, upstream: upstreamConfig, agentId: 'agent-1' })
  t.after(() => agent.stop())
  const connected = once(agent, 'connected')
  agent.start()
  await connected
  assert.equal(agent.connected, true)
  const a = server.attempts[0]
  assert.equal(a.authorization, `Bearer ${JOIN_TOKEN}`)
  assert.equal(a.cluster, 'prod-eu')
  assert.equal(a.agentId, 'agent-1')
  assert.equal(a.protocol, SUBPROTOCOL)
  await server.nextSession()
  const res = await fetchText(server.request('/api/v1/namespaces'))
  assert.equal(res.status, 200)
  void upstream
})

test('wss: a server certificate from another CA is refused, and retried', async (t) => {
  const { upstreamConfig } = await fixtures(t)
  const ca = createTestCa('tower server ca')
  const other = createTestCa('someone else')
  const server = await startFakeServer({ token: JOIN_TOKEN, tls: other.issue({ cn: 'evil', ips: ['127.0.0.1'] }) })
  t.after(() => server.close())
  const logger = captureLogger()
  const agent = new Agent({ serverUrl: server.url, cluster: 'c', token: JOIN_TOKEN, caPem: ca.certPem, upstream: upstreamConfig, logger, reconnectMinMs: 10, reconnectMaxMs: 20 })
  t.after(() => agent.stop())
  agent.start()
  const first = await waitForLog(logger.entries, (e) => e.level === 'warn' && /cannot connect/.test(e.msg ?? ''))
  assert.match(first.msg ?? '', /not trusted/)
  await waitForLog(logger.entries, (e) => e.obj.attempt === 2)
  assert.equal(server.attempts.length, 0, 'the token never reached the impostor')
  assert.equal(agent.connected, false)
})

test('wss with insecureSkipVerify connects and warns at every connect', async (t) => {
  const { upstreamConfig } = await fixtures(t)
  const other = createTestCa('self signed')
  const server = await startFakeServer({ token: JOIN_TOKEN, tls: other.issue({ cn: 'x', ips: ['127.0.0.1'] }) })
  t.after(() => server.close())
  const logger = captureLogger()
  const agent = new Agent({ serverUrl: server.url, cluster: 'c', token: JOIN_TOKEN, insecureSkipVerify: true, upstream: upstreamConfig, logger })
  t.after(() => agent.stop())
  const connected = once(agent, 'connected')
  agent.start()
  await connected
  assert.ok(logger.entries.some((e) => e.level === 'warn' && /NOT verified/.test(e.msg ?? '')))
})

test('ws:// is refused unless allowInsecureWs is set; wss without a CA is refused', () => {
  const upstream = { kind: 'url' as const, url: 'https://127.0.0.1:1' }
  assert.throws(() => new Agent({ serverUrl: 'ws://127.0.0.1:1', cluster: 'c', token: 't', upstream }), { code: 'TOWER_ERR_INVALID_ARG', message: /allowInsecureWs/ })
  assert.throws(() => new Agent({ serverUrl: 'wss://127.0.0.1:1', cluster: 'c', token: 't', upstream }), { code: 'TOWER_ERR_INVALID_ARG', message: /caPem/ })
  const a = new Agent({ serverUrl: 'ws://127.0.0.1:1', allowInsecureWs: true, cluster: 'c', token: 't', upstream })
  assert.equal(typeof a.agentId, 'string')
})

test('reconnects after the server restarts on the same port', async (t) => {
  const { server, agent, upstream } = await rig(t)
  const port = server.port
  const disconnected = once(agent, 'disconnected')
  await server.close()
  await disconnected
  assert.equal(agent.connected, false)
  const again = await startFakeServer({ token: JOIN_TOKEN, port })
  t.after(() => again.close())
  await once(agent, 'connected')
  await again.nextSession()
  const res = await fetchText(again.request('/api/v1/namespaces'))
  assert.equal(res.status, 200)
  void upstream
})

test('401: logged as a rejected token, retried at the maximum backoff, connects once accepted', async (t) => {
  let refusals = 2
  const { logs, server } = await rig(t, {
    server: { refuse: () => refusals-- > 0 ? 401 : undefined },
    agent: { reconnectMinMs: 5, reconnectMaxMs: 40 }
  })
  const rejected = logs.filter((e) => e.level === 'error' && /agent token rejected by server \(401\)/.test(e.msg ?? ''))
  assert.equal(rejected.length, 2)
  for (const e of rejected) {
    assert.equal(e.obj.retryInMs, 40)
    assert.equal(e.obj.status, 401)
    // no token and no stack in the log line
    assert.doesNotMatch(JSON.stringify(e), new RegExp(JOIN_TOKEN))
    assert.equal(e.obj.err, undefined)
  }
  assert.deepEqual(rejected.map((e) => e.obj.attempt), [1, 2])
  assert.equal(server.attempts.filter((a) => a.status === 401).length, 2)
})

test('other refusals are logged with the reason and retried with backoff', async (t) => {
  let refusals = 1
  const { logs } = await rig(t, { server: { refuse: () => refusals-- > 0 ? 503 : undefined } })
  const warn = logs.find((e) => e.level === 'warn' && /cannot connect/.test(e.msg ?? ''))
  assert.ok(warn !== undefined)
  assert.equal(warn.obj.status, 503)
  assert.match(String(warn.obj.reason), /503.*refused by test/)
})

test('a 503 with Retry-After waits the server\'s turn, not the backoff, and is logged at info', async (t) => {
  let refusals = 1
  const started = Date.now()
  const { logs, server } = await rig(t, {
    server: { refuse: () => refusals-- > 0 ? 503 : undefined, refusalHeaders: { 'retry-after': '1' } },
    agent: { reconnectMinMs: 10_000, reconnectMaxMs: 20_000 }
  })
  assert.ok(Date.now() - started < 3000, `connected after ${Date.now() - started} ms; a 10 s backoff would be later`)
  const line = logs.find((e) => /server asked to come back later/.test(e.msg ?? ''))
  assert.ok(line !== undefined, 'the turn is logged')
  assert.equal(line.level, 'info')
  assert.equal(line.obj.retryAfterS, 1)
  assert.ok(Number(line.obj.retryInMs) >= 100 && Number(line.obj.retryInMs) <= 1000, `retry in ${String(line.obj.retryInMs)} ms`)
  assert.equal(server.attempts.filter((a) => a.status === 503).length, 1)
  assert.ok(!logs.some((e) => e.level === 'warn' && /cannot connect/.test(e.msg ?? '')), 'a paced agent is not a fault')
})

test('a Retry-After longer than the maximum backoff waits the maximum; one on a 500 is ignored', async (t) => {
  let refusals = 2
  const { logs } = await rig(t, {
    server: { refuse: () => refusals-- > 0 ? (refusals === 1 ? 503 : 500) : undefined, refusalHeaders: { 'retry-after': '3600' } },
    agent: { reconnectMinMs: 5, reconnectMaxMs: 60 }
  })
  const asked = logs.find((e) => /server asked to come back later/.test(e.msg ?? ''))
  assert.equal(asked?.obj.retryInMs, 60)
  const other = logs.find((e) => e.level === 'warn' && /cannot connect/.test(e.msg ?? ''))
  assert.equal(other?.obj.status, 500)
  assert.ok(Number(other?.obj.retryInMs) <= 60)
})

test('HTTPS_PROXY is used for the server connection (CONNECT), and NO_PROXY bypasses it', async (t) => {
  const proxy = await startConnectProxy()
  t.after(() => proxy.close())
  const { server } = await rig(t, { agent: { httpsProxy: proxy.url, noProxy: 'example.com,.internal' } })
  assert.deepEqual(proxy.targets, [`127.0.0.1:${server.port}`])
  const res = await fetchText(server.request('/api/v1/namespaces'))
  assert.equal(res.status, 200)

  const direct = await startConnectProxy()
  t.after(() => direct.close())
  const { agent } = await rig(t, { agent: { httpsProxy: direct.url, noProxy: 'localhost, 127.0.0.0/8' } })
  assert.equal(agent.connected, true)
  assert.deepEqual(direct.targets, [])
})

test('stop() closes the session and stops reconnecting', async (t) => {
  const { server, agent } = await rig(t)
  const session = await server.nextSession()
  const closed = once(session, 'close')
  await agent.stop()
  await closed
  assert.equal(agent.connected, false)
  const before = server.attempts.length
  // A negative check needs a window: a reconnect would come within the
  // 10-50 ms backoff, so 200 ms without one shows the loop has ended.
  await new Promise((resolve) => setTimeout(resolve, 200))
  assert.equal(server.attempts.length, before)
  await agent.stop() // idempotent
})

test('the handshake goes to the agent path', async (t) => {
  const { server } = await rig(t)
  assert.equal(server.attempts[0].status, 101)
  assert.ok(AGENT_PATH.startsWith('/'))
  assert.equal(HEADER_CLUSTER, 'tower-cluster')
})

/** Resolves with how a stream ended: 'reset' (RST from the agent) or 'open' once it carried a byte back. */
function outcome (st: MuxStream): Promise<'reset' | 'ended'> {
  return new Promise((resolve) => {
    st.once('error', () => resolve('reset'))
    st.once('close', () => resolve('ended'))
  })
}

test('the server\'s tower-max-streams above upstreamMaxSockets: one warning naming both numbers and the flag; streams beyond the upstream limit are refused', async (t) => {
  const { server, logs, agent } = await rig(t, {
    server: { responseHeaders: { [HEADER_MAX_STREAMS]: '8' } },
    agent: { upstreamMaxSockets: 3 }
  })
  const warn = await waitForLog(logs, (e) => e.level === 'warn' && /--upstream-max-sockets/.test(e.msg ?? ''))
  assert.equal(warn.obj.serverMaxStreams, 8)
  assert.equal(warn.obj.upstreamMaxSockets, 3)
  assert.match(warn.msg ?? '', /\b8\b/)
  assert.match(warn.msg ?? '', /\b3\b/)
  assert.equal(logs.filter((e) => /--upstream-max-sockets/.test(e.msg ?? '')).length, 1, 'one warning')

  // three streams wait for a request head; the fourth is refused by the agent's session
  const held = [server.open('http'), server.open('http'), server.open('http')]
  for (const st of held) st.on('error', () => {})
  const fourth = server.open('http')
  assert.equal(await outcome(fourth), 'reset')
  for (const st of held) assert.equal(st.destroyed, false)
  for (const st of held) st.destroy()
  assert.equal(agent.connected, true)
})

test('tower-max-streams at or below upstreamMaxSockets, absent or malformed: no warning', async (t) => {
  for (const value of ['3', undefined, 'lots', '-1', '99999999999999999999']) {
    const { logs } = await rig(t, {
      server: { responseHeaders: value === undefined ? {} : { [HEADER_MAX_STREAMS]: value } },
      agent: { upstreamMaxSockets: 3 }
    })
    assert.equal(logs.filter((e) => /--upstream-max-sockets/.test(e.msg ?? '')).length, 0, String(value))
  }
})

test('log lines bind each key once: agent, upstream and mux lines each carry one component', async (t) => {
  const upstream = await startTestUpstream()
  t.after(() => upstream.close())
  const { server, logs } = await rig(t, {
    upstream,
    // insecure: the upstream logs a warning at start; a limit of 1: the mux logs a refused stream
    agent: { upstream: { kind: 'url', url: upstream.url, insecureSkipVerify: true }, upstreamMaxSockets: 1 }
  })
  const held = server.open('http')
  held.on('error', () => {})
  const refused = server.open('http')
  refused.on('error', () => {})
  const mux = await waitForLog(logs, (e) => e.obj.component === 'mux' && /inbound stream reset/.test(e.msg ?? ''))
  const up = await waitForLog(logs, (e) => e.obj.component === 'upstream')
  const agentLine = await waitForLog(logs, (e) => e.obj.component === 'agent' && e.msg === 'connected to server')
  for (const e of [mux, up, agentLine]) {
    assert.equal(e.obj.cluster, 'test')
    assert.equal(typeof e.obj.agentId, 'string')
  }
  const doubled = logs.filter((e) => e.duplicateKeys.length > 0).map((e) => `${e.msg}: ${e.duplicateKeys.join(',')}`)
  assert.deepEqual(doubled, [])
  held.destroy()
})

/** Records what the fake server's end sees of a close, in order. */
function watchClose (server: Awaited<ReturnType<typeof startFakeServer>>, session: import('@tower/mux').Session): string[] {
  const seen: string[] = []
  session.on('goaway', (code) => seen.push(`goaway ${code}`))
  const transport = server.transport
  assert.ok(transport !== undefined)
  transport.on('error', (err: Error) => seen.push(`transport error: ${err.message}`))
  // the readable side ends only on a clean Close (1000, 1001, 1005)
  transport.on('end', () => seen.push('websocket close'))
  session.on('close', (err?: Error) => seen.push(err === undefined ? 'session closed' : `session closed: ${err.message}`))
  return seen
}

test('stop() is a clean close at the server, over before it resolves: GoAway, then WebSocket Close, no error', async (t) => {
  const { server, agent } = await rig(t)
  const session = await server.nextSession()
  const seen = watchClose(server, session)
  // let the agent's first (window-tuning) ping be answered: a Pong still queued when the Close arrives
  // is a write after close at the server (reported to the transport owner)
  await session.ping()
  await agent.stop()
  await new Promise((resolve) => setImmediate(resolve))
  assert.deepEqual(seen, ['goaway 0', 'websocket close', 'session closed'])
})
