// Proxy mode upgrades: WebSocket and POST + SPDY/3.1, with half-close.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Socket } from 'node:net'
import { WebSocket } from 'ws'
import { rig, SA_TOKEN } from './harness.ts'

test('a WebSocket upgrade is relayed and echoes both ways', async (t) => {
  const { server, upstream } = await rig(t)
  const st = server.open('http')
  const ws = new WebSocket('ws://tower.test/api/v1/namespaces/default/pods/p/exec?command=sh', ['v5.channel.k8s.io'], {
    createConnection: () => st as unknown as Socket,
    headers: { authorization: 'Bearer caller' }
  })
  t.after(() => ws.terminate())
  await once(ws, 'open')
  assert.equal(ws.protocol, 'v5.channel.k8s.io')
  const rec = upstream.requests[upstream.requests.length - 1]
  assert.equal(rec.headers.authorization, `Bearer ${SA_TOKEN}`)
  assert.equal(rec.method, 'GET')

  for (const msg of ['hello', 'world']) {
    ws.send(Buffer.from(msg))
    const [data] = await once(ws, 'message') as [Buffer]
    assert.equal(data.toString(), msg)
  }
  const big = Buffer.alloc(3 * 1024 * 1024, 0x33)
  ws.send(big)
  const [echo] = await once(ws, 'message') as [Buffer]
  assert.equal(echo.length, big.length)

  ws.close(1000)
  const [code] = await once(ws, 'close')
  assert.equal(code, 1000)
})

async function spdyUpgrade (server: Awaited<ReturnType<typeof rig>>['server'], path: string): Promise<{ res: IncomingMessage, socket: Duplex, head: Buffer } | { refused: IncomingMessage }> {
  const req = server.request(path, {
    method: 'POST',
    headers: { connection: 'Upgrade', upgrade: 'SPDY/3.1', 'x-stream-protocol-version': 'v4.channel.k8s.io' }
  })
  req.end()
  return await new Promise((resolve, reject) => {
    req.once('upgrade', (res: IncomingMessage, socket: Duplex, head: Buffer) => resolve({ res, socket, head }))
    req.once('response', (res: IncomingMessage) => resolve({ refused: res }))
    req.once('error', reject)
  })
}

test('POST + Upgrade: SPDY/3.1 is relayed with raw bytes and half-close', async (t) => {
  const { server, upstream } = await rig(t)
  const up = await spdyUpgrade(server, '/spdy/exec')
  assert.ok('socket' in up)
  const { res, socket } = up
  t.after(() => socket.destroy())
  assert.equal(res.statusCode, 101)
  assert.equal(res.headers.upgrade, 'SPDY/3.1')
  assert.equal(res.headers['x-stream-protocol-version'], 'v4.channel.k8s.io')
  const rec = upstream.requests[upstream.requests.length - 1]
  assert.equal(rec.method, 'POST')
  assert.equal(rec.headers.upgrade, 'SPDY/3.1')
  assert.equal(rec.headers.authorization, `Bearer ${SA_TOKEN}`)

  // bytes echo while both directions are open
  socket.write('ping')
  const [first] = await once(socket, 'data') as [Buffer]
  assert.equal(first.toString(), 'ping')

  // half-close: our FIN reaches the upstream, which still sends its echo, then FINs
  const rest: Buffer[] = []
  socket.on('data', (c: Buffer) => rest.push(c))
  const payload = Buffer.alloc(512 * 1024, 0x7a)
  socket.end(payload)
  await once(socket, 'end')
  const echoed = Buffer.concat(rest)
  assert.equal(echoed.length, payload.length)
  assert.ok(echoed.equals(payload))
})

test('half-close the other way: the upstream FINs first and still receives what the client sends', async (t) => {
  const { server, upstream } = await rig(t)
  const up = await spdyUpgrade(server, '/fin-first')
  assert.ok('socket' in up)
  const { socket, head } = up
  t.after(() => socket.destroy())
  let got = head.toString()
  socket.on('data', (c: Buffer) => { got += c.toString() })
  await once(socket, 'end')
  assert.equal(got, 'bye')
  const received = once(upstream.events, 'fin-first-received') as Promise<[string]>
  socket.end('after your FIN')
  const [text] = await received
  assert.equal(text, 'after your FIN')
})

test('a refused upgrade (403) is relayed as a response and the stream closes', async (t) => {
  const { server } = await rig(t)
  const up = await spdyUpgrade(server, '/deny/exec')
  assert.ok('refused' in up)
  const res = up.refused
  assert.equal(res.statusCode, 403)
  let body = ''
  res.setEncoding('utf8')
  for await (const c of res) body += c as string
  assert.equal((JSON.parse(body) as { reason: string }).reason, 'Forbidden')
})

test('an upgrade to an unreachable upstream answers 502', async (t) => {
  const { server } = await rig(t, { agent: { upstream: { kind: 'url', url: 'https://127.0.0.1:1', insecureSkipVerify: true } } })
  const up = await spdyUpgrade(server, '/spdy/exec')
  assert.ok('refused' in up)
  assert.equal(up.refused.statusCode, 502)
  assert.equal(up.refused.headers.connection, 'close')
  let body = ''
  for await (const c of up.refused) body += String(c)
  assert.match(body, /upstream unreachable/)
  assert.equal((JSON.parse(body) as { reason: string }).reason, 'InternalError')
})
