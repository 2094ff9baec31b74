import assert from 'node:assert/strict'
import { once, EventEmitter } from 'node:events'
import { describe, test } from 'node:test'
import { WorkQueue } from '../src/work-queue.ts'

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/** A handler whose runs the test releases one by one. */
function gatedHandler () {
  const events = new EventEmitter()
  const runs: string[] = []
  const gates: Array<() => void> = []
  let active = 0
  let maxActive = 0
  const handler = async (key: string): Promise<void> => {
    // Emit after add() returns, so the test's once() is listening.
    await null
    runs.push(key)
    active++
    maxActive = Math.max(maxActive, active)
    events.emit('run', key)
    await new Promise<void>((resolve) => gates.push(resolve))
    active--
    events.emit('done', key)
  }
  return { handler, runs, events, release: () => gates.shift()?.(), get maxActive () { return maxActive }, get waiting () { return gates.length } }
}

describe('WorkQueue', () => {
  test('a key queued twice runs once', async () => {
    const h = gatedHandler()
    const q = new WorkQueue({ handler: h.handler, concurrency: 1 })
    q.add('blocker')
    await once(h.events, 'run')
    q.add('a')
    q.add('a')
    q.add('a')
    h.release()
    await once(h.events, 'run')
    h.release()
    await once(h.events, 'done')
    assert.deepEqual(h.runs, ['blocker', 'a'])
    assert.equal(q.idle, true)
    await q.stop()
  })

  test('a key re-added while it runs runs again after, not concurrently', async () => {
    const h = gatedHandler()
    const q = new WorkQueue({ handler: h.handler, concurrency: 4 })
    q.add('a')
    await once(h.events, 'run')
    q.add('a')
    q.add('a')
    assert.equal(h.waiting, 1, 'the second add must not start a parallel run')
    h.release()
    await once(h.events, 'run')
    h.release()
    await once(h.events, 'done')
    assert.deepEqual(h.runs, ['a', 'a'])
    assert.equal(h.maxActive, 1)
    await q.stop()
  })

  test('concurrency is bounded', async () => {
    const h = gatedHandler()
    const q = new WorkQueue({ handler: h.handler, concurrency: 3 })
    for (let i = 0; i < 10; i++) q.add(`k${i}`)
    await tick()
    assert.equal(h.waiting, 3)
    let done = 0
    while (done < 10) {
      await tick()
      h.release()
      await once(h.events, 'done')
      done++
    }
    assert.equal(h.maxActive, 3)
    assert.equal(new Set(h.runs).size, 10)
    await q.stop()
  })

  test('failures back off exponentially per key, capped, and a success resets it', async () => {
    const q = new WorkQueue({ handler: async () => {}, baseBackoffMs: 200, maxBackoffMs: 30_000 })
    assert.deepEqual([1, 2, 3, 4, 8, 20].map((n) => q.backoffMs(n)), [200, 400, 800, 1600, 25_600, 30_000])
    await q.stop()

    const at: number[] = []
    let fail = 3
    const events = new EventEmitter()
    const q2 = new WorkQueue({
      baseBackoffMs: 20,
      maxBackoffMs: 1000,
      handler: async () => {
        await null
        at.push(performance.now())
        if (fail-- > 0) throw new Error('boom')
        events.emit('ok')
      }
    })
    q2.add('x')
    await once(events, 'ok')
    assert.equal(at.length, 4)
    const gaps = at.slice(1).map((t, i) => t - (at[i] as number))
    // 20, 40, 80 ms (timers fire no earlier than asked)
    assert.ok(gaps[0] >= 19 && gaps[1] >= 39 && gaps[2] >= 79, `gaps ${gaps.join(', ')}`)
    // after the success the count is reset: the next failure waits the base again
    fail = 1
    const t0 = performance.now()
    q2.add('x')
    await once(events, 'ok')
    const t = performance.now() - t0
    assert.ok(t >= 19 && t < 80, `after a success the backoff restarts at the base, took ${t} ms`)
    await q2.stop()
  })

  test('requeueAfterMs runs the key again later', async () => {
    let n = 0
    const events = new EventEmitter()
    const q = new WorkQueue({ handler: async () => { await null; n++; events.emit('run'); return n === 1 ? { requeueAfterMs: 30 } : undefined } })
    const t0 = performance.now()
    q.add('k')
    await once(events, 'run')
    await once(events, 'run')
    assert.ok(performance.now() - t0 >= 29)
    assert.equal(n, 2)
    await q.stop()
  })

  test('stop waits for running handlers and drops queued and delayed keys', async () => {
    const h = gatedHandler()
    const q = new WorkQueue({ handler: h.handler, concurrency: 1 })
    q.add('a')
    q.add('b')
    q.addAfter('c', 10)
    await once(h.events, 'run')
    let stopped = false
    const s = q.stop().then(() => { stopped = true })
    await new Promise((resolve) => setImmediate(resolve))
    assert.equal(stopped, false, 'stop must wait for the running handler')
    h.release()
    await s
    assert.equal(stopped, true)
    await new Promise((resolve) => setTimeout(resolve, 30))
    assert.deepEqual(h.runs, ['a'])
    q.add('d')
    assert.deepEqual(h.runs, ['a'])
  })

  test('the number of distinct keys is bounded', async () => {
    const h = gatedHandler()
    const q = new WorkQueue({ handler: h.handler, concurrency: 1, maxKeys: 3 })
    for (const k of ['a', 'b', 'c', 'd', 'e']) q.add(k)
    assert.equal(q.length, 3)
    for (let i = 0; i < 3; i++) {
      await tick()
      h.release()
      await once(h.events, 'done')
    }
    assert.deepEqual(h.runs, ['a', 'b', 'c'])
    await q.stop()
  })
})
