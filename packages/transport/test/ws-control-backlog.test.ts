// Control replies (Pong, Close) are bounded and visible (issue 8, item 7): a
// peer that floods pings without reading its pongs must get backpressure,
// not grow the server's memory without end.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { towerServer, waitForStall } from './ws-pair.ts'
import { clientFrame, rawClient } from './raw-peer.ts'
import { Opcode } from '../src/ws-frame.ts'
import { wsStream } from '../src/ws-stream.ts'

// 500 pings of 125 bytes each: 65,500 bytes on the wire, 63,500 of pongs back.
const PING_BATCH = Buffer.concat(Array.from({ length: 500 }, () => clientFrame(Opcode.ping, Buffer.alloc(125, 1))))

async function flooded (t: { after: (fn: () => Promise<void>) => void }, hwm: number, maxControlBacklog?: number): Promise<{ client: Socket, server: Duplex, serverSocket: Socket }> {
  const srv = await towerServer({ highWaterMark: hwm, ...(maxControlBacklog !== undefined ? { maxControlBacklog } : {}) })
  t.after(() => srv.close())
  const client = await rawClient(srv.port)
  const [server, serverSocket] = (await srv.accepted.next()).value as [Duplex, Socket]
  t.after(async () => { client.destroy(); server.destroy() })
  return { client, server, serverSocket }
}

test('a peer that floods pings and never reads gets backpressure: the server stops reading and its buffered bytes stay bounded', async (t) => {
  const hwm = 64 * 1024
  const { client, server, serverSocket } = await flooded(t, hwm)
  server.on('error', () => {})
  // the most the server's socket held unflushed, seen after each chunk it read
  let most = 0
  serverSocket.on('data', () => { most = Math.max(most, serverSocket.writableLength) })
  client.pause()
  // the flood stalled at about 8 MB here (loopback socket buffers included)
  const limit = 24 * 1024 * 1024
  let sent = 0
  const flooding = (async () => {
    while (sent < limit && !client.destroyed) {
      sent += PING_BATCH.length
      if (!client.write(PING_BATCH)) await once(client, 'drain')
    }
  })()
  const outcome = await Promise.race([once(serverSocket, 'pause').then(() => 'paused'), flooding.then(() => 'all taken')])
  assert.equal(outcome, 'paused', `the server should stop reading, but all ${limit} bytes were taken`)
  // it stays paused while the peer does not read, so the flood stalls
  const stalledAt = await waitForStall(() => sent)
  assert.ok(stalledAt < limit, `the flood should stall, but all ${limit} bytes were taken`)
  assert.equal(serverSocket.isPaused(), true, 'the server stops reading the flooding socket')
  // one socket read's worth of pongs past the mark, at most
  const bound = hwm + 128 * 1024
  assert.ok(most <= bound, `server socket held ${most} bytes unflushed (bound ${bound})`)
  // the pongs count in the stream's writableLength, which the mux bounds
  assert.ok(server.writableLength >= server.writableHighWaterMark, `writableLength ${server.writableLength} should include the unflushed pongs`)
  assert.ok(server.writableLength <= bound)
  assert.equal(server.destroyed, false)

  // once the peer reads, the pongs flush: 'drain' for the mux, reading resumes
  const drained = once(server, 'drain')
  const resumed = once(serverSocket, 'resume')
  client.resume()
  await Promise.all([drained, resumed])
  const before = sent
  await waitForProgress(() => sent, before)
  client.destroy()
  void flooding
})

// Resolves once read() has moved past `from`, checking on every tick.
async function waitForProgress (read: () => number, from: number): Promise<void> {
  while (read() <= from) await new Promise(setImmediate)
}

test('past maxControlBacklog the stream is destroyed with TOWER_ERR_WS_BACKLOG', async (t) => {
  // one chunk of pings answered before reading can pause: more than 4 KiB of pongs
  const { client, server } = await flooded(t, 1024, 4096)
  client.resume()
  const errored = once(server, 'error') as Promise<[Error & { code: string, backlog: number }]>
  client.write(PING_BATCH)
  const [err] = await errored
  assert.equal(err.code, 'TOWER_ERR_WS_BACKLOG')
  assert.ok(err.backlog > 4096)
})

test('wsStream refuses a maxControlBacklog, highWaterMark or closeTimeoutMs that is not a positive number', () => {
  const socket = {} as Socket
  for (const bad of [{ maxControlBacklog: 0 }, { highWaterMark: -1 }, { closeTimeoutMs: Number.NaN }, { maxControlBacklog: Infinity }]) {
    assert.throws(() => wsStream(socket, { role: 'server', ...bad }), { code: 'TOWER_ERR_INVALID_ARG' }, JSON.stringify(bad))
  }
})
