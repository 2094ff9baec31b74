// No leak: 1,000 watches opened and closed through the agent's h2 pool leave
// its stream tables empty, the upstream with no open stream, and the heap
// near its baseline. A growth check, not a speed check.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import v8 from 'node:v8'
import vm from 'node:vm'
import { h2Rig, openWatch, until } from './h2-rig.ts'

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc') as () => void

async function settledHeap (): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc()
    await new Promise((resolve) => setImmediate(resolve))
  }
  return process.memoryUsage().heapUsed
}

test('1,000 watches opened and closed: stream tables empty, heap back near baseline', async (t) => {
  const { server, upstream, agent, logs } = await h2Rig(t, { upstream: { maxConcurrentStreams: 100 } })
  const round = async (n: number, parallel: number): Promise<void> => {
    for (let done = 0; done < n; done += parallel) {
      const batch = await Promise.all(Array.from({ length: Math.min(parallel, n - done) }, async () => {
        const w = await openWatch(server)
        await w.nextLine()
        return w
      }))
      for (const w of batch) w.destroy()
      await until(() => agent.upstreamH2?.streams === 0)
    }
  }
  const settle = async (): Promise<void> => {
    await until(() => agent.upstreamH2?.streams === 0 && upstream.openStreams === 0 && server.session?.numStreams === 0, 10_000)
    // the test's own records (the fixture's request list, the captured log lines) are not the agent's memory
    upstream.requests.length = 0
    logs.length = 0
  }
  // warm-up: code paths compiled, pools and buffers at their steady size
  await round(300, 50)
  await settle()
  const before = await settledHeap()
  await round(1000, 50)
  await settle()
  const after = await settledHeap()
  const stats = agent.upstreamH2
  assert.equal(stats?.streams, 0)
  assert.equal(stats?.waiting, 0)
  assert.equal(stats?.h2Requests, 1300)
  // 50 at a time fit one session (limit 100): no second one was needed
  assert.equal(stats?.sessions, 1)
  assert.equal(stats?.dials, 1)
  const growth = after - before
  t.diagnostic(`heap ${before} -> ${after} B (${growth} B, ${Math.round(growth / 1000)} B per watch)`)
  // a leak of the watches' objects (h2 stream, tunnel stream, request, response)
  // would be several KB per watch; allow 1 KB per watch of noise
  assert.ok(growth < 1000 * 1024, `heap grew by ${growth} B over 1,000 watches`)
})
