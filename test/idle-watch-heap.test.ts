/**
 * A memory budget, not a timing: what an idle h2 watch in proxy mode holds
 * on the server's heap. bench/h2-idle-watch.ts runs only TowerServer in its
 * process (the agent side and the h2 caller run in a child), opens the
 * watches, and reports the heap growth after GC per watch.
 *
 * Measured at 1,000 watches on 4 sessions: 8,723 B per watch with a closure
 * per listener and `pipe()`, 4,673 B with one exchange object per stream and
 * shared listeners (h2-relay.ts, body-relay.ts). The budget sits between, so
 * a change that brings back per-watch closures fails here.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const SCRIPT = fileURLToPath(new URL('../bench/h2-idle-watch.ts', import.meta.url))
const BUDGET_BYTES = 6000

test(`an idle h2 watch holds at most ${BUDGET_BYTES} B of the server's heap (1,000 watches, hop frames)`, async (t) => {
  const out = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, ['--expose-gc', '--experimental-strip-types', '--no-warnings', SCRIPT, '1000', '4', 'hop'],
      { timeout: 120_000, maxBuffer: 1024 * 1024 }, (err, stdout, stderr) => {
        if (err !== null) reject(new Error(`${err.message}\n${stderr}`))
        else resolve(stdout)
      })
  })
  const line = out.trim().split('\n').at(-1) ?? ''
  const r = JSON.parse(line) as { watches: number, connections: number, serverBytesPerIdleWatch: { heap: number, rss: number } }
  t.diagnostic(`server heap per idle watch ${r.serverBytesPerIdleWatch.heap} B (RSS ${r.serverBytesPerIdleWatch.rss} B) over ${r.connections} sessions`)
  assert.equal(r.watches, 1000)
  assert.equal(r.connections, 4, 'the watches share the caller\'s 4 h2 sessions')
  assert.ok(r.serverBytesPerIdleWatch.heap > 0, 'the watches were held')
  assert.ok(r.serverBytesPerIdleWatch.heap <= BUDGET_BYTES, `${r.serverBytesPerIdleWatch.heap} B per idle watch, over the ${BUDGET_BYTES} B budget`)
})
