/**
 * status.json is rewritten after agents come and go, coalesced. With
 * thousands of clusters a write takes tens of milliseconds, so its pace
 * follows its own cost: the file must not eat the event loop while a fleet
 * reconnects.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import type { ServerStatusReport } from '../src/registry/api.ts'
import { startServer } from './helpers.ts'

test('status writes: at most one per 100 ms, and after a slow write a pause of 20 times its duration', async (t) => {
  const ts = await startServer(t)
  const write = ts.registry.reportStatus.bind(ts.registry)
  let costMs = 0
  const writes: number[] = []
  ts.registry.reportStatus = (report: ServerStatusReport): void => {
    writes.push(performance.now())
    const until = performance.now() + costMs
    while (performance.now() < until) { /* a status file of thousands of clusters */ }
    write(report)
  }
  // an agent joining or leaving every 10 ms
  const churn = setInterval(() => ts.server.tunnels.emit('change', 'churn'), 10)
  t.after(() => clearInterval(churn))

  await sleep(1000)
  const fast = writes.length
  const fastGaps = writes.slice(1).map((w, i) => w - writes[i]!)
  assert.ok(fast >= 5, `cheap writes keep the file fresh: ${fast} in 1 s`)
  assert.ok(fastGaps.every((g) => g >= 95), `never more than one per 100 ms: ${fastGaps.map(Math.round).join(',')}`)

  costMs = 30
  await sleep(3000)
  clearInterval(churn)
  const slow = writes.slice(fast)
  const slowGaps = slow.slice(2).map((w, i) => w - slow[i + 1]!)
  assert.ok(slowGaps.length >= 1, `writes went on: ${slow.length}`)
  assert.ok(slowGaps.every((g) => g >= 590), `30 ms writes are 600 ms apart: ${slowGaps.map(Math.round).join(',')}`)
})
