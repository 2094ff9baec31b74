// --registry picks the backend from one set of flags; a flag of the other backend typed on the command
// line is TOWER_ERR_USAGE (never silently ignored), the same flag from a TOWER_* variable is not; the
// controller flags parse into ControllerSettings with their documented defaults.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { controllerSettings, openRegistry, registryChoice, type RegistryArgs } from '../src/registry-options.ts'

const base: RegistryArgs = { 'state-dir': '/nonexistent/tower-state' }
const usage = (fn: () => unknown, pattern: RegExp): void => {
  assert.throws(fn, (err: Error & { code?: string }) => err.code === 'TOWER_ERR_USAGE' && pattern.test(err.message))
}

test('the file registry is the default', () => {
  assert.equal(registryChoice(base, []), 'file')
  assert.equal(registryChoice({ ...base, registry: 'kubernetes' }, ['--registry', 'kubernetes']), 'kubernetes')
  usage(() => registryChoice({ ...base, registry: 'etcd' }, []), /--registry must be file or kubernetes/)
})

test('a typed flag of the other backend is a usage error naming it', () => {
  const k8s = { ...base, registry: 'kubernetes' }
  usage(() => registryChoice(k8s, ['--registry', 'kubernetes', '--state-dir', '/x']), /--state-dir applies to --registry file only/)
  usage(() => registryChoice(k8s, ['--state-dir=/x']), /--state-dir/)
  for (const argv of [['--kubeconfig', 'k'], ['--namespace=ns'], ['--kubesphere-compat'], ['--no-leader-elect'], ['--leader-elect=false'], ['--lease-duration', '5s'], ['--identity', 'a']]) {
    usage(() => registryChoice(base, argv), new RegExp(`--${argv[0]!.replace(/^--(no-)?/, '').replace(/=.*/, '')} applies to --registry kubernetes only`))
  }
  // after "--" nothing is a flag
  assert.equal(registryChoice(base, ['--', '--kubeconfig']), 'file')
})

test('the same values from TOWER_* variables (not typed) are no error', () => {
  // An image sets TOWER_STATE_DIR for the file backend; run with TOWER_REGISTRY=kubernetes it must still start.
  assert.equal(registryChoice({ ...base, registry: 'kubernetes', 'state-dir': '/var/lib/tower' }, ['server']), 'kubernetes')
  assert.equal(registryChoice({ ...base, kubeconfig: '/k', namespace: 'x' }, ['cluster', 'list']), 'file')
})

test('controller settings: defaults and parsing', () => {
  const d = controllerSettings({ ...base, registry: 'kubernetes' })
  assert.deepEqual(d, { kubesphereCompat: false, leaderElect: true, identity: os.hostname(), leaseDurationMs: 15_000 })
  const s = controllerSettings({ ...base, 'kubesphere-compat': true, 'leader-elect': false, 'lease-duration': '1m', identity: 'pod-1', 'port-range': '7000-7099' })
  assert.deepEqual(s, { kubesphereCompat: true, leaderElect: false, identity: 'pod-1', leaseDurationMs: 60_000, portRange: '7000-7099' })
  usage(() => controllerSettings({ ...base, 'lease-duration': '15' }), /--lease-duration must be a duration/)
  usage(() => controllerSettings({ ...base, 'lease-duration': '500ms' }), /at least 1s/)
  usage(() => controllerSettings({ ...base, identity: '' }), /--identity/)
})

test('openRegistry: the file backend, without creating a state directory unless asked', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tower-cli-registry-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const stateDir = path.join(dir, 'state')
  await assert.rejects(openRegistry({ 'state-dir': stateDir }), (err: Error & { code?: string }) => err.code === 'TOWER_ERR_STATE')
  assert.equal(fs.existsSync(stateDir), false)
  const registry = await openRegistry({ 'state-dir': stateDir }, { create: true })
  t.after(() => registry.close())
  assert.equal(registry.kind, 'file')
  assert.equal(fs.existsSync(path.join(stateDir, 'state.json')), true)
})

test('the real CLI: a kubernetes-only flag with the file registry fails before anything is created', async (t) => {
  const { execFile } = await import('node:child_process')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tower-cli-registry-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const stateDir = path.join(dir, 'state')
  const run = (args: string[]): Promise<{ code: number, stderr: string }> => new Promise((resolve) => {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TOWER_')))
    execFile(process.execPath, [path.resolve(import.meta.dirname, '../bin/tower.js'), ...args], { env, timeout: 30_000 }, (err, _stdout, stderr) => {
      resolve({ code: err === null ? 0 : (err as { code?: number }).code ?? 1, stderr })
    })
  })
  for (const [args, flag] of [
    [['server', '--state-dir', stateDir, '--listen', '127.0.0.1:0', '--kubesphere-compat'], 'kubesphere-compat'],
    [['cluster', 'add', 'a', '--state-dir', stateDir, '--wait', '5s'], 'wait'],
    [['kubeconfig', 'a', '--state-dir', stateDir, '--namespace', 'x'], 'namespace']
  ] as const) {
    const r = await run([...args])
    assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`)
    assert.match(r.stderr, new RegExp(`^tower: \\[TOWER_ERR_USAGE\\] --${flag} applies to --registry kubernetes only`))
    assert.equal(fs.existsSync(stateDir), false, `${args[0]} created the state directory`)
  }
})
