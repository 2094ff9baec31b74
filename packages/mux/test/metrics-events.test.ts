/**
 * The session events metrics count: GoAway sent and received with their
 * codes, and writes that waited for the peer's window.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { GoAwayCode, ProtocolError } from '../src/index.ts'
import { memory, sessionPair, until } from './helpers.ts'

test('close() reports GoAway(normal) sent on one side and received on the other', async (t) => {
  const { client, server } = await sessionPair(t, memory)
  const sent: number[] = []
  const received: number[] = []
  client.on('goAwaySent', (code) => sent.push(code))
  server.on('goAwayReceived', (code) => received.push(code))
  client.close()
  await until(() => received.length > 0, 5000, 'GoAway at the server')
  assert.deepEqual(sent, [GoAwayCode.normal])
  assert.deepEqual(received, [GoAwayCode.normal])
})

test('destroy with a protocol error reports its GoAway code on both sides', async (t) => {
  const { client, server } = await sessionPair(t, memory)
  const sent: number[] = []
  const received: number[] = []
  server.on('goAwaySent', (code) => sent.push(code))
  client.on('goAwayReceived', (code) => received.push(code))
  const closed = once(client, 'close')
  server.destroy(new ProtocolError('test'))
  await closed
  assert.deepEqual(sent, [GoAwayCode.protocolError])
  assert.deepEqual(received, [GoAwayCode.protocolError])
})

test('a write that outruns a reader that does not read is counted as a window stall; a small one is not', async (t) => {
  const { client, server } = await sessionPair(t, memory)
  let stalls = 0
  client.on('windowStall', () => { stalls++ })
  const streams: Array<import('../src/index.ts').MuxStream> = []
  server.on('stream', (s) => { s.on('error', () => {}); streams.push(s) })
  const small = client.open()
  small.on('error', () => {})
  small.write(Buffer.alloc(1024))
  await until(() => streams.length === 1 && streams[0]!.readableLength === 1024, 5000, 'small write delivered')
  assert.equal(stalls, 0)
  // Nobody reads the second stream: the write must wait for credit once its window is used up.
  const big = client.open()
  big.on('error', () => {})
  big.write(Buffer.alloc(16 * 1024 * 1024))
  await until(() => stalls > 0, 10_000, 'a window stall')
  assert.equal(stalls, 1)
  // Reading frees credit; the rest flows (and may stall again).
  let got = 0
  await until(() => streams.length === 2, 5000, 'second stream')
  streams[1]!.on('data', (c: Buffer) => { got += c.length })
  await until(() => got === 16 * 1024 * 1024, 20_000, 'big write delivered')
})
