import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Registry } from '../src/registry.ts'
import { parsePortRange, allocatePort } from '../src/ports.ts'

function tmpDir (t: { after: (fn: () => void) => void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tower-registry-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return path.join(dir, 'state')
}

test('a new state directory gets a CA, 0700 permissions and no plaintext token', (t) => {
  const dir = tmpDir(t)
  const reg = Registry.open({ stateDir: dir, server: { portRange: '7000-7001' } })
  const { cluster, token } = reg.add('prod-eu')
  assert.equal(cluster.port, 7000)
  assert.match(token, /^tower-agent_[A-Za-z0-9_-]{43}$/)
  assert.equal(fs.statSync(dir).mode & 0o777, 0o700)
  assert.equal(fs.statSync(path.join(dir, 'ca.key')).mode & 0o777, 0o600)
  const raw = fs.readFileSync(path.join(dir, 'state.json'), 'utf8')
  assert.ok(!raw.includes(token), 'the token itself must never be stored')
  assert.ok(reg.verifyAgentToken('prod-eu', token))
  assert.ok(!reg.verifyAgentToken('prod-eu', token + 'x'))
  assert.ok(!reg.verifyAgentToken('other', token))
})

test('tokens of one cluster do not open another', (t) => {
  const reg = Registry.open({ stateDir: tmpDir(t), server: { portRange: '7000-7009' } })
  const a = reg.add('a')
  reg.add('b')
  assert.ok(!reg.verifyAgentToken('b', a.token))
  const caller = reg.issueCallerToken('a', { user: 'alice', groups: ['dev'] })
  assert.deepEqual(reg.verifyCallerToken('a', caller.token), { user: 'alice', groups: ['dev'] })
  assert.equal(reg.verifyCallerToken('b', caller.token), undefined)
  assert.equal(reg.revokeCallerTokens('a', caller.id), 1)
  assert.equal(reg.verifyCallerToken('a', caller.token), undefined)
})

test('rotation invalidates the old agent token', (t) => {
  const reg = Registry.open({ stateDir: tmpDir(t), server: { portRange: '0' } })
  const { token } = reg.add('c1')
  const next = reg.rotateAgentToken('c1')
  assert.notEqual(next, token)
  assert.ok(!reg.verifyAgentToken('c1', token))
  assert.ok(reg.verifyAgentToken('c1', next))
})

test('port range exhaustion is a clear error naming the range', (t) => {
  const reg = Registry.open({ stateDir: tmpDir(t), server: { portRange: '7100-7101' } })
  reg.add('one')
  reg.add('two')
  assert.throws(() => reg.add('three'), (err: any) => err.code === 'TOWER_ERR_PORT_RANGE_EXHAUSTED' && /7100-7101/.test(err.message))
  assert.throws(() => reg.add('one'), { code: 'TOWER_ERR_CLUSTER_EXISTS' })
  assert.throws(() => reg.get('nope'), { code: 'TOWER_ERR_UNKNOWN_CLUSTER' })
  assert.throws(() => reg.add('Bad_Name'), { code: 'TOWER_ERR_INVALID_ARG' })
})

test('a corrupt or unwritable state directory fails at open with TOWER_ERR_STATE', (t) => {
  const dir = tmpDir(t)
  Registry.open({ stateDir: dir })
  fs.writeFileSync(path.join(dir, 'state.json'), '{"version": 1, "server": ')
  assert.throws(() => Registry.open({ stateDir: dir }), (err: any) => err.code === 'TOWER_ERR_STATE' && /corrupt/.test(err.message))
  fs.writeFileSync(path.join(dir, 'state.json'), JSON.stringify({ version: 1, server: { advertiseHost: 'x', sans: [], portRange: '0' }, clusters: { a: { name: 'b' } } }))
  assert.throws(() => Registry.open({ stateDir: dir }), (err: any) => err.code === 'TOWER_ERR_STATE' && /clusters\.a\.name/.test(err.message))
  const file = path.join(path.dirname(dir), 'a-file')
  fs.writeFileSync(file, '')
  assert.throws(() => Registry.open({ stateDir: path.join(file, 'sub') }), { code: 'TOWER_ERR_STATE' })
})

test('a second registry on the same directory sees changes after reload', async (t) => {
  const dir = tmpDir(t)
  const server = Registry.open({ stateDir: dir, server: { portRange: '0' } })
  const cli = Registry.open({ stateDir: dir })
  server.watch()
  t.after(() => server.close())
  const changed = new Promise((resolve) => server.once('change', resolve))
  const { token } = cli.add('late')
  await changed
  assert.ok(server.verifyAgentToken('late', token))
})

test('port ranges parse and allocate', () => {
  assert.deepEqual(parsePortRange('6000-6999'), { first: 6000, last: 6999 })
  assert.deepEqual(parsePortRange('0'), { first: 0, last: 0 })
  assert.throws(() => parsePortRange('7000-6000'), { code: 'TOWER_ERR_INVALID_ARG' })
  assert.throws(() => parsePortRange('abc'), { code: 'TOWER_ERR_INVALID_ARG' })
  assert.equal(allocatePort({ first: 10, last: 12 }, [10, 11]), 12)
  assert.equal(allocatePort({ first: 0, last: 0 }, [1]), 0)
})
