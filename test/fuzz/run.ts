/**
 * `npm run fuzz -- [--minutes N] [--seed S]`: runs every fuzz target in
 * test/fuzz/*.fuzz.test.ts for N minutes each (default 1) with seed S
 * (default: a fresh random one, printed first so a failing run can be
 * replayed). `npm test` runs the same files with a short budget and a fixed
 * seed (test/helpers/fuzz.ts).
 */
import { spawnSync } from 'node:child_process'
import { globSync } from 'node:fs'
import { parseArgs } from 'node:util'

const { values } = parseArgs({ options: { minutes: { type: 'string', default: '1' }, seed: { type: 'string' } } })
const minutes = Number(values.minutes)
if (!Number.isFinite(minutes) || minutes <= 0) {
  console.error(`fuzz: --minutes must be a positive number, got "${values.minutes}"`)
  process.exit(2)
}
const seed = values.seed ?? String(Math.floor(Math.random() * 2 ** 31))
if (!/^-?\d+$/.test(seed)) {
  console.error(`fuzz: --seed must be an integer, got "${seed}"`)
  process.exit(2)
}
const files = globSync('test/fuzz/*.fuzz.test.ts').sort()
if (files.length === 0) {
  console.error('fuzz: no *.fuzz.test.ts files found')
  process.exit(2)
}
console.log(`fuzz: ${files.length} files, ${minutes} min per target, seed ${seed} (replay with --seed ${seed})`)
const ms = Math.round(minutes * 60_000)
const run = spawnSync(process.execPath, ['--experimental-strip-types', '--test', '--test-concurrency=1', `--test-timeout=${ms * 20 + 60_000}`, ...files], {
  stdio: 'inherit',
  env: { ...process.env, TOWER_FUZZ_MS: String(ms), TOWER_FUZZ_SEED: seed }
})
process.exit(run.status ?? 1)
