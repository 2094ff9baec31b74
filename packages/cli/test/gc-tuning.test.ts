// gc-tuning.ts: a relay's buffers are freed by scavenges, not by a
// mark-compact per 64 MiB of them. The workload is measured in two fresh
// processes, with the module and without.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import { gcTuningEnabled } from '../src/gc-tuning.ts'

const run = promisify(execFile)
const WORKLOAD = path.resolve(import.meta.dirname, 'fixtures/gc-workload.ts')

async function gcCounts (mode: 'tuned' | 'plain'): Promise<{ major: number, minor: number }> {
  const { stdout } = await run(process.execPath, ['--experimental-strip-types', WORKLOAD, mode], { timeout: 120_000 })
  return JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as { major: number, minor: number }
}

test('1 GiB of short-lived socket buffers: the tuned process runs at most a third of the mark-compacts', async () => {
  const plain = await gcCounts('plain')
  const tuned = await gcCounts('tuned')
  // Measured on Node 24: plain 14-15 mark-compacts and 9 scavenges, tuned 2 and 37-39.
  assert.ok(plain.major >= 6, `the workload must provoke mark-compacts without the tuning (got ${plain.major}); otherwise this test proves nothing`)
  assert.ok(tuned.major * 3 <= plain.major, `tuned ${tuned.major} mark-compacts vs ${plain.major} plain`)
  assert.ok(tuned.minor > plain.minor, `the tuned process frees the buffers with scavenges (${tuned.minor} vs ${plain.minor})`)
})

test('TOWER_GC_TUNING=off (or 0, false) turns the tuning off; anything else leaves it on', () => {
  for (const v of ['off', 'OFF', '0', 'false', ' off ']) assert.equal(gcTuningEnabled({ TOWER_GC_TUNING: v }), false, v)
  for (const v of [undefined, '', 'on', '1', 'yes']) assert.equal(gcTuningEnabled(v === undefined ? {} : { TOWER_GC_TUNING: v }), true, String(v))
})

test('main.ts imports gc-tuning.ts before any other module', () => {
  const src = readFileSync(path.resolve(import.meta.dirname, '../src/main.ts'), 'utf8')
  const imports = [...src.matchAll(/^import .*$/gm)].map((m) => m[0])
  assert.equal(imports[0], "import './gc-tuning.ts'")
})
