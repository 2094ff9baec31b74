// The agent's request path against a rogue server: whatever a server sends on
// a tunnel stream, the agent talks to its configured upstream and to nothing
// else. A "metadata service" listens beside the upstream and must never see a
// connection.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import net from 'node:net'
import { duplexPair } from 'node:stream'
import type { AddressInfo } from 'node:net'
import type { MuxStream } from '@tower/mux'
import { rig, captureLogger } from './harness.ts'
import { createTunnelHttpServer } from '../src/http-server.ts'
import type { Upstream } from '../src/upstream.ts'

interface Bait { port: number, connections: () => number }

// A TCP listener standing in for 169.254.169.254: counts whoever reaches it.
async function bait (t: TestContext): Promise<Bait> {
  let n = 0
  const sockets = new Set<net.Socket>()
  const server = net.createServer((s) => {
    n++
    sockets.add(s)
    s.on('error', () => {})
    s.end('HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecret')
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => {
    for (const s of sockets) s.destroy()
    server.close()
  })
  return { port: (server.address() as AddressInfo).port, connections: () => n }
}

// Writes raw bytes on a fresh http stream and returns everything the agent sends back.
async function rawExchange (open: () => MuxStream, request: string): Promise<string> {
  const st = open()
  st.on('error', () => {})
  const chunks: Buffer[] = []
  st.on('data', (c: Buffer) => chunks.push(c))
  // our side ends once the agent has ended its own (connection: close)
  st.on('end', () => st.end())
  st.write(request)
  await closed(st)
  return Buffer.concat(chunks).toString()
}

// 'close', whether or not an 'error' came first (events.once would reject on it).
async function closed (s: NodeJS.EventEmitter & { destroyed: boolean }): Promise<void> {
  await new Promise<void>((resolve) => s.once('close', () => resolve()))
}

function statusOf (answer: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0)
}

test('absolute-form, scheme-relative and asterisk targets are refused with a 400 Status and never reach the upstream', async (t) => {
  const meta = await bait(t)
  const { server, upstream } = await rig(t)
  const hostile = [
    `GET http://127.0.0.1:${meta.port}/latest/meta-data/ HTTP/1.1\r\nHost: 127.0.0.1:${meta.port}\r\nConnection: close\r\n\r\n`,
    `GET https://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n`,
    `GET //127.0.0.1:${meta.port}/latest HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
    'OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
  ]
  const before = upstream.requests.length
  for (const request of hostile) {
    const answer = await rawExchange(() => server.open('http'), request)
    assert.equal(statusOf(answer), 400, `answer to ${JSON.stringify(request.split('\r\n')[0])}`)
    const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>
    assert.equal(body.kind, 'Status')
    assert.equal(body.reason, 'BadRequest')
  }
  assert.equal(upstream.requests.length, before, 'nothing reached the upstream')
  assert.equal(meta.connections(), 0, 'nothing reached the bait')
})

test('an absolute-form upgrade target is refused with 400 as well', async (t) => {
  const meta = await bait(t)
  const { server, upstream } = await rig(t)
  const before = upstream.requests.length
  const answer = await rawExchange(() => server.open('http'),
    `GET http://127.0.0.1:${meta.port}/ws HTTP/1.1\r\nHost: 127.0.0.1:${meta.port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`)
  assert.equal(statusOf(answer), 400)
  assert.match(answer, /\r\nconnection: close\r\n/i)
  assert.equal(upstream.requests.length, before)
  assert.equal(meta.connections(), 0)
})

test('CONNECT is never tunnelled: the stream closes and nothing is dialled', async (t) => {
  const meta = await bait(t)
  const { server } = await rig(t)
  const answer = await rawExchange(() => server.open('http'), `CONNECT 127.0.0.1:${meta.port} HTTP/1.1\r\nHost: 127.0.0.1:${meta.port}\r\n\r\n`)
  assert.doesNotMatch(answer, /^HTTP\/1\.1 200/)
  assert.equal(meta.connections(), 0)
})

test('a Host header naming another host is replaced by the upstream\'s own, once', async (t) => {
  const meta = await bait(t)
  const { server, upstream } = await rig(t)
  const answer = await rawExchange(() => server.open('http'),
    `GET /echo HTTP/1.1\r\nHost: 127.0.0.1:${meta.port}\r\nHost: 169.254.169.254\r\nX-Forwarded-Host: 169.254.169.254\r\nConnection: close\r\n\r\n`)
  // node:http refuses a duplicated Host itself; a single odd Host is served by the upstream
  if (statusOf(answer) === 400) {
    assert.equal(meta.connections(), 0)
  }
  const single = await rawExchange(() => server.open('http'), `GET /echo HTTP/1.1\r\nHost: 127.0.0.1:${meta.port}\r\nConnection: close\r\n\r\n`)
  assert.equal(statusOf(single), 200)
  const seen = upstream.requests[upstream.requests.length - 1]!
  assert.equal(seen.url, '/echo')
  const hosts = seen.rawHeaders.filter((_h, i) => i % 2 === 0 && seen.rawHeaders[i]!.toLowerCase() === 'host')
  assert.equal(hosts.length, 1)
  assert.equal(seen.headers.host, `127.0.0.1:${upstream.port}`)
  assert.equal(meta.connections(), 0)
})

test('a tcp stream whose preamble names another host still relays to the configured upstream only', async (t) => {
  const meta = await bait(t)
  const { server, upstream } = await rig(t)
  const session = server.session
  assert.ok(session !== undefined)
  const body = Buffer.from(JSON.stringify({ kind: 'tcp', id: 'x1', host: '127.0.0.1', port: meta.port, target: `127.0.0.1:${meta.port}` }))
  const head = Buffer.from([1, 2, 0, 0])
  head.writeUInt16BE(body.length, 2)
  const connectionsBefore = upstream.connections
  const st = session.open()
  st.on('error', () => {})
  st.write(Buffer.concat([head, body]))
  // a TLS ClientHello-ish probe: whatever answers, it must be the upstream
  st.write('\x16\x03\x01\x00\x05hello')
  while (upstream.connections === connectionsBefore && !st.destroyed) await new Promise((resolve) => setImmediate(resolve))
  assert.equal(meta.connections(), 0)
  assert.equal(upstream.connections, connectionsBefore + 1)
  st.destroy()
})

// A stand-in upstream whose requests fail at once, to see what the agent logs.
function failingUpstream (): Upstream {
  return {
    protocol: 'http:',
    host: '127.0.0.1',
    port: 1,
    authority: '127.0.0.1:1',
    insecure: false,
    h2: undefined,
    authorization: () => undefined,
    request () { throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }) },
    close () {}
  }
}

test('an upstream that is down fails every request with 502, but logs one warn line per interval, no stack', async () => {
  const logger = captureLogger()
  const { server } = createTunnelHttpServer({ upstream: failingUpstream(), logger, maxHeaderSize: 16 * 1024, headersTimeoutMs: 5000 })
  const streams: Array<Promise<string>> = []
  for (let i = 0; i < 20; i++) {
    const [a, b] = duplexPair()
    server.emit('connection', b)
    const chunks: Buffer[] = []
    a.on('data', (c: Buffer) => chunks.push(c))
    a.write('GET /api HTTP/1.1\r\nHost: x\r\n\r\n')
    streams.push(once(a, 'end').then(() => Buffer.concat(chunks).toString()))
  }
  const answers = await Promise.all(streams)
  for (const a of answers) assert.equal(statusOf(a), 502)
  const warns = logger.entries.filter((e) => e.level === 'warn')
  assert.equal(warns.length, 1, JSON.stringify(warns))
  assert.equal(warns[0]!.msg, 'upstream unreachable; answering 502')
  assert.equal(warns[0]!.obj.err, undefined, 'no error object, so no stack')
  assert.equal(logger.entries.filter((e) => e.level === 'debug' && e.msg === 'upstream unreachable; answering 502').length, 19)
})

test('a tunnel stream reset under the request parser (session end at shutdown) is not logged as a malformed request', async () => {
  const logger = captureLogger()
  const { server } = createTunnelHttpServer({ upstream: failingUpstream(), logger, maxHeaderSize: 16 * 1024, headersTimeoutMs: 5000 })
  const [a, b] = duplexPair()
  b.on('error', () => {})
  server.emit('connection', b)
  a.write('GET /api HT')
  await new Promise((resolve) => setImmediate(resolve))
  const gone = closed(b)
  b.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }))
  await gone
  await new Promise((resolve) => setImmediate(resolve))
  assert.equal(logger.entries.filter((e) => e.msg === 'malformed request on a tunnel stream').length, 0)
  assert.equal(logger.entries.filter((e) => e.level === 'warn' || e.level === 'error').length, 0)
})
