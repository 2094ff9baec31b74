// `tower agent --hop-frames`: the agent process offers hop frames to the
// server on its WebSocket upgrade (tower-features: hframe) by default, and
// not with --no-hop-frames or TOWER_HOP_FRAMES=false. A bare HTTP server
// stands in for the tower server and records the upgrade request.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import fs from 'node:fs'
import http, { type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import os from 'node:os'
import path from 'node:path'

const BIN = path.resolve(import.meta.dirname, '../bin/tower.js')

async function upgradeHeaders (t: { after: (fn: () => void) => void }, args: string[], env: NodeJS.ProcessEnv = {}): Promise<IncomingHttpHeaders> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tower-cli-hop-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const token = path.join(dir, 'token')
  fs.writeFileSync(token, 'join-token\n')
  const server = http.createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => server.close())
  const got = new Promise<IncomingHttpHeaders>((resolve) => server.once('upgrade', (req: http.IncomingMessage, socket: Socket) => {
    resolve(req.headers)
    socket.destroy()
  }))
  const port = (server.address() as AddressInfo).port
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TOWER_') && k !== 'KUBERNETES_SERVICE_HOST'))
  const child = spawn(process.execPath, [BIN, 'agent', '--server', `ws://127.0.0.1:${port}`, '--allow-insecure-ws', '--cluster', 'c1',
    '--token-file', token, '--upstream', 'https://127.0.0.1:2', '--log-level', 'error', ...args], { env: { ...clean, ...env }, stdio: 'ignore' })
  t.after(() => { child.kill('SIGKILL') })
  // killed after the test, the exit must not count as a failure then
  let dialled = false
  void got.then(() => { dialled = true })
  const exited = once(child, 'exit').then(() => {
    if (!dialled) throw new Error('tower agent exited before dialling')
    return {}
  })
  exited.catch(() => {})
  return await Promise.race([got, exited])
}

test('tower agent offers tower-features: hframe by default and with --hop-frames', async (t) => {
  assert.equal((await upgradeHeaders(t, []))['tower-features'], 'hframe')
  assert.equal((await upgradeHeaders(t, ['--hop-frames']))['tower-features'], 'hframe')
})

test('tower agent --no-hop-frames and TOWER_HOP_FRAMES=false send no tower-features header', async (t) => {
  assert.equal((await upgradeHeaders(t, ['--no-hop-frames']))['tower-features'], undefined)
  assert.equal((await upgradeHeaders(t, [], { TOWER_HOP_FRAMES: 'false' }))['tower-features'], undefined)
})
