// Mutation fuzzing of wsStream (packages/transport/src/ws-stream.ts) over real
// TCP sockets on 127.0.0.1, with fast-check: a raw client sends valid, mutated
// and random frames in random pieces, then hangs up. Whatever it sends, the
// server-role stream
// - delivers exactly the payload a one-piece parse of the same bytes yields,
//   up to the first framing error;
// - ends cleanly or is destroyed with a transport error code, and closes;
// - writes back only well-formed server frames: Pongs and at most one Close,
//   with a code that may be sent;
// - never throws out of its event handlers (that would fail the run).
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { once } from 'node:events'
import net, { type AddressInfo, type Socket } from 'node:net'
import { randomBytes } from 'node:crypto'
import fc from 'fast-check'
import { applyMask, FrameParser, frameHeader, isSendableCloseCode, Opcode, wsStream } from '@tower/transport'
import { fuzzParams } from '../helpers/fuzz.ts'

const CODES = new Set(['TOWER_ERR_WS_PROTOCOL', 'TOWER_ERR_WS_CLOSED', 'TOWER_ERR_WS_BACKLOG'])
// Guard against a hang, in milliseconds: each run is a few ms on loopback.
const HANG_MS = 5000

// Accepted TCP sockets wait here for the run that connected them.
let server: net.Server
const waiting: Array<(s: Socket) => void> = []
before(async () => {
  server = net.createServer((s) => { waiting.shift()?.(s) })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
})
after(() => new Promise<void>((resolve) => server.close(() => resolve())))

async function connectedPair (): Promise<[Socket, Socket]> {
  const accepted = new Promise<Socket>((resolve) => waiting.push(resolve))
  const client = net.connect((server.address() as AddressInfo).port, '127.0.0.1')
  await once(client, 'connect')
  return [client, await accepted]
}

// What one parse of all the bytes yields: the payload up to the first error
// or the first Close (frames after a Close are discarded, RFC 6455 §5.5.1).
function reference (bytes: Buffer): { data: Buffer, failed: boolean } {
  const data: Buffer[] = []
  const closed = new Error('closed')
  const parser = new FrameParser({
    onData: (p) => data.push(Buffer.from(p)),
    onControl: (opcode) => { if (opcode === Opcode.close) throw closed }
  }, true)
  try {
    parser.push(Buffer.from(bytes))
    return { data: Buffer.concat(data), failed: false }
  } catch (err) {
    return { data: Buffer.concat(data), failed: err !== closed }
  }
}

interface Frame { opcode: number, fin: boolean, payload: Uint8Array }

function encode (frames: Frame[]): Buffer {
  const parts: Buffer[] = []
  for (const f of frames) {
    const mask = randomBytes(4)
    const header = frameHeader(f.opcode, f.payload.length, mask)
    if (!f.fin) header[0] &= 0x7f
    const body = Buffer.from(f.payload)
    applyMask(body, mask, 0)
    parts.push(header, body)
  }
  return Buffer.concat(parts)
}

const frame: fc.Arbitrary<Frame> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ opcode: fc.constant(Opcode.binary), fin: fc.constant(true), payload: fc.uint8Array({ maxLength: 2000 }) }) },
  { weight: 1, arbitrary: fc.record({ opcode: fc.constantFrom(Opcode.binary, Opcode.continuation), fin: fc.boolean(), payload: fc.uint8Array({ maxLength: 300 }) }) },
  { weight: 2, arbitrary: fc.record({ opcode: fc.constantFrom(Opcode.ping, Opcode.pong), fin: fc.constant(true), payload: fc.uint8Array({ maxLength: 125 }) }) },
  { weight: 1, arbitrary: fc.record({ opcode: fc.constant(Opcode.close), fin: fc.constant(true), payload: fc.uint8Array({ maxLength: 20 }) }) },
  { weight: 1, arbitrary: fc.record({ opcode: fc.nat({ max: 15 }), fin: fc.boolean(), payload: fc.uint8Array({ maxLength: 200 }) }) }
)
const traffic = fc.tuple(
  fc.array(frame, { maxLength: 16 }),
  fc.array(fc.tuple(fc.nat(), fc.nat({ max: 0xff })), { maxLength: 3 }),
  fc.uint8Array({ maxLength: 32 })
).map(([frames, flips, noise]) => {
  const bytes = Buffer.concat([encode(frames), Buffer.from(noise)])
  if (bytes.length > 0) for (const [at, value] of flips) bytes[at % bytes.length] = value
  return bytes
})
const cuts = fc.array(fc.nat({ max: 40_000 }), { maxLength: 10 })

test('wsStream on mutated traffic over TCP: reference payload, coded errors only, valid replies, always closes', async () => {
  await fc.assert(fc.asyncProperty(traffic, cuts, fc.boolean(), async (bytes, at, endFirst) => {
    const [client, socket] = await connectedPair()
    const stream = wsStream(socket, { role: 'server', closeTimeoutMs: 50 })
    const got: Buffer[] = []
    stream.on('data', (c: Buffer) => got.push(c))
    let error: (Error & { code?: string }) | undefined
    stream.on('error', (err: Error) => { error = err })
    // the frames the server sends back, parsed as a client would
    const replies: number[] = []
    let closeCode: number | undefined
    let badReply: Error | undefined
    const replyParser = new FrameParser({
      onData: () => { badReply ??= new Error('server sent data it was never given') },
      onControl: (opcode, payload) => {
        replies.push(opcode)
        if (opcode === Opcode.close) closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005
      }
    }, false)
    client.on('data', (c: Buffer) => {
      try { replyParser.push(c) } catch (err) { badReply ??= err as Error }
    })
    client.on('error', () => {})
    // not once(): that rejects on the 'error' this test expects
    const closed = new Promise((resolve) => stream.once('close', resolve))

    const points = [...new Set(at.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)
    let from = 0
    for (const to of [...points, bytes.length]) {
      if (to <= from) continue
      if (client.writable) client.write(bytes.subarray(from, to))
      from = to
      await new Promise(setImmediate)
    }
    // hang up: a half-close first, or at once
    if (endFirst) client.end()
    else client.destroy()
    let hang: NodeJS.Timeout | undefined
    await Promise.race([closed, new Promise((_resolve, reject) => { hang = setTimeout(() => reject(new Error('wsStream did not close')), HANG_MS) })])
    clearTimeout(hang)
    client.destroy()

    const want = reference(bytes)
    const data = Buffer.concat(got)
    if (want.failed || error !== undefined) {
      // the stream may stop early (a Close, an error): what it gave is a prefix
      assert.ok(want.data.subarray(0, data.length).equals(data), 'delivered payload is a prefix of the reference')
    } else {
      assert.ok(data.equals(want.data), 'delivered payload equals the reference')
    }
    if (want.failed) assert.ok(error !== undefined, 'a framing error destroys the stream')
    else assert.notEqual(error?.code, 'TOWER_ERR_WS_PROTOCOL', 'no framing error where the reference found none')
    if (error !== undefined) assert.ok(CODES.has(error.code ?? ''), `error code ${error.code ?? String(error)}`)
    assert.equal(badReply, undefined, String(badReply))
    assert.ok(replies.filter((op) => op === Opcode.close).length <= 1, 'at most one Close')
    assert.ok(replies.every((op) => op === Opcode.pong || op === Opcode.close), `replies ${replies.join(',')}`)
    if (closeCode !== undefined && closeCode !== 1005) assert.ok(isSendableCloseCode(closeCode), `close code ${closeCode}`)
  }), fuzzParams())
})
