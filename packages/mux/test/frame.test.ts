// Frame header codec, the incremental decoder, and option validation: the
// parts that need no transport.
import assert from 'node:assert/strict'
import { randomBytes, randomInt } from 'node:crypto'
import { describe, it } from 'node:test'
import {
  defaultConfig, encodeHeader, Flag, FrameDecoder, FrameType, HEADER_SIZE, InvalidArgumentError,
  ProtocolError, readHeader, Session, verifyConfig
} from '../src/index.ts'
import type { FrameHandler } from '../src/index.ts'
import { memoryPair } from './helpers.ts'

interface Seen { type: number, flags: number, streamId: number, length: number, payload: Buffer[] }

function collector (): { handler: FrameHandler, frames: Seen[] } {
  const frames: Seen[] = []
  return {
    frames,
    handler: {
      onHeader (type, flags, streamId, length) { frames.push({ type, flags, streamId, length, payload: [] }) },
      onPayload (piece) { frames[frames.length - 1].payload.push(piece) },
      onPayloadEnd () { frames[frames.length - 1].payload.push(Buffer.alloc(0)) }
    }
  }
}

function dataFrame (flags: number, id: number, payload: Buffer): Buffer {
  return Buffer.concat([encodeHeader(FrameType.data, flags, id, payload.length), payload])
}

describe('frame header', () => {
  it('encodes big-endian fields in 12 bytes', () => {
    const buf = encodeHeader(FrameType.windowUpdate, Flag.syn | Flag.fin, 0x01020304, 0xa0b0c0d0)
    assert.equal(buf.length, HEADER_SIZE)
    assert.deepEqual([...buf], [0, 1, 0, 5, 1, 2, 3, 4, 0xa0, 0xb0, 0xc0, 0xd0])
    assert.deepEqual(readHeader(buf), { version: 0, type: 1, flags: 5, streamId: 0x01020304, length: 0xa0b0c0d0 })
  })
})

describe('FrameDecoder', () => {
  it('yields the same frames for any split of the bytes', () => {
    const payloads = [randomBytes(0), randomBytes(1), randomBytes(5000), randomBytes(70_000)]
    const wire = Buffer.concat([
      encodeHeader(FrameType.ping, Flag.syn, 0, 77),
      ...payloads.map((p, i) => dataFrame(i === 0 ? Flag.syn : 0, 3, p)),
      encodeHeader(FrameType.windowUpdate, Flag.fin, 3, 1234),
      encodeHeader(FrameType.goAway, 0, 0, 0)
    ])
    for (const max of [1, 2, 11, 12, 13, 100, 65_536, wire.length]) {
      const { handler, frames } = collector()
      const decoder = new FrameDecoder(handler, 1 << 20)
      for (let off = 0; off < wire.length;) {
        const n = 1 + randomInt(max)
        decoder.push(wire.subarray(off, off + n))
        off += n
      }
      assert.equal(frames.length, 7, `split ${max}`)
      assert.deepEqual(frames.map((f) => f.type), [2, 0, 0, 0, 0, 1, 3])
      assert.equal(frames[0].length, 77)
      for (let i = 0; i < payloads.length; i++) {
        assert.deepEqual(Buffer.concat(frames[i + 1].payload), payloads[i], `payload ${i}, split ${max}`)
      }
      assert.equal(frames[5].length, 1234)
    }
  })

  it('copies a small piece instead of pinning a large chunk', () => {
    const { handler, frames } = collector()
    const decoder = new FrameDecoder(handler, 1 << 20)
    const big = Buffer.concat([dataFrame(0, 1, Buffer.from('ab')), Buffer.alloc(64 * 1024)])
    decoder.push(big.subarray(0, HEADER_SIZE + 2))
    assert.notEqual(frames[0].payload[0].buffer, big.buffer)
    assert.equal(frames[0].payload[0].toString(), 'ab')
  })

  it('rejects a bad version, an unknown type and an oversized data frame', () => {
    const cases: Array<[Buffer, RegExp]> = [
      [Buffer.from([1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]), /version 1/],
      [Buffer.from([0, 9, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]), /unknown frame type 9/],
      [encodeHeader(FrameType.data, 0, 1, 1025), /exceeds/]
    ]
    for (const [bytes, message] of cases) {
      const decoder = new FrameDecoder(collector().handler, 1024)
      assert.throws(() => { decoder.push(bytes) }, (err: unknown) => {
        assert.ok(err instanceof ProtocolError)
        assert.equal(err.code, 'TOWER_ERR_PROTOCOL')
        assert.equal(err.goAwayCode, 1)
        assert.match(err.message, message)
        return true
      })
    }
  })
})

describe('verifyConfig', () => {
  it('applies defaults', () => {
    const config = verifyConfig({ client: true })
    assert.equal(config.initialWindow, 256 * 1024)
    assert.equal(config.maxWindow, defaultConfig.maxWindow)
    assert.equal(config.maxFrameSize, defaultConfig.maxFrameSize)
  })

  it('names the bad option', () => {
    const bad: Array<[object, string]> = [
      [{}, 'client'],
      [{ client: true, initialWindow: 1000 }, 'initialWindow'],
      [{ client: true, maxWindow: 1 }, 'maxWindow'],
      [{ client: true, maxStreams: 0 }, 'maxStreams'],
      [{ client: true, acceptBacklog: -1 }, 'acceptBacklog'],
      [{ client: true, keepAliveInterval: 1.5 }, 'keepAliveInterval'],
      [{ client: true, keepAliveTimeout: 0 }, 'keepAliveTimeout'],
      [{ client: true, maxFrameSize: 10 }, 'maxFrameSize'],
      [{ client: true, logger: {} }, 'logger']
    ]
    for (const [options, name] of bad) {
      assert.throws(() => verifyConfig(options as never), (err: unknown) => {
        assert.ok(err instanceof InvalidArgumentError)
        assert.equal(err.code, 'TOWER_ERR_INVALID_ARG')
        assert.ok(err.message.startsWith(name), err.message)
        return true
      })
    }
  })

  it('is applied by the Session constructor', () => {
    const [a] = memoryPair()
    assert.throws(() => new Session(a, { client: true, maxStreams: -5 }), /maxStreams/)
    assert.throws(() => new Session(null as never, { client: true }), /transport/)
    a.destroy()
  })
})
