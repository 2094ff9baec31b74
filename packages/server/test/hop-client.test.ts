import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { encodeDataHeader, encodeEnd, encodeResponseHead } from '@tower/transport'
import { HOP_MAX_IDLE, HopPool, type HopRequest, type HopResponse } from '../src/hop-client.ts'
import { hopAgentPair, respond, type AgentStream } from './hop-agent.ts'

const GET = { method: 'GET', path: '/api/v1/namespaces', headers: ['host', 'k8s', 'accept', 'application/json'], body: false }

async function until (check: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setImmediate(resolve))
  }
}

async function responseOf (req: HopRequest): Promise<HopResponse> {
  const [res] = await once(req, 'response') as [HopResponse]
  return res
}

async function bodyOf (res: HopResponse): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of res) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString()
}

test('hop pool: sequential exchanges reuse one stream; the agent sees the head as sent', async (t) => {
  const pair = hopAgentPair()
  t.after(() => pair.session.destroy())
  const pool = new HopPool('a1', pair.open)
  for (let i = 0; i < 3; i++) {
    const res = await responseOf(pool.request(GET))
    assert.equal(res.statusCode, 200)
    assert.deepEqual(res.rawHeaders, ['content-type', 'text/plain', 'content-length', '2'])
    assert.equal(await bodyOf(res), 'ok')
    await until(() => pool.idle === 1, 'the stream back in the pool')
  }
  assert.equal(pair.streams.length, 1, 'one stream for three exchanges')
  const [head, end] = pair.streams[0]!.messages
  assert.deepEqual(head, { type: 'request-head', head: GET })
  assert.deepEqual(end, { type: 'end' })
  assert.equal(pair.streams[0]!.messages.length, 6)
})

test('hop pool: concurrent exchanges take separate streams, and the pool keeps at most HOP_MAX_IDLE', async (t) => {
  const pair = hopAgentPair()
  t.after(() => pair.session.destroy())
  const pool = new HopPool('a1', pair.open)
  const n = HOP_MAX_IDLE + 4
  const all = await Promise.all(Array.from({ length: n }, async () => await bodyOf(await responseOf(pool.request(GET)))))
  assert.deepEqual(new Set(all), new Set(['ok']))
  assert.equal(pair.streams.length, n)
  await until(() => pool.idle === HOP_MAX_IDLE, `${HOP_MAX_IDLE} idle`)
  // The ones over the limit are ended, not left half-open.
  await until(() => pair.streams.filter((s) => s.ended).length === 4, 'the extra streams ended')
})

test('hop pool: an idle stream the agent FINs is closed and never reused', async (t) => {
  const pair = hopAgentPair()
  t.after(() => pair.session.destroy())
  const pool = new HopPool('a1', pair.open)
  assert.equal(await bodyOf(await responseOf(pool.request(GET))), 'ok')
  await until(() => pool.idle === 1, 'idle')
  const first = pair.streams[0]!
  first.stream.end()
  // Our end follows: the stream closes on both sides.
  await until(() => first.closed, 'the FINed stream closed')
  assert.equal(first.reset, false, 'closed, not reset')
  assert.equal(await bodyOf(await responseOf(pool.request(GET))), 'ok')
  assert.equal(pair.streams.length, 2, 'a new stream for the next exchange')
})

test('hop pool: bytes from the agent on an idle stream destroy it', async (t) => {
  const pair = hopAgentPair()
  t.after(() => pair.session.destroy())
  const pool = new HopPool('a1', pair.open)
  assert.equal(await bodyOf(await responseOf(pool.request(GET))), 'ok')
  await until(() => pool.idle === 1, 'idle')
  pair.streams[0]!.stream.write(encodeEnd())
  await until(() => pair.streams[0]!.closed, 'the stream reset')
  assert.equal(await bodyOf(await responseOf(pool.request(GET))), 'ok')
  assert.equal(pair.streams.length, 2)
})

test('hop request: a body crosses as DATA frames of at most 64 KiB with backpressure, then END', async (t) => {
  const got: Buffer[] = []
  const pair = hopAgentPair((s, m) => {
    if (m.type === 'data') got.push(Buffer.from(m.chunk))
    if (m.type === 'end') respond(s.stream, 201, [], Buffer.from('made'))
  })
  t.after(() => pair.session.destroy())
  const pool = new HopPool('a1', pair.open)
  const req = pool.request({ method: 'POST', path: '/api/v1/namespaces/default/configmaps', headers: ['content-type', 'application/json'], body: true })
  const body = Buffer.alloc(1024 * 1024 + 7, 'x')
  let sawFalse = false
  for (let off = 0; off < body.length; off += 200_000) {
    if (!req.write(body.subarray(off, off + 200_000))) {
      sawFalse = true
      await once(req, 'drain')
    }
  }
  req.end()
  const res = await responseOf(req)
  assert.equal(res.statusCode, 201)
  assert.equal(await bodyOf(res), 'made')
  assert.equal(sawFalse, true, 'write returned false before the window opened')
  assert.equal(Buffer.concat(got).equals(body), true)
  assert.ok(pair.streams[0]!.messages.filter((m) => m.type === 'data').every((m) => m.type === 'data' && m.chunk.length <= 65536))
})

test('hop request: destroy mid-body resets the stream (the agent sees RST) and the stream is not pooled', async (t) => {
  const pair = hopAgentPair(() => {})
  t.after(() => pair.session.destroy())
  const pool = new HopPool('a1', pair.open)
  const req = pool.request({ method: 'PUT', path: '/x', headers: [], body: true })
  req.on('error', () => assert.fail('a destroy by the caller is not an error'))
  req.write(Buffer.from('half'))
  await until(() => pair.streams[0]?.messages.some((m) => m.type === 'data') === true, 'the first DATA')
  req.destroy()
  await until(() => pair.streams[0]!.closed, 'the agent stream closed')
  assert.equal(pair.streams[0]!.reset, true, 'reset, not ended')
  assert.equal(pool.idle, 0)
})

test('hop response: destroying it before its END resets the exchange (a cancelled watch is released)', async (t) => {
  const pair = hopAgentPair((s, m) => {
    if (m.type === 'end') {
      s.stream.write(encodeResponseHead({ status: 200, headers: ['content-type', 'application/json'], body: true }))
      s.stream.write(encodeDataHeader(3))
      s.stream.write('{}\n')
    }
  })
  t.after(() => pair.session.destroy())
  const pool = new HopPool('a1', pair.open)
  const res = await responseOf(pool.request({ ...GET, path: '/api/v1/pods?watch=true' }))
  const [chunk] = await once(res, 'data') as [Buffer]
  assert.equal(chunk.toString(), '{}\n')
  res.destroy()
  await until(() => pair.streams[0]!.closed, 'the agent stream closed')
  assert.equal(pair.streams[0]!.reset, true)
  assert.equal(pool.idle, 0)
})

const malformed: Array<[string, (s: AgentStream) => void]> = [
  ['an unknown frame type', (s) => s.stream.write(Buffer.from([9, 0, 0, 0, 0]))],
  ['a REQUEST_HEAD from the agent', (s) => s.stream.write(Buffer.concat([Buffer.from([1, 0, 0, 0, 5, 0, 0, 1, 0x47]), Buffer.from([0])]))],
  ['DATA before the head', (s) => { s.stream.write(encodeDataHeader(1)); s.stream.write('x') }],
  ['a DATA length over 64 KiB', (s) => s.stream.write(Buffer.from([2, 0, 1, 0, 1]))],
  ['the agent ending the stream', (s) => s.stream.end()]
]

for (const [what, send] of malformed) {
  test(`hop request: ${what} before the response head is an error and a reset, never a response`, async (t) => {
    const pair = hopAgentPair((s, m) => { if (m.type === 'end') send(s) })
    t.after(() => pair.session.destroy())
    const pool = new HopPool('a1', pair.open)
    const req = pool.request(GET)
    req.on('response', () => assert.fail('no response'))
    const [err] = await once(req, 'error') as [Error & { code?: string }]
    assert.match(err.code ?? '', /^TOWER_ERR_(HOP_FRAME|STREAM_RESET)$/)
    await until(() => pair.streams[0]!.closed, 'the stream closed')
    assert.equal(pool.idle, 0)
  })
}

test('hop response: a malformed frame after the head errors the response (never a clean end)', async (t) => {
  const pair = hopAgentPair((s, m) => {
    if (m.type !== 'end') return
    s.stream.write(encodeResponseHead({ status: 200, headers: [], body: true }))
    s.stream.write(encodeDataHeader(4))
    s.stream.write('part')
    s.stream.write(encodeResponseHead({ status: 200, headers: [], body: false }))
  })
  t.after(() => pair.session.destroy())
  const pool = new HopPool('a1', pair.open)
  const req = pool.request(GET)
  // As the proxy does: the response is consumed from the 'response' event on.
  const outcome = new Promise<{ ended: boolean, err?: Error & { code?: string }, data: string }>((resolve) => {
    req.once('response', (res: HopResponse) => {
      let data = ''
      res.on('data', (c: Buffer) => { data += c.toString() })
      res.once('end', () => resolve({ ended: true, data }))
      res.once('error', (err) => resolve({ ended: false, err, data }))
    })
  })
  const { ended, err, data } = await outcome
  assert.equal(ended, false)
  assert.equal(err?.code, 'TOWER_ERR_HOP_FRAME')
  assert.equal(data, 'part')
  await until(() => pair.streams[0]!.reset || pair.streams[0]!.closed, 'the stream reset')
})

test('hop response: a reader that does not read stalls the stream; the server buffers about one window, not the body', async (t) => {
  const total = 8 * 1024 * 1024
  const pair = hopAgentPair((s, m) => { if (m.type === 'end') respond(s.stream, 200, [], Buffer.alloc(total, 'w')) })
  t.after(() => pair.session.destroy())
  const pool = new HopPool('a1', pair.open)
  const res = await responseOf(pool.request(GET))
  // Let the agent send what the window allows, then look.
  await until(() => (pair.streams[0]!.stream.writableLength) > 0, 'the agent held back by the window')
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve))
  const agentStream = pair.streams[0]!.stream
  const held = total - agentStream.writableLength
  assert.ok(held < 2 * 1024 * 1024, `at most a couple of windows left the agent (${held} B)`)
  assert.ok(agentStream.writableLength > total / 2, `most of the body waits at the agent (${agentStream.writableLength} B)`)
  const got = await bodyOf(res)
  assert.equal(got.length, total)
  await until(() => pool.idle === 1, 'the stream back in the pool')
})
