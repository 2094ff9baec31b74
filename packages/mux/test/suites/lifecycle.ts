// Stream and session lifecycle over one transport: half-close, reset,
// accept backlog and stream limits, GoAway, transport loss, and many
// open/close cycles without a leak.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { describe, it } from 'node:test'
import type { MuxStream } from '../../src/index.ts'
import { drain, gc, sessionPair, until } from '../helpers.ts'
import type { Transport } from '../helpers.ts'

async function text (stream: MuxStream): Promise<string> {
  const chunks: Buffer[] = []
  stream.on('data', (c: Buffer) => chunks.push(c))
  await once(stream, 'end')
  return Buffer.concat(chunks).toString()
}

async function resetError (stream: MuxStream): Promise<Error & { code?: string }> {
  const [err] = await once(stream, 'error') as [Error & { code?: string }]
  return err
}

/** Registers these tests over `transport` (the mux's own transports, or wsStream from the root tests). */
export function lifecycleSuite (transport: Transport): void {
  describe(`lifecycle over ${transport.name}`, () => {
    it('half-closes: the side that ended still receives, the other still sends', async (t) => {
      const { client, server } = await sessionPair(t, transport)
      server.on('stream', (stream: MuxStream) => {
        void (async () => {
          const request = await text(stream)
          // The client's FIN has arrived; this side writes on.
          stream.write('re: ')
          setImmediate(() => stream.end(request))
        })()
      })
      const stream = client.open()
      stream.end('question')
      assert.equal(await text(stream), 're: question')
      await until(() => client.numStreams === 0 && server.numStreams === 0, 5000, 'streams released')

      // And the other way round: the server ends first while the client writes on.
      server.removeAllListeners('stream')
      const received = new Promise<string>((resolve) => {
        server.once('stream', (s: MuxStream) => {
          s.end('early')
          void text(s).then(resolve)
        })
      })
      const second = client.open()
      second.write('late ')
      assert.equal(await text(second), 'early')
      second.end('data')
      assert.equal(await received, 'late data')
      await until(() => client.numStreams === 0 && server.numStreams === 0, 5000, 'streams released')
    })

    it('propagates RST both ways as TOWER_ERR_STREAM_RESET', async (t) => {
      const { client, server } = await sessionPair(t, transport)
      server.once('stream', (stream: MuxStream) => { stream.once('data', () => { stream.destroy() }) })
      const first = client.open()
      first.write('hello')
      const err = await resetError(first)
      assert.equal(err.code, 'TOWER_ERR_STREAM_RESET')

      const inbound = once(server, 'stream') as Promise<[MuxStream]>
      const second = client.open()
      second.write('x')
      const [peer] = await inbound
      const peerErr = resetError(peer)
      second.destroy()
      assert.equal((await peerErr).code, 'TOWER_ERR_STREAM_RESET')
      await until(() => client.numStreams === 0 && server.numStreams === 0, 5000, 'streams released')
    })

    it('holds acceptBacklog unaccepted streams, resets the next, and hands them over to a listener', async (t) => {
      const { client, server } = await sessionPair(t, transport, { server: { acceptBacklog: 2 } })
      const streams = [client.open(), client.open(), client.open()]
      streams.forEach((s, i) => s.end(`stream ${i}`))
      const err = await resetError(streams[2])
      assert.equal(err.code, 'TOWER_ERR_STREAM_RESET')
      assert.equal(server.numStreams, 2)
      const accepted: Array<Promise<string>> = []
      server.on('stream', (s: MuxStream) => { accepted.push(text(s)); s.end() })
      await until(() => accepted.length === 2, 5000, 'backlog handed over')
      assert.deepEqual(await Promise.all(accepted), ['stream 0', 'stream 1'])
      streams[0].resume()
      streams[1].resume()
      await until(() => client.numStreams === 0 && server.numStreams === 0, 5000, 'streams released')
    })

    it('enforces maxStreams: open() throws StreamLimitError, an inbound SYN over the limit is reset', async (t) => {
      const { client, server } = await sessionPair(t, transport, { client: { maxStreams: 2 }, server: { maxStreams: 1 } })
      server.on('stream', (s: MuxStream) => { s.resume(); s.end(); s.on('error', () => {}) })
      const a = client.open()
      const b = client.open()
      assert.throws(() => client.open(), (err: Error & { code?: string }) => err.code === 'TOWER_ERR_STREAM_LIMIT')
      assert.equal((await resetError(b)).code, 'TOWER_ERR_STREAM_RESET')
      assert.equal(server.numStreams, 1)
      // The limit frees up as streams close.
      await until(() => client.numStreams === 1, 5000, 'reset stream released')
      a.destroy()
      await until(() => server.numStreams === 0, 5000, 'server stream released')
      const c = client.open()
      c.end('ok')
      c.resume()
      await once(server, 'stream')
      await until(() => client.numStreams === 0 && server.numStreams === 0, 5000, 'streams released')
    })

    it('closes gracefully: GoAway refuses new streams and lets open ones finish', async (t) => {
      const { client, server } = await sessionPair(t, transport)
      server.on('stream', (s: MuxStream) => { s.pipe(s) })
      const open = client.open()
      open.write('before ')
      const goaway = once(server, 'goaway')
      client.close()
      assert.throws(() => client.open(), (err: Error & { code?: string }) => err.code === 'TOWER_ERR_SESSION_CLOSED')
      await goaway
      assert.throws(() => server.open(), (err: Error & { code?: string }) => err.code === 'TOWER_ERR_SESSION_CLOSED')
      assert.equal(client.closed, false)
      const closes = [once(client, 'close'), once(server, 'close')]
      open.end('after')
      assert.equal(await text(open), 'before after')
      const [[clientErr], [serverErr]] = await Promise.all(closes)
      assert.equal(clientErr, undefined)
      assert.equal(serverErr, undefined)
      assert.ok(client.closed && server.closed)
    })

    it('ends the session and its streams with SessionClosedError when the transport goes away', async (t) => {
      const { client, server, serverTransport } = await sessionPair(t, transport)
      server.on('stream', (s: MuxStream) => { s.on('error', () => {}) })
      const stream = client.open()
      stream.write('x')
      await once(server, 'stream')
      const streamErr = resetError(stream)
      const closed = once(client, 'close') as Promise<[Error | undefined]>
      serverTransport.destroy()
      const [err] = await closed
      assert.equal((err as Error & { code?: string }).code, 'TOWER_ERR_SESSION_CLOSED')
      assert.equal((await streamErr).code, 'TOWER_ERR_SESSION_CLOSED')
      assert.equal(client.numStreams, 0)
      assert.throws(() => client.open(), /closed/)
      await assert.rejects(client.ping(), (e: Error & { code?: string }) => e.code === 'TOWER_ERR_SESSION_CLOSED')
    })

    it('ends the session with GoAway(internal error) when a listener throws', async (t) => {
      const { client, server } = await sessionPair(t, transport)
      server.on('stream', (s: MuxStream) => {
        s.on('error', () => {})
        throw new Error('listener bug')
      })
      const closes = [once(server, 'close'), once(client, 'close')] as Array<Promise<[Error & { code?: string }]>>
      const stream = client.open()
      stream.on('error', () => {})
      stream.write('x')
      const [[serverErr], [clientErr]] = await Promise.all(closes)
      assert.equal(serverErr.message, 'listener bug')
      assert.equal(clientErr.code, 'TOWER_ERR_SESSION_CLOSED')
      assert.match(clientErr.message, /GoAway\(2, internal error\)/)
    })

    it('answers ping() with the round-trip time', async (t) => {
      const { client, server } = await sessionPair(t, transport)
      const rtts = await Promise.all([client.ping(), server.ping(), client.ping()])
      for (const rtt of rtts) assert.ok(rtt >= 0 && rtt < 5000, String(rtt))
      assert.ok(client.rtt > 0)
    })

    it('runs 100,000 open/close cycles without leaking streams or memory', async (t) => {
      const { client, server } = await sessionPair(t, transport, { client: { maxStreams: 10_000 }, server: { maxStreams: 10_000 } })
      server.on('stream', (s: MuxStream) => {
        s.on('data', () => {})
        s.on('end', () => { s.end() })
      })
      const cycle = async (): Promise<void> => {
        const s = client.open()
        s.end('x')
        s.resume()
        await once(s, 'close')
      }
      const round = async (n: number): Promise<void> => {
        await Promise.all(Array.from({ length: n }, cycle))
      }
      const batch = 2000
      await round(batch)
      await until(() => server.numStreams === 0, 5000, 'warm-up released')
      gc()
      const before = process.memoryUsage().heapUsed
      for (let done = batch; done < 100_000; done += batch) await round(batch)
      assert.equal(client.numStreams, 0)
      await until(() => server.numStreams === 0, 5000, 'server streams released')
      gc()
      const grown = process.memoryUsage().heapUsed - before
      assert.ok(grown < 8 * 1024 * 1024, `heap grew by ${grown} bytes`)
    })

    it('drains a stream to its end even when the peer resets others', async (t) => {
      const { client, server } = await sessionPair(t, transport)
      server.on('stream', (s: MuxStream) => {
        if (s.id === 3) s.destroy()
        else s.end(Buffer.alloc(300 * 1024, 2))
      })
      const ok = client.open()
      const reset = client.open()
      reset.on('error', () => {})
      ok.end()
      const got = await drain(ok)
      assert.equal(got.bytes, 300 * 1024)
    })
  })
}
