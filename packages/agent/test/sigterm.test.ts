// `tower agent` stopped by SIGTERM, as Kubernetes stops a pod: the server
// sees GoAway, then a WebSocket Close, never an abnormal 1006; the agent
// exits 0 and logs no warning.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import readline from 'node:readline'
import { startFakeServer } from './fixtures/fake-server.ts'
import { startTestUpstream } from './fixtures/upstream.ts'
import { JOIN_TOKEN } from './harness.ts'

const BIN = resolve(import.meta.dirname, '../../cli/bin/tower.js')

test('SIGTERM: the server sees GoAway then WebSocket Close; the agent exits 0 without a warning', async (t) => {
  const upstream = await startTestUpstream()
  t.after(() => upstream.close())
  const server = await startFakeServer({ token: JOIN_TOKEN })
  t.after(() => server.close())
  const dir = mkdtempSync(join(tmpdir(), 'tower-sigterm-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'token'), JOIN_TOKEN + '\n')
  writeFileSync(join(dir, 'upstream-ca.crt'), upstream.caPem)
  writeFileSync(join(dir, 'sa-token'), 'sa-token\n')

  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TOWER_')))
  const agent = spawn(process.execPath, [BIN, 'agent', '--server', server.url, '--allow-insecure-ws', '--cluster', 'test',
    '--token-file', join(dir, 'token'), '--upstream', upstream.url, '--upstream-ca-file', join(dir, 'upstream-ca.crt'),
    '--upstream-token-file', join(dir, 'sa-token')], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  t.after(() => { agent.kill('SIGKILL') })
  const lines: Array<Record<string, unknown>> = []
  readline.createInterface({ input: agent.stdout }).on('line', (text) => {
    try { lines.push(JSON.parse(text) as Record<string, unknown>) } catch { lines.push({ unparsed: text }) }
  })
  let stderr = ''
  agent.stderr.on('data', (c: Buffer) => { stderr += c.toString() })

  const session = await server.nextSession()
  const seen: string[] = []
  session.on('goaway', (code) => seen.push(`goaway ${code}`))
  server.transport?.on('error', (err: Error) => seen.push(`transport error: ${err.message}`))
  server.transport?.on('end', () => seen.push('websocket close'))
  const closed = new Promise<void>((resolve) => session.once('close', (err?: Error) => {
    seen.push(err === undefined ? 'session closed' : `session closed: ${err.message}`)
    resolve()
  }))
  // the agent's first (window-tuning) ping answered, so no Pong is still queued at the server when the Close comes
  await session.ping()

  const exited = once(agent, 'exit') as Promise<[number | null, string | null]>
  agent.kill('SIGTERM')
  const [code] = await exited
  await closed
  assert.equal(code, 0, stderr)
  assert.deepEqual(seen, ['goaway 0', 'websocket close', 'session closed'])
  assert.ok(lines.some((l) => l.msg === 'agent stopped'))
  // (ws:// warns at every connect by design; the test server has no TLS)
  const loud = lines.filter((l) => typeof l.level === 'number' && l.level >= 40 && !/cleartext ws:\/\//.test(String(l.msg)))
  assert.deepEqual(loud, [], 'no warning or error on a normal stop')
})
