import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createHash, randomBytes } from 'node:crypto'
import type { Duplex } from 'node:stream'
import { wsDuplex } from '../src/ws-duplex.ts'
import { MAX_MESSAGE_SIZE } from '../src/constants.ts'
import { wsPair, waitForStall } from './ws-pair.ts'

function sha (buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex')
}

async function readAll (d: Duplex): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of d) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

// Writes `data` in random-size pieces, honouring backpressure.
async function writeRandomly (d: Duplex, data: Buffer, maxPiece: number): Promise<void> {
  let off = 0
  while (off < data.length) {
    const n = Math.min(data.length - off, 1 + Math.floor(Math.random() * maxPiece))
    if (!d.write(data.subarray(off, off + n))) await once(d, 'drain')
    off += n
  }
}

test('bytes arrive intact both ways, including writes larger than one message', async (t) => {
  const pair = await wsPair()
  t.after(() => pair.close())
  const a = wsDuplex(pair.client)
  const b = wsDuplex(pair.server)
  t.after(() => { a.destroy(); b.destroy() })
  const up = randomBytes(3 * MAX_MESSAGE_SIZE + 12345)
  const down = randomBytes(5 * 1024 * 1024)

  // b echoes nothing; each side sends its own buffer and reads the other's.
  const gotAtB: Buffer[] = []
  let bBytes = 0
  const bDone = new Promise<void>((resolve) => {
    b.on('data', (c: Buffer) => {
      gotAtB.push(c)
      bBytes += c.length
      if (bBytes === up.length) resolve()
    })
  })
  const gotAtA: Buffer[] = []
  let aBytes = 0
  const aDone = new Promise<void>((resolve) => {
    a.on('data', (c: Buffer) => {
      gotAtA.push(c)
      aBytes += c.length
      if (aBytes === down.length) resolve()
    })
  })
  // one huge write (split into messages) and many small ones (merged)
  a.write(up)
  await writeRandomly(b, down, 300)
  await Promise.all([aDone, bDone])
  assert.equal(sha(Buffer.concat(gotAtB)), sha(up))
  assert.equal(sha(Buffer.concat(gotAtA)), sha(down))
})

test('no message exceeds MAX_MESSAGE_SIZE and small writes are merged', async (t) => {
  const pair = await wsPair()
  t.after(() => pair.close())
  const a = wsDuplex(pair.client)
  t.after(() => a.destroy())
  const sizes: number[] = []
  pair.server.on('message', (m: Buffer) => sizes.push(m.length))
  const total = 2 * MAX_MESSAGE_SIZE + 10
  a.write(Buffer.alloc(total))
  for (let i = 0; i < 1000; i++) a.write(Buffer.alloc(12))
  await new Promise<void>((resolve) => {
    const check = (): void => {
      if (sizes.reduce((x, y) => x + y, 0) === total + 12_000) resolve()
      else setImmediate(check)
    }
    check()
  })
  assert.ok(sizes.every((s) => s <= MAX_MESSAGE_SIZE), `message sizes ${sizes.slice(0, 5).join(',')}…`)
  assert.ok(sizes.length < 1000, `1000 small writes should merge, got ${sizes.length} messages`)
})

test('a reader that stops reading pauses the socket and stalls the writer', async (t) => {
  const pair = await wsPair()
  t.after(() => pair.close())
  const hwm = 64 * 1024
  const writer = wsDuplex(pair.client, { highWaterMark: hwm })
  const reader = wsDuplex(pair.server, { highWaterMark: hwm })
  t.after(() => { writer.destroy(); reader.destroy() })
  reader.pause()
  const total = 64 * 1024 * 1024
  let accepted = 0
  let maxBuffered = 0
  pair.server.on('message', () => { maxBuffered = Math.max(maxBuffered, reader.readableLength) })

  const chunk = Buffer.alloc(64 * 1024, 7)
  const writing = (async () => {
    while (accepted < total) {
      const ok = writer.write(chunk)
      accepted += chunk.length
      if (!ok) await once(writer, 'drain')
    }
  })()

  const stalledAt = await waitForStall(() => accepted)
  assert.ok(stalledAt < total / 2, `writer should stall well before ${total} bytes, accepted ${stalledAt}`)
  assert.equal(pair.server.isPaused, true, 'the reading ws is paused')
  // the readable buffer holds at most the high water mark plus what one socket read carried
  assert.ok(maxBuffered <= hwm + 2 * MAX_MESSAGE_SIZE, `reader buffered ${maxBuffered} bytes`)

  // resuming delivers everything, in order
  let received = 0
  reader.on('data', (c: Buffer) => {
    assert.equal(c[0], 7)
    received += c.length
  })
  reader.resume()
  await writing
  while (received < total) await once(reader, 'data')
  assert.equal(received, total)
})

test('end() closes the websocket with 1000 and the peer sees a clean end', async (t) => {
  const pair = await wsPair()
  t.after(() => pair.close())
  const a = wsDuplex(pair.client)
  const b = wsDuplex(pair.server)
  const serverClose = once(pair.server, 'close')
  a.resume()
  a.end(Buffer.from('last words'))
  const got = await readAll(b)
  assert.equal(got.toString(), 'last words')
  const [code] = await serverClose
  assert.equal(code, 1000)
  await Promise.all([once(a, 'close'), b.closed ? Promise.resolve() : once(b, 'close')])
  assert.equal(a.writableFinished, true)
})

test('an abnormal close errors the duplex with TOWER_ERR_WS_CLOSED', async (t) => {
  const pair = await wsPair()
  t.after(() => pair.close())
  const a = wsDuplex(pair.client)
  const b = wsDuplex(pair.server)
  b.destroy()
  const [err] = await once(a, 'error') as [{ code: string, closeCode: number }]
  assert.equal(err.code, 'TOWER_ERR_WS_CLOSED')
  assert.equal(err.closeCode, 1006)
})

test('destroy() terminates the websocket', async (t) => {
  const pair = await wsPair()
  t.after(() => pair.close())
  const a = wsDuplex(pair.client)
  const b = wsDuplex(pair.server)
  b.on('error', () => {})
  a.destroy()
  await once(a, 'close')
  assert.equal(pair.client.readyState, pair.client.CLOSED)
  const [err] = await once(b, 'error') as [{ code: string }]
  assert.equal(err.code, 'TOWER_ERR_WS_CLOSED')
})

test('a text message is a protocol error', async (t) => {
  const pair = await wsPair()
  t.after(() => pair.close())
  const b = wsDuplex(pair.server)
  pair.client.send('hello')
  const [err] = await once(b, 'error') as [{ code: string }]
  assert.equal(err.code, 'TOWER_ERR_PROTOCOL')
})
