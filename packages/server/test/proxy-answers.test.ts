// What ProxyHandler answers when it cannot forward: unauthenticated callers
// (item 5, 2, 24), a cluster gone from the registry (item 13), a cluster with
// no agent (item 30; kubectl itself in proxy-kubectl.test.ts), and the reason
// paired with each code (item 31).
import { test, mock } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import http from 'node:http'
import { ERROR_LINGER_MS } from '@tower/transport'
import { CALLER_TOKEN, bodyOf, connect, exchange, get, proxyRig, statusOf } from './proxy-harness.ts'

const AUTH = { authorization: `Bearer ${CALLER_TOKEN}` }

test('an unauthenticated request gets a 401 Status and the server closes the connection', async (t) => {
  const rig = await proxyRig(t)
  const answer = await exchange(rig, 'GET /api HTTP/1.1\r\nHost: x\r\n\r\n')
  assert.equal(statusOf(answer), 401)
  assert.match(answer, /\r\nconnection: close\r\n/i)
  const body = bodyOf(answer)
  assert.equal(body.kind, 'Status')
  assert.equal(body.reason, 'Unauthorized')
})

test('an unauthenticated upgrade from a peer that never reads nor closes is released within the linger bound; the socket is never half-open', async (t) => {
  const rig = await proxyRig(t)
  mock.timers.enable({ apis: ['setTimeout'] })
  t.after(() => mock.timers.reset())
  const socket = await connect(rig)
  t.after(() => socket.destroy())
  socket.write('GET /api/v1/namespaces/default/pods/p/exec HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n')
  socket.pause() // never reads, never closes
  while (rig.upgrades.length === 0) await new Promise((resolve) => setImmediate(resolve))
  const { socket: serverSide, halfOpenAfterHandler } = rig.upgrades[0]!
  assert.equal(halfOpenAfterHandler, false, 'allowHalfOpen before authentication')
  if (!serverSide.writableFinished) await once(serverSide, 'finish')
  const closed = once(serverSide, 'close')
  mock.timers.tick(ERROR_LINGER_MS)
  await closed
  assert.equal(rig.open.size, 0, 'the cluster port holds no socket of the silent peer')
})

test('an unauthenticated request is logged with its path, never its query', async (t) => {
  const rig = await proxyRig(t)
  const res = await get(rig, '/api/v1/secrets?labelSelector=x&token=s3cr3t-query-value', { authorization: 'Bearer not-a-caller-token' })
  assert.equal(res.status, 401)
  const line = rig.logs.find('caller refused', 'warn')[0]
  assert.ok(line !== undefined)
  assert.equal(line.path, '/api/v1/secrets')
  assert.equal(rig.logs.raw.filter((l) => l.includes('s3cr3t-query-value') || l.includes('labelSelector')).length, 0)
  assert.equal(rig.logs.raw.filter((l) => l.includes('not-a-caller-token')).length, 0)
})

test('a flood of refused callers logs one warn line per interval; the rest go to debug, and no stack is logged', async (t) => {
  const rig = await proxyRig(t)
  for (let i = 0; i < 30; i++) assert.equal((await get(rig, `/api/${i}`)).status, 401)
  assert.equal(rig.logs.find('caller refused', 'warn').length, 1)
  assert.equal(rig.logs.find('caller refused', 'debug').length, 29)
  assert.equal(rig.logs.raw.filter((l) => l.includes('"stack"')).length, 0)
})

test('a request for a cluster removed from the registry gets a clear Status, and the handler does not throw', async (t) => {
  const rig = await proxyRig(t)
  rig.state.registered = false
  const res = await get(rig, '/api', AUTH)
  assert.equal(res.status, 503)
  const body = JSON.parse(res.body) as Record<string, unknown>
  assert.equal(body.reason, 'ServiceUnavailable')
  assert.match(String(body.message), /cluster "c1" is no longer registered/)
  assert.equal(res.headers['retry-after'], undefined)
  const answer = await exchange(rig, `GET /api/x/exec HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${CALLER_TOKEN}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n`)
  assert.equal(statusOf(answer), 503)
  assert.match(String(bodyOf(answer).message), /no longer registered/)
})

function noAgent (offlineSince: number): Error {
  return Object.assign(new Error('no agent connected for cluster "c1"'), { code: 'TOWER_ERR_NO_AGENT', offlineSince })
}

test('no agent within offlineGraceMs of the last one leaving: 503 with Retry-After (a reconnect)', async (t) => {
  const rig = await proxyRig(t, { limits: { offlineGraceMs: 60_000 } })
  rig.state.pickError = noAgent(Date.now() - 1000)
  const res = await get(rig, '/api', AUTH)
  assert.equal(res.status, 503)
  assert.equal(res.headers['retry-after'], '1')
  assert.equal((JSON.parse(res.body) as { reason: string }).reason, 'ServiceUnavailable')
})

test('no agent for longer than offlineGraceMs: 502 in plain text without Retry-After, and the message says since when', async (t) => {
  const rig = await proxyRig(t, { limits: { offlineGraceMs: 10_000 } })
  const since = Date.now() - 5 * 60_000
  rig.state.pickError = noAgent(since)
  const res = await get(rig, '/api', AUTH)
  assert.equal(res.status, 502)
  assert.equal(res.headers['retry-after'], undefined)
  assert.match(String(res.headers['content-type']), /^text\/plain/)
  assert.ok(res.body.includes(new Date(since).toISOString()), res.body)
  assert.match(res.body, /^tower: no agent connected for cluster "c1" since .* \(5m ago\)/)
  // the upgrade path answers the same
  const answer = await exchange(rig, `GET /x/exec HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${CALLER_TOKEN}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n`)
  assert.equal(statusOf(answer), 502)
  assert.doesNotMatch(answer, /retry-after/i)
  assert.match(answer, /since .* \(5m ago\)/)
})

test('each undelivered request logs one line without a stack, at warn once per interval', async (t) => {
  const rig = await proxyRig(t)
  rig.state.pickError = noAgent(Date.now() - 3_600_000)
  for (let i = 0; i < 20; i++) assert.equal((await get(rig, `/api/v1/pods?watch=1&i=${i}`, AUTH)).status, 502)
  const warns = rig.logs.find('request not delivered', 'warn')
  assert.equal(warns.length, 1)
  assert.equal(warns[0]!.err, undefined, 'no err object, so no stack')
  assert.equal(warns[0]!.code, 'TOWER_ERR_NO_AGENT')
  assert.equal(warns[0]!.path, '/api/v1/pods')
  assert.equal(rig.logs.find('request not delivered', 'debug').length, 19)
  assert.equal(rig.logs.raw.filter((l) => l.includes('"stack"')).length, 0)
})

test('a delivery failure that is not worth retrying is 502 InternalError, never ServiceUnavailable', async (t) => {
  const rig = await proxyRig(t)
  rig.state.pickError = Object.assign(new Error('boom'), { code: 'TOWER_ERR_PROTOCOL' })
  const res = await get(rig, '/api', AUTH)
  assert.equal(res.status, 502)
  assert.equal((JSON.parse(res.body) as { reason: string }).reason, 'InternalError')
  assert.equal(res.headers['retry-after'], undefined)
})

test('an authenticated upgrade becomes half-open only once the agent answered 101, and half-close works', async (t) => {
  const rig = await proxyRig(t)
  const agentHttp = http.createServer()
  agentHttp.on('upgrade', (_req, s: import('node:stream').Duplex) => {
    s.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n')
    // echo, then FIN once the caller's FIN arrived
    const got: Buffer[] = []
    s.on('data', (c: Buffer) => got.push(c))
    s.on('end', () => s.end(Buffer.concat(got)))
  })
  rig.attachAgent(agentHttp)
  const socket = await connect(rig)
  t.after(() => socket.destroy())
  socket.write(`POST /x/exec HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${CALLER_TOKEN}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n`)
  let text = ''
  socket.setEncoding('utf8')
  while (!text.includes('\r\n\r\n')) text += String((await once(socket, 'data'))[0])
  assert.match(text, /^HTTP\/1\.1 101 /)
  assert.equal(rig.upgrades[0]!.socket.allowHalfOpen, true)
  socket.on('data', (c: string) => { text += c })
  socket.end('stdin-then-eof')
  await once(socket, 'end')
  assert.ok(text.endsWith('stdin-then-eof'), text)
})
