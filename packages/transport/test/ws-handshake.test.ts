import { test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo, Socket } from 'node:net'
import { acceptKey, acceptUpgrade, requestUpgrade, retryAfterSeconds, upgradeProblem } from '../src/ws-handshake.ts'
import { HEADER_MAX_STREAMS } from '../src/constants.ts'

// An http server whose upgrade handler answers whatever the test says.
async function answering (answer: (req: http.IncomingMessage, socket: Socket) => void): Promise<{ url: URL, close (): Promise<void> }> {
  const server = http.createServer()
  const sockets = new Set<Socket>()
  server.on('connection', (s: Socket) => { sockets.add(s); s.once('close', () => sockets.delete(s)) })
  server.on('upgrade', (req, socket: Socket) => answer(req, socket))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    url: new URL(`ws://127.0.0.1:${(server.address() as AddressInfo).port}/tower/v1/connect`),
    async close () { for (const s of sockets) s.destroy(); await new Promise<void>((resolve) => server.close(() => resolve())) }
  }
}

function switching (key: string, protocol: string): string {
  return `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${key}\r\nSec-WebSocket-Protocol: ${protocol}\r\n\r\n`
}

test('a 503 refusal carries the Retry-After the server sent, in seconds', async (t) => {
  const srv = await answering((_req, socket) => {
    socket.end('HTTP/1.1 503 Service Unavailable\r\nretry-after: 17\r\ncontent-length: 4\r\n\r\nbusy')
  })
  t.after(() => srv.close())
  await assert.rejects(requestUpgrade({ url: srv.url, protocol: 'tower.yamux.v1', timeoutMs: 5000 }).done, (err: Error & { statusCode: number, retryAfterS: number | undefined }) => {
    assert.equal(err.statusCode, 503)
    assert.equal(err.retryAfterS, 17)
    return true
  })
})

test('retryAfterSeconds reads only delay-seconds of sane size', () => {
  assert.equal(retryAfterSeconds('0'), 0)
  assert.equal(retryAfterSeconds(' 42 '), 42)
  assert.equal(retryAfterSeconds('86400'), 86_400)
  for (const bad of [undefined, '', '-1', '1.5', '86401', '999999', 'Wed, 21 Oct 2015 07:28:00 GMT', '1e3', '0x10', ['1', '2']]) {
    assert.equal(retryAfterSeconds(bad), undefined, JSON.stringify(bad))
  }
})

test('acceptKey matches the example of RFC 6455 §1.3', () => {
  assert.equal(acceptKey('dGhlIHNhbXBsZSBub25jZQ=='), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=')
})

test('a refusal rejects with the status and the message of the body', async (t) => {
  const srv = await answering((_req, socket) => {
    const body = JSON.stringify({ kind: 'Status', message: 'invalid agent token' })
    socket.end(`HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`)
  })
  t.after(() => srv.close())
  await assert.rejects(requestUpgrade({ url: srv.url, protocol: 'tower.yamux.v1', timeoutMs: 5000 }).done, (err: Error & { code: string, statusCode: number }) => {
    assert.equal(err.code, 'TOWER_ERR_HANDSHAKE')
    assert.equal(err.statusCode, 401)
    assert.equal(err.message, 'server answered 401 Unauthorized: invalid agent token')
    return true
  })
})

test('a 101 with a wrong accept key or another subprotocol is refused', async (t) => {
  let mode = 'key'
  const srv = await answering((req, socket) => {
    const key = req.headers['sec-websocket-key'] as string
    socket.write(mode === 'key' ? switching(acceptKey(key + 'x'), 'tower.yamux.v1') : switching(acceptKey(key), 'chat'))
  })
  t.after(() => srv.close())
  await assert.rejects(requestUpgrade({ url: srv.url, protocol: 'tower.yamux.v1', timeoutMs: 5000 }).done, /wrong sec-websocket-accept/)
  mode = 'protocol'
  await assert.rejects(requestUpgrade({ url: srv.url, protocol: 'tower.yamux.v1', timeoutMs: 5000 }).done, /chose subprotocol "chat"/)
})

test('a server that never answers times the handshake out', async (t) => {
  const srv = await answering(() => {})
  t.after(() => srv.close())
  const started = Date.now()
  await assert.rejects(requestUpgrade({ url: srv.url, protocol: 'tower.yamux.v1', timeoutMs: 200 }).done, /timed out after 200 ms/)
  assert.ok(Date.now() - started < 2000)
})

test('upgradeProblem names what is missing from a request', async (t) => {
  const seen: Array<string | undefined> = []
  const srv = await answering((req, socket) => { seen.push(upgradeProblem(req)); socket.destroy() })
  t.after(() => srv.close())
  const send = async (headers: Record<string, string>): Promise<void> => {
    const req = http.request({ host: '127.0.0.1', port: srv.url.port, path: '/', headers: { connection: 'Upgrade', upgrade: 'websocket', ...headers } })
    req.on('error', () => {})
    req.end()
    await new Promise((resolve) => req.on('close', resolve))
  }
  await send({ 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' })
  await send({ 'sec-websocket-version': '8', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' })
  await send({ 'sec-websocket-version': '13', 'sec-websocket-key': 'short' })
  assert.deepEqual(seen, [undefined, 'unsupported sec-websocket-version (13 is required)', 'missing or malformed sec-websocket-key'])
})

// The headers of a request that upgradeProblem accepts, to vary one at a time.
const GOOD_UPGRADE = { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' }

function fakeRequest (headers: Record<string, string | undefined>): http.IncomingMessage {
  return { method: 'GET', headers } as unknown as http.IncomingMessage
}

test('upgradeProblem requires the upgrade token in Connection (a token list, any case)', () => {
  assert.equal(upgradeProblem(fakeRequest(GOOD_UPGRADE)), undefined)
  for (const connection of ['upgrade', 'keep-alive, Upgrade', 'keep-alive,UPGRADE', ' Upgrade ,close']) {
    assert.equal(upgradeProblem(fakeRequest({ ...GOOD_UPGRADE, connection })), undefined, connection)
  }
  for (const connection of [undefined, 'keep-alive', 'upgradex', 'x-upgrade', 'close upgrade', '']) {
    assert.match(upgradeProblem(fakeRequest({ ...GOOD_UPGRADE, connection })) ?? 'accepted', /connection: upgrade/, String(connection))
  }
})

test('a 101 without "upgrade: websocket" or without "connection: upgrade" is refused and names the header', async (t) => {
  let answer = ''
  const srv = await answering((req, socket) => {
    const accept = acceptKey(req.headers['sec-websocket-key'] as string)
    socket.write(`HTTP/1.1 101 Switching Protocols\r\n${answer}Sec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: tower.yamux.v1\r\n\r\n`)
  })
  t.after(() => srv.close())
  const attempt = (): Promise<unknown> => requestUpgrade({ url: srv.url, protocol: 'tower.yamux.v1', timeoutMs: 5000 }).done
  answer = 'Upgrade: h2c\r\nConnection: Upgrade\r\n'
  await assert.rejects(attempt(), { code: 'TOWER_ERR_HANDSHAKE', statusCode: 101, message: /upgrade: websocket/ })
  answer = 'Upgrade: websocket\r\nConnection: keep-alive\r\n'
  await assert.rejects(attempt(), { code: 'TOWER_ERR_HANDSHAKE', statusCode: 101, message: /connection: upgrade/ })
  answer = 'Upgrade: websocket\r\n'
  await assert.rejects(attempt(), { code: 'TOWER_ERR_HANDSHAKE', statusCode: 101, message: /connection: upgrade/ })
  answer = 'Connection: Upgrade\r\n'
  await assert.rejects(attempt(), { code: 'TOWER_ERR_HANDSHAKE', statusCode: 101, message: /upgrade: websocket/ })
  // a token list in any case is fine
  answer = 'Upgrade: WebSocket\r\nConnection: keep-alive, UPGRADE\r\n'
  const { socket } = await requestUpgrade({ url: srv.url, protocol: 'tower.yamux.v1', timeoutMs: 5000 }).done as { socket: Socket }
  socket.destroy()
})

test('acceptUpgrade sends extra headers and the client sees the 101\'s headers', async (t) => {
  const srv = await answering((req, socket) => {
    acceptUpgrade(req, socket, 'tower.yamux.v1', { [HEADER_MAX_STREAMS]: '512', 'X-Other': 'a b' })
  })
  t.after(() => srv.close())
  const { socket, headers } = await requestUpgrade({ url: srv.url, protocol: 'tower.yamux.v1', timeoutMs: 5000 }).done
  socket.destroy()
  assert.equal(HEADER_MAX_STREAMS, 'tower-max-streams')
  assert.equal(headers[HEADER_MAX_STREAMS], '512')
  assert.equal(headers['x-other'], 'a b')
  assert.equal(headers['sec-websocket-protocol'], 'tower.yamux.v1')
})

test('acceptUpgrade refuses header names that are not tokens, values with CR/LF, and the handshake\'s own headers, writing nothing', () => {
  const req = fakeRequest(GOOD_UPGRADE)
  const bad: Array<Record<string, string>> = [
    { 'x-a': 'one\r\nSet-Cookie: evil' },
    { 'x-a': 'one\nx' },
    { 'x-a': 'nul\0' },
    { 'x a': '1' },
    { 'x:a': '1' },
    { '': '1' },
    { 'x\r\ny': '1' },
    { Upgrade: 'h2c' },
    { 'sec-websocket-accept': 'x' },
    { connection: 'close' }
  ]
  for (const headers of bad) {
    const written: unknown[] = []
    const socket = { write: (c: unknown) => { written.push(c); return true } } as unknown as Socket
    assert.throws(() => { acceptUpgrade(req, socket, 'tower.yamux.v1', headers) }, { code: 'TOWER_ERR_INVALID_ARG' }, JSON.stringify(headers))
    assert.deepEqual(written, [], JSON.stringify(headers))
  }
})
