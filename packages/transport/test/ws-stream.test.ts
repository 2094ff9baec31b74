import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createHash, randomBytes } from 'node:crypto'
import type { Duplex } from 'node:stream'
import type { WebSocket } from 'ws'
import { libClient, libServer, towerClient, towerPair, towerServer, waitForStall } from './ws-pair.ts'

function sha (buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex')
}

async function readAll (d: Duplex): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of d) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

// Reads exactly `n` bytes from `d`.
function readBytes (d: Duplex, n: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let got = 0
  return new Promise((resolve, reject) => {
    const onData = (c: Buffer): void => {
      chunks.push(c)
      got += c.length
      if (got >= n) { d.off('data', onData); resolve(Buffer.concat(chunks)) }
    }
    d.on('data', onData)
    d.once('error', reject)
  })
}

// A ws library client connected to our server end; both closed after the test.
async function libClientOnTower (t: { after: (fn: () => Promise<void> | void) => void }): Promise<{ client: WebSocket, server: Duplex }> {
  const srv = await towerServer()
  t.after(() => srv.close())
  const client = await libClient(srv.port)
  const [server] = (await srv.accepted.next()).value as [Duplex]
  return { client, server }
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

test('bytes arrive intact both ways, one huge write and many small ones', async (t) => {
  const pair = await towerPair({ randomMask: false })
  t.after(() => pair.close())
  const up = randomBytes(3 * 1024 * 1024 + 12345)
  const down = randomBytes(5 * 1024 * 1024)
  const atServer = readBytes(pair.server, up.length)
  const atClient = readBytes(pair.client, down.length)
  pair.client.write(up)
  await writeRandomly(pair.server, down, 300)
  assert.equal(sha(await atServer), sha(up))
  assert.equal(sha(await atClient), sha(down))
})

test('interop: the ws library, as client and as server, reads and writes our frames (random masks both ways)', async (t) => {
  // our client (random mask, as over ws://) against a ws server
  const lib = await libServer()
  t.after(() => lib.close())
  const { stream: ours } = await towerClient(lib.port)
  const theirs = await lib.connected
  const fromUs = randomBytes(1024 * 1024)
  let got = 0
  const hash = createHash('sha256')
  const allIn = new Promise<void>((resolve) => theirs.on('message', (m: Buffer) => { hash.update(m); got += m.length; if (got === fromUs.length) resolve() }))
  await writeRandomly(ours, fromUs, 70_000)
  await allIn
  assert.equal(hash.digest('hex'), sha(fromUs))
  const fromThem = randomBytes(200_000)
  const back = readBytes(ours, fromThem.length)
  theirs.send(fromThem.subarray(0, 100))
  theirs.send(fromThem.subarray(100))
  assert.equal(sha(await back), sha(fromThem))

  // a ws client against our server: its frames carry random mask keys
  const { client, server } = await libClientOnTower(t)
  const data = randomBytes(300_000)
  const arrived = readBytes(server, data.length)
  client.send(data)
  assert.equal(sha(await arrived), sha(data))
  ours.destroy()
  server.destroy()
})

test('a batch of small writes goes out as one frame, not one frame per write', async (t) => {
  const lib = await libServer()
  t.after(() => lib.close())
  const { stream } = await towerClient(lib.port)
  t.after(() => stream.destroy())
  const theirs = await lib.connected
  const sizes: number[] = []
  theirs.on('message', (m: Buffer) => sizes.push(m.length))
  stream.cork()
  for (let i = 0; i < 1000; i++) stream.write(Buffer.alloc(12))
  stream.uncork()
  await new Promise<void>((resolve) => {
    const check = (): void => { if (sizes.reduce((x, y) => x + y, 0) === 12_000) resolve(); else setImmediate(check) }
    check()
  })
  assert.ok(sizes.length <= 2, `1000 corked writes should be one frame (the first may go alone), got ${sizes.length}`)
})

test('a reader that stops reading pauses the socket and stalls the writer', async (t) => {
  const hwm = 64 * 1024
  const pair = await towerPair({ highWaterMark: hwm }, { highWaterMark: hwm })
  t.after(() => pair.close())
  const writer = pair.client
  const reader = pair.server
  reader.pause()
  const total = 64 * 1024 * 1024
  let accepted = 0
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
  assert.equal(pair.serverSocket.isPaused(), true, 'the reading socket is paused')
  // buffered: the high water mark plus what one socket read carried
  assert.ok(reader.readableLength <= hwm + 256 * 1024, `reader buffered ${reader.readableLength} bytes`)

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

test('end() runs the close handshake with 1000 and the peer sees a clean end', async (t) => {
  const pair = await towerPair()
  t.after(() => pair.close())
  pair.client.resume()
  pair.client.end(Buffer.from('last words'))
  assert.equal((await readAll(pair.server)).toString(), 'last words')
  await Promise.all([once(pair.clientSocket, 'close'), once(pair.serverSocket, 'close')])
  assert.equal(pair.client.writableFinished, true)
  assert.equal(pair.client.errored, null)
  assert.equal(pair.server.errored, null)

  // and the ws library sees code 1000
  const lib = await libServer()
  t.after(() => lib.close())
  const { stream } = await towerClient(lib.port)
  const theirs = await lib.connected
  const closed = once(theirs, 'close')
  stream.end()
  const [code] = await closed
  assert.equal(code, 1000)
})

test('TCP dropping without a close frame errors the stream with TOWER_ERR_WS_CLOSED 1006', async (t) => {
  const pair = await towerPair()
  t.after(() => pair.close())
  pair.server.on('error', () => {})
  pair.serverSocket.destroy()
  const [err] = await once(pair.client, 'error') as [{ code: string, closeCode: number }]
  assert.equal(err.code, 'TOWER_ERR_WS_CLOSED')
  assert.equal(err.closeCode, 1006)
})

test('a close with an error code errors the stream with that code', async (t) => {
  const { client, server } = await libClientOnTower(t)
  client.close(4001, 'bye')
  const [err] = await once(server, 'error') as [{ code: string, closeCode: number, message: string }]
  assert.equal(err.code, 'TOWER_ERR_WS_CLOSED')
  assert.equal(err.closeCode, 4001)
  assert.match(err.message, /bye/)
  const [echoed] = await once(client, 'close')
  assert.equal(echoed, 4001)
})

test('a text frame is a protocol error: the peer gets close 1003', async (t) => {
  const { client, server } = await libClientOnTower(t)
  client.send('hello')
  const [err] = await once(server, 'error') as [{ code: string }]
  assert.equal(err.code, 'TOWER_ERR_WS_PROTOCOL')
  const [code] = await once(client, 'close')
  assert.equal(code, 1003)
})

test('a ping is answered with a pong carrying the same payload', async (t) => {
  const { client, server } = await libClientOnTower(t)
  t.after(() => server.destroy())
  client.ping(Buffer.from('are you there'))
  const [payload] = await once(client, 'pong') as [Buffer]
  assert.equal(payload.toString(), 'are you there')
})
