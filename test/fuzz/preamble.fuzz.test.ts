// Property and mutation fuzzing of the stream preamble reader
// (packages/transport/src/preamble.ts) with fast-check: whatever the bytes and
// however they are cut, readPreamble resolves with the same preamble (leaving
// exactly the bytes after it readable) or rejects with TOWER_ERR_PREAMBLE; it
// settles by the time 4 + 4096 bytes have arrived (so it buffers no more), and
// it never hangs past its timeout (setTimeout is mocked, so the timeout
// fires exactly when a run advances the clock).
import assert from 'node:assert/strict'
import { afterEach, beforeEach, mock, test } from 'node:test'
import { Duplex, PassThrough } from 'node:stream'
import fc from 'fast-check'
import { encodePreamble, MAX_PREAMBLE_BODY, readPreamble, type Preamble } from '@tower/transport'
import { fuzzParams } from '../helpers/fuzz.ts'

// The longest a preamble can be: the fixed header and the largest body.
const MOST = 4 + MAX_PREAMBLE_BODY
// readPreamble's timeout, in milliseconds. setTimeout is mocked, so it fires
// exactly when a run ticks the clock: after all its bytes were fed.
const TIMEOUT_MS = 1000

type Outcome = { preamble: Preamble, rest: string } | { error: string }

// A few event-loop turns: enough for a PassThrough to deliver what was written.
async function turns (): Promise<void> {
  for (let i = 0; i < 4; i++) await new Promise(setImmediate)
}

// Feeds `bytes` cut at `cuts`, one piece per event-loop turn, then ends the
// stream if `end`; returns what readPreamble settled with.
async function read (bytes: Uint8Array, cuts: number[], end: boolean): Promise<Outcome> {
  const feed = new PassThrough()
  const stream = Duplex.from({ readable: feed, writable: new PassThrough() })
  // destroy() below reports an AbortError; only readPreamble's handling matters
  stream.on('error', () => {})
  let settled = false
  const reading = readPreamble(stream, TIMEOUT_MS).then(
    (preamble) => { settled = true; return preamble },
    (err: Error & { code?: string }) => { settled = true; throw err })
  reading.catch(() => {})
  const buf = Buffer.from(bytes)
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b)
  let from = 0
  for (const to of [...points, buf.length]) {
    if (to <= from) continue
    feed.write(buf.subarray(from, to))
    from = to
    await turns()
    // bounded memory: once a whole preamble's worth is in, it must have decided
    if (from >= MOST) assert.ok(settled, `still reading after ${from} bytes`)
  }
  if (end) feed.end()
  await turns()
  // never hangs past its timeout: once the clock passes it, it has settled
  if (!settled) {
    mock.timers.tick(TIMEOUT_MS)
    await turns()
  }
  assert.ok(settled, `readPreamble still pending after its ${TIMEOUT_MS} ms timeout`)
  try {
    const preamble = await reading
    if (!end) feed.end()
    const chunks: Buffer[] = []
    for await (const c of stream) chunks.push(c as Buffer)
    return { preamble, rest: Buffer.concat(chunks).toString('hex') }
  } catch (err) {
    const e = err as Error & { code?: string }
    assert.equal(e.code, 'TOWER_ERR_PREAMBLE', `only TOWER_ERR_PREAMBLE, got ${String(err)}`)
    return { error: e.message }
  } finally {
    stream.destroy()
  }
}

beforeEach(() => { mock.timers.enable({ apis: ['setTimeout'] }) })
afterEach(() => { mock.timers.reset() })

const id = fc.string({ maxLength: 40 })
const valid = fc.tuple(fc.constantFrom('http' as const, 'tcp' as const), id, fc.uint8Array({ maxLength: 200 }))
  .map(([kind, reqId, rest]) => ({ kind, id: reqId, rest, bytes: new Uint8Array(Buffer.concat([encodePreamble({ kind, id: reqId }), Buffer.from(rest)])) }))
// Hand-made headers and bodies: any version, kind and length, JSON that is
// and is not an object with a string id.
const body = fc.oneof(
  fc.json().map((j) => Buffer.from(j)),
  fc.record({ id: fc.oneof(fc.string(), fc.integer(), fc.constant(null)), x: fc.anything() }).map((o) => Buffer.from(JSON.stringify(o))),
  fc.uint8Array({ maxLength: 64 }).map((u) => Buffer.from(u))
)
const handMade = fc.tuple(fc.constantFrom(0, 1, 1, 1, 2, 255), fc.constantFrom(0, 1, 2, 3, 255), body, fc.oneof(fc.constant(-1), fc.nat({ max: 0xffff })), fc.uint8Array({ maxLength: 64 }))
  .map(([version, kind, b, length, tail]) => {
    const head = Buffer.from([version, kind, 0, 0])
    head.writeUInt16BE(length < 0 ? Math.min(b.length, 0xffff) : length, 2)
    return new Uint8Array(Buffer.concat([head, b, Buffer.from(tail)]))
  })
const mutated = fc.tuple(valid, fc.array(fc.tuple(fc.nat(), fc.nat({ max: 0xff })), { minLength: 1, maxLength: 3 }))
  .map(([v, flips]) => {
    const bytes = Buffer.from(v.bytes)
    for (const [at, value] of flips) bytes[at % bytes.length] = value
    return new Uint8Array(bytes)
  })
// Long inputs: a length near the maximum, the body arriving in pieces.
const long = fc.tuple(fc.nat({ max: 0xffff }), fc.uint8Array({ minLength: 0, maxLength: 6000 }))
  .map(([length, rest]) => {
    const head = Buffer.from([1, 1, 0, 0])
    head.writeUInt16BE(length, 2)
    return new Uint8Array(Buffer.concat([head, Buffer.from(rest)]))
  })
const input = fc.oneof(valid.map((v) => v.bytes), handMade, mutated, long, fc.uint8Array({ maxLength: 300 }))
const cuts = fc.array(fc.nat({ max: 7000 }), { maxLength: 12 })

// A share of the file's time budget.
function share (f: number): ReturnType<typeof fuzzParams> {
  const p = fuzzParams()
  return { ...p, interruptAfterTimeLimit: Math.max(1, Math.floor((p.interruptAfterTimeLimit ?? 0) * f)) }
}

test('readPreamble on random, hand-made and mutated input: the same outcome for every cut, TOWER_ERR_PREAMBLE only, bounded, never hangs', async () => {
  await fc.assert(fc.asyncProperty(input, cuts, fc.boolean(), async (bytes, at, end) => {
    const whole = await read(bytes, [], true)
    const got = await read(bytes, at, end)
    if ('preamble' in whole) {
      // a complete preamble does not depend on the stream ending
      assert.deepEqual(got, whole)
      assert.ok(bytes.length - whole.rest.length / 2 <= MOST)
    } else if (!end && /ended before/.test(whole.error)) {
      // incomplete, and the stream stays open: the timeout decides
      assert.ok('error' in got && /no preamble within/.test(got.error), JSON.stringify(got))
    } else {
      assert.deepEqual(got, whole)
    }
  }), share(0.8))
})

test('valid preambles round-trip whatever the cut, leaving exactly the bytes after them', async () => {
  await fc.assert(fc.asyncProperty(valid, cuts, async (v, at) => {
    const got = await read(v.bytes, at, true)
    assert.deepEqual(got, { preamble: { kind: v.kind, id: v.id }, rest: Buffer.from(v.rest).toString('hex') })
  }), share(0.2))
})
