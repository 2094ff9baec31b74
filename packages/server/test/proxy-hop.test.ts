import { test } from 'node:test'
import assert from 'node:assert/strict'
import https from 'node:https'
import { encodeDataHeader, encodeResponseHead } from '@tower/transport'
import { CALLER_TOKEN, bodyOf, connect, exchange, get, proxyRig, statusOf } from './proxy-harness.ts'
import { respond } from './hop-agent.ts'

const AUTH = `Bearer ${CALLER_TOKEN}`

async function until (check: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

test('proxy over hop frames: the agent gets a lower-case head without credentials, with the identity and host; the caller gets its answer', async (t) => {
  const rig = await proxyRig(t)
  const streams = rig.attachHopAgent((s, m) => {
    if (m.type === 'end') respond(s.stream, 200, ['content-type', 'application/json', 'connection', 'x-secret', 'x-secret', 'drop me', 'x-kept', 'yes'], Buffer.from('{"kind":"NamespaceList"}'))
  })
  const res = await get(rig, '/api/v1/namespaces?limit=5', { authorization: AUTH, 'Impersonate-User': 'root', 'X-Trace': 'abc', Expect: '100-continue' })
  assert.equal(res.status, 200)
  assert.equal(res.body, '{"kind":"NamespaceList"}')
  assert.equal(res.headers['x-kept'], 'yes')
  assert.equal(res.headers['x-secret'], undefined, 'a header the agent\'s Connection names is dropped')
  const head = streams[0]!.messages[0]!
  assert.equal(head.type, 'request-head')
  if (head.type !== 'request-head') return
  assert.equal(head.head.method, 'GET')
  assert.equal(head.head.path, '/api/v1/namespaces?limit=5')
  assert.equal(head.head.body, false)
  const names = head.head.headers.filter((_, i) => i % 2 === 0)
  assert.ok(names.every((n) => n === n.toLowerCase()), names.join(','))
  const pairs = new Map<string, string[]>()
  for (let i = 0; i < head.head.headers.length; i += 2) pairs.set(head.head.headers[i]!, [...(pairs.get(head.head.headers[i]!) ?? []), head.head.headers[i + 1]!])
  assert.deepEqual(pairs.get('impersonate-user'), ['alice'])
  assert.deepEqual(pairs.get('impersonate-group'), ['dev'])
  assert.deepEqual(pairs.get('x-trace'), ['abc'])
  assert.equal(pairs.has('authorization'), false)
  assert.equal(pairs.has('expect'), false)
  assert.equal(pairs.has('connection'), false)
  assert.ok(pairs.get('host')?.[0]?.startsWith('127.0.0.1:'))
})

test('proxy over hop frames: a request body crosses with content-length and the response too', async (t) => {
  const rig = await proxyRig(t)
  let got = ''
  rig.attachHopAgent((s, m) => {
    if (m.type === 'data') got += m.chunk.toString()
    if (m.type === 'end') respond(s.stream, 201, ['content-length', String(got.length)], Buffer.from(got))
  })
  const body = JSON.stringify({ data: 'x'.repeat(200_000) })
  const answer = await new Promise<{ status: number, text: string }>((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port: rig.port, method: 'POST', path: '/api/v1/namespaces/default/configmaps', ca: rig.caPem, servername: 'localhost', agent: false, headers: { authorization: AUTH, 'content-type': 'application/json', 'content-length': String(body.length) } }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { text += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
    })
    req.on('error', reject)
    req.end(body)
  })
  assert.equal(answer.status, 201)
  assert.equal(answer.text, body)
})

test('proxy over hop frames: a malformed frame before the response head is a 502 Status', async (t) => {
  const rig = await proxyRig(t)
  rig.attachHopAgent((s, m) => { if (m.type === 'end') s.stream.write(Buffer.from([7, 0, 0, 0, 0])) })
  const answer = await exchange(rig, `GET /api/v1/pods HTTP/1.1\r\nHost: x\r\nAuthorization: ${AUTH}\r\nConnection: close\r\n\r\n`)
  assert.equal(statusOf(answer), 502)
  const status = bodyOf(answer)
  assert.equal(status.kind, 'Status')
  assert.match(String(status.message), /hop frame/)
})

test('proxy over hop frames: a malformed frame after the head destroys the caller connection (no clean end)', async (t) => {
  const rig = await proxyRig(t)
  rig.attachHopAgent((s, m) => {
    if (m.type !== 'end') return
    s.stream.write(encodeResponseHead({ status: 200, headers: ['content-type', 'application/json'], body: true }))
    s.stream.write(encodeDataHeader(6))
    s.stream.write('{"a":1')
    setTimeout(() => s.stream.write(Buffer.from([2, 0, 0, 0, 0])), 50)
  })
  const socket = await connect(rig)
  const chunks: Buffer[] = []
  socket.on('data', (c: Buffer) => chunks.push(c))
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  socket.write(`GET /api/v1/pods?watch=true HTTP/1.1\r\nHost: x\r\nAuthorization: ${AUTH}\r\n\r\n`)
  await closed
  const text = Buffer.concat(chunks).toString()
  assert.match(text, /^HTTP\/1\.1 200/)
  assert.match(text, /transfer-encoding: chunked/i)
  // The chunked body was never terminated: no final 0-length chunk.
  assert.doesNotMatch(text, /\r\n0\r\n\r\n$/)
  assert.match(text, /\{"a":1/)
})

test('proxy over hop frames: a caller that goes away mid-watch resets the exchange at the agent', async (t) => {
  const rig = await proxyRig(t)
  const streams = rig.attachHopAgent((s, m) => {
    if (m.type !== 'end') return
    s.stream.write(encodeResponseHead({ status: 200, headers: ['content-type', 'application/json'], body: true }))
    s.stream.write(encodeDataHeader(3))
    s.stream.write('{}\n')
  })
  const socket = await connect(rig)
  const first = new Promise<void>((resolve) => socket.once('data', () => resolve()))
  socket.write(`GET /api/v1/pods?watch=true HTTP/1.1\r\nHost: x\r\nAuthorization: ${AUTH}\r\n\r\n`)
  await first
  socket.destroy()
  await until(() => streams[0]?.closed === true, 'the agent stream closed')
  assert.equal(streams[0]!.reset, true, 'reset, so the agent cancels upstream')
})
