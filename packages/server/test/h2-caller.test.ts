/**
 * HTTP/2 callers on a proxy-mode cluster port: a real TowerServer and its
 * ClusterListener, an agent session dialled over the real agent endpoint,
 * and behind it a node:http server standing in for the agent's re-origin
 * (the server package cannot import @tower/agent; test/e2e/proxy-h2.test.ts
 * runs the real agent against a real kube-apiserver).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import http2 from 'node:http2'
import https from 'node:https'
import tls from 'node:tls'
import { once } from 'node:events'
import type { Duplex } from 'node:stream'
import { readPreamble } from '@tower/transport'
import { defaultServerConfig, type CallerLimits } from '../src/config.ts'
import { dialAgent, startServer, until, type TestAgent, type TestServer } from './helpers.ts'

type After = { after: (fn: () => unknown) => void }

interface Rig {
  ts: TestServer
  port: number
  agent: TestAgent
  /** The agent's stand-in upstream: every relayed request lands here. */
  upstream: http.Server
  token: string
  connect: () => http2.ClientHttp2Session
}

async function rig (t: After, caller: Partial<CallerLimits> = {}): Promise<Rig> {
  const ts = await startServer(t, { caller: { ...defaultServerConfig.caller, ...caller } }, 'debug')
  const { token: joinToken } = await ts.registry.add('h2c', { impersonate: true })
  await ts.server.synced()
  const port = ts.server.clusterPort('h2c')!
  const agent = await dialAgent(ts, 'h2c', joinToken)
  const upstream = http.createServer()
  // The server's own GET /version (it probes each new agent) is answered here, out of the tests' way.
  const front = http.createServer((req, res) => {
    if (req.url === '/version') res.end('{"gitVersion":"v1.36.3"}')
    else upstream.emit('request', req, res)
  })
  front.on('upgrade', (req, socket, head) => upstream.emit('upgrade', req, socket, head))
  agent.session.on('stream', (s: Duplex) => {
    s.on('error', () => {})
    readPreamble(s, 5000).then(() => front.emit('connection', s), () => s.destroy())
  })
  t.after(() => agent.session.destroy())
  await until(() => ts.server.tunnels.count('h2c') === 1, 5000, 'agent registered')
  const { token } = await ts.registry.issueCallerToken('h2c', { user: 'alice', groups: ['dev'] })
  const sessions: http2.ClientHttp2Session[] = []
  t.after(() => { for (const s of sessions) s.destroy() })
  const connect = (): http2.ClientHttp2Session => {
    const s = http2.connect(`https://127.0.0.1:${port}`, { ca: ts.registry.ca.certPem, servername: 'localhost' })
    s.on('error', () => {})
    sessions.push(s)
    return s
  }
  return { ts, port, agent, upstream, token, connect }
}

interface H2Answer { status: number, headers: http2.IncomingHttpHeaders, body: string }

async function request (session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders): Promise<H2Answer> {
  const req = session.request(headers)
  req.end()
  const [head] = await once(req, 'response') as [http2.IncomingHttpHeaders]
  let body = ''
  req.setEncoding('utf8')
  for await (const chunk of req) body += chunk as string
  return { status: Number(head[':status']), headers: head, body }
}

test('a GET over h2 reaches the agent as HTTP/1.1: request line and Host from pseudo-headers, credentials replaced, hop-by-hop dropped both ways', async (t) => {
  const r = await rig(t)
  r.upstream.on('request', (req, res) => {
    res.setHeader('x-seen', JSON.stringify({ method: req.method, url: req.url, version: req.httpVersion, raw: req.rawHeaders }))
    res.setHeader('set-cookie', ['a=1', 'b=2'])
    res.setHeader('connection', 'keep-alive, x-hop')
    res.setHeader('x-hop', 'must not cross')
    res.end('hello')
  })
  const session = r.connect()
  const answer = await request(session, { ':path': '/api/v1/namespaces?limit=1', ':authority': 'member.example:6443', authorization: `Bearer ${r.token}`, 'impersonate-user': 'root', 'x-custom': 'kept' })
  assert.equal(session.alpnProtocol, 'h2')
  assert.equal(answer.status, 200)
  assert.equal(answer.body, 'hello')
  assert.deepEqual(answer.headers['set-cookie'], ['a=1', 'b=2'])
  assert.equal(answer.headers['x-hop'], undefined)
  const seen = JSON.parse(String(answer.headers['x-seen'])) as { method: string, url: string, version: string, raw: string[] }
  assert.equal(seen.method, 'GET')
  assert.equal(seen.url, '/api/v1/namespaces?limit=1')
  assert.equal(seen.version, '1.1')
  const names = seen.raw.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase())
  assert.ok(!names.some((n) => n.startsWith(':')), `pseudo-headers crossed: ${names.join(',')}`)
  assert.ok(!names.includes('authorization'), 'the caller token crossed the tunnel')
  const value = (name: string): string[] => seen.raw.filter((_, i) => i % 2 === 1 && seen.raw[i - 1]!.toLowerCase() === name)
  assert.deepEqual(value('host'), ['member.example:6443'])
  assert.deepEqual(value('impersonate-user'), ['alice'], 'the caller\'s impersonation must be replaced by its identity')
  assert.deepEqual(value('impersonate-group'), ['dev'])
  assert.deepEqual(value('x-custom'), ['kept'])
})

test('a watch the caller cancels (RST_STREAM) is released upstream at once', async (t) => {
  const r = await rig(t)
  let upstreamClosed = false
  r.upstream.on('request', (req, res) => {
    res.once('close', () => { upstreamClosed = true })
    res.writeHead(200, { 'content-type': 'application/json' })
    res.write('{"type":"ADDED"}\n')
  })
  const session = r.connect()
  const req = session.request({ ':path': '/api/v1/configmaps?watch=1', authorization: `Bearer ${r.token}` })
  req.end()
  const [chunk] = await once(req, 'data') as [Buffer]
  assert.match(chunk.toString(), /ADDED/)
  req.close(http2.constants.NGHTTP2_CANCEL)
  await until(() => upstreamClosed, 5000, 'the upstream watch to be released')
  // The session outlives its cancelled stream.
  r.upstream.removeAllListeners('request')
  r.upstream.on('request', (_req, res) => res.end('after'))
  assert.equal((await request(session, { ':path': '/x', authorization: `Bearer ${r.token}` })).body, 'after')
})

test('concurrent streams on one session are relayed at once, on one TLS connection', async (t) => {
  const r = await rig(t)
  const n = 20
  const held: http.ServerResponse[] = []
  r.upstream.on('request', (req, res) => {
    res.setHeader('x-url', String(req.url))
    held.push(res)
    // Answer only once every stream is in flight: proves they are concurrent.
    if (held.length === n) for (const h of held) h.end(h.getHeader('x-url') as string)
  })
  const session = r.connect()
  const answers = await Promise.all(Array.from({ length: n }, async (_, i) => await request(session, { ':path': `/s/${i}`, authorization: `Bearer ${r.token}` })))
  assert.deepEqual(answers.map((a) => a.body), Array.from({ length: n }, (_, i) => `/s/${i}`))
  assert.equal(r.ts.server.clusterConnections('h2c'), 1)
})

test('a bad bearer token over h2 gets a 401 Status and the session is closed', async (t) => {
  const r = await rig(t)
  let reached = 0
  r.upstream.on('request', (_req, res) => { reached++; res.end() })
  const session = r.connect()
  const goaway = once(session, 'goaway')
  const closed = once(session, 'close')
  const answer = await request(session, { ':path': '/api', authorization: 'Bearer not-a-token' })
  assert.equal(answer.status, 401)
  const status = JSON.parse(answer.body) as { kind: string, reason: string, code: number }
  assert.equal(status.kind, 'Status')
  assert.equal(status.reason, 'Unauthorized')
  assert.equal(status.code, 401)
  await goaway
  await closed
  assert.equal(reached, 0)
})

test('the port advertises its stream and header-list limits; a header list larger than maxHeaderBytes is refused before the agent, and the port keeps serving', async (t) => {
  const r = await rig(t, { maxHeaderBytes: 4096, h2MaxConcurrentStreams: 7 })
  let reached = 0
  r.upstream.on('request', (_req, res) => { reached++; res.end('ok') })
  const session = r.connect()
  await once(session, 'remoteSettings')
  assert.equal(session.remoteSettings.maxHeaderListSize, 4096)
  assert.equal(session.remoteSettings.maxConcurrentStreams, 7)
  // node's client sends it anyway; the server resets the stream before any relay.
  const big = session.request({ ':path': '/big', authorization: `Bearer ${r.token}`, 'x-big': 'a'.repeat(8192) })
  big.on('error', () => {})
  big.end()
  let status: number | undefined
  big.on('response', (h) => { status = Number(h[':status']) })
  big.resume()
  await new Promise((resolve) => big.once('close', resolve))
  assert.equal(status, undefined, 'an oversized header list must not get an answer from upstream')
  assert.equal(big.rstCode, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM)
  assert.equal(reached, 0)
  const again = r.connect()
  assert.equal((await request(again, { ':path': '/small', authorization: `Bearer ${r.token}` })).body, 'ok')
})

test('ALPN http/1.1 and no ALPN still get HTTP/1.1 on the same port', async (t) => {
  const r = await rig(t)
  r.upstream.on('request', (req, res) => res.end(`via ${req.url}`))
  for (const alpn of [['http/1.1'], undefined]) {
    const answer = await new Promise<{ version: string, body: string, alpn: string | false | null }>((resolve, reject) => {
      const req = https.get({ host: '127.0.0.1', port: r.port, path: '/one', ca: r.ts.registry.ca.certPem, servername: 'localhost', headers: { authorization: `Bearer ${r.token}` }, agent: false, ...(alpn === undefined ? {} : { ALPNProtocols: alpn }) }, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (c: string) => { body += c })
        res.on('end', () => resolve({ version: res.httpVersion, body, alpn: (res.socket as tls.TLSSocket).alpnProtocol }))
      })
      req.on('error', reject)
    })
    assert.equal(answer.version, '1.1')
    assert.equal(answer.body, 'via /one')
    assert.equal(answer.alpn, alpn === undefined ? false : 'http/1.1')
  }
})

test('an upgrade over HTTP/1.1 on the same port still works; an h2 CONNECT is refused with a Status', async (t) => {
  const r = await rig(t)
  r.upstream.on('upgrade', (_req, socket: Duplex) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: SPDY/3.1\r\n\r\n')
    socket.pipe(socket)
  })
  const socket = tls.connect({ host: '127.0.0.1', port: r.port, ca: r.ts.registry.ca.certPem, servername: 'localhost', ALPNProtocols: ['http/1.1'] })
  socket.on('error', () => {})
  t.after(() => socket.destroy())
  await once(socket, 'secureConnect')
  socket.write(`POST /api/v1/namespaces/default/pods/p/exec HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${r.token}\r\nconnection: Upgrade\r\nupgrade: SPDY/3.1\r\n\r\n`)
  let got = ''
  socket.setEncoding('utf8')
  socket.on('data', (c: string) => { got += c })
  await until(() => got.includes('\r\n\r\n'), 5000, 'the 101')
  assert.match(got, /^HTTP\/1\.1 101 /)
  socket.write('ping-through-exec')
  await until(() => got.endsWith('ping-through-exec'), 5000, 'the echo')

  const session = r.connect()
  await once(session, 'remoteSettings')
  const answer = await request(session, { ':method': 'CONNECT', ':protocol': 'websocket', ':scheme': 'https', ':path': '/api/v1/namespaces/default/pods/p/exec', ':authority': 'localhost', authorization: `Bearer ${r.token}` })
  assert.equal(answer.status, 405)
  assert.match((JSON.parse(answer.body) as { message: string }).message, /HTTP\/1\.1/)
})

test('an agent that dies mid-response resets the h2 stream: never a clean END_STREAM on a truncated body', async (t) => {
  const r = await rig(t)
  // Chunked, like a watch or logs -f: nothing but the stream's end tells the caller the body is whole.
  r.upstream.on('request', (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.write('{"type":"ADDED"}\n', () => r.agent.session.destroy())
  })
  const session = r.connect()
  const req = session.request({ ':path': '/cut', authorization: `Bearer ${r.token}` })
  req.on('error', () => {})
  req.end()
  let ended = false
  req.on('end', () => { ended = true })
  req.resume()
  await new Promise((resolve) => req.once('close', resolve))
  assert.equal(ended, false, 'a truncated body must not end cleanly')
  assert.equal(req.rstCode, http2.constants.NGHTTP2_INTERNAL_ERROR)
})

test('a slow h2 reader stalls only its own stream', async (t) => {
  const r = await rig(t)
  const size = 16 * 1024 * 1024
  let bigWritten = 0
  let bigBlocked = false
  r.upstream.on('request', (req, res) => {
    if (req.url !== '/big') {
      res.end('small')
      return
    }
    res.writeHead(200, { 'content-length': String(size) })
    const chunk = Buffer.alloc(64 * 1024, 1)
    const pump = (): void => {
      while (bigWritten < size) {
        bigWritten += chunk.length
        if (!res.write(chunk)) {
          bigBlocked = true
          res.once('drain', pump)
          return
        }
      }
      res.end()
    }
    pump()
  })
  const session = r.connect()
  const big = session.request({ ':path': '/big', authorization: `Bearer ${r.token}` })
  big.end()
  await once(big, 'response')
  big.pause()
  await until(() => bigBlocked, 10_000, 'the agent side to feel backpressure')
  const small = await request(session, { ':path': '/small', authorization: `Bearer ${r.token}` })
  assert.equal(small.body, 'small')
  assert.ok(bigWritten < size, `the unread stream was buffered whole (${bigWritten} B written)`)
  let received = 0
  big.on('data', (c: Buffer) => { received += c.length })
  big.resume()
  await once(big, 'end')
  assert.equal(received, size)
})

test('an h2 session with no stream open for idleTimeoutMs is closed', async (t) => {
  const r = await rig(t, { idleTimeoutMs: 300 })
  r.upstream.on('request', (_req, res) => res.end('ok'))
  const session = r.connect()
  assert.equal((await request(session, { ':path': '/once', authorization: `Bearer ${r.token}` })).body, 'ok')
  const started = Date.now()
  await once(session, 'close')
  assert.ok(Date.now() - started < 5000)
  await until(() => r.ts.server.clusterConnections('h2c') === 0, 5000, 'the server to drop the connection')
})

test('a SETTINGS flood costs the session, not the process: GOAWAY, the connection closes, and the port keeps serving', async (t) => {
  const r = await rig(t)
  r.upstream.on('request', (_req, res) => res.end('alive'))
  const socket = tls.connect({ host: '127.0.0.1', port: r.port, ca: r.ts.registry.ca.certPem, servername: 'localhost', ALPNProtocols: ['h2'] })
  socket.on('error', () => {})
  t.after(() => socket.destroy())
  await once(socket, 'secureConnect')
  assert.equal(socket.alpnProtocol, 'h2')
  // One SETTINGS frame with 40 entries, more than the server accepts in one frame.
  const entries = Buffer.alloc(40 * 6)
  for (let i = 0; i < 40; i++) { entries.writeUInt16BE(0x3, i * 6); entries.writeUInt32BE(100 + i, i * 6 + 2) }
  const head = Buffer.alloc(9)
  head.writeUIntBE(entries.length, 0, 3)
  head[3] = 0x4
  socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), head, entries]))
  const frames: number[] = []
  let buf = Buffer.alloc(0)
  socket.on('data', (c: Buffer) => {
    buf = Buffer.concat([buf, c])
    while (buf.length >= 9 && buf.length >= 9 + buf.readUIntBE(0, 3)) {
      frames.push(buf[3]!)
      buf = buf.subarray(9 + buf.readUIntBE(0, 3))
    }
  })
  await new Promise((resolve) => socket.once('close', resolve))
  assert.ok(frames.includes(0x7), `no GOAWAY among the frames ${frames.join(',')}`)
  const session = r.connect()
  assert.equal((await request(session, { ':path': '/after', authorization: `Bearer ${r.token}` })).body, 'alive')
})
