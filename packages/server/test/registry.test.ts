import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { FileRegistry } from '../src/registry/file-registry.ts'
import { parsePortRange, allocatePort } from '../src/registry/ports.ts'

function tmpDir (t: { after: (fn: () => void) => void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tower-registry-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return path.join(dir, 'state')
}

test('a new state directory gets a CA, 0700 permissions and no plaintext token', async (t) => {
  const dir = tmpDir(t)
  const reg = await FileRegistry.open({ stateDir: dir, server: { portRange: '7000-7001' } })
  const { cluster, token } = await reg.add('prod-eu')
  assert.equal(cluster.port, 7000)
  assert.match(token, /^tower-agent_[A-Za-z0-9_-]{43}$/)
  assert.equal(fs.statSync(dir).mode & 0o777, 0o700)
  assert.equal(fs.statSync(path.join(dir, 'ca.key')).mode & 0o777, 0o600)
  const raw = fs.readFileSync(path.join(dir, 'state.json'), 'utf8')
  assert.ok(!raw.includes(token), 'the token itself must never be stored')
  assert.ok(reg.authenticateAgent('prod-eu', token).ok)
  assert.ok(!reg.authenticateAgent('prod-eu', token + 'x').ok)
  assert.ok(!reg.authenticateAgent('other', token).ok)
})

test('tokens of one cluster do not open another', async (t) => {
  const reg = await FileRegistry.open({ stateDir: tmpDir(t), server: { portRange: '7000-7009' } })
  const a = await reg.add('a')
  await reg.add('b')
  assert.ok(!reg.authenticateAgent('b', a.token).ok)
  const caller = await reg.issueCallerToken('a', { user: 'alice', groups: ['dev'] })
  assert.deepEqual(reg.verifyCallerToken('a', caller.token), { user: 'alice', groups: ['dev'] })
  assert.equal(reg.verifyCallerToken('b', caller.token), undefined)
  assert.equal(await reg.revokeCallerTokens('a', caller.id), 1)
  assert.equal(reg.verifyCallerToken('a', caller.token), undefined)
})

test('rotation invalidates the old agent token', async (t) => {
  const reg = await FileRegistry.open({ stateDir: tmpDir(t), server: { portRange: '0' } })
  const { token } = await reg.add('c1')
  const next = await reg.rotateAgentToken('c1')
  assert.notEqual(next, token)
  assert.ok(!reg.authenticateAgent('c1', token).ok)
  assert.ok(reg.authenticateAgent('c1', next).ok)
})

test('port range exhaustion is a clear error naming the range', async (t) => {
  const reg = await FileRegistry.open({ stateDir: tmpDir(t), server: { portRange: '7100-7101' } })
  await reg.add('one')
  await reg.add('two')
  await assert.rejects(async () => await reg.add('three'), (err: any) => err.code === 'TOWER_ERR_PORT_RANGE_EXHAUSTED' && /7100-7101/.test(err.message))
  await assert.rejects(async () => await reg.add('one'), { code: 'TOWER_ERR_CLUSTER_EXISTS' })
  assert.throws(() => reg.get('nope'), { code: 'TOWER_ERR_UNKNOWN_CLUSTER' })
  await assert.rejects(async () => await reg.add('Bad_Name'), { code: 'TOWER_ERR_INVALID_ARG' })
})

test('a corrupt or unwritable state directory fails at open with TOWER_ERR_STATE', async (t) => {
  const dir = tmpDir(t)
  await FileRegistry.open({ stateDir: dir })
  fs.writeFileSync(path.join(dir, 'state.json'), '{"version": 1, "server": ')
  await assert.rejects(async () => await FileRegistry.open({ stateDir: dir }), (err: any) => err.code === 'TOWER_ERR_STATE' && /corrupt/.test(err.message))
  fs.writeFileSync(path.join(dir, 'state.json'), JSON.stringify({ version: 1, server: { advertiseHost: 'x', sans: [], portRange: '0' }, clusters: { a: { name: 'b' } } }))
  await assert.rejects(async () => await FileRegistry.open({ stateDir: dir }), (err: any) => err.code === 'TOWER_ERR_STATE' && /clusters\.a\.name/.test(err.message))
  const file = path.join(path.dirname(dir), 'a-file')
  fs.writeFileSync(file, '')
  await assert.rejects(async () => await FileRegistry.open({ stateDir: path.join(file, 'sub') }), { code: 'TOWER_ERR_STATE' })
})

test('a second registry on the same directory sees changes after reload', async (t) => {
  const dir = tmpDir(t)
  const server = await FileRegistry.open({ stateDir: dir, server: { portRange: '0' } })
  const cli = await FileRegistry.open({ stateDir: dir })
  await server.claimServer()
  t.after(async () => { await server.releaseServer(); await server.close() })
  const changed = new Promise((resolve) => server.once('change', resolve))
  const { token } = await cli.add('late')
  await changed
  assert.ok(server.authenticateAgent('late', token).ok)
})

test('port ranges parse and allocate', async () => {
  assert.deepEqual(parsePortRange('6000-6999'), { first: 6000, last: 6999 })
  assert.deepEqual(parsePortRange('0'), { first: 0, last: 0 })
  assert.throws(() => parsePortRange('7000-6000'), { code: 'TOWER_ERR_INVALID_ARG' })
  assert.throws(() => parsePortRange('abc'), { code: 'TOWER_ERR_INVALID_ARG' })
  assert.equal(allocatePort({ first: 10, last: 12 }, [10, 11]), 12)
  assert.equal(allocatePort({ first: 0, last: 0 }, [1]), 0)
})
