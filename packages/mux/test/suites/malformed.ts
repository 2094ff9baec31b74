// A session facing a raw peer over one transport: malformed or hostile
// input must end in GoAway(protocol error) on the wire, a logged reason and a
// closed session; frames for closed streams are dropped; pings are answered.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import type { Duplex } from 'node:stream'
import { describe, it } from 'node:test'
import { encodeHeader, Flag, FrameType, Session } from '../../src/index.ts'
import { framesOf, rawPeer, until } from '../helpers.ts'
import type { Transport } from '../helpers.ts'

const data = (flags: number, id: number, payload: Buffer): Buffer =>
  Buffer.concat([encodeHeader(FrameType.data, flags, id, payload.length), payload])

const violations: Array<[string, Buffer, RegExp]> = [
  ['a bad version', Buffer.from([1, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0]), /version 1/],
  ['an unknown frame type', Buffer.from([0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), /unknown frame type 7/],
  ['data for a stream the peer never opened', data(0, 2, Buffer.from('abc')), /stream 2, which was never opened/],
  ['data for a stream we never opened', data(0, 9, Buffer.from('abc')), /stream 9, which was never opened/],
  ['a data frame beyond the receive window', data(Flag.syn, 2, Buffer.alloc(256 * 1024 + 1)), /more than its receive window/],
  ['a duplicate SYN', Buffer.concat([data(Flag.syn, 2, Buffer.from('a')), data(Flag.syn, 2, Buffer.from('b'))]), /duplicate SYN/],
  ['a SYN with our ID parity', data(Flag.syn, 3, Buffer.from('a')), /our parity/],
  ['a data frame on stream 0', data(0, 0, Buffer.from('a')), /stream 0/],
  ['a ping on a stream', encodeHeader(FrameType.ping, Flag.syn, 2, 1), /ping on stream 2/]
]

/** Registers these tests over `transport` (the mux's own transports, or wsStream from the root tests). */
export function malformedSuite (transport: Transport): void {
  describe(`malformed input over ${transport.name}`, () => {
    for (const [what, bytes, message] of violations) {
      it(`answers ${what} with GoAway(protocol error) and closes`, async (t) => {
        const { session, raw, received, records } = await rawPeer(t, transport)
        session.on('stream', (s: Duplex) => { s.on('error', () => {}) })
        const closed = once(session, 'close') as Promise<[Error & { code?: string }]>
        const ended = once(raw, 'end')
        raw.write(bytes)
        const [err] = await closed
        assert.equal(err.code, 'TOWER_ERR_PROTOCOL')
        assert.match(err.message, message)
        assert.ok(session.closed)
        await ended
        const goAways = framesOf(received()).filter((f) => f.type === FrameType.goAway)
        assert.deepEqual(goAways, [{ type: FrameType.goAway, flags: 0, streamId: 0, length: 1 }])
        // The GoAway bytes as they appear on the wire.
        assert.ok(received().includes(Buffer.from([0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])))
        const logged = records.find((r) => r.level === 'error' && (r.obj.err as { code?: string } | undefined)?.code === 'TOWER_ERR_PROTOCOL')
        assert.ok(logged, 'the protocol error is logged')
        assert.equal(logged.obj.component, 'mux')
      })
    }

    it('drops frames for a recently closed stream and answers pings', async (t) => {
      const { session, raw, received } = await rawPeer(t, transport)
      const stream = session.open()
      stream.on('error', () => {})
      raw.write(encodeHeader(FrameType.windowUpdate, Flag.ack | Flag.rst, 1, 0))
      await new Promise((resolve) => stream.on('close', resolve))
      raw.write(data(0, 1, Buffer.from('late data')))
      raw.write(encodeHeader(FrameType.windowUpdate, 0, 1, 1000))
      raw.write(encodeHeader(FrameType.ping, Flag.syn, 0, 0xabcdef))
      const isReply = (f: { type: number, flags: number }): boolean => f.type === FrameType.ping && f.flags === Flag.ack
      await until(() => framesOf(received()).some(isReply), 5000, 'ping reply')
      const reply = framesOf(received()).find(isReply)
      assert.deepEqual(reply, { type: FrameType.ping, flags: Flag.ack, streamId: 0, length: 0xabcdef })
      assert.equal(session.closed, false)
      assert.equal(session.numStreams, 0)
    })

    it('gives up on a peer that floods pings but never reads the replies', async (t) => {
      const [a, raw] = await transport.pair(t)
      const session = new Session(a, { client: true, keepAliveInterval: 0, maxWindow: 256 * 1024 })
      t.after(() => { session.destroy() })
      raw.on('error', () => {})
      // 2 million pings: 24 MB of replies, more than socket buffers plus the 8 MiB bound.
      const pings = Buffer.alloc(2_000_000 * 12)
      for (let off = 0; off < pings.length; off += 12) encodeHeader(FrameType.ping, Flag.syn, 0, off).copy(pings, off)
      const closed = once(session, 'close') as Promise<[Error & { code?: string }]>
      raw.write(pings)
      const [err] = await closed
      assert.equal(err.code, 'TOWER_ERR_SESSION_CLOSED')
      assert.match(err.message, /peer does not read/)
      assert.ok(a.writableLength < 16 * 1024 * 1024, `transport holds ${a.writableLength} bytes`)
    })

    it('ends with the GoAway code of the peer when it is an error', async (t) => {
      const { session, raw } = await rawPeer(t, transport)
      const closed = once(session, 'close') as Promise<[Error & { code?: string }]>
      raw.write(encodeHeader(FrameType.goAway, 0, 0, 2))
      const [err] = await closed
      assert.equal(err.code, 'TOWER_ERR_SESSION_CLOSED')
      assert.match(err.message, /GoAway\(2, internal error\)/)
    })
  })
}
