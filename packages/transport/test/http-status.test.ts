import { test, mock } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import http from 'node:http'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { ERROR_LINGER_MS, sendStatus, sendStatusRaw, statusBody, statusReason } from '../src/http-status.ts'

// Kubernetes' metav1.StatusReason for each code Tower answers.
const EXPECTED: Array<[number, string]> = [
  [400, 'BadRequest'],
  [401, 'Unauthorized'],
  [403, 'Forbidden'],
  [404, 'NotFound'],
  [405, 'MethodNotAllowed'],
  [408, 'Timeout'],
  [413, 'RequestEntityTooLarge'],
  [429, 'TooManyRequests'],
  [431, 'RequestEntityTooLarge'],
  [500, 'InternalError'],
  [502, 'InternalError'],
  [503, 'ServiceUnavailable'],
  [504, 'Timeout']
]

test('every code is paired with its Kubernetes reason, in the body too', () => {
  for (const [code, reason] of EXPECTED) {
    assert.equal(statusReason(code), reason, `reason of ${code}`)
    const body = JSON.parse(statusBody(code, `m${code}`)) as Record<string, unknown>
    assert.deepEqual(body, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `m${code}`, reason, code })
  }
  // 502 is never "try again"
  assert.notEqual(statusReason(502), 'ServiceUnavailable')
})

test('a code outside the table gets the generic reason of its class', () => {
  assert.equal(statusReason(418), 'BadRequest')
  assert.equal(statusReason(599), 'InternalError')
})

// A TCP server whose sockets, like node:http's, are half-open, answering each with sendStatusRaw.
async function rawServer (answer: (socket: net.Socket) => void): Promise<{ port: number, sockets: net.Socket[], close: () => void }> {
  const sockets: net.Socket[] = []
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.push(socket)
    answer(socket)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    port: (server.address() as AddressInfo).port,
    sockets,
    close: () => {
      for (const s of sockets) s.destroy()
      server.close()
    }
  }
}

test('a peer that gets an error and never reads nor closes is released within the linger bound', async (t) => {
  mock.timers.enable({ apis: ['setTimeout'] })
  t.after(() => mock.timers.reset())
  const finished: Array<Promise<unknown>> = []
  const srv = await rawServer((socket) => {
    sendStatusRaw(socket, 401, 'tower: no credentials')
    finished.push(once(socket, 'finish'))
  })
  t.after(() => srv.close())
  const client = net.connect({ port: srv.port, host: '127.0.0.1', allowHalfOpen: true })
  client.on('error', () => {})
  client.pause() // never reads
  t.after(() => client.destroy())
  await once(client, 'connect')
  while (finished.length === 0) await new Promise(setImmediate)
  await finished[0]
  const socket = srv.sockets[0]!
  const closed = once(socket, 'close')
  mock.timers.tick(ERROR_LINGER_MS - 1)
  assert.equal(socket.destroyed, false, 'released before the bound')
  mock.timers.tick(1)
  await closed
  assert.equal(socket.destroyed, true)
})

test('a peer that reads the answer and closes releases the socket at once, and gets a Status', async (t) => {
  const srv = await rawServer((socket) => sendStatusRaw(socket, 503, 'tower: no agent', { 'retry-after': '1', 'x-bad': 'a\r\nset-cookie: x=1' }))
  t.after(() => srv.close())
  const client = net.connect({ port: srv.port, host: '127.0.0.1' })
  const chunks: Buffer[] = []
  client.on('data', (c: Buffer) => chunks.push(c))
  await once(client, 'end')
  client.end()
  await once(srv.sockets[0]!, 'close')
  const text = Buffer.concat(chunks).toString()
  const [head, body] = text.split('\r\n\r\n')
  assert.match(head!, /^HTTP\/1\.1 503 Service Unavailable\r\n/)
  assert.match(head!, /\r\nretry-after: 1\r\n/)
  assert.match(head!, /\r\nconnection: close(\r\n|$)/)
  assert.doesNotMatch(head!, /set-cookie|x-bad/i, 'a header with CR/LF must be dropped, never split the response')
  assert.equal(JSON.parse(body!).reason, 'ServiceUnavailable')
})

test('a socket that is no longer writable is destroyed at once; a later error does not throw', async (t) => {
  let answered: net.Socket | undefined
  const srv = await rawServer((socket) => {
    socket.once('end', () => {
      socket.end()
      socket.once('finish', () => {
        sendStatusRaw(socket, 400, 'late')
        answered = socket
      })
    })
  })
  t.after(() => srv.close())
  const client = net.connect({ port: srv.port, host: '127.0.0.1' })
  client.on('error', () => {})
  await once(client, 'connect')
  client.end()
  while (answered === undefined) await new Promise(setImmediate)
  assert.equal(answered.destroyed, true)
  answered.emit('error', new Error('late error'))
})

test('sendStatus answers a response with a Status; connection: close closes it', async (t) => {
  const server = http.createServer((_req, res) => sendStatus(res, 401, 'tower: bad token', { connection: 'close' }))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => server.close())
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    http.get({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', agent: false }, resolve).on('error', reject)
  })
  const chunks: Buffer[] = []
  for await (const c of res) chunks.push(c as Buffer)
  assert.equal(res.statusCode, 401)
  assert.equal(res.headers.connection, 'close')
  assert.equal(res.headers['content-type'], 'application/json')
  assert.equal(JSON.parse(Buffer.concat(chunks).toString()).reason, 'Unauthorized')
})

test('text: true answers the message as text/plain, on a response and on a raw socket', async (t) => {
  const server = http.createServer((_req, res) => sendStatus(res, 502, 'tower: offline since then', {}, { text: true }))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => server.close())
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    http.get({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', agent: false }, resolve).on('error', reject)
  })
  let body = ''
  for await (const c of res) body += String(c)
  assert.equal(res.statusCode, 502)
  assert.match(String(res.headers['content-type']), /^text\/plain/)
  assert.equal(body, 'tower: offline since then\n')

  const srv = await rawServer((socket) => sendStatusRaw(socket, 502, 'tower: offline', {}, { text: true }))
  t.after(() => srv.close())
  const client = net.connect({ port: srv.port, host: '127.0.0.1' })
  const chunks: Buffer[] = []
  client.on('data', (c: Buffer) => chunks.push(c))
  await once(client, 'end')
  client.end()
  const text = Buffer.concat(chunks).toString()
  assert.match(text, /^HTTP\/1\.1 502 Bad Gateway\r\n/)
  assert.match(text, /\r\ncontent-type: text\/plain; charset=utf-8\r\n/)
  assert.ok(text.endsWith('\r\n\r\ntower: offline\n'))
})
