// Data integrity and flow control over one transport: arbitrary splits of
// the byte stream, many concurrent streams, and a reader that stalls.
import assert from 'node:assert/strict'
import { createHash, randomBytes, randomInt } from 'node:crypto'
import { once } from 'node:events'
import type { Duplex } from 'node:stream'
import { describe, it } from 'node:test'
import type { MuxStream } from '../../src/index.ts'
import { drain, sendRandom, sessionPair, until } from '../helpers.ts'
import type { Transport } from '../helpers.ts'

/** Registers these tests over `transport` (the mux's own transports, or wsStream from the root tests). */
export function dataSuite (transport: Transport): void {
  describe(`data over ${transport.name}`, () => {
    for (const [max, size] of [[1, 24 * 1024], [16, 256 * 1024], [1500, 1024 * 1024]]) {
      it(`delivers intact data when the bytes arrive in random pieces of 1..${max}`, async (t) => {
        const { client, server } = await sessionPair(t, transport, { rechunk: max })
        // The server echoes every stream.
        server.on('stream', (stream: MuxStream) => { stream.pipe(stream) })
        const results = await Promise.all([0, 1, 2].map(async () => {
          const stream = client.open()
          const [sent, got] = await Promise.all([sendRandom(stream, size, 20_000), drain(stream)])
          return { sent, got }
        }))
        for (const { sent, got } of results) {
          assert.equal(got.bytes, size)
          assert.equal(got.hash, sent)
        }
        await until(() => client.numStreams === 0 && server.numStreams === 0, 5000, 'streams released')
      })
    }

    it('carries 1,000 concurrent streams with random data both ways, checked by sha256', async (t) => {
      const { client, server } = await sessionPair(t, transport)
      const atServer = new Map<number, Promise<{ received: string, sent: string }>>()
      server.on('stream', (stream: MuxStream) => {
        atServer.set(stream.id, (async () => {
          const [got, sent] = await Promise.all([drain(stream), sendRandom(stream, Math.floor(Math.random() * 32 * 1024), 8192)])
          return { received: got.hash, sent }
        })())
      })
      const atClient = await Promise.all(Array.from({ length: 1000 }, async () => {
        const stream = client.open()
        const [sent, got] = await Promise.all([sendRandom(stream, Math.floor(Math.random() * 32 * 1024), 8192), drain(stream)])
        return { id: stream.id, sent, received: got.hash }
      }))
      assert.equal(atServer.size, 1000)
      for (const c of atClient) {
        const s = await atServer.get(c.id)
        assert.ok(s, `server saw stream ${c.id}`)
        assert.equal(s.received, c.sent, `client→server on ${c.id}`)
        assert.equal(c.received, s.sent, `server→client on ${c.id}`)
      }
      await until(() => client.numStreams === 0 && server.numStreams === 0, 5000, 'streams released')
    })

    it('grows the window of a fast reader on a slow link, up to maxWindow', async (t) => {
      const maxWindow = 1024 * 1024
      const { client, server } = await sessionPair(t, transport, { latency: 15, server: { maxWindow } })
      const accepted = once(server, 'stream') as Promise<[MuxStream]>
      const stream = client.open()
      // The sender runs until the window reached its cap (or 64 MiB went):
      // on a loaded machine a starved sender, not the window, can limit a
      // round, and such a round rightly does not grow the window.
      let widest = 0
      let reached = false
      const sending = (async () => {
        const h = createHash('sha256')
        const pool = randomBytes(128 * 1024)
        for (let sent = 0; !reached && sent < 64 * 1024 * 1024;) {
          const chunk = pool.subarray(randomInt(64 * 1024), 64 * 1024 + randomInt(64 * 1024))
          h.update(chunk)
          sent += chunk.length
          if (!stream.write(chunk)) await once(stream, 'drain')
        }
        stream.end()
        return h.digest('hex')
      })()
      const [inbound] = await accepted
      inbound.on('data', () => {
        widest = Math.max(widest, inbound.receiveWindow)
        if (inbound.receiveWindow === maxWindow) reached = true
      })
      const got = await drain(inbound)
      assert.equal(got.hash, await sending)
      assert.equal(widest, maxWindow, 'the window grew to maxWindow and never past it')
      // Two 15 ms delays; node's timers run off a loop clock cached to the
      // millisecond, so each may fire up to 1 ms early by performance.now().
      assert.ok(server.rtt >= 28, `the server measured the round trip: ${server.rtt} ms`)
      inbound.end()
      stream.resume()
      await once(stream, 'end')
    })

    it('keeps other streams flowing past a stalled reader, buffering no more than its window', async (t) => {
      const { client, server } = await sessionPair(t, transport)
      const inbound: MuxStream[] = []
      server.on('stream', (stream: MuxStream) => {
        inbound.push(stream)
        // Stream 1 is the stalled one: nobody reads it for now. The others echo.
        if (stream.id !== 1) stream.pipe(stream)
      })
      const stalled = client.open()
      const chunk = Buffer.alloc(64 * 1024, 1)
      let written = 0
      while (stalled.write(chunk)) written += chunk.length
      written += chunk.length
      // Keep offering data as the writable drains, up to 4 MiB: far beyond the window.
      const more = (async () => {
        await once(stalled, 'drain')
        while (written < 4 * 1024 * 1024) {
          written += chunk.length
          if (!stalled.write(chunk)) await once(stalled, 'drain')
        }
      })()
      more.catch(() => {})

      const others = await Promise.all([0, 1, 2, 3].map(async () => {
        const stream = client.open()
        const [sent, got] = await Promise.all([sendRandom(stream, 1024 * 1024), drain(stream)])
        return sent === got.hash
      }))
      assert.deepEqual(others, [true, true, true, true])

      const receiving = inbound.find((s) => s.id === 1) as MuxStream
      await until(() => receiving.readableLength === receiving.receiveWindow, 10_000, 'stalled window full')
      assert.equal(receiving.receiveWindow, 256 * 1024, 'a stream that is never read keeps the initial window')
      assert.equal(stalled.sendWindow, 0)
      assert.ok(stalled.writableNeedDrain, 'the writer is backpressured')
      assert.ok(stalled.writableLength <= stalled.writableHighWaterMark + chunk.length)
      // Nothing beyond the window is buffered anywhere for this stream after more turns of the loop.
      for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve))
      assert.equal(receiving.readableLength, 256 * 1024)
      assert.equal(stalled.sendWindow, 0)

      // Reading resumes the flow to the end.
      const total = (async () => (await drain(receiving as Duplex)).bytes)()
      await more
      stalled.end()
      assert.equal(await total, written)
      receiving.end()
      stalled.resume()
      await once(stalled, 'end')
      await until(() => client.numStreams === 0 && server.numStreams === 0, 5000, 'streams released')
    })
  })
}
