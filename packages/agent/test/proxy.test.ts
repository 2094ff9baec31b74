// Proxy mode (kind 'http'): plain requests re-originated to the upstream.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import type { IncomingMessage } from 'node:http'
import v8 from 'node:v8'
import vm from 'node:vm'
import { rig, SA_TOKEN } from './harness.ts'
import { fetchText } from './fixtures/fake-server.ts'

test('GET JSON through the tunnel', async (t) => {
  const { server } = await rig(t)
  const res = await fetchText(server.request('/api/v1/namespaces'))
  assert.equal(res.status, 200)
  assert.equal(res.headers['content-type'], 'application/json')
  const list = JSON.parse(res.body) as { kind: string, items: unknown[] }
  assert.equal(list.kind, 'NamespaceList')
  assert.equal(list.items.length, 2)
})

test('Authorization from the tunnel is replaced; Impersonate-* and other headers are kept; hop-by-hop dropped', async (t) => {
  const { server, upstream } = await rig(t)
  const res = await fetchText(server.request('/echo?x=1', {
    headers: {
      authorization: 'Bearer caller-token',
      'impersonate-user': 'alice',
      'impersonate-group': ['dev', 'ops'],
      'x-custom': 'yes',
      'proxy-authorization': 'Basic c2VjcmV0',
      te: 'trailers',
      connection: 'keep-alive, x-drop-me',
      'x-drop-me': '1'
    }
  }))
  assert.equal(res.status, 200)
  const seen = JSON.parse(res.body) as { url: string, rawHeaders: string[], headers: Record<string, string | string[]> }
  assert.equal(seen.url, '/echo?x=1')
  assert.equal(seen.headers.authorization, `Bearer ${SA_TOKEN}`)
  assert.equal(seen.rawHeaders.filter((h) => h.toLowerCase() === 'authorization').length, 1)
  assert.equal(seen.headers['impersonate-user'], 'alice')
  // both groups arrive as separate headers
  const groups = seen.rawHeaders.flatMap((h, i) => i % 2 === 0 && h.toLowerCase() === 'impersonate-group' ? [seen.rawHeaders[i + 1]] : [])
  assert.deepEqual(groups, ['dev', 'ops'])
  assert.equal(seen.headers['x-custom'], 'yes')
  assert.equal(seen.headers['proxy-authorization'], undefined)
  assert.equal(seen.headers.te, undefined)
  assert.equal(seen.headers['x-drop-me'], undefined)
  assert.equal(seen.headers.host, `127.0.0.1:${upstream.port}`)
})

test('Connection cannot be used to strip Impersonate-* headers', async (t) => {
  const { server } = await rig(t)
  const res = await fetchText(server.request('/echo', { headers: { 'impersonate-user': 'alice', connection: 'Impersonate-User' } }))
  const seen = JSON.parse(res.body) as { headers: Record<string, string> }
  assert.equal(seen.headers['impersonate-user'], 'alice')
})

test('a POST body is streamed to the upstream', async (t) => {
  const { server, upstream } = await rig(t)
  const req = server.request('/echo', { method: 'POST', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } })
  req.write('{"a":')
  const res = await fetchText(req, '1}')
  assert.equal(res.status, 200)
  const last = upstream.requests[upstream.requests.length - 1]
  assert.equal(last.method, 'POST')
  assert.equal(last.headers['transfer-encoding'], 'chunked')
})

test('keep-alive: several requests on one tunnel stream', async (t) => {
  const { server } = await rig(t)
  const http = await import('node:http')
  const st = server.open('http')
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  agent.createConnection = () => st as never
  t.after(() => agent.destroy())
  for (let i = 0; i < 3; i++) {
    const res = await fetchText(http.request({ host: 'x', path: '/api/v1/namespaces', agent }))
    assert.equal(res.status, 200)
  }
  assert.equal(server.session?.numStreams, 1)
})

test('a request followed by FIN (half-close) still gets its whole response, then the stream ends', async (t) => {
  const { server } = await rig(t)
  const st = server.open('http')
  st.end('GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\n\r\n')
  let text = ''
  for await (const c of st) text += String(c)
  assert.match(text, /^HTTP\/1.1 200/)
  assert.match(text, /NamespaceList/)
})

test('upstream connections are kept alive and reused', async (t) => {
  const { server, upstream } = await rig(t)
  const before = upstream.connections
  for (let i = 0; i < 20; i++) {
    const res = await fetchText(server.request('/api/v1/namespaces'))
    assert.equal(res.status, 200)
  }
  assert.equal(upstream.connections - before, 1)
})

test('a watch streams events as they happen', async (t) => {
  const { server, upstream } = await rig(t)
  const req = server.request('/watch?watch=true')
  req.end()
  const [res] = await once(req, 'response') as [IncomingMessage]
  assert.equal(res.statusCode, 200)
  res.setEncoding('utf8')
  const lines: string[] = []
  let buf = ''
  const nextLine = async (): Promise<string> => {
    while (!buf.includes('\n')) {
      const [c] = await once(res, 'data') as [string]
      buf += c
    }
    const i = buf.indexOf('\n')
    const line = buf.slice(0, i)
    buf = buf.slice(i + 1)
    lines.push(line)
    return line
  }
  assert.match(await nextLine(), /"first"/)
  for (let i = 0; i < 5; i++) {
    upstream.pushWatchEvent({ type: 'MODIFIED', object: { metadata: { name: `n${i}` } } })
    assert.match(await nextLine(), new RegExp(`"n${i}"`))
  }
  const closed = once(upstream.events, 'watch-closed')
  req.destroy()
  await closed
})

test('a client abort closes the upstream request within a second', async (t) => {
  const { server, upstream } = await rig(t)
  const req = server.request('/slow')
  req.on('error', () => {})
  req.end()
  await once(upstream.events, 'request')
  const started = Date.now()
  const closed = once(upstream.events, 'slow-closed')
  req.destroy()
  await closed
  assert.ok(Date.now() - started < 1000, `upstream closed after ${Date.now() - started} ms`)
})

test('a watch aborted by the client releases the upstream watch', async (t) => {
  const { server, upstream } = await rig(t)
  const req = server.request('/watch')
  req.on('error', () => {})
  req.end()
  const [res] = await once(req, 'response') as [IncomingMessage]
  await once(res, 'data')
  const started = Date.now()
  const closed = once(upstream.events, 'watch-closed')
  res.destroy()
  req.destroy()
  await closed
  assert.ok(Date.now() - started < 1000)
})

for (const path of ['/die', '/die-chunked']) {
  test(`an upstream that dies mid-response (${path}) errors the client, never a clean end`, async (t) => {
    const { server } = await rig(t)
    const req = server.request(path)
    const failed = new Promise<string>((resolve) => req.once('error', (err: Error & { code?: string }) => resolve(`error ${err.code}`)))
    req.end()
    const [res] = await once(req, 'response') as [IncomingMessage]
    assert.equal(res.statusCode, 200)
    let bytes = 0
    res.on('data', (c: Buffer) => { bytes += c.length })
    const outcome = await Promise.race([
      failed,
      new Promise<string>((resolve) => {
        res.once('end', () => resolve('end'))
        res.once('error', (err: Error & { code?: string }) => resolve(`error ${err.code}`))
      })
    ])
    assert.notEqual(outcome, 'end', `got a clean end after ${bytes} bytes`)
    assert.ok(bytes > 0 && bytes < 1024 * 1024, `got ${bytes} bytes`)
  })
}

test('an unreachable upstream answers 502 with a Status body whose reason is InternalError (a 502 is never ServiceUnavailable)', async (t) => {
  const { server } = await rig(t, { agent: { upstream: { kind: 'url', url: 'https://127.0.0.1:1', insecureSkipVerify: true } } })
  const res = await fetchText(server.request('/api'))
  assert.equal(res.status, 502)
  const status = JSON.parse(res.body) as Record<string, unknown>
  assert.equal(status.kind, 'Status')
  assert.equal(status.status, 'Failure')
  assert.equal(status.reason, 'InternalError')
  assert.equal(status.code, 502)
  assert.match(String(status.message), /^tower agent: upstream unreachable: .*ECONNREFUSED/)
})

test('a stream that never sends a request head is reset after headersTimeoutMs', async (t) => {
  const { server } = await rig(t, { agent: { headersTimeoutMs: 100 } })
  const st = server.open('http')
  st.write('GET / HTT')
  const started = Date.now()
  const [err] = await once(st, 'error') as [{ code: string }]
  assert.equal(err.code, 'TOWER_ERR_STREAM_RESET')
  assert.ok(Date.now() - started >= 90)
})

test('oversized request headers are answered 431 with a Status (RequestEntityTooLarge) by the shared writer', async (t) => {
  const { server } = await rig(t, { agent: { maxHeaderSize: 4096 } })
  const res = await fetchText(server.request('/echo', { headers: { 'x-big': 'a'.repeat(8000) } }))
  assert.equal(res.status, 431)
  assert.equal(res.headers.connection, 'close')
  const status = JSON.parse(res.body) as Record<string, unknown>
  assert.equal(status.kind, 'Status')
  assert.equal(status.reason, 'RequestEntityTooLarge')
  assert.match(String(status.message), /4096 bytes/)
})

test('a 100 MB response read slowly: backpressure reaches the upstream and memory stays small', async (t) => {
  v8.setFlagsFromString('--expose-gc')
  const gc = vm.runInNewContext('gc') as () => void
  const { server, upstream } = await rig(t)
  const total = 100 * 1024 * 1024
  gc()
  const before = process.memoryUsage().arrayBuffers
  const req = server.request(`/big?bytes=${total}`)
  req.end()
  const [res] = await once(req, 'response') as [IncomingMessage]
  res.pause()

  // the reader reads nothing: production must stop well short of the total
  const { waitForStall } = await import('./stall.ts')
  const stalledAt = await waitForStall(() => upstream.produced)
  gc()
  const held = process.memoryUsage().arrayBuffers - before
  assert.ok(stalledAt < 40 * 1024 * 1024, `upstream produced ${stalledAt} bytes for a paused reader`)
  assert.ok(held < 8 * 1024 * 1024, `userland holds ${held} bytes of buffers for a paused reader`)

  // then reading slowly drains it all, intact
  let received = 0
  let ok = true
  res.on('data', (c: Buffer) => {
    received += c.length
    if (c[0] !== 0x61 || c[c.length - 1] !== 0x61) ok = false
  })
  res.resume()
  await once(res, 'end')
  assert.equal(received, total)
  assert.ok(ok)
})
