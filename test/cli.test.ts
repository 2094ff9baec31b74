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
  const unknown = await tower(['kubeconfig', 'nope', '--state-dir', state])
  assert.equal(unknown.code, 1)
  assert.match(unknown.stderr, /\[TOWER_ERR_UNKNOWN_CLUSTER\] unknown cluster "nope"/)
  assert.equal((await tower(['cluster', 'add', 'one', '--state-dir', state, '--port', '7301'])).code, 0)
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
