import { test } from 'node:test'
import assert from 'node:assert/strict'
import { PassThrough, Duplex } from 'node:stream'
import { encodePreamble, readPreamble } from '../src/preamble.ts'
import { MAX_PREAMBLE_BODY } from '../src/constants.ts'

// A duplex whose readable side we feed by hand.
function feedable (): { stream: Duplex, feed: PassThrough } {
  const feed = new PassThrough()
  const stream = Duplex.from({ readable: feed, writable: new PassThrough() })
  return { stream, feed }
}

async function collect (d: Duplex): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of d) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString()
}

test('round trip for both kinds', async () => {
  for (const kind of ['http', 'tcp'] as const) {
    const { stream, feed } = feedable()
    feed.end(encodePreamble({ kind, id: 'req-1' }))
    assert.deepEqual(await readPreamble(stream, 1000), { kind, id: 'req-1' })
  }
})

test('a preamble split into 1-byte chunks, followed by payload in the same chunk, leaves the payload readable', async () => {
  const { stream, feed } = feedable()
  const bytes = Buffer.concat([encodePreamble({ kind: 'http', id: 'abc' }), Buffer.from('GET / HTTP/1.1\r\n')])
  const pre = bytes.length - 'GET / HTTP/1.1\r\n'.length
  const reading = readPreamble(stream, 1000)
  for (let i = 0; i < pre - 1; i++) {
    feed.write(bytes.subarray(i, i + 1))
    await new Promise(setImmediate)
  }
  // the last preamble byte and the start of the payload arrive together
  feed.write(bytes.subarray(pre - 1, pre + 4))
  const p = await reading
  assert.deepEqual(p, { kind: 'http', id: 'abc' })
  feed.end(bytes.subarray(pre + 4))
  assert.equal(await collect(stream), 'GET / HTTP/1.1\r\n')
})

test('an oversized length is rejected before its body arrives', async () => {
  const { stream, feed } = feedable()
  const head = Buffer.from([1, 1, 0, 0])
  head.writeUInt16BE(MAX_PREAMBLE_BODY + 1, 2)
  feed.write(head)
  await assert.rejects(readPreamble(stream, 1000), { code: 'TOWER_ERR_PREAMBLE', message: /exceeds/ })
})

test('bad version, unknown kind, bad JSON and missing id are rejected', async () => {
  const cases: Buffer[] = [
    Buffer.from([2, 1, 0, 0]),
    Buffer.from([1, 9, 0, 0]),
    Buffer.concat([Buffer.from([1, 1, 0, 3]), Buffer.from('{x}')]),
    Buffer.concat([Buffer.from([1, 1, 0, 2]), Buffer.from('{}')])
  ]
  for (const bytes of cases) {
    const { stream, feed } = feedable()
    feed.write(bytes)
    await assert.rejects(readPreamble(stream, 1000), { code: 'TOWER_ERR_PREAMBLE' })
  }
})

test('end of stream before a complete preamble is rejected', async () => {
  const { stream, feed } = feedable()
  feed.end(encodePreamble({ kind: 'tcp', id: 'x' }).subarray(0, 5))
  await assert.rejects(readPreamble(stream, 1000), { code: 'TOWER_ERR_PREAMBLE' })
})

test('a missing preamble times out', async () => {
  const { stream } = feedable()
  await assert.rejects(readPreamble(stream, 50), { code: 'TOWER_ERR_PREAMBLE', message: /within 50 ms/ })
})

test('encode validates kind and id length', () => {
  assert.throws(() => encodePreamble({ kind: 'udp' as 'tcp', id: 'x' }), { code: 'TOWER_ERR_PREAMBLE' })
  assert.throws(() => encodePreamble({ kind: 'tcp', id: 'x'.repeat(300) }), { code: 'TOWER_ERR_PREAMBLE' })
})
