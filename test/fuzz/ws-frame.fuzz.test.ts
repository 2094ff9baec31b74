// Property fuzzing of Tower's RFC 6455 frame parser (packages/transport/src/ws-frame.ts)
// with fast-check: valid frame sequences give the same payload and control
// frames however the bytes are cut, and hostile bytes end only in a
// WsFrameError carrying a close code that may be sent, at the same place for
// every cut.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { applyMask, FrameParser, frameHeader, isSendableCloseCode, MAX_CONTROL_PAYLOAD, Opcode, WsFrameError } from '@tower/transport'
import { fuzzParams } from '../helpers/fuzz.ts'

// Two properties share this file's budget.
function halfBudget (): ReturnType<typeof fuzzParams> {
  const p = fuzzParams()
  return { ...p, interruptAfterTimeLimit: Math.max(1, Math.floor((p.interruptAfterTimeLimit ?? 0) / 2)) }
}

interface Outcome {
  /** All Binary/Continuation payload, joined. */
  data: string
  /** Each control frame as `opcode:hex`. */
  controls: string[]
  /** The message and close code of the error the parser threw, if any. */
  error?: string
}

// Feeds `bytes` (copied: the parser unmasks in place) cut at `cuts`.
function parse (bytes: Uint8Array, cuts: number[], expectMasked: boolean): Outcome {
  const data: Buffer[] = []
  const controls: string[] = []
  const parser = new FrameParser({
    onData (piece) {
      data.push(Buffer.from(piece))
    },
    onControl (opcode, payload) {
      assert.ok(payload.length <= MAX_CONTROL_PAYLOAD, 'control payloads are at most 125 bytes')
      controls.push(`${opcode}:${payload.toString('hex')}`)
    }
  }, expectMasked)
  const buf = Buffer.from(bytes)
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b)
  let from = 0
  try {
    for (const to of [...points, buf.length]) {
      if (to > from) parser.push(buf.subarray(from, to))
      from = Math.max(from, to)
    }
  } catch (err) {
    assert.ok(err instanceof WsFrameError, `only WsFrameError is thrown, got ${String(err)}`)
    assert.equal(err.code, 'TOWER_ERR_WS_PROTOCOL')
    assert.ok(isSendableCloseCode(err.closeCode) && [1002, 1003, 1007].includes(err.closeCode), `close code ${err.closeCode}`)
    return { data: Buffer.concat(data).toString('hex'), controls, error: `${err.closeCode} ${err.message}` }
  }
  return { data: Buffer.concat(data).toString('hex'), controls }
}

interface Frame { opcode: number, fin: boolean, payload: Uint8Array }

function encode (frames: Frame[], masks: Array<Uint8Array | undefined>): Uint8Array {
  const parts: Buffer[] = []
  frames.forEach((f, i) => {
    const mask = masks[i % Math.max(1, masks.length)]
    const key = mask === undefined ? undefined : Buffer.from(mask)
    const header = frameHeader(f.opcode, f.payload.length, key)
    if (!f.fin) header[0] &= 0x7f
    const body = Buffer.from(f.payload)
    if (key !== undefined) applyMask(body, key, 0)
    parts.push(header, body)
  })
  return Buffer.concat(parts)
}

const closeCode = fc.oneof(
  fc.integer({ min: 1000, max: 1003 }),
  fc.integer({ min: 1007, max: 1014 }),
  fc.integer({ min: 3000, max: 4999 })
)
const closePayload = fc.oneof(
  fc.constant(new Uint8Array(0)),
  fc.tuple(closeCode, fc.string({ unit: 'grapheme', maxLength: 30 })).map(([code, reason]) => {
    const b = Buffer.alloc(2)
    b.writeUInt16BE(code)
    return new Uint8Array(Buffer.concat([b, Buffer.from(reason)]).subarray(0, MAX_CONTROL_PAYLOAD))
  })
)
const control: fc.Arbitrary<Frame> = fc.oneof(
  fc.record({ opcode: fc.constantFrom(Opcode.ping, Opcode.pong), fin: fc.constant(true), payload: fc.uint8Array({ maxLength: MAX_CONTROL_PAYLOAD }) }),
  fc.record({ opcode: fc.constant(Opcode.close), fin: fc.constant(true), payload: closePayload })
)
// One message: a Binary frame, then Continuations, the last with FIN, with
// control frames between the fragments.
const message: fc.Arbitrary<Frame[]> = fc.array(fc.tuple(fc.uint8Array({ maxLength: 3000 }), fc.array(control, { maxLength: 2 })), { minLength: 1, maxLength: 4 })
  .map((pieces) => pieces.flatMap(([payload, controls], i): Frame[] => [
    { opcode: i === 0 ? Opcode.binary : Opcode.continuation, fin: i === pieces.length - 1, payload },
    ...(i === pieces.length - 1 ? [] : controls)
  ]))
const validFrames = fc.array(fc.oneof(message, control.map((c) => [c])), { maxLength: 12 }).map((groups) => groups.flat())
const masks = fc.array(fc.oneof(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.constant(new Uint8Array(4))), { minLength: 1, maxLength: 4 })
const cuts = fc.array(fc.nat({ max: 40_000 }), { maxLength: 40 })

test('valid frames, masked or not, give the same payload and control frames however the bytes are cut', () => {
  fc.assert(fc.property(validFrames, masks, fc.boolean(), cuts, (frames, keys, masked, at) => {
    const bytes = encode(frames, masked ? keys : [undefined])
    const got = parse(bytes, at, masked)
    assert.equal(got.error, undefined)
    const want: Outcome = { data: '', controls: [] }
    const data: Buffer[] = []
    for (const f of frames) {
      if (f.opcode >= Opcode.close) want.controls.push(`${f.opcode}:${Buffer.from(f.payload).toString('hex')}`)
      else data.push(Buffer.from(f.payload))
    }
    want.data = Buffer.concat(data).toString('hex')
    assert.deepEqual(got, want)
  }), halfBudget())
})

// Random headers (any opcode, reserved bits, mask bit, length form), raw
// noise, valid sequences, and single-byte mutations of valid sequences.
const header = fc.tuple(fc.nat({ max: 0xff }), fc.nat({ max: 0xff }), fc.uint8Array({ minLength: 0, maxLength: 12 }))
  .map(([b0, b1, rest]) => new Uint8Array([b0, b1, ...rest]))
const mutated = fc.tuple(validFrames, masks, fc.array(fc.tuple(fc.nat(), fc.nat({ max: 0xff })), { minLength: 1, maxLength: 4 }))
  .map(([frames, keys, flips]) => {
    const bytes = Buffer.from(encode(frames, keys))
    if (bytes.length > 0) for (const [at, value] of flips) bytes[at % bytes.length] = value
    return new Uint8Array(bytes)
  })
const hostile = fc.array(fc.oneof(header, fc.uint8Array({ maxLength: 64 }), fc.tuple(validFrames, masks).map(([f, k]) => encode(f, k)), mutated), { maxLength: 12 })
  .map((parts) => new Uint8Array(Buffer.concat(parts.map((p) => Buffer.from(p)))))

test('on hostile bytes the parser throws only WsFrameError with a sendable close code, at the same place for every cut', () => {
  fc.assert(fc.property(hostile, fc.boolean(), cuts, (bytes, masked, at) => {
    assert.deepEqual(parse(bytes, at, masked), parse(bytes, [], masked))
  }), halfBudget())
})
