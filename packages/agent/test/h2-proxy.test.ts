// Proxy mode over an h2 upstream: the same behaviours as over HTTP/1.1
// (proxy.test.ts) — credentials, impersonation, hop-by-hop, bodies, aborts,
// truncation, 400 and 502 — now through the h2 session pool.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import type { IncomingMessage } from 'node:http'
import { Agent } from '../src/index.ts'
import { fetchText, startFakeServer } from './fixtures/fake-server.ts'
import { createTestCa } from './fixtures/tls.ts'
import { JOIN_TOKEN, SA_TOKEN } from './harness.ts'
import { h2Rig, openWatch, until } from './h2-rig.ts'

interface Echo { session: number, alpn: string, method: string, path: string, headers: Record<string, string | string[]>, rawHeaders: string[] }

test('h2: Authorization replaced, Impersonate-* kept (repeated as repeated fields), hop-by-hop, Host and Expect dropped', async (t) => {
  const { server, upstream, agent } = await h2Rig(t)
  const res = await fetchText(server.request('/echo?x=1', {
    headers: {
      authorization: 'Bearer caller-token',
      'impersonate-user': 'alice',
      'impersonate-group': ['dev', 'ops'],
      'x-custom': 'yes',
      'proxy-authorization': 'Basic c2VjcmV0',
      te: 'trailers',
      connection: 'keep-alive, x-drop-me, Impersonate-User',
      'x-drop-me': '1'
    }
  }))
  assert.equal(res.status, 200)
  const seen = JSON.parse(res.body) as Echo
  assert.equal(seen.alpn, 'h2')
  assert.equal(seen.path, '/echo?x=1')
  assert.equal(seen.headers.authorization, `Bearer ${SA_TOKEN}`)
  assert.equal(seen.headers[':authority'], new URL(upstream.url).host)
  assert.equal(seen.headers[':scheme'], 'https')
  assert.equal(seen.headers['impersonate-user'], 'alice')
  const groups = seen.rawHeaders.flatMap((h, i) => i % 2 === 0 && h === 'impersonate-group' ? [seen.rawHeaders[i + 1]] : [])
  assert.deepEqual(groups, ['dev', 'ops'])
  assert.equal(seen.headers['x-custom'], 'yes')
  for (const gone of ['proxy-authorization', 'te', 'x-drop-me', 'connection', 'host', 'keep-alive']) {
    assert.equal(seen.headers[gone], undefined, gone)
  }
  assert.equal(agent.upstreamH2?.h2Requests, 1)
})

test('h2: a chunked POST body is streamed; the response head and body come back', async (t) => {
  const { server, upstream } = await h2Rig(t)
  const req = server.request('/echo', { method: 'POST', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } })
  req.write('{"a":')
  const res = await fetchText(req, '1}')
  assert.equal(res.status, 200)
  assert.equal(res.headers['content-type'], 'application/json')
  const last = upstream.requests[upstream.requests.length - 1]!
  assert.equal(last.method, 'POST')
  assert.equal(last.headers['transfer-encoding'], undefined)
})

test('h2: a watch aborted by the tunnel client is reset upstream at once (RST_STREAM)', async (t) => {
  const { server, upstream, agent } = await h2Rig(t)
  const watch = await openWatch(server)
  assert.match(await watch.nextLine(), /"first"/)
  const closed = once(upstream.events, 'watch-closed')
  const at = Date.now()
  watch.destroy()
  await closed
  assert.ok(Date.now() - at < 1000)
  await until(() => agent.upstreamH2?.streams === 0)
  // the session stays up for the next request
  assert.equal(agent.upstreamH2?.sessions, 1)
})

test('h2: an upstream RST mid-response (/die) resets the tunnel stream, never a clean end', async (t) => {
  const { server } = await h2Rig(t)
  const req = server.request('/die')
  req.on('error', () => {})
  req.end()
  const [res] = await once(req, 'response') as [IncomingMessage]
  assert.equal(res.statusCode, 200)
  let got = 0
  res.on('data', (c: Buffer) => { got += c.length })
  const outcome = await new Promise<string>((resolve) => {
    res.once('end', () => resolve('end'))
    res.once('aborted', () => resolve('aborted'))
    res.once('error', () => resolve('error'))
  })
  assert.notEqual(outcome, 'end')
  assert.ok(got < 1024 * 1024)
})

test('h2: a request target that is not a path is answered 400 and never reaches the upstream', async (t) => {
  const { server, upstream } = await h2Rig(t)
  const st = server.open('http')
  st.on('error', () => {})
  st.write('GET http://169.254.169.254/latest HTTP/1.1\r\nHost: x\r\n\r\n')
  let text = ''
  for await (const c of st) text += String(c)
  assert.match(text, /^HTTP\/1.1 400/)
  assert.equal(upstream.requests.length, 0)
})

test('h2 mode, upstream unreachable: 502 with the same Status as over HTTP/1.1', async (t) => {
  const server = await startFakeServer({ token: JOIN_TOKEN })
  const ca = createTestCa('unused')
  const agent = new Agent({
    serverUrl: server.url,
    allowInsecureWs: true,
    cluster: 'test',
    token: JOIN_TOKEN,
    // port 1 on loopback: refused
    upstream: { kind: 'url', url: 'https://127.0.0.1:1', caPem: ca.certPem },
    reconnectMinMs: 10,
    reconnectMaxMs: 50
  })
  t.after(async () => {
    await server.close()
    await agent.stop()
  })
  agent.start()
  await server.nextSession()
  const res = await fetchText(server.request('/api/v1/namespaces'))
  assert.equal(res.status, 502)
  const status = JSON.parse(res.body) as { kind: string, reason: string, message: string }
  assert.equal(status.kind, 'Status')
  assert.equal(status.reason, 'InternalError')
  assert.equal(status.message, 'tower agent: upstream unreachable: connect ECONNREFUSED 127.0.0.1:1')
  assert.equal(agent.upstreamH2?.protocol, 'unknown')
})

test('h2: a 64 MB response with a paused tunnel reader: the upstream stops producing, then all of it arrives', async (t) => {
  const { server, upstream } = await h2Rig(t)
  const total = 64 * 1024 * 1024
  const req = server.request(`/big?bytes=${total}`)
  req.on('error', () => {})
  req.end()
  const [res] = await once(req, 'response') as [IncomingMessage]
  assert.equal(res.statusCode, 200)
  assert.equal(res.headers['content-length'], String(total))
  res.pause()
  // wait until production stops (the windows are full), within a deadline
  let last = -1
  const deadline = Date.now() + 10_000
  while (upstream.produced !== last && Date.now() < deadline) {
    last = upstream.produced
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  t.diagnostic(`produced ${upstream.produced} B of ${total} while the tunnel reader was paused`)
  // about the h2 stream window (1 MiB) plus the mux window: 1.06 MB measured
  assert.ok(upstream.produced < 4 * 1024 * 1024, `produced ${upstream.produced} B while the reader was paused`)
  let got = 0
  res.on('data', (c: Buffer) => { got += c.length })
  res.resume()
  await once(res, 'end')
  assert.equal(got, total)
})
