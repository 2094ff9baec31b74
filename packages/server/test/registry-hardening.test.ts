/**
 * Issue 8: the registry against hostile names and files, token rotation with
 * a grace period, certificates that must not be silently replaced.
 */
import { test, mock } from 'node:test'
import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { Logger } from '@tower/mux'
import { createCa } from '@tower/pki'
import { FileRegistry } from '../src/registry/file-registry.ts'
import { StateStore } from '../src/state-store.ts'

function tmpDir (t: { after: (fn: () => void) => void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tower-registry-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return path.join(dir, 'state')
}

function captureLogger (): { logger: Logger, lines: Array<{ level: string, obj: object, msg?: string }> } {
  const lines: Array<{ level: string, obj: object, msg?: string }> = []
  const make = (): Logger => ({
    trace: (obj, msg) => lines.push({ level: 'trace', obj, msg }),
    debug: (obj, msg) => lines.push({ level: 'debug', obj, msg }),
    info: (obj, msg) => lines.push({ level: 'info', obj, msg }),
    warn: (obj, msg) => lines.push({ level: 'warn', obj, msg }),
    error: (obj, msg) => lines.push({ level: 'error', obj, msg }),
    child: () => make()
  })
  return { logger: make(), lines }
}

const PROTO_NAMES = ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', 'isPrototypeOf']

test('item 1/13: Object.prototype names reach no prototype property in any lookup, and nothing throws but the coded errors', async (t) => {
  const reg = await FileRegistry.open({ stateDir: tmpDir(t), server: { portRange: '0' } })
  const { token } = await reg.add('real')
  const before = fs.readFileSync(path.join(reg.stateDir, 'state.json'), 'utf8')
  for (const name of PROTO_NAMES) {
    assert.equal(reg.find(name), undefined, name)
    assert.throws(() => reg.get(name), { code: 'TOWER_ERR_UNKNOWN_CLUSTER' }, name)
    assert.equal(reg.authenticateAgent(name, token).ok, false, name)
    const auth = reg.authenticateAgent(name, token)
    assert.equal(auth.ok, false, name)
    assert.equal(reg.agentCredentialValid(name, 'x'), false, name)
    assert.equal(reg.verifyCallerToken(name, token), undefined, name)
    await assert.rejects(async () => await reg.remove(name), { code: 'TOWER_ERR_UNKNOWN_CLUSTER' }, name)
    await assert.rejects(async () => await reg.rotateAgentToken(name), { code: 'TOWER_ERR_UNKNOWN_CLUSTER' }, name)
    await assert.rejects(async () => await reg.issueCallerToken(name, { user: 'u', groups: [] }), { code: 'TOWER_ERR_UNKNOWN_CLUSTER' }, name)
    await assert.rejects(async () => await reg.revokeCallerTokens(name, '*'), { code: 'TOWER_ERR_UNKNOWN_CLUSTER' }, name)
    await assert.rejects(async () => await reg.revokeCertificate(name, 'ab'), { code: 'TOWER_ERR_UNKNOWN_CLUSTER' }, name)
    assert.doesNotThrow(() => reg.recordPorts(new Map([[name, 1234]])))
  }
  assert.equal(fs.readFileSync(path.join(reg.stateDir, 'state.json'), 'utf8'), before, 'no lookup wrote anything')
  assert.equal((Object.prototype as any).agentTokenHash, undefined)
  assert.equal((Object as any).agentTokenHash, undefined)
  // Names that are not DNS labels are refused at add; "constructor" is a fine name and then works.
  for (const name of ['__proto__', 'toString', 'hasOwnProperty']) await assert.rejects(async () => await reg.add(name), { code: 'TOWER_ERR_INVALID_ARG' })
  const ctor = await reg.add('constructor')
  assert.ok(reg.authenticateAgent('constructor', ctor.token).ok)
  assert.equal(reg.find('constructor')?.name, 'constructor')
})

test('item 33: an unknown cluster, an invalid name and a wrong token are told apart for the log', async (t) => {
  const reg = await FileRegistry.open({ stateDir: tmpDir(t), server: { portRange: '0' } })
  const { token } = await reg.add('a')
  assert.deepEqual(reg.authenticateAgent('b', token), { ok: false, why: 'unknown-cluster' })
  assert.deepEqual(reg.authenticateAgent('a', token + 'x'), { ok: false, why: 'wrong-token' })
  assert.deepEqual(reg.authenticateAgent('__proto__', token), { ok: false, why: 'invalid-name' })
  const ok = reg.authenticateAgent('a', token)
  assert.ok(ok.ok && typeof ok.credential === 'string' && !ok.credential.includes(token))
})

test('item 12: rotation with a grace keeps the old token until the grace ends, then emits change; without one it ends at once; removal ends at once', async (t) => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: Date.now() })
  t.after(() => mock.timers.reset())
  const reg = await FileRegistry.open({ stateDir: tmpDir(t), server: { portRange: '0' } })
  t.after(async () => await reg.close())
  const { token: first } = await reg.add('c1')
  const a1 = reg.authenticateAgent('c1', first)
  assert.ok(a1.ok)
  const second = await reg.rotateAgentToken('c1', { graceMs: 60_000 })
  const a2 = reg.authenticateAgent('c1', second)
  assert.ok(a2.ok)
  assert.notEqual(a2.credential, a1.credential)
  assert.ok(reg.agentCredentialValid('c1', a1.credential), 'old credential valid during the grace')
  assert.ok(reg.authenticateAgent('c1', first).ok, 'old token still opens during the grace')
  let changes = 0
  reg.on('change', () => { changes++ })
  mock.timers.tick(59_000)
  assert.equal(changes, 0)
  assert.ok(reg.agentCredentialValid('c1', a1.credential))
  mock.timers.tick(1_100)
  assert.equal(changes, 1, 'the end of the grace is announced')
  assert.equal(reg.agentCredentialValid('c1', a1.credential), false)
  assert.deepEqual(reg.authenticateAgent('c1', first), { ok: false, why: 'wrong-token' })
  assert.ok(reg.agentCredentialValid('c1', a2.credential))

  await reg.rotateAgentToken('c1')
  assert.equal(reg.agentCredentialValid('c1', a2.credential), false, 'no grace: invalid at once')
  await assert.rejects(async () => await reg.rotateAgentToken('c1', { graceMs: -1 }), { code: 'TOWER_ERR_INVALID_ARG' })

  const { token: t3 } = await reg.add('c2')
  const a3 = reg.authenticateAgent('c2', t3)
  assert.ok(a3.ok)
  await reg.remove('c2')
  assert.equal(reg.agentCredentialValid('c2', a3.credential), false)
  await reg.add('c2')
  assert.equal(reg.agentCredentialValid('c2', a3.credential), false, 'a re-added cluster is a new registration')
})

test('item 16: invalid ports are refused before anything is written, and the store refuses to write what it could not read back', async (t) => {
  const reg = await FileRegistry.open({ stateDir: tmpDir(t), server: { portRange: '7000-7010', listenPort: 7005 } })
  const file = path.join(reg.stateDir, 'state.json')
  const before = fs.readFileSync(file, 'utf8')
  for (const port of [99999, -5, 0, 1.5, Number.NaN, 65536]) {
    await assert.rejects(async () => await reg.add('c9', { port }), (err: any) => err.code === 'TOWER_ERR_INVALID_ARG' && /--port/.test(err.message), String(port))
  }
  await assert.rejects(async () => await reg.add('c9', { port: 7005 }), (err: any) => err.code === 'TOWER_ERR_INVALID_ARG' && /agent endpoint/.test(err.message))
  await assert.rejects(async () => await reg.add('c9', { mode: 'nope' as never }), { code: 'TOWER_ERR_INVALID_ARG' })
  assert.equal(fs.readFileSync(file, 'utf8'), before)
  // Allocation skips the agent port too.
  for (let i = 0; i < 6; i++) await reg.add(`n${i}`)
  assert.equal(reg.find('n5')?.port, 7006)
  const store = new StateStore(reg.stateDir)
  const good = fs.readFileSync(file, 'utf8')
  assert.throws(() => store.update((s) => { s.clusters.n0!.port = 99999 }), (err: any) => err.code === 'TOWER_ERR_STATE' && /refusing to write/.test(err.message))
  assert.equal(fs.readFileSync(file, 'utf8'), good)
  await assert.doesNotReject(async () => await FileRegistry.open({ stateDir: reg.stateDir }))
})

test('item 16: hostile state files are refused field by field with TOWER_ERR_STATE', async (t) => {
  const dir = tmpDir(t)
  const reg = await FileRegistry.open({ stateDir: dir, server: { portRange: '0' } })
  await reg.add('a')
  await reg.add('b', { port: 7100 })
  const file = path.join(dir, 'state.json')
  const good = JSON.parse(fs.readFileSync(file, 'utf8'))
  const cases: Array<[string, (s: any) => void, RegExp]> = [
    ['proto key', (s) => { s.clusters = JSON.parse('{"__proto__": {"name": "__proto__"}}') }, /__proto__/],
    ['uppercase key', (s) => { s.clusters.Bad = { ...s.clusters.a, name: 'Bad' }; delete s.clusters.a }, /Bad/],
    ['impersonate', (s) => { s.clusters.a.impersonate = 'yes' }, /impersonate/],
    ['caller token hash', (s) => { s.clusters.a.callerTokens = [{ id: 'ab', hash: 5, user: 'u', groups: [], createdAt: new Date().toISOString() }] }, /callerTokens\[0\]\.hash/],
    ['groups', (s) => { s.clusters.a.callerTokens = [{ id: 'ab', hash: s.clusters.a.agentTokenHash, user: 'u', groups: [1], createdAt: new Date().toISOString() }] }, /groups/],
    ['duplicate port', (s) => { s.clusters.a.port = 7100 }, /7100/],
    ['sans', (s) => { s.server.sans = [1] }, /sans/],
    ['port range', (s) => { s.server.portRange = '9-1' }, /portRange/],
    ['hash', (s) => { s.clusters.a.agentTokenHash = 'sha256:' }, /agentTokenHash/],
    ['clusters array', (s) => { s.clusters = [] }, /clusters/],
    ['revoked', (s) => { s.clusters.a.revokedSerials = ['XYZ'] }, /revokedSerials/]
  ]
  for (const [what, edit, re] of cases) {
    const s = structuredClone(good)
    edit(s)
    fs.writeFileSync(file, JSON.stringify(s))
    await assert.rejects(async () => await FileRegistry.open({ stateDir: dir }), (err: any) => err.code === 'TOWER_ERR_STATE' && re.test(err.message), what)
  }
})

test('item 17: a missing, garbage or foreign ca.key is TOWER_ERR_STATE naming the file, and no new CA is made', async (t) => {
  const dir = tmpDir(t)
  await (await FileRegistry.open({ stateDir: dir, server: { portRange: '0' } })).add('a')
  const crt = fs.readFileSync(path.join(dir, 'ca.crt'), 'utf8')
  const key = fs.readFileSync(path.join(dir, 'ca.key'), 'utf8')
  fs.rmSync(path.join(dir, 'ca.key'))
  await assert.rejects(async () => await FileRegistry.open({ stateDir: dir }), (err: any) => err.code === 'TOWER_ERR_STATE' && err.message.includes(path.join(dir, 'ca.key')))
  assert.equal(fs.existsSync(path.join(dir, 'ca.key')), false)
  assert.equal(fs.readFileSync(path.join(dir, 'ca.crt'), 'utf8'), crt)
  fs.writeFileSync(path.join(dir, 'ca.key'), 'garbage')
  await assert.rejects(async () => await FileRegistry.open({ stateDir: dir }), (err: any) => err.code === 'TOWER_ERR_STATE' && err.message.includes('ca.key'))
  fs.writeFileSync(path.join(dir, 'ca.key'), createCa({ commonName: 'other', validityDays: 1 }).keyPem)
  await assert.rejects(async () => await FileRegistry.open({ stateDir: dir }), (err: any) => err.code === 'TOWER_ERR_STATE' && /ca\.key.*does not belong/.test(err.message))
  fs.writeFileSync(path.join(dir, 'ca.key'), key)
  fs.rmSync(path.join(dir, 'ca.crt'))
  await assert.rejects(async () => await FileRegistry.open({ stateDir: dir }), (err: any) => err.code === 'TOWER_ERR_STATE' && err.message.includes('ca.crt'))
  fs.writeFileSync(path.join(dir, 'ca.crt'), crt)
  assert.equal((await FileRegistry.open({ stateDir: dir })).find('a')?.name, 'a')
})

test('item 18: a read-only open of a missing directory fails and creates nothing', async (t) => {
  const dir = tmpDir(t)
  await assert.rejects(async () => await FileRegistry.open({ stateDir: dir, create: false }), (err: any) => err.code === 'TOWER_ERR_STATE' && /no state directory at/.test(err.message))
  assert.equal(fs.existsSync(dir), false)
})

test('item 20: the serving certificate is re-issued inside the renewal window, and a CA near expiry is warned about', async (t) => {
  const dir = tmpDir(t)
  const short = await FileRegistry.open({ stateDir: dir, serverCertValidityDays: 1, certRenewBeforeDays: 0 })
  const a = short.serverCertificate()
  assert.equal(short.serverCertificate().certPem, a.certPem, 'outside the window the stored one is kept')
  const cap = captureLogger()
  const renewing = await FileRegistry.open({ stateDir: dir, logger: cap.logger })
  const b = renewing.serverCertificate()
  assert.notEqual(b.certPem, a.certPem)
  assert.ok(new X509Certificate(b.certPem).validToDate.getTime() > Date.now() + 800 * 86_400_000)
  assert.equal(renewing.serverCertificate().certPem, b.certPem)
  assert.ok(!cap.lines.some((l) => l.level === 'warn'))

  const young = tmpDir(t)
  const cap2 = captureLogger()
  const youngRegistry = await FileRegistry.open({ stateDir: young, caValidityDays: 10, logger: cap2.logger })
  youngRegistry.serverCertificate()
  assert.ok(cap2.lines.some((l) => l.level === 'warn' && /CA expires soon/.test(l.msg ?? '')))
})

test('item 32: caller tokens are listed without hashes, and revoking an unknown id fails naming it', async (t) => {
  const reg = await FileRegistry.open({ stateDir: tmpDir(t), server: { portRange: '0' } })
  await reg.add('a')
  const { id } = await reg.issueCallerToken('a', { user: 'alice', groups: ['dev'] })
  const list = reg.callerTokens('a')
  assert.equal(list.length, 1)
  assert.deepEqual(Object.keys(list[0]!).sort(), ['createdAt', 'groups', 'id', 'user'])
  assert.equal(list[0]!.id, id)
  await assert.rejects(async () => await reg.revokeCallerTokens('a', 'nope'), (err: any) => err.code === 'TOWER_ERR_UNKNOWN_TOKEN' && /"nope"/.test(err.message))
  assert.equal(await reg.revokeCallerTokens('a', id), 1)
})
