/**
 * The README's commands on a machine whose own `node` is older than the
 * project needs (Node 20 on the CI machine): npm scripts and `npx tower` must
 * run on the Node 24 that `npm install` brought (the `node` devDependency),
 * with nothing else on PATH. Run under `npm test`, PATH starts with
 * node_modules/.bin; these tests take it off again, as a fresh shell has it.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import path from 'node:path'

const ROOT = path.resolve(import.meta.dirname, '..')
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm'

/** PATH without any node_modules/.bin or a hand-installed Node 24: the machine's own tools only. */
function machinePath (): string {
  return (process.env.PATH ?? '').split(path.delimiter)
    .filter((dir) => !dir.includes(`node_modules${path.sep}.bin`) && !dir.includes('node24'))
    .join(path.delimiter)
}

function run (args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  // npm sets npm_* variables for the outer `npm test`; a fresh shell has none.
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.toLowerCase().startsWith('npm_')) env[k] = v
  env.PATH = machinePath()
  return new Promise((resolve) => {
    execFile(NPM, args, { cwd: ROOT, env, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : (err as { code?: number }).code ?? 1, stdout, stderr })
    })
  })
}

test('npm scripts run on the project\'s Node 24, whatever node the machine has', async () => {
  const r = await run(['run', '--silent', 'tower', '--', '--version'])
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.stdout.trim(), '0.1.0')
  const v = await run(['exec', '--offline', '--', 'node', '--version'])
  assert.equal(v.code, 0, v.stderr)
  assert.match(v.stdout.trim(), /^v24\./)
})

test('npx tower runs the CLI from the checkout, as the README writes it', async () => {
  const r = await run(['exec', '--offline', '--', 'tower', 'cluster', '--help'])
  assert.equal(r.code, 0, r.stderr)
  assert.match(r.stdout, /tower cluster add <name>/)
})
