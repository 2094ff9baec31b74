// Property and mutation fuzzing of a yamux Session (packages/mux) with
// fast-check. A model peer produces valid traffic: the client side of the
// session (odd stream IDs) opening streams, sending data within the window,
// half-closing, resetting, pinging, acknowledging the two streams the session
// opened, going away. The session under test answers as Tower's agent does
// (client: false) and treats its streams three ways: reads them, never reads
// them, or resets them at once.
//
// - Valid traffic, cut anywhere: the session never sees a protocol error, and
//   what its streams receive does not depend on the cuts.
// - Mutated traffic (frames reordered, dropped, repeated; bits flipped; the
//   end cut off): nothing but a coded TowerError escapes, no stream buffers
//   more than its window, the transport's backlog stays bounded, and once the
//   peer hangs up the session is closed with an empty stream table.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { test } from 'node:test'
import fc from 'fast-check'
import { encodeHeader, Flag, FrameType, Session, TowerError } from '@tower/mux'
import type { MuxStream } from '@tower/mux'
import { memoryPair } from '../../packages/mux/test/helpers.ts'
import { fuzzParams } from '../helpers/fuzz.ts'

const WINDOW = 256 * 1024
const OURS = [2, 4]

/** One step of the model peer; the interpreter turns it into a valid frame, or nothing. */
interface Op { kind: number, slot: number, size: number, flag: boolean }

const opArb: fc.Arbitrary<Op> = fc.record({
  kind: fc.nat({ max: 9 }),
  slot: fc.nat({ max: 7 }),
  size: fc.oneof({ weight: 4, arbitrary: fc.nat({ max: 2000 }) }, { weight: 1, arbitrary: fc.nat({ max: 70_000 }) }),
  flag: fc.boolean()
})

const header = (type: number, flags: number, id: number, length: number): Buffer => encodeHeader(type, flags, id, length)

function dataFrame (flags: number, id: number, size: number, seed: number): Buffer {
  const frame = Buffer.allocUnsafe(12 + size)
  header(FrameType.data, flags, id, size).copy(frame, 0)
  for (let i = 0; i < size; i++) frame[12 + i] = (seed * 31 + i) & 0xff
  return frame
}

// Interprets `ops` as a peer that keeps every rule of spec.md, one frame per op at most.
function traffic (ops: Op[]): Buffer[] {
  const inbound = new Map<number, { fin: boolean, gone: boolean, sent: number }>()
  const ours = new Map(OURS.map((id) => [id, { acked: false, fin: false, gone: false, sent: 0 }]))
  const frames: Buffer[] = []
  let goneAway = false
  for (const [n, op] of ops.entries()) {
    const id = 2 * op.slot + 1
    const s = inbound.get(id)
    const open = s !== undefined && !s.fin && !s.gone
    // Opening a stream that is already open sends data on it instead.
    switch (op.kind <= 1 && s !== undefined ? 2 : op.kind) {
      case 0:
      case 1: {
        const size = op.flag ? op.size % 1024 : 0
        frames.push(op.flag ? dataFrame(Flag.syn, id, size, n) : header(FrameType.windowUpdate, Flag.syn, id, 0))
        inbound.set(id, { fin: false, gone: false, sent: size })
        break
      }
      case 2:
      case 3:
        if (open && s.sent + op.size <= WINDOW) {
          frames.push(dataFrame(op.flag ? Flag.fin : 0, id, op.size, n))
          s.sent += op.size
          s.fin = op.flag
        }
        break
      case 4:
        if (open) {
          frames.push(header(FrameType.windowUpdate, Flag.fin, id, 0))
          s.fin = true
        }
        break
      case 5:
        if (s !== undefined && !s.gone) {
          frames.push(header(FrameType.windowUpdate, Flag.rst, id, 0))
          s.gone = true
        }
        break
      case 6:
        if (s !== undefined && !s.gone) frames.push(header(FrameType.windowUpdate, 0, id, op.size))
        break
      case 7:
        frames.push(header(FrameType.ping, op.flag ? Flag.syn : Flag.ack, 0, op.size))
        break
      case 8: {
        const ourId = OURS[op.slot % OURS.length]
        const o = ours.get(ourId) as { acked: boolean, fin: boolean, gone: boolean, sent: number }
        if (o.gone || o.fin) break
        if (!o.acked) {
          frames.push(header(FrameType.windowUpdate, Flag.ack, ourId, 0))
          o.acked = true
        } else if (op.size % 5 === 0) {
          frames.push(header(FrameType.windowUpdate, Flag.rst, ourId, 0))
          o.gone = true
        } else if (o.sent + op.size <= WINDOW) {
          frames.push(dataFrame(op.flag ? Flag.fin : 0, ourId, op.size, n))
          o.sent += op.size
          o.fin = op.flag
        }
        break
      }
      default:
        if (!goneAway) frames.push(header(FrameType.goAway, 0, 0, 0))
        goneAway = true
    }
  }
  return frames
}

interface SessionSetup { maxStreams: number, acceptStreams: boolean }
const setupArb: fc.Arbitrary<SessionSetup> = fc.record({
  maxStreams: fc.integer({ min: OURS.length + 1, max: 10 }),
  acceptStreams: fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) })
})

/** What the session's streams saw, to compare across cuts. */
interface Outcome {
  emitted: number[]
  /** Per stream that is read: byte count and sha256 of what it received. */
  read: Record<string, string>
  /** Per stream that is never read: bytes buffered. */
  buffered: Record<string, number>
  /** `code: message` of the session's close reason, or `clean`. */
  close: string
}

const streamCodes = new Set(['TOWER_ERR_STREAM_RESET', 'TOWER_ERR_SESSION_CLOSED'])
const closeCodes = new Set(['TOWER_ERR_PROTOCOL', 'TOWER_ERR_SESSION_CLOSED'])

async function turns (n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve))
}

// Feeds `bytes` cut at `cuts` to a fresh session, checking the bounds after
// every piece, then hangs up and checks the end state.
async function run (bytes: Buffer, cuts: number[], setup: SessionSetup): Promise<Outcome> {
  const [a, raw] = memoryPair()
  raw.on('error', () => {})
  raw.resume()
  const session = new Session(a, { client: false, keepAliveInterval: 0, maxWindow: WINDOW, ...setup })
  const live = new Set<MuxStream>()
  const reads = new Map<number, { bytes: number, hash: ReturnType<typeof createHash> }>()
  const paused = new Map<number, MuxStream>()
  const emitted: number[] = []
  const watch = (stream: MuxStream, read: boolean): void => {
    live.add(stream)
    stream.on('error', (err: unknown) => {
      assert.ok(err instanceof TowerError && streamCodes.has(err.code), `stream ${stream.id} failed with ${String(err)}`)
    })
    stream.on('close', () => { live.delete(stream) })
    if (!read) {
      paused.set(stream.id, stream)
      return
    }
    const r = { bytes: 0, hash: createHash('sha256') }
    reads.set(stream.id, r)
    stream.on('data', (chunk: Buffer) => { r.bytes += chunk.length; r.hash.update(chunk) })
  }
  for (let i = 0; i < OURS.length; i++) watch(session.open(), true)
  session.on('stream', (stream: MuxStream) => {
    emitted.push(stream.id)
    const how = (stream.id >> 1) % 3
    watch(stream, how === 0)
    if (how === 2) stream.destroy()
  })
  let reason: Error | undefined
  const closed = new Promise<void>((resolve) => { session.once('close', (err?: Error) => { reason = err; resolve() }) })

  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((x, y) => x - y)
  let from = 0
  for (const to of [...points, bytes.length]) {
    if (to <= from) continue
    raw.write(bytes.subarray(from, to))
    from = to
    for (const stream of live) {
      if (!stream.destroyed) assert.ok(stream.readableLength <= stream.receiveWindow, `stream ${stream.id} buffers ${stream.readableLength} bytes`)
    }
    assert.ok(session.numStreams <= setup.maxStreams)
    assert.ok(a.writableLength < 9 * 1024 * 1024, `transport holds ${a.writableLength} bytes`)
  }
  await turns(3)
  const outcome: Outcome = { emitted, read: {}, buffered: {}, close: '' }
  for (const [id, r] of reads) outcome.read[id] = `${r.bytes}:${r.hash.digest('hex')}`
  for (const [id, s] of paused) outcome.buffered[id] = s.readableLength

  raw.end()
  let timer: ReturnType<typeof setTimeout> | undefined
  const late = new Promise<string>((resolve) => { timer = setTimeout(() => { resolve('still open') }, 10_000) })
  const state = await Promise.race([closed.then(() => 'closed'), late])
  clearTimeout(timer)
  assert.equal(state, 'closed', 'the session closes once the peer hangs up')
  if (reason !== undefined) {
    assert.ok(reason instanceof TowerError && closeCodes.has(reason.code), `session closed with ${String(reason)}`)
  }
  outcome.close = reason === undefined ? 'clean' : `${(reason as TowerError).code}: ${reason.message}`
  assert.equal(session.closed, true)
  assert.equal(session.numStreams, 0)
  assert.equal(session.canOpen, false)
  await turns(2)
  assert.equal(live.size, 0, 'every stream is closed')
  a.destroy()
  raw.destroy()
  return outcome
}

const cutsArb = fc.array(fc.nat({ max: 1_000_000 }), { maxLength: 24 })

test('valid traffic: no protocol error, and the streams see the same whatever the cuts', async () => {
  await fc.assert(fc.asyncProperty(fc.array(opArb, { maxLength: 80, size: 'medium' }), cutsArb, setupArb, async (ops, cuts, setup) => {
    const bytes = Buffer.concat(traffic(ops))
    const whole = await run(bytes, [], setup)
    assert.ok(!whole.close.startsWith('TOWER_ERR_PROTOCOL'), whole.close)
    assert.deepEqual(await run(bytes, cuts, setup), whole)
  }), fuzzParams())
})

/** How valid traffic is damaged: frames reordered, dropped or repeated, then bits flipped and the end cut off. */
interface Mutation { swaps: Array<[number, number]>, drops: number[], repeats: number[], flips: Array<[number, number]>, truncate: number | null }

const mutationArb: fc.Arbitrary<Mutation> = fc.record({
  swaps: fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: 3 }),
  drops: fc.array(fc.nat(), { maxLength: 2 }),
  repeats: fc.array(fc.nat(), { maxLength: 2 }),
  flips: fc.array(fc.tuple(fc.nat(), fc.nat({ max: 7 })), { maxLength: 4 }),
  truncate: fc.option(fc.nat())
})

function mutate (frames: Buffer[], m: Mutation): Buffer {
  const list = frames.slice()
  if (list.length > 0) {
    for (const [i, j] of m.swaps) {
      const x = i % list.length
      const y = j % list.length
      ;[list[x], list[y]] = [list[y], list[x]]
    }
    for (const i of m.repeats) list.splice(i % list.length, 0, list[i % list.length])
    for (const i of m.drops) if (list.length > 0) list.splice(i % list.length, 1)
  }
  const bytes = Buffer.concat(list)
  if (bytes.length === 0) return bytes
  for (const [at, bit] of m.flips) bytes[at % bytes.length] ^= 1 << bit
  return m.truncate === null ? bytes : bytes.subarray(0, m.truncate % (bytes.length + 1))
}

test('mutated traffic: only coded errors, bounded buffers, a closed session at the end', async () => {
  await fc.assert(fc.asyncProperty(fc.array(opArb, { maxLength: 80, size: 'medium' }), mutationArb, cutsArb, setupArb, async (ops, m, cuts, setup) => {
    await run(mutate(traffic(ops), m), cuts, setup)
  }), fuzzParams())
})
