/**
 * Issue 8 items 14 and 15: the server lock and the state lock, against real
 * second processes.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import readline from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { FileRegistry } from '../src/registry/file-registry.ts'

const SRC = path.resolve(import.meta.dirname, '../src')

function tmpDir (t: { after: (fn: () => void) => void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tower-lock-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return path.join(dir, 'state')
}

/** Runs an ES module snippet in a new node process; resolves with the process once it printed its first line. */
async function child (t: { after: (fn: () => void) => void }, code: string): Promise<{ proc: ChildProcess, first: string, lines: string[] }> {
  const proc = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['pipe', 'pipe', 'inherit'] })
  t.after(() => { proc.kill('SIGKILL') })
  const lines: string[] = []
  const rl = readline.createInterface({ input: proc.stdout! })
  const first = new Promise<string>((resolve, reject) => {
    rl.on('line', (l) => { lines.push(l); if (lines.length === 1) resolve(l) })
    proc.once('exit', (c) => reject(new Error(`child exited with ${String(c)} before printing`)))
  })
  return { proc, first: await first, lines }
}

async function deadPid (): Promise<number> {
  const p = spawn(process.execPath, ['-e', ''])
  await once(p, 'exit')
  return p.pid!
}

test('item 14: a second server on the same state directory is refused while the first lives; status is only believed from the live server; a dead server\'s lock is taken over', async (t) => {
  const dir = tmpDir(t)
  const reg = await FileRegistry.open({ stateDir: dir, server: { portRange: '0' } })
  await reg.add('a')
  const first = await child(t, `
    import { FileRegistry } from ${JSON.stringify(path.join(SRC, 'registry', 'file-registry.ts'))}
    const r = await FileRegistry.open({ stateDir: ${JSON.stringify(dir)} })
    await r.claimServer()
    r.reportStatus({ pid: process.pid, updatedAt: new Date().toISOString(), agentPort: 1, clusters: { a: { port: 1, listening: true, agents: [{ id: 'x', remote: '127.0.0.1', since: new Date().toISOString() }] } } })
    console.log('claimed ' + process.pid)
    setInterval(() => {}, 1000)
  `)
  assert.match(first.first, /^claimed \d+$/)
  const pid = first.proc.pid!
  await assert.rejects(async () => await reg.claimServer(), (err: any) => err.code === 'TOWER_ERR_SERVER_RUNNING' && err.message.includes(String(pid)))
  assert.equal(reg.serverPid(), pid)
  assert.equal((await reg.readStatus())?.clusters.a?.agents.length, 1)

  first.proc.kill('SIGKILL')
  await once(first.proc, 'exit')
  assert.equal(reg.serverPid(), undefined)
  assert.equal(await reg.readStatus(), undefined, 'a dead server\'s status.json is not shown as live')
  await reg.claimServer()
  assert.equal(reg.serverPid(), process.pid)
  const third = await FileRegistry.open({ stateDir: dir })
  await assert.rejects(third.claimServer(), { code: 'TOWER_ERR_SERVER_RUNNING' })
  await reg.releaseServer()
  assert.equal(fs.existsSync(path.join(dir, 'server.lock')), false)
  await third.claimServer()
  await third.releaseServer()
})

test('item 15: a state lock left by a dead process is taken over at once', async (t) => {
  const dir = tmpDir(t)
  const reg = await FileRegistry.open({ stateDir: dir, server: { portRange: '0' } })
  fs.writeFileSync(path.join(dir, 'state.lock'), `${await deadPid()} 0badc0de\n`)
  await reg.add('after-crash')
  assert.equal(reg.find('after-crash')?.name, 'after-crash')
  assert.equal(fs.existsSync(path.join(dir, 'state.lock')), false)
})

test('item 15: recordPort waits for a busy state lock without blocking the event loop, and never throws', async (t) => {
  const dir = tmpDir(t)
  const reg = await FileRegistry.open({ stateDir: dir, server: { portRange: '0' } })
  await reg.add('c')
  const lock = path.join(dir, 'state.lock')
  const holder = await child(t, `
    import fs from 'node:fs'
    fs.writeFileSync(${JSON.stringify(lock)}, process.pid + ' 0badc0de\\n', { flag: 'wx' })
    console.log('holding')
    setInterval(() => {}, 1000)
  `)
  assert.equal(holder.first, 'holding')
  reg.recordPorts(new Map([['c', 4321]]))
  // The event loop runs while the write waits: timers fire, the port is not written yet.
  await sleep(50)
  assert.equal(reg.find('c')?.port, 0)
  assert.ok(fs.existsSync(lock))
  const changed = once(reg, 'change')
  holder.proc.kill('SIGKILL')
  await changed
  assert.equal(reg.find('c')?.port, 4321)
  assert.equal((await FileRegistry.open({ stateDir: dir })).find('c')?.port, 4321)
})

test('item 15: processes racing for one stale lock: exactly one takes it', async (t) => {
  const dir = tmpDir(t)
  fs.mkdirSync(dir, { recursive: true })
  const lock = path.join(dir, 'race.lock')
  for (let round = 0; round < 10; round++) {
    fs.writeFileSync(lock, `${await deadPid()} 0badc0de\n`)
    const go = path.join(dir, `go-${round}`)
    const racers = await Promise.all([0, 1, 2, 3].map(async () => await child(t, `
      import fs from 'node:fs'
      import { PidLock } from ${JSON.stringify(path.join(SRC, 'pid-lock.ts'))}
      const l = new PidLock(${JSON.stringify(lock)})
      console.log('ready')
      while (!fs.existsSync(${JSON.stringify(go)})) await new Promise((r) => setImmediate(r))
      console.log(l.tryAcquire().acquired ? 'won' : 'lost')
      setInterval(() => {}, 1000)
    `)))
    fs.writeFileSync(go, '')
    const results = await Promise.all(racers.map(async (r) => {
      while (r.lines.length < 2) await once(r.proc.stdout!, 'data')
      return r.lines[1]
    }))
    assert.equal(results.filter((x) => x === 'won').length, 1, `round ${round}: ${results.join(',')}`)
    for (const r of racers) r.proc.kill('SIGKILL')
    await Promise.all(racers.map(async (r) => { if (r.proc.exitCode === null && r.proc.signalCode === null) await once(r.proc, 'exit') }))
  }
})
