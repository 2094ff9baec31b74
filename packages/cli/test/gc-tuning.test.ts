// gc-tuning.ts and gc-flags.ts: a relay's buffers are freed by scavenges,
// not by a mark-compact per 64 MiB of them, and those scavenges run on a
// young generation large enough that each frees more than a few KiB. The
// workloads are measured in fresh processes, with the settings and without.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import { GC_FLAGS, GC_LAUNCH_FLAGS, gcLaunchFlags, gcTuningEnabled, runtimeGcFlags } from '../src/gc-flags.ts'

const run = promisify(execFile)
const WORKLOAD = path.resolve(import.meta.dirname, 'fixtures/gc-workload.ts')

async function gcCounts (mode: 'tuned' | 'plain', pattern: 'relay' | 'young' = 'relay', launchFlags: readonly string[] = []): Promise<{ major: number, minor: number }> {
  const { stdout } = await run(process.execPath, ['--experimental-strip-types', ...launchFlags, WORKLOAD, mode, pattern], { timeout: 120_000 })
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

test('garbage that dies young: the launch flags cut the scavenges of the tuned process by at least 40 %', async () => {
  const without = await gcCounts('tuned', 'young')
  const withFlags = await gcCounts('tuned', 'young', GC_LAUNCH_FLAGS)
  // Measured on Node 24: 820 scavenges without the launch flags, 392 with them.
  assert.ok(without.minor >= 300, `the workload must provoke frequent scavenges on V8's default young generation (got ${without.minor}); otherwise this test proves nothing`)
  assert.ok(withFlags.minor <= without.minor * 0.6, `${withFlags.minor} scavenges with ${GC_LAUNCH_FLAGS.join(' ')} vs ${without.minor} without`)
})

test('TOWER_GC_TUNING=off (or 0, false) turns the tuning off, launch flags included; anything else leaves it on', () => {
  for (const v of ['off', 'OFF', '0', 'false', ' off ']) {
    assert.equal(gcTuningEnabled({ TOWER_GC_TUNING: v }), false, v)
    assert.deepEqual(gcLaunchFlags({ TOWER_GC_TUNING: v }), [], v)
  }
  for (const v of [undefined, '', 'on', '1', 'yes']) {
    const env = v === undefined ? {} : { TOWER_GC_TUNING: v }
    assert.equal(gcTuningEnabled(env), true, String(v))
    assert.deepEqual(gcLaunchFlags(env), [...GC_LAUNCH_FLAGS], String(v))
  }
})

test('a run-time flag the node command line or NODE_OPTIONS already gives is left to it, in any spelling', () => {
  assert.deepEqual(runtimeGcFlags([], {}), [...GC_FLAGS])
  const trigger = GC_FLAGS.find((f) => f.startsWith('--minor-gc-task-trigger='))!
  for (const given of ['--minor-gc-task-trigger=20', '--minor_gc_task_trigger=20', '--minor-gc-task-trigger']) {
    assert.deepEqual(runtimeGcFlags(['--experimental-strip-types', given], {}), GC_FLAGS.filter((f) => f !== trigger), given)
  }
  assert.deepEqual(runtimeGcFlags([], { NODE_OPTIONS: '--max-old-space-size=512  --no-external-memory-accounted-in-global-limit' }),
    GC_FLAGS.filter((f) => f !== '--external-memory-accounted-in-global-limit'))
  // a flag only sharing a prefix, or a script argument, changes nothing
  assert.deepEqual(runtimeGcFlags(['--minor-gc-task-trigger-x=1', 'minor-gc-task-trigger=1'], {}), [...GC_FLAGS])
})

test('the tuned process keeps a trigger given on its command line', async () => {
  const tuned = await gcCounts('tuned', 'young', GC_LAUNCH_FLAGS)
  const own = await gcCounts('tuned', 'young', [...GC_LAUNCH_FLAGS, '--minor-gc-task-trigger=80'])
  // Measured on Node 24: 404 scavenges with the tuning's 5 %, 23 with 80 % given on the command line.
  assert.ok(own.minor * 4 <= tuned.minor, `${own.minor} scavenges with --minor-gc-task-trigger=80 vs ${tuned.minor} with the tuning's own`)
})

test('bin/tower.js and the image start node with the launch flags, before the script', () => {
  const shebang = readFileSync(path.resolve(import.meta.dirname, '../bin/tower.js'), 'utf8').split('\n')[0]!
  const entry = readFileSync(path.resolve(import.meta.dirname, '../../../Dockerfile'), 'utf8').match(/^ENTRYPOINT (\[.*\])$/m)
  assert.ok(entry !== null, 'the Dockerfile has an exec-form ENTRYPOINT')
  const argv = JSON.parse(entry[1]!) as string[]
  for (const flag of GC_LAUNCH_FLAGS) {
    assert.ok(shebang.split(' ').includes(flag), `${flag} in ${shebang}`)
    assert.ok(argv.indexOf(flag) > 0 && argv.indexOf(flag) < argv.indexOf('/app/packages/cli/src/main.ts'), `${flag} in ENTRYPOINT ${entry[1]}`)
  }
})

test('main.ts imports gc-tuning.ts before any other module', () => {
  const src = readFileSync(path.resolve(import.meta.dirname, '../src/main.ts'), 'utf8')
  const imports = [...src.matchAll(/^import .*$/gm)].map((m) => m[0])
  assert.equal(imports[0], "import './gc-tuning.ts'")
})
