/**
 * `--metrics-listen` on the real CLI processes: `tower server` and `tower
 * agent` serve /metrics (default process metrics included), /livez and
 * /readyz in plain HTTP.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import readline from 'node:readline'
import { execFile, spawn } from 'node:child_process'
import { startUpstream } from './fixtures/upstream.ts'
import { httpGet, scrape } from './helpers/scrape.ts'

const MAIN = path.resolve(import.meta.dirname, '../packages/cli/src/main.ts')

function spawnTower (args: string[], t: { after: (fn: () => void) => void }): { waitFor: (pred: (line: any) => boolean) => Promise<any> } {
  const proc = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.after(() => { proc.kill('SIGKILL') })
  const lines: any[] = []
  const waiters: Array<{ pred: (l: any) => boolean, resolve: (l: any) => void }> = []
  readline.createInterface({ input: proc.stdout }).on('line', (text) => {
    let line: any
    try { line = JSON.parse(text) } catch { return }
    lines.push(line)
    for (const w of [...waiters]) if (w.pred(line)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(line) }
  })
  return {
    waitFor: (pred) => {
      const hit = lines.find(pred)
      return hit !== undefined ? Promise.resolve(hit) : new Promise((resolve) => waiters.push({ pred, resolve }))
    }
  }
}

function tower (args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : (err as { code?: number }).code ?? 1, stdout, stderr })
    })
  })
}

test('tower server and tower agent --metrics-listen: /metrics, /livez, /readyz over plain HTTP', async (t) => {
  const up = await startUpstream()
  t.after(() => up.close())
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tower-metrics-cli-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const state = path.join(dir, 'state')
  const server = spawnTower(['server', '--state-dir', state, '--listen', '127.0.0.1:0', '--port-range', '0', '--advertise-host', '127.0.0.1', '--cluster-host', '127.0.0.1', '--metrics-listen', '127.0.0.1:0'], t)
  const serverHealth = await server.waitFor((l) => l.msg === 'metrics and health listening')
  const listening = await server.waitFor((l) => l.msg === 'agent endpoint listening')
  await server.waitFor((l) => l.msg === 'tower server running')
  assert.equal((await httpGet(serverHealth.port, '/livez')).body, 'ok\n')
  assert.equal((await httpGet(serverHealth.port, '/readyz')).status, 200)
  const s = await scrape(serverHealth.port)
  assert.ok(s.value('process_resident_memory_bytes') > 0)
  assert.equal(s.value('tower_server_agent_endpoint_up'), 1)

  const added = await tower(['cluster', 'add', 'prod-eu', '--state-dir', state, '--output', 'json'])
  assert.equal(added.code, 0, added.stderr)
  const { token, caPem } = JSON.parse(added.stdout)
  fs.writeFileSync(path.join(dir, 'ca.crt'), caPem)
  fs.writeFileSync(path.join(dir, 'up-ca.crt'), up.caPem)
  fs.writeFileSync(path.join(dir, 'token'), token + '\n')
  const agent = spawnTower(['agent', '--server', `wss://127.0.0.1:${listening.port}`, '--cluster', 'prod-eu', '--token-file', path.join(dir, 'token'), '--ca-file', path.join(dir, 'ca.crt'), '--upstream', up.url, '--upstream-ca-file', path.join(dir, 'up-ca.crt'), '--metrics-listen', '127.0.0.1:0'], t)
  const agentHealth = await agent.waitFor((l) => l.msg === 'metrics and health listening')
  await agent.waitFor((l) => l.msg === 'connected to server')
  assert.equal((await httpGet(agentHealth.port, '/readyz')).status, 200)
  const a = await scrape(agentHealth.port)
  assert.equal(a.value('tower_agent_tunnel_connected'), 1)
  assert.ok(a.value('nodejs_heap_size_used_bytes') > 0)
  await server.waitFor((l) => l.msg === 'agent connected')
  const s2 = await scrape(serverHealth.port)
  assert.equal(s2.value('tower_server_agents_connected', { cluster: 'prod-eu' }), 1)
})
