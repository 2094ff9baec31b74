// The hop frame codec (hop-frame.ts): round trips, chunking independence,
// the validation rules of the contract, and bounded buffering.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import {
  encodeRequestHead, encodeResponseHead, encodeDataHeader, encodeEnd, HopDecoder,
  type HopMessage, type HopRequestHead, type HopResponseHead
} from '../src/hop-frame.ts'
import { HOP_MAX_DATA, HOP_MAX_HEAD_BYTES, STREAM_KIND_CODES } from '../src/constants.ts'
import { HopFrameError } from '../src/errors.ts'
import { encodePreamble, readPreamble } from '../src/preamble.ts'
import { PassThrough, Duplex } from 'node:stream'
import * as transport from '../src/index.ts'

const TCHAR = '!#$%&\'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'
const LOWER_TCHAR = TCHAR.replace(/[A-Z]/g, '')
const chars = (set: string, min: number, max: number): fc.Arbitrary<string> =>
  fc.array(fc.constantFrom(...set), { minLength: min, maxLength: max }).map((a) => a.join(''))
const method = chars(TCHAR, 1, 32)
const path = fc.array(fc.integer({ min: 0x21, max: 0x7e }), { maxLength: 80 }).map((a) => '/' + String.fromCharCode(...a))
const value = fc.array(fc.oneof(fc.constant(9), fc.integer({ min: 0x20, max: 0x7e }), fc.integer({ min: 0x80, max: 0xff })), { maxLength: 60 })
  .map((a) => String.fromCharCode(...a))
const headers = fc.array(fc.tuple(chars(LOWER_TCHAR, 1, 20), value), { maxLength: 12 }).map((ps) => ps.flat())
const requestHead: fc.Arbitrary<HopRequestHead> = fc.record({ method, path, headers, body: fc.boolean() }).map((r) => ({ ...r }))
const responseHead: fc.Arbitrary<HopResponseHead> = fc.record({ status: fc.integer({ min: 200, max: 599 }), headers, body: fc.boolean() }).map((r) => ({ ...r }))
const bodyChunks = fc.array(fc.uint8Array({ minLength: 1, maxLength: 300 }), { maxLength: 4 })

// One direction's bytes: several exchanges, each head [DATA*] END.
function encodeExchanges<H extends HopRequestHead | HopResponseHead> (exchanges: Array<{ head: H, chunks: Uint8Array[] }>, enc: (h: H) => Buffer): Buffer {
  const parts: Buffer[] = []
  for (const { head, chunks } of exchanges) {
    parts.push(enc(head))
    if (head.body) for (const c of chunks) parts.push(encodeDataHeader(c.length), Buffer.from(c))
    parts.push(encodeEnd())
  }
  return Buffer.concat(parts)
}

// Decodes `bytes` cut at `cuts`; adjacent data messages are merged, since a
// DATA frame may surface in pieces.
function decode (bytes: Buffer, cuts: number[] = []): Array<HopMessage | { type: 'data', hex: string }> {
  const d = new HopDecoder()
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)
  const msgs: HopMessage[] = []
  let from = 0
  for (const to of [...points, bytes.length]) {
    if (to <= from) continue
    msgs.push(...d.push(bytes.subarray(from, to)))
    from = to
  }
  const out: Array<HopMessage | { type: 'data', hex: string }> = []
  for (const m of msgs) {
    const last = out.at(-1)
    if (m.type === 'data') {
      if (last?.type === 'data' && 'hex' in last) last.hex += m.chunk.toString('hex')
      else out.push({ type: 'data', hex: m.chunk.toString('hex') })
    } else out.push(m)
  }
  return out
}

function expected<H> (kind: 'request-head' | 'response-head', exchanges: Array<{ head: H, chunks: Uint8Array[] }>): unknown[] {
  const out: unknown[] = []
  for (const { head, chunks } of exchanges) {
    out.push({ type: kind, head })
    const hex = (head as { body: boolean }).body ? Buffer.concat(chunks.map((c) => Buffer.from(c))).toString('hex') : ''
    if (hex !== '') out.push({ type: 'data', hex })
    out.push({ type: 'end' })
  }
  return out
}

const cuts = fc.array(fc.nat({ max: 20000 }), { maxLength: 20 })

test('request exchanges round-trip, whatever the chunking', () => {
  fc.assert(fc.property(fc.array(fc.record({ head: requestHead, chunks: bodyChunks }), { minLength: 1, maxLength: 4 }), cuts, (ex, at) => {
    const bytes = encodeExchanges(ex, (h) => encodeRequestHead(h))
    const want = expected('request-head', ex)
    assert.deepEqual(decode(bytes), want)
    assert.deepEqual(decode(bytes, at), want)
  }), { numRuns: 300 })
})

test('response exchanges round-trip, whatever the chunking, including 1-byte pieces', () => {
  fc.assert(fc.property(fc.array(fc.record({ head: responseHead, chunks: bodyChunks }), { minLength: 1, maxLength: 4 }), cuts, (ex, at) => {
    const bytes = encodeExchanges(ex, (h) => encodeResponseHead(h))
    const want = expected('response-head', ex)
    assert.deepEqual(decode(bytes, at), want)
    assert.deepEqual(decode(bytes, Array.from({ length: bytes.length }, (_, i) => i)), want)
  }), { numRuns: 200 })
})

test('DATA chunks are views of the input, not copies', () => {
  const payload = Buffer.alloc(1000, 7)
  const input = Buffer.concat([encodeResponseHead({ status: 200, headers: [], body: true }), encodeDataHeader(1000), payload, encodeEnd()])
  const msgs = new HopDecoder().push(input)
  const data = msgs.find((m) => m.type === 'data')
  assert.ok(data?.type === 'data')
  assert.equal(data.chunk.buffer, input.buffer)
})

// Mutated valid streams: the decoder either decodes or throws HopFrameError, nothing else.
test('any mutation of a valid stream decodes or throws HopFrameError, never another exception', () => {
  const stream = fc.array(fc.record({ head: requestHead, chunks: bodyChunks }), { minLength: 1, maxLength: 3 })
    .map((ex) => encodeExchanges(ex, (h) => encodeRequestHead(h)))
  fc.assert(fc.property(stream, fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { minLength: 1, maxLength: 4 }), cuts, (bytes, flips, at) => {
    const b = Buffer.from(bytes)
    for (const [i, v] of flips) b[i % b.length] = v
    try {
      decode(b, at)
    } catch (err) {
      assert.ok(err instanceof HopFrameError, String(err))
      assert.equal(err.code, 'TOWER_ERR_HOP_FRAME')
    }
  }), { numRuns: 500 })
})

test('random bytes: HopFrameError or messages, never another exception', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), (u) => {
    try {
      new HopDecoder().push(Buffer.from(u))
    } catch (err) {
      assert.ok(err instanceof HopFrameError, String(err))
    }
  }), { numRuns: 1000 })
})

function rejects (bytes: Buffer, re: RegExp): void {
  assert.throws(() => new HopDecoder().push(bytes), (err: unknown) => err instanceof HopFrameError && re.test(err.message))
}
function frame (type: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(5)
  h[0] = type
  h.writeUInt32BE(payload.length, 1)
  return Buffer.concat([h, payload])
}
function strs (...s: string[]): Buffer {
  return Buffer.concat(s.map((x) => { const b = Buffer.from(x, 'latin1'); const l = Buffer.alloc(2); l.writeUInt16BE(b.length); return Buffer.concat([l, b]) }))
}
const GET = frame(1, Buffer.concat([Buffer.from([0]), strs('GET', '/')]))

test('the decoder refuses every rule of the contract', () => {
  rejects(Buffer.from([0]), /unknown frame type 0/)
  rejects(Buffer.from([5]), /unknown frame type 5/)
  rejects(frame(2, Buffer.from('x')), /DATA outside an exchange/)
  rejects(encodeEnd(), /END outside/)
  rejects(Buffer.concat([GET, frame(2, Buffer.from('x'))]), /DATA after a head without a body/)
  rejects(Buffer.concat([GET, GET]), /head before the previous END/)
  rejects(Buffer.concat([GET, frame(3, Buffer.from('x'))]), /END with a 1-byte payload/)
  rejects(Buffer.concat([GET, encodeEnd(), encodeResponseHead({ status: 200, headers: [], body: false })]), /mixed/)
  rejects(frame(1, Buffer.concat([Buffer.from([2]), strs('GET', '/')])), /reserved flag/)
  rejects(frame(1, Buffer.concat([Buffer.from([0]), strs('GE T', '/')])), /method/)
  rejects(frame(1, Buffer.concat([Buffer.from([0]), strs('A'.repeat(33), '/')])), /method/)
  rejects(frame(1, Buffer.concat([Buffer.from([0]), strs('GET', 'x')])), /path/)
  rejects(frame(1, Buffer.concat([Buffer.from([0]), strs('GET', '/a b')])), /path/)
  rejects(frame(1, Buffer.concat([Buffer.from([0]), strs('GET', '/', 'host')])), /odd/)
  rejects(frame(1, Buffer.concat([Buffer.from([0]), strs('GET', '/', 'Host', 'x')])), /header name/)
  rejects(frame(1, Buffer.concat([Buffer.from([0]), strs('GET', '/', 'x'.repeat(257), 'x')])), /header name/)
  for (const bad of ['a\rb', 'a\nb', 'a\0b']) rejects(frame(1, Buffer.concat([Buffer.from([0]), strs('GET', '/', 'x', bad)])), /value of header x/)
  rejects(frame(1, Buffer.concat([Buffer.from([0]), strs('GET', '/'), Buffer.from([0])])), /truncated/)
  rejects(frame(1, Buffer.concat([Buffer.from([0]), strs('GET', '/'), Buffer.from([0, 9, 1])])), /runs past/)
  rejects(frame(4, Buffer.from([0, 0, 199])), /status/)
  rejects(frame(4, Buffer.from([0, 2, 88])), /status/)
  rejects(frame(4, Buffer.from([0, 0])), /shorter/)
  rejects(frame(1, Buffer.from([0])), /shorter/)
  const pairs = Array.from({ length: 513 }, () => ['a', 'b']).flat()
  rejects(frame(1, Buffer.concat([Buffer.from([0]), strs('GET', '/', ...pairs)])), /more than 512 header pairs/)
  rejects(Buffer.concat([frame(4, Buffer.from([1, 0, 200])), frame(2, Buffer.alloc(0))]), /DATA of 0 bytes/)
})

test('an oversized length field is refused as soon as the 5-byte header is in, before any payload', () => {
  for (const [type, len, pre] of [[1, HOP_MAX_HEAD_BYTES + 1, Buffer.alloc(0)], [4, 0xffffffff, Buffer.alloc(0)], [2, HOP_MAX_DATA + 1, frame(4, Buffer.from([1, 0, 200]))]] as const) {
    const d = new HopDecoder()
    if (pre.length > 0) d.push(pre)
    const h = Buffer.alloc(5)
    h[0] = type
    h.writeUInt32BE(len, 1)
    assert.deepEqual(d.push(h.subarray(0, 4)), [])
    assert.throws(() => d.push(h.subarray(4)), HopFrameError)
  }
  // custom limits bound the head
  const small = new HopDecoder({ maxHeadBytes: 16, maxPairs: 1 })
  assert.throws(() => small.push(encodeRequestHead({ method: 'GET', path: '/' + 'a'.repeat(20), headers: [], body: false })), /exceeds 16/)
})

test('after an error the decoder is unusable', () => {
  const d = new HopDecoder()
  assert.throws(() => d.push(Buffer.from([9])), HopFrameError)
  assert.throws(() => d.push(GET), /used after an error/)
})

test('the encoders refuse what the decoder refuses', () => {
  const bad: Array<() => unknown> = [
    () => encodeRequestHead({ method: '', path: '/', headers: [], body: false }),
    () => encodeRequestHead({ method: 'GET', path: 'nope', headers: [], body: false }),
    () => encodeRequestHead({ method: 'GET', path: '/é', headers: [], body: false }),
    () => encodeRequestHead({ method: 'GET', path: '/', headers: ['a'], body: false }),
    () => encodeRequestHead({ method: 'GET', path: '/', headers: ['A', 'b'], body: false }),
    () => encodeRequestHead({ method: 'GET', path: '/', headers: ['a', 'x\r\ny: z'], body: false }),
    () => encodeRequestHead({ method: 'GET', path: '/', headers: ['a', '\u0100'], body: false }),
    () => encodeRequestHead({ method: 'GET', path: '/', headers: ['a', 'x'.repeat(HOP_MAX_HEAD_BYTES)], body: false }),
    () => encodeResponseHead({ status: 101, headers: [], body: false }),
    () => encodeResponseHead({ status: 200.5, headers: [], body: false }),
    () => encodeResponseHead({ status: 600, headers: [], body: false }),
    () => encodeDataHeader(0),
    () => encodeDataHeader(HOP_MAX_DATA + 1),
    () => encodeRequestHead({ method: 'GET', path: '/', headers: [], body: false }, { maxHeadBytes: 16, maxPairs: -1 })
  ]
  for (const f of bad) assert.throws(f, (err: unknown) => err instanceof transport.TowerError && /TOWER_ERR_(HOP_FRAME|INVALID_ARG)/.test((err as transport.TowerError).code), f.toString())
  assert.equal(encodeDataHeader(HOP_MAX_DATA).readUInt32BE(1), HOP_MAX_DATA)
})

test('kind hframe passes the preamble, and the names are exported', async () => {
  assert.equal(STREAM_KIND_CODES.hframe, 3)
  const feed = new PassThrough()
  const stream = Duplex.from({ readable: feed, writable: new PassThrough() })
  feed.end(Buffer.concat([encodePreamble({ kind: 'hframe', id: 'r1' }), GET]))
  assert.deepEqual(await readPreamble(stream, 1000), { kind: 'hframe', id: 'r1' })
  for (const name of ['HopDecoder', 'encodeRequestHead', 'encodeResponseHead', 'encodeDataHeader', 'encodeEnd', 'HopFrameError', 'HEADER_FEATURES', 'FEATURE_HOP_FRAME', 'HOP_MAX_DATA', 'HOP_MAX_HEAD_BYTES', 'HOP_MAX_PAIRS', 'STREAM_KIND_CODES']) {
    assert.ok(Object.hasOwn(transport, name), name)
  }
  assert.equal(transport.HEADER_FEATURES, 'tower-features')
  assert.equal(transport.FEATURE_HOP_FRAME, 'hframe')
})
