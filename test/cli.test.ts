/**
 * The `tower` command line as an operator uses it: separate server and agent
 * processes, the state directory shared with the CLI, real kubectl.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import readline from 'node:readline'
import { startUpstream } from './fixtures/upstream.ts'
import { kubectl } from './helpers/clients.ts'

const MAIN = path.resolve(import.meta.dirname, '../packages/cli/src/main.ts')

function tower (args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number, stdout: string, stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { env: { ...process.env, ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : (err as { code?: number }).code ?? 1, stdout, stderr })
    })
  })
}

/** Spawns a long-running tower process; resolves when a JSON log line matches. */
function spawnTower (args: string[], t: { after: (fn: () => void) => void }): { proc: ChildProcess, waitFor: (pred: (line: any) => boolean) => Promise<any>, lines: any[] } {
  const proc = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.after(() => { proc.kill('SIGKILL') })
  const lines: any[] = []
  const waiters: Array<{ pred: (l: any) => boolean, resolve: (l: any) => void }> = []
  readline.createInterface({ input: proc.stdout! }).on('line', (text) => {
    let line: any
    try { line = JSON.parse(text) } catch { return }
    lines.push(line)
    for (const w of [...waiters]) if (w.pred(line)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(line) }
  })
  return {
    proc,
    lines,
    waitFor: (pred) => {
      const hit = lines.find(pred)
      if (hit !== undefined) return Promise.resolve(hit)
      return new Promise((resolve) => waiters.push({ pred, resolve }))
    }
  }
}

function tmp (t: { after: (fn: () => void) => void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tower-cli-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

test('--help explains every command, and flags name their TOWER_* variable', async () => {
  const top = await tower(['--help'])
  assert.equal(top.code, 0)
  for (const cmd of ['server', 'agent', 'cluster', 'kubeconfig', 'demo']) assert.match(top.stdout, new RegExp(`tower ${cmd}`))
  const agent = await tower(['agent', '--help'])
  assert.match(agent.stdout, /TOWER_SERVER/)
  assert.match(agent.stdout, /HTTPS_PROXY/)
  const bad = await tower(['agent', '--cluster', 'x'])
  assert.equal(bad.code, 1)
  assert.match(bad.stderr, /server/)
})

test('operator errors are clear and carry their code', async (t) => {
  const dir = tmp(t)
  const state = path.join(dir, 'state')
  assert.equal((await tower(['cluster', 'add', 'one', '--state-dir', state, '--port', '7301'])).code, 0)
  const unknown = await tower(['kubeconfig', 'nope', '--state-dir', state])
  assert.equal(unknown.code, 1)
  assert.match(unknown.stderr, /\[TOWER_ERR_UNKNOWN_CLUSTER\] unknown cluster "nope"/)
  fs.writeFileSync(path.join(state, 'state.json'), '{ broken')
  const corrupt = await tower(['server', '--state-dir', state, '--listen', '127.0.0.1:0'])
  assert.equal(corrupt.code, 1)
  assert.match(corrupt.stderr, /\[TOWER_ERR_STATE\].*corrupt/)
})

test('port range exhaustion through the CLI names the range', async (t) => {
  const state = path.join(tmp(t), 'state')
  // A server's TOWER_* environment (here TOWER_LISTEN) must not break other commands run beside it.
  const init = await tower(['cluster', 'add', 'a', '--state-dir', state], { TOWER_LISTEN: '0.0.0.0:8443' })
  assert.equal(init.code, 0, init.stderr)
  const s = JSON.parse(fs.readFileSync(path.join(state, 'state.json'), 'utf8'))
  s.server.portRange = '7400-7400'
  s.clusters.a.port = 7400
  fs.writeFileSync(path.join(state, 'state.json'), JSON.stringify(s))
  const full = await tower(['cluster', 'add', 'b', '--state-dir', state])
  assert.equal(full.code, 1)
  assert.match(full.stderr, /\[TOWER_ERR_PORT_RANGE_EXHAUSTED\].*7400/)
})

test('server and agent as separate processes: cluster add, agent joins, kubeconfig works with kubectl, list shows it', async (t) => {
  const up = await startUpstream()
  t.after(() => up.close())
  const dir = tmp(t)
  const state = path.join(dir, 'state')
  const server = spawnTower(['server', '--state-dir', state, '--listen', '127.0.0.1:0', '--port-range', '0', '--advertise-host', '127.0.0.1', '--cluster-host', '127.0.0.1'], t)
  const listening = await server.waitFor((l) => l.msg === 'agent endpoint listening')
  const added = await tower(['cluster', 'add', 'prod-eu', '--state-dir', state, '--output', 'json'])
  assert.equal(added.code, 0, added.stderr)
  const { token, caPem } = JSON.parse(added.stdout)
  const ready = await server.waitFor((l) => l.msg === 'cluster listener ready' && l.cluster === 'prod-eu')
  fs.writeFileSync(path.join(dir, 'ca.crt'), caPem)
  fs.writeFileSync(path.join(dir, 'up-ca.crt'), up.caPem)
  fs.writeFileSync(path.join(dir, 'token'), token + '\n')
  const agent = spawnTower(['agent', '--server', `wss://127.0.0.1:${listening.port}`, '--cluster', 'prod-eu', '--token-file', path.join(dir, 'token'), '--ca-file', path.join(dir, 'ca.crt'), '--upstream', up.url, '--upstream-ca-file', path.join(dir, 'up-ca.crt')], t)
  await agent.waitFor((l) => l.msg === 'connected to server')
  const kc = await tower(['kubeconfig', 'prod-eu', '--state-dir', state, '--out', path.join(dir, 'kc')])
  assert.equal(kc.code, 0, kc.stderr)
  assert.match(fs.readFileSync(path.join(dir, 'kc'), 'utf8'), new RegExp(`server: https://127.0.0.1:${ready.port}`))
  const out = JSON.parse(await kubectl(['--kubeconfig', path.join(dir, 'kc'), 'get', '--raw', '/echo']))
  assert.equal(out.url, '/echo')
  await server.waitFor((l) => l.msg === 'agent connected')
  let list: any[] = []
  for (let i = 0; i < 50; i++) {
    list = JSON.parse((await tower(['cluster', 'list', '--state-dir', state, '--output', 'json'])).stdout)
    if (list[0]?.agents === 1) break
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  assert.equal(list[0].name, 'prod-eu')
  assert.equal(list[0].port, ready.port)
  assert.equal(list[0].agents, 1)
  // Secrets stay out of every log line of both processes.
  const logs = JSON.stringify([...server.lines, ...agent.lines])
  assert.ok(!logs.includes(token), 'the join token appeared in a log')
})

function stateHash (state: string, name: string): string {
  return JSON.parse(fs.readFileSync(path.join(state, 'state.json'), 'utf8')).clusters[name].agentTokenHash
}

test('item 16: a bad --port is refused before anything is written, and every command keeps working', async (t) => {
  const state = path.join(tmp(t), 'state')
  assert.equal((await tower(['cluster', 'add', 'ok', '--state-dir', state, '--port', '7601'])).code, 0)
  for (const port of ['99999', '-5', '1.5', 'abc', '0']) {
    const r = await tower(['cluster', 'add', 'c9', '--state-dir', state, `--port=${port}`])
    assert.equal(r.code, 1, port)
    assert.match(r.stderr, /\[TOWER_ERR_INVALID_ARG\] --port must be an integer in 1-65535/, port)
  }
  const dup = await tower(['cluster', 'add', 'c9', '--state-dir', state, '--port', '7601'])
  assert.match(dup.stderr, /\[TOWER_ERR_INVALID_ARG\] --port 7601 is already used/)
  const list = await tower(['cluster', 'list', '--state-dir', state, '--output', 'json'])
  assert.equal(list.code, 0, list.stderr)
  assert.deepEqual(JSON.parse(list.stdout).map((c: any) => c.name), ['ok'])
  assert.equal((await tower(['cluster', 'remove', 'ok', '--state-dir', state])).code, 0)
})

test('item 18: read-only commands never create a state directory or a CA', async (t) => {
  const home = tmp(t)
  const state = path.join(home, 'nothing-here')
  for (const args of [['kubeconfig', 'nope'], ['cluster', 'list'], ['cluster', 'remove', 'x'], ['cluster', 'token', 'x', '--rotate'], ['cluster', 'tokens', 'x'], ['kubeconfig', 'revoke', 'x', '--serial', 'ab']]) {
    const r = await tower([...args, '--state-dir', state])
    assert.equal(r.code, 1, args.join(' '))
    assert.match(r.stderr, /\[TOWER_ERR_STATE\] no state directory at /, args.join(' '))
  }
  const r = await tower(['kubeconfig', 'nope'], { HOME: home })
  assert.equal(r.code, 1)
  assert.equal(fs.existsSync(state), false)
  assert.equal(fs.existsSync(path.join(home, '.tower')), false)
})

test('item 29: usage errors carry TOWER_ERR_USAGE, and messages name flags', async (t) => {
  const state = path.join(tmp(t), 'state')
  const unknown = await tower(['bogus'])
  assert.match(unknown.stderr, /^tower: \[TOWER_ERR_USAGE\] /)
  const missing = await tower(['cluster', 'add'])
  assert.match(missing.stderr, /\[TOWER_ERR_USAGE\]/)
  const flag = await tower(['cluster', 'list', '--nope'])
  assert.match(flag.stderr, /\[TOWER_ERR_USAGE\] unknown option --nope/)
  assert.equal((await tower(['cluster', 'add', 'a', '--state-dir', state])).code, 0)
  const nothing = await tower(['cluster', 'token', 'a', '--state-dir', state])
  assert.match(nothing.stderr, /\[TOWER_ERR_USAGE\] nothing to do/)
  const range = await tower(['server', '--state-dir', state, '--port-range', '7000-6000', '--listen', '127.0.0.1:0'])
  assert.equal(range.code, 1)
  assert.match(range.stderr, /--port-range 7000-6000/)
  assert.doesNotMatch(range.stderr, /portRange/)
})

test('item 24: cluster add prints the --token-file form and a Secret made --from-file; --token-out keeps the token off stdout', async (t) => {
  const dir = tmp(t)
  const state = path.join(dir, 'state')
  const text = await tower(['cluster', 'add', 'a', '--state-dir', state])
  assert.equal(text.code, 0, text.stderr)
  const token = /tower-agent_[A-Za-z0-9_-]{43}/.exec(text.stdout)?.[0]
  assert.ok(token !== undefined, 'the token is still shown once')
  assert.match(text.stdout, /--token-file a\.token/)
  assert.doesNotMatch(text.stdout, /--token tower-agent_|--token \S/)
  assert.match(text.stdout, /--from-file=token=a\.token/)
  assert.doesNotMatch(text.stdout, /--from-literal=token/)
  for (const line of text.stdout.split('\n').filter((l) => /tower agent|kubectl/.test(l))) assert.ok(!line.includes(token), line)
  const file = path.join(dir, 'b.token')
  const quiet = await tower(['cluster', 'add', 'b', '--state-dir', state, '--token-out', file])
  assert.equal(quiet.code, 0, quiet.stderr)
  assert.doesNotMatch(quiet.stdout, /tower-agent_/)
  assert.match(quiet.stdout, new RegExp(`--token-file ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`))
  assert.equal(fs.statSync(file).mode & 0o777, 0o600)
  assert.match(fs.readFileSync(file, 'utf8'), /^tower-agent_[A-Za-z0-9_-]{43}\n$/)
})

test('item 32 and 21: caller tokens are listed and an unknown id fails; a certificate serial is printed and can be revoked', async (t) => {
  const dir = tmp(t)
  const state = path.join(dir, 'state')
  assert.equal((await tower(['cluster', 'add', 'a', '--state-dir', state, '--port', '7611'])).code, 0)
  const issued = await tower(['kubeconfig', 'a', '--token', '--user', 'alice', '--group', 'dev', '--state-dir', state, '--out', path.join(dir, 'kc')])
  assert.equal(issued.code, 0, issued.stderr)
  const id = /caller token id ([0-9a-f]+)/.exec(issued.stderr)?.[1]
  assert.ok(id !== undefined, issued.stderr)
  const list = await tower(['cluster', 'tokens', 'a', '--state-dir', state, '--output', 'json'])
  assert.equal(list.code, 0, list.stderr)
  const tokens = JSON.parse(list.stdout)
  assert.equal(tokens.length, 1)
  assert.equal(tokens[0].id, id)
  assert.equal(tokens[0].user, 'alice')
  assert.deepEqual(tokens[0].groups, ['dev'])
  assert.ok(!Number.isNaN(Date.parse(tokens[0].createdAt)))
  assert.ok(!('hash' in tokens[0]))
  const table = await tower(['cluster', 'tokens', 'a', '--state-dir', state])
  assert.match(table.stdout, new RegExp(`${id}\\s+alice\\s+dev`))
  const nope = await tower(['cluster', 'token', 'a', '--revoke-caller', 'nope', '--state-dir', state])
  assert.equal(nope.code, 1)
  assert.match(nope.stderr, /\[TOWER_ERR_UNKNOWN_TOKEN\].*"nope"/)
  assert.match((await tower(['cluster', 'token', 'a', '--revoke-caller', id, '--state-dir', state])).stdout, /1 caller token/)

  const cert = await tower(['kubeconfig', 'a', '--state-dir', state, '--out', path.join(dir, 'kc2')])
  const serial = /client certificate serial ([0-9a-f]+)/.exec(cert.stderr)?.[1]
  assert.ok(serial !== undefined, cert.stderr)
  const revoked = await tower(['kubeconfig', 'revoke', 'a', '--serial', serial, '--state-dir', state])
  assert.equal(revoked.code, 0, revoked.stderr)
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(state, 'state.json'), 'utf8')).clusters.a.revokedSerials, [serial])
})

test('item 12: cluster token --rotate --grace keeps the old token for the grace; a bad duration is a usage error', async (t) => {
  const state = path.join(tmp(t), 'state')
  assert.equal((await tower(['cluster', 'add', 'a', '--state-dir', state])).code, 0)
  const before = stateHash(state, 'a')
  const bad = await tower(['cluster', 'token', 'a', '--rotate', '--grace', 'soon', '--state-dir', state])
  assert.match(bad.stderr, /\[TOWER_ERR_USAGE\] --grace must be a duration/)
  assert.equal(stateHash(state, 'a'), before, 'nothing rotated on a usage error')
  const r = await tower(['cluster', 'token', 'a', '--rotate', '--grace', '10m', '--state-dir', state, '--output', 'json'])
  assert.equal(r.code, 0, r.stderr)
  assert.equal(JSON.parse(r.stdout).graceMs, 600_000)
  const rec = JSON.parse(fs.readFileSync(path.join(state, 'state.json'), 'utf8')).clusters.a
  assert.equal(rec.previousAgentToken.hash, before)
  assert.ok(Date.parse(rec.previousAgentToken.until) > Date.now() + 500_000)
})

test('item 14: cluster list does not show agents from the status file of a server that is gone', async (t) => {
  const state = path.join(tmp(t), 'state')
  assert.equal((await tower(['cluster', 'add', 'a', '--state-dir', state, '--port', '7621'])).code, 0)
  const gone = spawn(process.execPath, ['-e', ''])
  await new Promise((resolve) => gone.once('exit', resolve))
  fs.writeFileSync(path.join(state, 'status.json'), JSON.stringify({ pid: gone.pid, agentPort: 8443, clusters: { a: { port: 7621, agents: [{ id: 'x' }] } } }))
  fs.writeFileSync(path.join(state, 'server.lock'), `${gone.pid} 0badc0de\n`)
  const json = await tower(['cluster', 'list', '--state-dir', state, '--output', 'json'])
  assert.equal(JSON.parse(json.stdout)[0].agents, null)
  assert.equal(JSON.parse(json.stdout)[0].connected, null)
  const text = await tower(['cluster', 'list', '--state-dir', state])
  assert.match(text.stderr, /no tower server is running/)
  assert.match(text.stdout, /a\s+proxy\s+7621\s+-/)
})

test('item 19: tower demo ignores TOWER_STATE_DIR, leaves a real "demo" cluster alone, and removes its temporary state directory', async (t) => {
  const dir = tmp(t)
  const real = path.join(dir, 'real')
  assert.equal((await tower(['cluster', 'add', 'demo', '--state-dir', real])).code, 0)
  const before = fs.readFileSync(path.join(real, 'state.json'), 'utf8')
  const proc = spawn(process.execPath, [MAIN, 'demo', '--out', path.join(dir, 'demo.kubeconfig'), '--log-level', 'error'], {
    env: { ...process.env, TOWER_STATE_DIR: real, KUBECONFIG: path.join(dir, 'no-kubeconfig'), HOME: dir },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  t.after(() => { proc.kill('SIGKILL') })
  const used = await new Promise<string>((resolve, reject) => {
    readline.createInterface({ input: proc.stdout! }).on('line', (l) => {
      const m = /^\s*state directory\s+(\S+)/.exec(l)
      if (m !== null) resolve(m[1]!)
    })
    proc.once('exit', (code) => reject(new Error(`demo exited with ${String(code)}`)))
  })
  assert.notEqual(path.resolve(used), path.resolve(real))
  assert.ok(fs.existsSync(path.join(used, 'ca.key')))
  const exited = new Promise((resolve) => proc.once('exit', resolve))
  proc.kill('SIGTERM')
  await exited
  assert.equal(fs.existsSync(used), false, 'the temporary state directory (with its CA key) is removed')
  assert.equal(fs.readFileSync(path.join(real, 'state.json'), 'utf8'), before, 'the real registry was not touched')
})

test('item 17: a missing ca.key fails tower kubeconfig, a garbage one fails tower server, both naming the file; no new CA is made', async (t) => {
  const state = path.join(tmp(t), 'state')
  assert.equal((await tower(['cluster', 'add', 'a', '--state-dir', state, '--port', '7631'])).code, 0)
  const crt = fs.readFileSync(path.join(state, 'ca.crt'), 'utf8')
  fs.rmSync(path.join(state, 'ca.key'))
  const kc = await tower(['kubeconfig', 'a', '--state-dir', state])
  assert.equal(kc.code, 1)
  assert.match(kc.stderr, /\[TOWER_ERR_STATE\] .*ca\.key is missing/)
  assert.equal(kc.stdout, '')
  assert.equal(fs.existsSync(path.join(state, 'ca.key')), false)
  assert.equal(fs.readFileSync(path.join(state, 'ca.crt'), 'utf8'), crt)
  fs.writeFileSync(path.join(state, 'ca.key'), '-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n')
  const server = await tower(['server', '--state-dir', state, '--listen', '127.0.0.1:0', '--cluster-host', '127.0.0.1'])
  assert.equal(server.code, 1)
  assert.match(server.stderr, /\[TOWER_ERR_STATE\] .*ca\.key is not usable/)
})

test('item 14: a second tower server on the same state directory is refused and leaves status.json alone; after the first stops, list says no server runs', async (t) => {
  const state = path.join(tmp(t), 'state')
  const first = spawnTower(['server', '--state-dir', state, '--listen', '127.0.0.1:0', '--port-range', '0', '--cluster-host', '127.0.0.1'], t)
  await first.waitFor((l) => l.msg === 'agent endpoint listening')
  let status: any
  for (let i = 0; i < 100 && status?.pid !== first.proc.pid; i++) {
    try { status = JSON.parse(fs.readFileSync(path.join(state, 'status.json'), 'utf8')) } catch { // not written yet, or mid-rename
    }
    if (status?.pid !== first.proc.pid) await new Promise((resolve) => setTimeout(resolve, 50))
  }
  assert.equal(status.pid, first.proc.pid)
  const second = await tower(['server', '--state-dir', state, '--listen', '127.0.0.1:0', '--port-range', '0', '--cluster-host', '127.0.0.1'])
  assert.equal(second.code, 1)
  assert.match(second.stderr, new RegExp(`\\[TOWER_ERR_SERVER_RUNNING\\] .*pid ${first.proc.pid}`))
  assert.equal(JSON.parse(fs.readFileSync(path.join(state, 'status.json'), 'utf8')).pid, first.proc.pid)
  const exited = new Promise((resolve) => first.proc.once('exit', resolve))
  first.proc.kill('SIGTERM')
  await exited
  assert.equal((await tower(['cluster', 'add', 'a', '--state-dir', state])).code, 0)
  const list = await tower(['cluster', 'list', '--state-dir', state])
  assert.match(list.stderr, /no tower server is running/)
})
