// Regression tests for the mux items of issue 8: a session that refuses
// inbound streams at no memory cost (item 6), control frames bounded where
// they are queued (item 8), rate-limited warnings (item 9), the stream-open
// timeout (item 11) and `canOpen` (item 10 support).
//
// A mock clock only handles timers created while it is installed, so tests
// that use one build and tear down everything inside their own body.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import type { Duplex } from 'node:stream'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { FrameWriter } from '../src/frame-writer.ts'
import { encodeHeader, Flag, FrameType, Session } from '../src/index.ts'
import { captureLogger, closeAll, framesOf, gc, memory, memoryPair, rawPeer, tcp, until } from './helpers.ts'
import type { Frame, LogRecord } from './helpers.ts'

const KiB = 1024
const MiB = 1024 * KiB

type Coded = Error & { code?: string }

// A Data frame with SYN and `size` payload bytes in one fresh buffer, so that
// a session that kept the payload would really hold `size` bytes per frame.
function synWithPayload (id: number, size: number): Buffer {
  const frame = Buffer.alloc(12 + size, 0x61)
  encodeHeader(FrameType.data, Flag.syn, id, size).copy(frame, 0)
  return frame
}

async function write (raw: Duplex, bytes: Buffer): Promise<void> {
  if (!raw.write(bytes)) await once(raw, 'drain')
}

// Heap plus external memory (Buffers) once garbage is collected; freeing
// large backing stores can lag one collection, so collect a few times.
async function heapAndExternal (): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc()
    await new Promise((resolve) => setImmediate(resolve))
  }
  const m = process.memoryUsage()
  return m.heapUsed + m.external
}

const warnings = (records: LogRecord[]): LogRecord[] => records.filter((r) => r.level === 'warn')

for (const transport of [memory, tcp]) {
  describe(`acceptStreams: false over ${transport.name} (issue 8 item 6)`, () => {
    it('answers 1,024 SYNs carrying 256 KiB each with RST and holds no stream and no payload', async (t) => {
      const { session, raw, received } = await rawPeer(t, transport, { acceptStreams: false } as object)
      // A listener must not matter: the session never takes an inbound stream.
      let emitted = 0
      session.on('stream', (s: Duplex) => { emitted++; s.on('error', () => {}) })
      const before = await heapAndExternal()
      let peak = 0
      for (let i = 0; i < 1024; i++) {
        await write(raw, synWithPayload(2 + 2 * i, 256 * KiB))
        peak = Math.max(peak, session.numStreams)
      }
      const rsts = (): Frame[] => framesOf(received()).filter((f) => (f.flags & Flag.rst) !== 0)
      const answered = (): number => framesOf(received()).filter((f) => (f.flags & (Flag.rst | Flag.ack)) !== 0).length
      await until(() => answered() >= 1024 || session.closed, 20_000, 'an answer to every SYN')
      assert.equal(session.closed, false, 'a peer within its window keeps its session')
      assert.equal(emitted, 0)
      assert.equal(peak, 0, 'no stream was ever in the table')
      assert.equal(session.numStreams, 0)
      assert.equal(rsts().length, 1024)
      assert.deepEqual(framesOf(received()).filter((f) => (f.flags & Flag.ack) !== 0), [], 'nothing was ACKed')
      const growth = await heapAndExternal() - before
      t.diagnostic(`heap + external growth: ${(growth / MiB).toFixed(1)} MiB`)
      assert.ok(growth < 32 * MiB, `heap and external memory grew by ${(growth / MiB).toFixed(1)} MiB for 256 MiB sent`)
    })

    it('ends with GoAway(protocol error) once a peer sends more on refused streams than their window', async (t) => {
      const { session, raw, received } = await rawPeer(t, transport, { acceptStreams: false } as object)
      const closed = once(session, 'close') as Promise<[Coded]>
      await write(raw, synWithPayload(2, 256 * KiB))
      // The refused stream's whole window is used: one more byte is a violation.
      await write(raw, Buffer.concat([encodeHeader(FrameType.data, 0, 2, 1), Buffer.from('x')]))
      const [err] = await closed
      assert.equal(err.code, 'TOWER_ERR_PROTOCOL')
      assert.match(err.message, /refused or closed streams/)
      await until(() => framesOf(received()).some((f) => f.type === FrameType.goAway), 5000, 'GoAway')
      assert.deepEqual(framesOf(received()).filter((f) => f.type === FrameType.goAway).map((f) => f.length), [1])
    })
  })
}

describe('acceptStreams option (issue 8 item 6)', () => {
  it('is validated', () => {
    const [a] = memoryPair()
    assert.throws(() => new Session(a, { client: true, acceptStreams: 'no' } as never), (err: Coded) =>
      err.code === 'TOWER_ERR_INVALID_ARG' && /^acceptStreams/.test(err.message))
    a.destroy()
  })

  it('keeps accepting by default', async (t) => {
    const { session, raw } = await rawPeer(t, memory)
    const got = once(session, 'stream') as Promise<[Duplex]>
    raw.write(synWithPayload(2, 3))
    const [stream] = await got
    assert.equal(session.numStreams, 1)
    stream.destroy()
  })

  it('drops data on a stream the session itself reset, within the credit the peer held', async (t) => {
    const { session, raw, received } = await rawPeer(t, memory)
    const got = once(session, 'stream') as Promise<[Duplex]>
    raw.write(synWithPayload(2, 10))
    const [stream] = await got
    stream.destroy()
    // The peer may still have up to its whole window in flight.
    raw.write(Buffer.concat([encodeHeader(FrameType.data, 0, 2, 200 * KiB), Buffer.alloc(200 * KiB)]))
    raw.write(encodeHeader(FrameType.ping, Flag.syn, 0, 7))
    await until(() => framesOf(received()).some((f) => f.type === FrameType.ping && f.flags === Flag.ack), 5000, 'ping reply')
    assert.equal(session.closed, false)
    assert.equal(session.numStreams, 0)
  })
})

// A peer that never reads: its end of the pair has no reader, so everything
// the session writes piles up in the session's transport.
function deafPeer (t: TestContext, logger = captureLogger().logger): { session: Session, a: Duplex, raw: Duplex } {
  const [a, raw] = memoryPair()
  t.after(() => { a.destroy(); raw.destroy() })
  raw.on('error', () => {})
  const session = new Session(a, { client: true, keepAliveInterval: 0, maxWindow: 256 * KiB, logger })
  t.after(() => { session.destroy() })
  return { session, a, raw }
}

describe('control frames from streams are bounded (issue 8 item 8)', () => {
  it('FrameWriter reports once when control frames exceed the limit, then drops frames', async (t) => {
    const [a, raw] = memoryPair()
    t.after(() => { a.destroy(); raw.destroy() })
    const overflows: number[] = []
    const writer = new FrameWriter(a, { onWritable () {}, controlLimit: 64 * KiB, maxDataFrame: 1024, onOverflow: (n) => { overflows.push(n) } })
    const slack = a.writableHighWaterMark + 1024 + 12
    for (let i = 0; i < 20_000; i++) writer.control(FrameType.windowUpdate, Flag.rst, 1 + 2 * i, 0)
    assert.equal(overflows.length, 1)
    assert.ok(overflows[0] > 64 * KiB + slack && overflows[0] <= 64 * KiB + slack + 12, `reported at ${overflows[0]} bytes`)
    writer.control(FrameType.ping, Flag.syn, 0, 1)
    writer.flush()
    await new Promise((resolve) => setImmediate(resolve))
    assert.equal(writer.backlog, a.writableLength)
    assert.ok(a.writableLength + raw.readableLength <= 64 * KiB + slack + 12, 'nothing queued after the overflow')
    assert.equal(overflows.length, 1)
  })

  it('ends the session when a deaf peer provokes ACK and RST frames without end', async (t) => {
    const { session, a, raw } = deafPeer(t)
    let streams = 0
    // Every inbound stream is ACKed and then reset: two control frames from stream.ts.
    session.on('stream', (s: Duplex) => { streams++; s.destroy() })
    const closed = once(session, 'close') as Promise<[Coded]>
    const count = 600_000 // 7.2 MB of SYNs, 14.4 MB of ACK + RST back: beyond the 8 MiB bound
    const syns = Buffer.alloc(count * 12)
    for (let i = 0; i < count; i++) encodeHeader(FrameType.windowUpdate, Flag.syn, 2 + 2 * i, 0).copy(syns, i * 12)
    raw.write(syns)
    await until(() => session.closed || streams === count, 20_000, 'all SYNs handled')
    assert.equal(session.closed, true, `the session stayed up with ${a.writableLength} bytes unflushed`)
    const [err] = await closed
    assert.equal(err.code, 'TOWER_ERR_SESSION_CLOSED')
    assert.match(err.message, /peer does not read/)
    assert.ok(streams < count)
    assert.ok(a.writableLength < 12 * MiB, `transport holds ${a.writableLength} bytes`)
  })

  it('ends the session when streams opened towards a deaf peer pile up SYN and RST frames', (t) => {
    const { session, a } = deafPeer(t)
    let opened = 0
    // Each open() queues a SYN and each destroy() a RST, both from stream.ts.
    while (!session.closed && opened < 700_000) {
      const stream = session.open()
      stream.on('error', () => {})
      stream.destroy()
      opened++
    }
    assert.equal(session.closed, true, `the session stayed up with ${a.writableLength} bytes unflushed`)
    assert.ok(opened < 700_000)
  })
})

describe('repeated warnings are rate-limited (issue 8 item 9)', () => {
  it('logs a handful of lines and a count for 100,000 refused SYNs', async (t) => {
    const [a, raw] = memoryPair()
    t.mock.timers.enable({ apis: ['setTimeout'] })
    const { logger, records } = captureLogger()
    // No 'stream' listener and no backlog: every SYN is refused.
    const session = new Session(a, { client: true, keepAliveInterval: 0, maxWindow: 256 * KiB, acceptBacklog: 0, logger })
    let bytes = 0
    raw.on('data', (c: Buffer) => { bytes += c.length })
    const count = 100_000
    const syns = Buffer.alloc(count * 12)
    for (let i = 0; i < count; i++) encodeHeader(FrameType.windowUpdate, Flag.syn, 2 + 2 * i, 0).copy(syns, i * 12)
    raw.write(syns)
    await until(() => bytes === count * 12, 20_000, '100,000 RSTs')
    const early = warnings(records)
    assert.ok(early.length <= 10, `${early.length} warn lines for ${count} refused SYNs`)
    assert.ok(early.length >= 1, 'the first refusals are logged')
    assert.match(early[0].msg ?? '', /inbound stream reset/)
    const quiet = records.filter((r) => r.level === 'debug' && /inbound stream reset/.test(r.msg ?? ''))
    assert.equal(quiet.length, count - early.length, 'the rest go to debug')

    // The end of the interval summarises what was suppressed, once.
    t.mock.timers.tick(60_000)
    const summary = warnings(records).filter((r) => typeof r.obj.suppressed === 'number')
    assert.equal(summary.length, 1)
    assert.equal(summary[0].obj.suppressed, count - early.length)
    assert.match(summary[0].msg ?? '', /suppressed/)
    assert.equal(summary[0].obj.component, 'mux')

    // A later burst after the interval logs again, and closing the session summarises at once.
    const more = Buffer.alloc(1000 * 12)
    for (let i = 0; i < 1000; i++) encodeHeader(FrameType.windowUpdate, Flag.syn, 2 + 2 * (count + i), 0).copy(more, i * 12)
    raw.write(more)
    await until(() => bytes === (count + 1000) * 12, 20_000, '1,000 more RSTs')
    const closed = once(session, 'close')
    session.destroy()
    await closed
    const all = warnings(records).filter((r) => r.obj.suppressed === undefined && /inbound stream reset/.test(r.msg ?? ''))
    const suppressed = warnings(records).reduce((n, r) => n + (typeof r.obj.suppressed === 'number' ? r.obj.suppressed : 0), 0)
    assert.equal(all.length + suppressed, count + 1000, 'every refusal is either logged or counted')
    assert.ok(warnings(records).length <= 25, `${warnings(records).length} warn lines in all`)
    await closeAll([a, raw])
  })
})

describe('stream-open timeout (issue 8 item 11)', () => {
  it('fails an un-ACKed stream with TOWER_ERR_STREAM_OPEN_TIMEOUT and ends the session', async (t) => {
    const [a, raw] = memoryPair()
    t.mock.timers.enable({ apis: ['setTimeout'] })
    const { logger, records } = captureLogger()
    const session = new Session(a, { client: true, keepAliveInterval: 0, maxWindow: 256 * KiB, streamOpenTimeout: 5000, logger } as object as { client: true })
    raw.resume()
    const stream = session.open()
    const failed = once(stream, 'error') as Promise<[Coded]>
    const closed = once(session, 'close') as Promise<[Coded]>
    await new Promise((resolve) => setImmediate(resolve))
    t.mock.timers.tick(4999)
    assert.equal(stream.destroyed, false)
    assert.equal(session.closed, false)
    t.mock.timers.tick(1)
    await until(() => session.closed, 2000, 'the session to close')
    const [streamErr] = await failed
    assert.equal(streamErr.code, 'TOWER_ERR_STREAM_OPEN_TIMEOUT')
    const [err] = await closed
    assert.equal(err.code, 'TOWER_ERR_STREAM_OPEN_TIMEOUT')
    assert.ok(records.some((r) => r.level === 'warn' && (r.obj.err as Coded | undefined)?.code === 'TOWER_ERR_STREAM_OPEN_TIMEOUT'))
    await closeAll([a, raw])
  })

  it('leaves ACKed streams alone, and 0 disables it', async (t) => {
    const [a, raw] = memoryPair()
    const [c, raw2] = memoryPair()
    t.mock.timers.enable({ apis: ['setTimeout'] })
    const session = new Session(a, { client: true, keepAliveInterval: 0, maxWindow: 256 * KiB, streamOpenTimeout: 5000 } as object as { client: true })
    const off = new Session(c, { client: true, keepAliveInterval: 0, maxWindow: 256 * KiB, streamOpenTimeout: 0 } as object as { client: true })
    raw.resume()
    raw2.resume()
    const acked = session.open()
    const never = off.open()
    raw.write(encodeHeader(FrameType.windowUpdate, Flag.ack, acked.id, 0))
    await until(() => session.rtt > 0, 5000, 'the ACK')
    await new Promise((resolve) => setImmediate(resolve))
    t.mock.timers.tick(60_000)
    await new Promise((resolve) => setImmediate(resolve))
    assert.equal(acked.destroyed, false)
    assert.equal(session.closed, false)
    assert.equal(never.destroyed, false)
    assert.equal(off.closed, false)
    session.destroy()
    off.destroy()
    acked.on('error', () => {})
    never.on('error', () => {})
    await closeAll([a, raw, c, raw2])
  })

  it('is validated', () => {
    const [a] = memoryPair()
    assert.throws(() => new Session(a, { client: true, streamOpenTimeout: -1 } as never), (err: Coded) =>
      err.code === 'TOWER_ERR_INVALID_ARG' && /^streamOpenTimeout/.test(err.message))
    a.destroy()
  })
})

describe('canOpen (issue 8 item 10)', () => {
  const canOpen = (s: Session): unknown => (s as unknown as { canOpen: unknown }).canOpen

  it('is true on a fresh session and false after close()', async (t) => {
    const { session } = await rawPeer(t, memory)
    assert.equal(canOpen(session), true)
    session.open().on('error', () => {})
    session.close()
    assert.equal(session.closed, false, 'a stream is still open')
    assert.equal(canOpen(session), false)
  })

  it('is false after destroy()', async (t) => {
    const { session } = await rawPeer(t, memory)
    session.destroy()
    assert.equal(canOpen(session), false)
  })

  it('is false after a GoAway from the peer, while the session still runs', async (t) => {
    const { session, raw } = await rawPeer(t, memory)
    session.open().on('error', () => {})
    const goaway = once(session, 'goaway')
    raw.write(encodeHeader(FrameType.goAway, 0, 0, 0))
    await goaway
    assert.equal(session.closed, false)
    assert.equal(canOpen(session), false)
  })

  it('is false once the transport has ended', async (t) => {
    const { session, raw } = await rawPeer(t, memory)
    const closed = once(session, 'close')
    raw.end()
    await closed
    assert.equal(canOpen(session), false)
  })
})
