import assert from 'node:assert/strict'
import { once } from 'node:events'
import http from 'node:http'
import http2 from 'node:http2'
import type { AddressInfo } from 'node:net'
import { test } from 'node:test'
import { BodyRelay } from '../src/body-relay.ts'
import { isWatchRequest, WatchDrain } from '../src/drain.ts'

test('isWatchRequest: ?watch=true|1 and /watch/ paths only', () => {
  assert.equal(isWatchRequest('/api/v1/pods?watch=true&resourceVersion=5'), true)
  assert.equal(isWatchRequest('/api/v1/pods?resourceVersion=5&watch=1'), true)
  assert.equal(isWatchRequest('/api/v1/watch/pods'), true)
  assert.equal(isWatchRequest('/api/v1/pods?watch=false'), false)
  assert.equal(isWatchRequest('/api/v1/pods'), false)
  assert.equal(isWatchRequest('/api/v1/pods?watchx=true'), false)
  assert.equal(isWatchRequest(undefined), false)
})

// An upstream that sends one whole event, then half of the next; a relay in between tracked by a WatchDrain.
async function rig (t: import('node:test').TestContext): Promise<{ drain: WatchDrain, url: string, upstreamSend: (s: string) => void, upstreamClosed: Promise<unknown> }> {
  let send: (s: string) => void = () => {}
  let closed!: (v: unknown) => void
  const upstreamClosed = new Promise((resolve) => { closed = resolve })
  const upstream = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.flushHeaders()
    send = (s) => res.write(s)
    res.on('close', () => closed(true))
  })
  upstream.listen(0, '127.0.0.1')
  await once(upstream, 'listening')
  const drain = new WatchDrain()
  const relay = http.createServer((req, res) => {
    http.get({ host: '127.0.0.1', port: (upstream.address() as AddressInfo).port, path: req.url }, (upRes) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.flushHeaders()
      const relay = new BodyRelay(upRes, res, { bodyEnded: () => {}, bodyFailed: () => res.destroy() })
      res.on('close', () => relay.stop())
      relay.watch(drain)
    })
  })
  relay.listen(0, '127.0.0.1')
  await once(relay, 'listening')
  t.after(() => { upstream.closeAllConnections(); upstream.close(); relay.closeAllConnections(); relay.close() })
  return { drain, url: `http://127.0.0.1:${(relay.address() as AddressInfo).port}/api/v1/pods?watch=true`, upstreamSend: (s) => send(s), upstreamClosed }
}

test('endAll ends a watch mid-event only after that event\'s newline, with a clean end, and resets the upstream', async (t) => {
  const { drain, url, upstreamSend, upstreamClosed } = await rig(t)
  const res = await new Promise<http.IncomingMessage>((resolve) => http.get(url, resolve))
  let body = ''
  res.setEncoding('utf8')
  const first = new Promise<void>((resolve) => res.on('data', (c: string) => { body += c; if (body.includes('\n')) resolve() }))
  upstreamSend('{"type":"ADDED","n":1}\n{"type":"MOD')
  await first
  await new Promise((resolve) => setTimeout(resolve, 50))
  assert.equal(drain.size, 1)
  assert.equal(drain.endAll(), 1)
  upstreamSend('IFIED","n":2}\n{"type":"DELETED"')
  const ended = await Promise.race([once(res, 'end').then(() => 'end'), once(res, 'aborted').then(() => 'aborted')])
  assert.equal(ended, 'end', 'the caller sees a clean end (chunked terminator)')
  assert.equal(res.complete, true)
  assert.deepEqual(body.split('\n'), ['{"type":"ADDED","n":1}', '{"type":"MODIFIED","n":2}', ''])
  await upstreamClosed
  assert.equal(drain.size, 0)
})

test('a watch that starts after endAll is ended at once', async (t) => {
  const { drain, url } = await rig(t)
  drain.endAll()
  const res = await new Promise<http.IncomingMessage>((resolve) => http.get(url, resolve))
  res.resume()
  await once(res, 'end')
  assert.equal(res.complete, true)
})

test('h2: endAll ends a watch mid-event after that event\'s newline with a clean END_STREAM, and resets the upstream', async (t) => {
  let send: (s: string) => void = () => {}
  let upstreamClosed!: () => void
  const closed = new Promise<void>((resolve) => { upstreamClosed = resolve })
  const upstream = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.flushHeaders()
    send = (s) => res.write(s)
    res.on('close', () => upstreamClosed())
  })
  upstream.listen(0, '127.0.0.1')
  await once(upstream, 'listening')
  const drain = new WatchDrain()
  const relay = http2.createServer()
  relay.on('stream', (stream, headers) => {
    http.get({ host: '127.0.0.1', port: (upstream.address() as AddressInfo).port, path: String(headers[':path']) }, (upRes) => {
      stream.respond({ ':status': 200, 'content-type': 'application/json' })
      const body = new BodyRelay(upRes, stream, { bodyEnded: () => {}, bodyFailed: () => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR) })
      stream.on('close', () => body.stop())
      body.watch(drain)
    })
  })
  relay.listen(0, '127.0.0.1')
  await once(relay, 'listening')
  const client = http2.connect(`http://127.0.0.1:${(relay.address() as AddressInfo).port}`)
  t.after(() => { client.destroy(); relay.close(); upstream.closeAllConnections(); upstream.close() })
  const req = client.request({ ':path': '/api/v1/pods?watch=true' })
  req.setEncoding('utf8')
  let body = ''
  const first = new Promise<void>((resolve) => req.on('data', (c: string) => { body += c; if (body.includes('\n')) resolve() }))
  // The relay answers only once the upstream's head arrived, so `send` is set by now.
  await once(req, 'response')
  send('{"type":"ADDED","n":1}\n{"type":"MOD')
  await first
  await new Promise((resolve) => setTimeout(resolve, 50))
  assert.equal(drain.size, 1)
  assert.equal(drain.endAll(), 1)
  send('IFIED","n":2}\n{"type":"DELETED"')
  await once(req, 'end')
  await once(req, 'close')
  assert.equal(req.rstCode, http2.constants.NGHTTP2_NO_ERROR, 'a clean END_STREAM, not a reset')
  assert.deepEqual(body.split('\n'), ['{"type":"ADDED","n":1}', '{"type":"MODIFIED","n":2}', ''])
  await closed
  assert.equal(drain.size, 0)
})

