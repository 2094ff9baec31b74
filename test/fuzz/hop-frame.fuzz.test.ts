// Property and mutation fuzzing of the hop frame decoder
// (packages/transport/src/hop-frame.ts) with fast-check: whatever the bytes
// and however they are cut, HopDecoder yields the same messages (DATA pieces
// merged) or fails, whatever the cut, with TOWER_ERR_HOP_FRAME only; valid
// streams round-trip; a length field over the limit fails by the end of its
// 5-byte header, whatever follows.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import {
  encodeDataHeader, encodeEnd, encodeRequestHead, encodeResponseHead, HopDecoder, HOP_MAX_DATA, HOP_MAX_HEAD_BYTES,
  type HopRequestHead, type HopResponseHead
} from '@tower/transport'
import { fuzzParams } from '../helpers/fuzz.ts'

type Outcome = { messages: unknown[], error?: string }

// Decodes `bytes` cut at `cuts`; adjacent DATA pieces are merged (a frame may surface in pieces).
function decode (bytes: Buffer, cuts: number[]): Outcome {
  const d = new HopDecoder()
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)
  const messages: unknown[] = []
  const add = (m: ReturnType<HopDecoder['push']>[number]): void => {
    const last = messages.at(-1) as { type: string, hex?: string } | undefined
    if (m.type === 'data') {
      if (last?.type === 'data') last.hex += m.chunk.toString('hex')
      else messages.push({ type: 'data', hex: m.chunk.toString('hex') })
    } else messages.push(m)
  }
  let from = 0
  try {
    for (const to of [...points, bytes.length]) {
      if (to <= from) continue
      for (const m of d.push(bytes.subarray(from, to))) add(m)
      from = to
    }
    return { messages }
  } catch (err) {
    const e = err as Error & { code?: string }
    assert.equal(e.code, 'TOWER_ERR_HOP_FRAME', `only TOWER_ERR_HOP_FRAME, got ${String(err)}`)
    return { messages, error: e.message }
  }
}

const TCHAR = '!#$%&\'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'
const str = (set: string, min: number, max: number): fc.Arbitrary<string> => fc.array(fc.constantFrom(...set), { minLength: min, maxLength: max }).map((a) => a.join(''))
const latin1 = (min: number, max: number, lo: number): fc.Arbitrary<string> => fc.array(fc.integer({ min: lo, max: 0xff }), { minLength: min, maxLength: max }).map((a) => String.fromCharCode(...a))
const headers = fc.array(fc.tuple(str(TCHAR.replace(/[A-Z]/g, ''), 1, 16), latin1(0, 40, 0x20).map((v) => v.replace(/\x7f/g, ''))), { maxLength: 8 }).map((p) => p.flat())
const reqHead = fc.record({ method: str(TCHAR, 1, 32), path: latin1(0, 60, 0x21).map((p) => '/' + p.replace(/[\x7f-\xff]/g, 'x')), headers, body: fc.boolean() })
  .map((h): HopRequestHead => ({ ...h }))
const resHead = fc.record({ status: fc.integer({ min: 200, max: 599 }), headers, body: fc.boolean() }).map((h): HopResponseHead => ({ ...h }))
const chunks = fc.array(fc.uint8Array({ minLength: 1, maxLength: 200 }), { maxLength: 3 })

function stream<H extends { body: boolean }> (ex: Array<[H, Uint8Array[]]>, enc: (h: H) => Buffer): Buffer {
  const parts: Buffer[] = []
  for (const [h, body] of ex) {
    parts.push(enc(h))
    if (h.body) for (const c of body) parts.push(encodeDataHeader(c.length), Buffer.from(c))
    parts.push(encodeEnd())
  }
  return Buffer.concat(parts)
}
const valid = fc.oneof(
  fc.array(fc.tuple(reqHead, chunks), { minLength: 1, maxLength: 3 }).map((ex) => stream(ex, (h) => encodeRequestHead(h))),
  fc.array(fc.tuple(resHead, chunks), { minLength: 1, maxLength: 3 }).map((ex) => stream(ex, (h) => encodeResponseHead(h)))
)
// Hand-made frames: any type and length field, payloads that may or may not match.
const handMade = fc.array(fc.tuple(fc.constantFrom(0, 1, 2, 3, 4, 5, 255), fc.oneof(fc.nat({ max: 300 }), fc.constantFrom(0, 3, 7, HOP_MAX_DATA, HOP_MAX_DATA + 1, HOP_MAX_HEAD_BYTES + 1, 0xffffffff)), fc.uint8Array({ maxLength: 300 })), { maxLength: 5 })
  .map((frames) => Buffer.concat(frames.map(([type, length, payload]) => {
    const h = Buffer.alloc(5)
    h[0] = type
    h.writeUInt32BE(length, 1)
    return Buffer.concat([h, Buffer.from(payload)])
  })))
const mutated = fc.tuple(valid, fc.array(fc.tuple(fc.nat(), fc.nat({ max: 0xff })), { minLength: 1, maxLength: 4 }))
  .map(([v, flips]) => {
    const b = Buffer.from(v)
    for (const [at, value] of flips) b[at % b.length] = value
    return b
  })
const input = fc.oneof(valid, handMade, mutated, fc.uint8Array({ maxLength: 400 }).map((u) => Buffer.from(u)))
const cuts = fc.array(fc.nat({ max: 5000 }), { maxLength: 16 })

function share (f: number): ReturnType<typeof fuzzParams> {
  const p = fuzzParams()
  return { ...p, interruptAfterTimeLimit: Math.max(1, Math.floor((p.interruptAfterTimeLimit ?? 0) * f)) }
}

test('HopDecoder on random, hand-made and mutated input: the same messages for every cut, or a failure for every cut, TOWER_ERR_HOP_FRAME only', () => {
  fc.assert(fc.property(input, cuts, (bytes, at) => {
    const whole = decode(bytes, [])
    const cut = decode(bytes, at)
    assert.equal(cut.error !== undefined, whole.error !== undefined, `whole: ${whole.error}, cut: ${cut.error}`)
    // a push that throws returns nothing, so on failure only earlier pushes' messages are seen
    if (whole.error === undefined) assert.deepEqual(cut.messages, whole.messages)
  }), share(0.6))
})

test('valid streams decode without error whatever the cut, one head per exchange', () => {
  fc.assert(fc.property(valid, cuts, (bytes, at) => {
    const got = decode(bytes, at)
    assert.equal(got.error, undefined)
    assert.deepEqual(got.messages, decode(bytes, []).messages)
    assert.equal(got.messages.filter((m) => (m as { type: string }).type === 'end').length, got.messages.filter((m) => /head/.test((m as { type: string }).type)).length)
  }), share(0.2))
})

test('a length field over the limit fails by the end of its 5-byte header, whatever follows', () => {
  const over = fc.oneof(
    fc.tuple(fc.constantFrom(1, 4), fc.integer({ min: HOP_MAX_HEAD_BYTES + 1, max: 0xffffffff })),
    fc.tuple(fc.constant(2), fc.integer({ min: HOP_MAX_DATA + 1, max: 0xffffffff }))
  )
  fc.assert(fc.property(over, fc.uint8Array({ maxLength: 100 }), ([type, length], tail) => {
    const d = new HopDecoder()
    // DATA needs an open body first
    if (type === 2) d.push(encodeResponseHead({ status: 200, headers: [], body: true }))
    const h = Buffer.alloc(5)
    h[0] = type
    h.writeUInt32BE(length, 1)
    assert.throws(() => d.push(Buffer.concat([h, Buffer.from(tail)])), (e: Error & { code?: string }) => e.code === 'TOWER_ERR_HOP_FRAME')
    const e = new HopDecoder()
    if (type === 2) e.push(encodeResponseHead({ status: 200, headers: [], body: true }))
    assert.deepEqual(e.push(h.subarray(0, 4)), [])
    assert.throws(() => e.push(h.subarray(4, 5)))
  }), share(0.2))
})
