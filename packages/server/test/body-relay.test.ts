import assert from 'node:assert/strict'
import { once } from 'node:events'
import { Readable, Writable } from 'node:stream'
import { test } from 'node:test'
import { BodyRelay, type BodyOwner } from '../src/body-relay.ts'
import { WatchDrain } from '../src/drain.ts'

function owner (): BodyOwner & { ended: number, failed: Error[] } {
  const o = { ended: 0, failed: [] as Error[], bodyEnded () { o.ended++ }, bodyFailed (err: Error) { o.failed.push(err) } }
  return o
}

// A sink that takes one chunk per `release()`, with a 1-byte buffer: it pushes back at once.
function slowSink (): { sink: Writable, got: Buffer[], release: () => void } {
  const got: Buffer[] = []
  const waiting: Array<() => void> = []
  const sink = new Writable({
    highWaterMark: 1,
    write (chunk: Buffer, _enc, cb) { got.push(chunk); waiting.push(cb) }
  })
  return { sink, got, release: () => { waiting.shift()?.() } }
}

test('a slow sink pauses the source until it drains; every byte arrives, counted, and the sink is ended once', async () => {
  const chunks = Array.from({ length: 50 }, (_, i) => Buffer.alloc(1000, i))
  let pulled = 0
  const source = new Readable({ highWaterMark: 1000, read () { this.push(pulled < chunks.length ? chunks[pulled++] : null) } })
  const { sink, got, release } = slowSink()
  const o = owner()
  const relay = new BodyRelay(source, sink, o)
  await new Promise((resolve) => setTimeout(resolve, 20))
  // One chunk in the sink, the source paused: it read at most its own buffer ahead.
  assert.equal(got.length, 1)
  assert.equal(source.isPaused(), true)
  assert.ok(pulled <= 3, `the source was read ${pulled} chunks ahead of a sink that took 1`)
  const finished = once(sink, 'finish')
  while (!sink.writableFinished) {
    release()
    await new Promise((resolve) => setImmediate(resolve))
  }
  await finished
  assert.deepEqual(Buffer.concat(got), Buffer.concat(chunks))
  assert.equal(relay.bytes, 50_000)
  assert.equal(o.ended, 1)
  assert.deepEqual(o.failed, [])
})

test('a source that fails is reported once, leaves the sink to the owner, and leaves the drain', async () => {
  const source = new Readable({ read () {} })
  const sink = new Writable({ write (_c, _e, cb) { cb() } })
  const o = owner()
  const drain = new WatchDrain()
  const relay = new BodyRelay(source, sink, o)
  relay.watch(drain)
  source.push('{"type":"ADDED"}\n')
  await new Promise((resolve) => setImmediate(resolve))
  assert.equal(drain.size, 1)
  const closed = new Promise((resolve) => source.on('close', resolve))
  source.destroy(new Error('tunnel stream reset'))
  await closed
  assert.deepEqual(o.failed.map((e) => e.message), ['tunnel stream reset'])
  assert.equal(o.ended, 0)
  assert.equal(sink.writableEnded, false, 'the relay never ends a sink whose source failed')
  assert.equal(drain.size, 0)
  assert.equal(relay.bytes, 17)
})

test('stop(): nothing more is relayed, and a drain started later leaves the body alone', async () => {
  const source = new Readable({ read () {} })
  const got: string[] = []
  const sink = new Writable({ write (c: Buffer, _e, cb) { got.push(c.toString()); cb() } })
  const drain = new WatchDrain()
  const relay = new BodyRelay(source, sink, owner())
  relay.watch(drain)
  source.push('a\n')
  await new Promise((resolve) => setImmediate(resolve))
  relay.stop()
  assert.equal(drain.size, 0)
  source.push('b\n')
  await new Promise((resolve) => setImmediate(resolve))
  assert.equal(drain.endAll(), 0)
  assert.deepEqual(got, ['a\n'])
  assert.equal(sink.writableEnded, false)
})
