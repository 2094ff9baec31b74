import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { applyMask, FrameParser, frameHeader, Opcode, zeroMask } from '../src/ws-frame.ts'

interface Parsed { data: Buffer, controls: Array<[number, string]> }

function parse (chunks: Buffer[], expectMasked: boolean): Parsed {
  const data: Buffer[] = []
  const controls: Array<[number, string]> = []
  const p = new FrameParser({
    onData: (piece) => data.push(Buffer.from(piece)),
    onControl: (op, payload) => controls.push([op, payload.toString()])
  }, expectMasked)
  for (const c of chunks) p.push(c)
  return { data: Buffer.concat(data), controls }
}

function frame (opcode: number, payload: Buffer, mask?: Buffer, fin = true): Buffer {
  const h = frameHeader(opcode, payload.length, mask)
  if (!fin) h[0] &= 0x7f
  const body = Buffer.from(payload)
  if (mask !== undefined) applyMask(body, mask, 0)
  return Buffer.concat([h, body])
}

// every way of cutting `wire` into two pieces, plus one byte at a time
function splits (wire: Buffer): Buffer[][] {
  const out: Buffer[][] = [[wire]]
  for (let i = 1; i < wire.length; i++) out.push([wire.subarray(0, i), wire.subarray(i)])
  out.push([...wire].map((b) => Buffer.from([b])))
  return out
}

test('headers use the 7-bit, 16-bit and 64-bit length forms at their boundaries', () => {
  for (const [len, size] of [[0, 2], [125, 2], [126, 4], [65535, 4], [65536, 10], [2 ** 32 + 5, 10]] as const) {
    const h = frameHeader(Opcode.binary, len)
    assert.equal(h.length, size, `length ${len}`)
    assert.equal(h[0], 0x82)
  }
  assert.equal(frameHeader(Opcode.binary, 10, zeroMask()).length, 6)
  const h = frameHeader(Opcode.binary, 2 ** 32 + 5)
  assert.equal(h.readUInt32BE(2) * 2 ** 32 + h.readUInt32BE(6), 2 ** 32 + 5)
})

test('binary payload survives any split, masked (random and zero key) and unmasked, with control frames between', () => {
  const a = randomBytes(1000)
  const b = randomBytes(70_000)
  for (const mask of [randomBytes(4), zeroMask(), undefined]) {
    const wire = Buffer.concat([
      frame(Opcode.binary, a.subarray(0, 100), mask, false),
      frame(Opcode.ping, Buffer.from('hi'), mask),
      frame(Opcode.continuation, a.subarray(100), mask),
      frame(Opcode.binary, Buffer.alloc(0), mask),
      frame(Opcode.binary, b, mask),
      frame(Opcode.close, Buffer.from([0x03, 0xe8]), mask)
    ])
    // every cut through the first 1,200 bytes (all the headers but the last
    // two), then a few through the big frame
    const all = splits(wire)
    const cuts = [...all.slice(0, 1200), ...all.filter((_, i) => i % 9973 === 1), all[all.length - 1]]
    for (const chunks of cuts) {
      // the parser unmasks in place: give it a private copy each time
      const got = parse(chunks.map((c) => Buffer.from(c)), mask !== undefined)
      assert.deepEqual(got.data, Buffer.concat([a, b]))
      assert.deepEqual(got.controls.map(([op]) => op), [Opcode.ping, Opcode.close])
      assert.equal(got.controls[0][1], 'hi')
    }
  }
})

test('applyMask equals the byte-wise XOR for every alignment, key offset and length, and masking twice restores the data', () => {
  const backing = randomBytes(300)
  const mask = randomBytes(4)
  for (let start = 0; start < 8; start++) {
    for (const len of [0, 1, 3, 4, 31, 32, 33, 64, 127, 250]) {
      for (let offset = 0; offset < 4; offset++) {
        const original = Buffer.from(backing.subarray(start, start + len))
        const data = Buffer.from(backing).subarray(start, start + len)
        applyMask(data, mask, offset)
        const expected = Buffer.from(original.map((b, i) => b ^ mask[(offset + i) & 3]))
        assert.deepEqual(data, expected, `start ${start}, length ${len}, offset ${offset}`)
        applyMask(data, mask, offset)
        assert.deepEqual(data, original)
      }
    }
  }
})

test('payload pieces are views of the input chunk, not copies', () => {
  const wire = frame(Opcode.binary, randomBytes(1000))
  const pieces: Buffer[] = []
  new FrameParser({ onData: (p) => pieces.push(p), onControl: () => {} }, false).push(wire)
  assert.equal(pieces.length, 1)
  assert.equal(pieces[0].buffer, wire.buffer)
})

test('each kind of bad input is a WsFrameError with the RFC close code', () => {
  const m = randomBytes(4)
  const cases: Array<[string, Buffer, boolean, number, RegExp]> = [
    ['text frame', frame(Opcode.text, Buffer.from('x'), m), true, 1003, /text frame/],
    ['reserved bit', (() => { const f = frame(Opcode.binary, Buffer.from('x'), m); f[0] |= 0x40; return f })(), true, 1002, /reserved bits/],
    ['reserved opcode', frame(0x3, Buffer.from('x'), m), true, 1002, /reserved opcode 3/],
    ['unmasked from client', frame(Opcode.binary, Buffer.from('x')), true, 1002, /unmasked frame/],
    ['masked from server', frame(Opcode.binary, Buffer.from('x'), m), false, 1002, /masked frame/],
    ['fragmented ping', frame(Opcode.ping, Buffer.from('x'), m, false), true, 1002, /fragmented control/],
    ['oversized ping', frame(Opcode.ping, Buffer.alloc(126), m), true, 1002, /control frame of 126 bytes/],
    ['continuation first', frame(Opcode.continuation, Buffer.from('x'), m), true, 1002, /continuation frame outside/],
    ['binary inside a message', Buffer.concat([frame(Opcode.binary, Buffer.from('x'), m, false), frame(Opcode.binary, Buffer.from('y'), m)]), true, 1002, /before the previous one finished/],
    ['length beyond 2^53', Buffer.from([0x82, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1, 2, 3, 4]), true, 1002, /beyond 2\^53/]
  ]
  for (const [name, wire, expectMasked, closeCode, message] of cases) {
    assert.throws(() => parse([wire], expectMasked), (err: Error & { code?: string, closeCode?: number }) => {
      assert.equal(err.code, 'TOWER_ERR_WS_PROTOCOL', name)
      assert.equal(err.closeCode, closeCode, name)
      assert.match(err.message, message, name)
      return true
    }, name)
  }
})

function closeFrame (body: Buffer): Buffer {
  return frame(Opcode.close, body, randomBytes(4))
}

function closeBody (code: number, reason: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(2)
  b.writeUInt16BE(code)
  return Buffer.concat([b, reason])
}

test('a close frame with a code a peer may not send, a 1-byte body or a reason that is not UTF-8 is a WsFrameError', () => {
  const cases: Array<[string, Buffer, number, RegExp]> = [
    ['1-byte body', Buffer.from([0x03]), 1002, /1-byte/],
    ...[0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535].map((code): [string, Buffer, number, RegExp] =>
      [`code ${code}`, closeBody(code), 1002, new RegExp(`close code ${code}`)]),
    ['lone continuation byte', closeBody(1000, Buffer.from([0x80])), 1007, /UTF-8/],
    ['truncated sequence', closeBody(1000, Buffer.from('é').subarray(0, 1)), 1007, /UTF-8/],
    ['surrogate half', closeBody(1001, Buffer.from([0xed, 0xa0, 0x80])), 1007, /UTF-8/],
    ['overlong encoding', closeBody(1001, Buffer.from([0xc0, 0xaf])), 1007, /UTF-8/]
  ]
  for (const [name, body, closeCode, message] of cases) {
    assert.throws(() => parse([closeFrame(body)], true), (err: Error & { code?: string, closeCode?: number }) => {
      assert.equal(err.code, 'TOWER_ERR_WS_PROTOCOL', name)
      assert.equal(err.closeCode, closeCode, name)
      assert.match(err.message, message, name)
      return true
    }, name)
  }
})

test('close frames a peer may send are reported: empty, valid codes, UTF-8 reasons', () => {
  const bodies = [
    Buffer.alloc(0),
    ...[1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4000, 4999].map((code) => closeBody(code)),
    closeBody(1000, Buffer.from('bye, ünïcödé ✓ 🚀'))
  ]
  for (const body of bodies) {
    const got = parse([closeFrame(body)], true)
    assert.equal(got.controls.length, 1)
    assert.equal(got.controls[0][0], Opcode.close)
  }
})
