// The upstream h2 session pool, through the whole agent (fake server -> tunnel
// -> agent -> real node:http2 TLS server): stream limits, GOAWAY, fallback to
// HTTP/1.1, PING health, and what the counters say.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import http2 from 'node:http2'
import { Agent } from '../src/index.ts'
import { fetchText } from './fixtures/fake-server.ts'
import { h2Rig, openWatch, until } from './h2-rig.ts'

interface Echo { session: number, alpn: string, path: string }

test('past SETTINGS_MAX_CONCURRENT_STREAMS (2), a third watch opens a second session and all three get data', async (t) => {
  const { server, upstream, agent } = await h2Rig(t, { upstream: { maxConcurrentStreams: 2 } })
  const watches = []
  for (let i = 0; i < 3; i++) {
    const w = await openWatch(server)
    assert.equal(w.res.statusCode, 200)
    assert.match(await w.nextLine(), /"first"/)
    watches.push(w)
  }
  assert.equal(upstream.sessions, 2)
  assert.deepEqual(upstream.requests.map((r) => r.session), [1, 1, 2])
  const stats = agent.upstreamH2
  assert.equal(stats?.protocol, 'h2')
  assert.equal(stats?.sessions, 2)
  assert.equal(stats?.streams, 3)
  assert.equal(stats?.overflows, 0)
  assert.equal(stats?.peerMaxStreams, 2)
  upstream.pushWatchEvent({ type: 'MODIFIED', object: { metadata: { name: 'second' } } })
  for (const w of watches) assert.match(await w.nextLine(), /"second"/)
  for (const w of watches) w.destroy()
  await until(() => agent.upstreamH2?.streams === 0 && upstream.openStreams === 0)
})

test('GOAWAY: the request the peer did not process is replayed once on a new session; the watch it kept finishes; new requests go to the new session', async (t) => {
  const { server, upstream, agent } = await h2Rig(t)
  const watch = await openWatch(server)
  assert.match(await watch.nextLine(), /"first"/)
  // stream 3 on session 1: the server answers with GOAWAY(lastStreamID 1), so it is unprocessed
  const refused = await fetchText(server.request('/goaway'))
  assert.equal(refused.status, 200)
  assert.equal((JSON.parse(refused.body) as Echo).session, 2)
  assert.deepEqual(upstream.requests.filter((r) => r.path === '/goaway').map((r) => r.session), [1, 2])
  assert.equal(agent.upstreamH2?.retries, 1)
  // the watch (stream 1 <= lastStreamID) lives on in the draining session and ends cleanly
  upstream.pushWatchEvent({ type: 'MODIFIED', object: { metadata: { name: 'after-goaway' } } })
  assert.match(await watch.nextLine(), /"after-goaway"/)
  upstream.endWatches()
  assert.equal(await watch.outcome, 'end')
  const next = await fetchText(server.request('/echo'))
  assert.equal((JSON.parse(next.body) as Echo).session, 2)
  await until(() => agent.upstreamH2?.sessions === 1)
})

test('GOAWAY with an error mid-watch: the watch in flight ends with an error the tunnel client sees, never a clean end', async (t) => {
  const { server, upstream, agent } = await h2Rig(t)
  const watch = await openWatch(server)
  assert.match(await watch.nextLine(), /"first"/)
  upstream.killSessions(http2.constants.NGHTTP2_INTERNAL_ERROR)
  assert.equal(await watch.outcome, 'error')
  // and the pool recovers on a new session
  const res = await fetchText(server.request('/echo'))
  assert.equal(res.status, 200)
  assert.equal((JSON.parse(res.body) as Echo).session, 2)
  assert.equal(agent.upstreamH2?.dials, 2)
})

test('GOAWAY refusing a request with a small body of known length: the body is replayed on the new session', async (t) => {
  const { server, upstream, agent } = await h2Rig(t)
  const watch = await openWatch(server)
  assert.match(await watch.nextLine(), /"first"/)
  const body = JSON.stringify({ kind: 'ConfigMap', data: { a: 'x'.repeat(20_000) } })
  const req = server.request('/goaway', { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) } })
  const res = await fetchText(req, body)
  assert.equal(res.status, 200)
  const seen = JSON.parse(res.body) as Echo & { body: string }
  assert.equal(seen.session, 2)
  assert.equal(seen.body, body)
  assert.equal(agent.upstreamH2?.retries, 1)
  assert.deepEqual(upstream.requests.filter((r) => r.path === '/goaway').map((r) => r.session), [1, 2])
  watch.destroy()
})

test('GOAWAY refusing a request whose (chunked) body was already sent: a 502 Status saying so, no replay', async (t) => {
  const { server, upstream } = await h2Rig(t)
  // stream 1, so that the POST is stream 3, above the GOAWAY's lastStreamID
  const watch = await openWatch(server)
  assert.match(await watch.nextLine(), /"first"/)
  // no length: not kept for a replay
  const req = server.request('/goaway', { method: 'POST', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } })
  const res = await fetchText(req, '{"a":1}')
  assert.equal(res.status, 502)
  const status = JSON.parse(res.body) as { kind: string, message: string }
  assert.equal(status.kind, 'Status')
  assert.match(status.message, /^tower agent: upstream unreachable: .*body was already sent/)
  assert.equal(upstream.requests.filter((r) => r.path === '/goaway').length, 1)
  watch.destroy()
})

test('an upstream whose ALPN offers only http/1.1: the agent falls back, on the probe\'s own connection', async (t) => {
  const { server, upstream, agent } = await h2Rig(t, { upstream: { h1Only: true } })
  for (let i = 0; i < 3; i++) {
    const res = await fetchText(server.request('/echo'))
    assert.equal(res.status, 200)
    assert.equal((JSON.parse(res.body) as Echo).alpn, 'http/1.1')
  }
  assert.equal(agent.upstreamH2?.protocol, 'http/1.1')
  assert.equal(agent.upstreamH2?.h2Requests, 0)
  // one TLS connection in all: the ALPN probe became the first HTTP/1.1 connection
  assert.equal(upstream.sessions, 1)
})

test('a session whose peer stops answering is destroyed after the PING timeout; its watch errors; the next request dials anew', async (t) => {
  const { server, upstream, agent } = await h2Rig(t, { agent: { upstreamH2PingIntervalMs: 100, upstreamH2PingTimeoutMs: 300 } })
  const watch = await openWatch(server)
  assert.match(await watch.nextLine(), /"first"/)
  const frozenAt = Date.now()
  upstream.freeze()
  assert.equal(await watch.outcome, 'error')
  const took = Date.now() - frozenAt
  assert.ok(took >= 300, `destroyed after ${took} ms, before the PING timeout`)
  assert.equal(agent.upstreamH2?.sessions, 0)
  const res = await fetchText(server.request('/api/v1/namespaces'))
  assert.equal(res.status, 200)
  assert.equal(agent.upstreamH2?.dials, 2)
})

test('a live idle session answers PINGs and is kept', async (t) => {
  const { server, upstream, agent } = await h2Rig(t, { agent: { upstreamH2PingIntervalMs: 50, upstreamH2PingTimeoutMs: 200 } })
  const watch = await openWatch(server)
  assert.match(await watch.nextLine(), /"first"/)
  // ten intervals and more of silence on the watch
  await new Promise((resolve) => setTimeout(resolve, 700))
  assert.equal(agent.upstreamH2?.sessions, 1)
  upstream.pushWatchEvent({ type: 'MODIFIED', object: { metadata: { name: 'still-here' } } })
  assert.match(await watch.nextLine(), /"still-here"/)
  watch.destroy()
})

test('--upstream-http2 off: no pool, and no h2 offered in ALPN', async (t) => {
  const { server, agent, upstream } = await h2Rig(t, { upstream: { h1Only: true }, agent: { upstreamHttp2: 'off' } })
  const res = await fetchText(server.request('/echo'))
  assert.equal(res.status, 200)
  // the HTTP/1.1 pool offers no ALPN at all; in auto mode the probe offers h2 and http/1.1 (test above)
  assert.equal((JSON.parse(res.body) as { alpn: unknown }).alpn, false)
  assert.equal(agent.upstreamH2, undefined)
  assert.equal(upstream.sessions, 1)
})

test('h2 options are validated, naming the flag', () => {
  const base = { serverUrl: 'ws://127.0.0.1:1', allowInsecureWs: true, cluster: 'test', token: 'tok', upstream: { kind: 'url' as const, url: 'https://127.0.0.1:1' } }
  assert.throws(() => new Agent({ ...base, upstreamHttp2: 'on' as never }), { code: 'TOWER_ERR_INVALID_ARG', message: /upstreamHttp2 \(--upstream-http2\) must be "auto" or "off"/ })
  for (const bad of [0, 1.5, 1025, Number.NaN]) {
    assert.throws(() => new Agent({ ...base, upstreamH2MaxSessions: bad }), { code: 'TOWER_ERR_INVALID_ARG', message: /upstreamH2MaxSessions \(--upstream-h2-max-sessions\)/ }, String(bad))
  }
  assert.throws(() => new Agent({ ...base, upstreamH2PingTimeoutMs: -1 }), { code: 'TOWER_ERR_INVALID_ARG', message: /upstreamH2PingTimeoutMs/ })
  assert.doesNotThrow(() => new Agent({ ...base, upstreamHttp2: 'off', upstreamH2MaxSessions: 1024 }))
})
