// Property fuzzing of the yamux frame decoder (packages/mux/src/decoder.ts)
// with fast-check: however the byte stream is cut, the decoder reports the
// same frames, and the only error it ever throws is a ProtocolError.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { encodeHeader, FrameDecoder, FrameType, ProtocolError } from '@tower/mux'
import { fuzzParams } from '../helpers/fuzz.ts'

// Data frames larger than this are a protocol error, so random lengths hit both sides of it.
const MAX_PAYLOAD = 1024

interface Outcome {
  /** Headers as `type/flags/id/length`, each Data payload as one hex string, `end` after it. */
  events: string[]
  /** The message of the error the decoder threw, if any. */
  error?: string
}

// Feeds `bytes` cut at `cuts` and records what the decoder reports, joining
// the pieces of each payload so that outcomes compare across cuts.
function decode (bytes: Uint8Array, cuts: number[]): Outcome {
  const events: string[] = []
  let payload: Buffer[] = []
  const decoder = new FrameDecoder({
    onHeader (type, flags, streamId, length) { events.push(`${type}/${flags}/${streamId}/${length}`) },
    onPayload (piece) {
      assert.ok(piece.length > 0, 'no empty payload pieces')
      payload.push(Buffer.from(piece))
    },
    onPayloadEnd () {
      events.push(Buffer.concat(payload).toString('hex'), 'end')
      payload = []
    }
  }, MAX_PAYLOAD)
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b)
  let from = 0
  try {
    for (const to of [...points, buf.length]) {
      if (to > from) decoder.push(buf.subarray(from, to))
      from = Math.max(from, to)
    }
  } catch (err) {
    assert.ok(err instanceof ProtocolError, `only ProtocolError is thrown, got ${String(err)}`)
    assert.equal(err.code, 'TOWER_ERR_PROTOCOL')
    return { events, error: err.message }
  }
  if (payload.length > 0) events.push(Buffer.concat(payload).toString('hex'))
  return { events }
}

interface Frame { type: number, flags: number, streamId: number, length: number, payload?: Uint8Array }

function encode (frames: Frame[]): Uint8Array {
  const parts: Buffer[] = []
  for (const f of frames) {
    const length = f.payload === undefined ? f.length : f.payload.length
    parts.push(encodeHeader(f.type, f.flags, f.streamId, length))
    if (f.payload !== undefined) parts.push(Buffer.from(f.payload))
  }
  return Buffer.concat(parts)
}

const uint32 = fc.nat({ max: 0xffff_ffff })
const flags = fc.nat({ max: 0xffff })
const dataFrame: fc.Arbitrary<Frame> = fc.record({
  type: fc.constant(FrameType.data),
  flags,
  streamId: uint32,
  length: fc.constant(0),
  payload: fc.uint8Array({ maxLength: MAX_PAYLOAD })
})
const otherFrame: fc.Arbitrary<Frame> = fc.record({
  type: fc.constantFrom(FrameType.windowUpdate, FrameType.ping, FrameType.goAway),
  flags,
  streamId: uint32,
  length: uint32
})
const validFrames = fc.array(fc.oneof(dataFrame, otherFrame), { maxLength: 30 })
const cuts = fc.array(fc.nat({ max: 40_000 }), { maxLength: 40 })

test('the decoder reports valid frames exactly, however the bytes are cut', () => {
  fc.assert(fc.property(validFrames, cuts, (frames, at) => {
    const got = decode(encode(frames), at)
    assert.equal(got.error, undefined)
    const want: string[] = []
    for (const f of frames) {
      const length = f.payload === undefined ? f.length : f.payload.length
      want.push(`${f.type}/${f.flags}/${f.streamId}/${length}`)
      if (f.payload !== undefined && f.payload.length > 0) want.push(Buffer.from(f.payload).toString('hex'), 'end')
    }
    assert.deepEqual(got.events, want)
  }), fuzzParams())
})

// Noise between frames, headers with random versions, types and lengths:
// most inputs end in a ProtocolError somewhere, at the same frame for every cut.
const header = fc.tuple(fc.constantFrom(0, 0, 0, 1, 255), fc.nat({ max: 5 }), flags, uint32, fc.oneof(fc.nat({ max: MAX_PAYLOAD + 1 }), uint32))
  .map(([version, type, f, id, length]) => {
    const h = encodeHeader(0, f, id, length)
    h[0] = version
    h[1] = type
    return new Uint8Array(h)
  })
const hostile = fc.array(fc.oneof(header, fc.uint8Array({ maxLength: 64 }), validFrames.map(encode)), { maxLength: 20 })
  .map((parts) => new Uint8Array(Buffer.concat(parts.map((p) => Buffer.from(p)))))

test('on hostile bytes the decoder throws only ProtocolError, at the same place for every cut', () => {
  fc.assert(fc.property(hostile, cuts, (bytes, at) => {
    assert.deepEqual(decode(bytes, at), decode(bytes, []))
  }), fuzzParams())
})
