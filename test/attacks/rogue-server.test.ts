/**
 * A rogue server against a real agent (SSRF): whatever a server writes on a
 * tunnel stream, the agent talks to its configured upstream and nothing
 * else. A second, "evil" listener on 127.0.0.1 stands for everything the
 * agent's network can reach (cloud metadata, other Services); it must never
 * see a connection. The upstream fixture records what reached it: only
 * origin-form targets with the upstream's own Host.
 *
 * The agent is the real `tower agent` process; the server is lib/rogue-server.ts.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { once } from 'node:events'
import type { Session } from '@tower/mux'
import { encodePreamble } from '@tower/transport'
import { startUpstream, type Upstream } from '../fixtures/upstream.ts'
import { exchange, preamble, startAgentProcess, startRogueServer, type AgentProcess, type RogueServer } from './lib/rogue-server.ts'

let up: Upstream
let rogue: RogueServer
let agent: AgentProcess
let session: Session
let evil: net.Server
let evilPort: number
let evilHits = 0

before(async () => {
  up = await startUpstream()
  evil = net.createServer((s) => { evilHits++; s.destroy() })
  evil.listen(0, '127.0.0.1')
  await once(evil, 'listening')
  evilPort = (evil.address() as net.AddressInfo).port
  rogue = await startRogueServer()
  agent = startAgentProcess(rogue.port, rogue.caPem, up)
  session = await rogue.session()
})
after(async () => {
  await agent?.stop()
  await rogue?.close()
  evil?.close()
  await up?.close()
})

const http = (head: string): Buffer => Buffer.concat([encodePreamble({ kind: 'http', id: 'ssrf' }), Buffer.from(head)])

/** Requests a rogue server may write, each aimed at the evil listener one way or another. */
// Upgrades that succeed stay open: `waitMs` bounds how long their answer is read.
const attacks: Array<{ name: string, bytes: () => Buffer, waitMs?: number }> = [
  { name: 'absolute-form target at the evil listener', bytes: () => http(`GET http://127.0.0.1:${evilPort}/latest/meta-data/ HTTP/1.1\r\nHost: 127.0.0.1:${evilPort}\r\nConnection: close\r\n\r\n`) },
  { name: 'absolute-form target at cloud metadata', bytes: () => http('GET http://169.254.169.254/latest/meta-data/iam/ HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n') },
  { name: 'absolute-form https target', bytes: () => http(`GET https://127.0.0.1:${evilPort}/ HTTP/1.1\r\nHost: 127.0.0.1:${evilPort}\r\nConnection: close\r\n\r\n`) },
  { name: 'CONNECT to the evil listener', bytes: () => http(`CONNECT 127.0.0.1:${evilPort} HTTP/1.1\r\nHost: 127.0.0.1:${evilPort}\r\n\r\n`) },
  { name: 'network-path reference //evil/path', bytes: () => http(`GET //127.0.0.1:${evilPort}/path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`) },
  { name: 'userinfo trick @evil', bytes: () => http(`GET @127.0.0.1:${evilPort}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`) },
  { name: 'authority-form GET', bytes: () => http(`GET 127.0.0.1:${evilPort} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`) },
  { name: 'Host header naming the evil listener', bytes: () => http(`GET /echo HTTP/1.1\r\nHost: 127.0.0.1:${evilPort}\r\nConnection: close\r\n\r\n`) },
  { name: 'Host with userinfo', bytes: () => http(`GET /echo HTTP/1.1\r\nHost: kube@127.0.0.1:${evilPort}\r\nConnection: close\r\n\r\n`) },
  { name: 'two Host headers', bytes: () => http(`GET /echo HTTP/1.1\r\nHost: 127.0.0.1:${evilPort}\r\nHost: 127.0.0.1:${evilPort}\r\nConnection: close\r\n\r\n`) },
  { name: 'IPv6 Host', bytes: () => http(`GET /echo HTTP/1.1\r\nHost: [::1]:${evilPort}\r\nConnection: close\r\n\r\n`) },
  { name: 'HTTP/1.0 without Host', bytes: () => http('GET /echo HTTP/1.0\r\n\r\n') },
  { name: 'X-Forwarded-Host and Forwarded', bytes: () => http(`GET /echo HTTP/1.1\r\nHost: x\r\nX-Forwarded-Host: 127.0.0.1:${evilPort}\r\nForwarded: host=127.0.0.1:${evilPort}\r\nConnection: close\r\n\r\n`) },
  { name: 'absolute-form WebSocket upgrade', bytes: () => http(`GET http://127.0.0.1:${evilPort}/ws HTTP/1.1\r\nHost: 127.0.0.1:${evilPort}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`), waitMs: 1000 },
  { name: 'absolute-form SPDY upgrade (exec)', bytes: () => http(`POST http://127.0.0.1:${evilPort}/api/v1/namespaces/x/pods/y/exec HTTP/1.1\r\nHost: 127.0.0.1:${evilPort}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n\r\n`), waitMs: 1000 },
  { name: 'a second, absolute-form request pipelined after a good one', bytes: () => http(`GET /echo HTTP/1.1\r\nHost: x\r\n\r\nGET http://127.0.0.1:${evilPort}/ HTTP/1.1\r\nHost: 127.0.0.1:${evilPort}\r\nConnection: close\r\n\r\n`) },
  { name: 'an http preamble with extra host/port/url fields', bytes: () => Buffer.concat([preamble(1, { id: 'x', host: '127.0.0.1', port: evilPort, url: `http://127.0.0.1:${evilPort}/`, target: `127.0.0.1:${evilPort}` }), Buffer.from('GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')]) },
  { name: 'a tcp (passthrough) preamble with extra host/port fields', bytes: () => Buffer.concat([preamble(2, { id: 'x', host: '127.0.0.1', port: evilPort, address: `127.0.0.1:${evilPort}` }), Buffer.from(`CONNECT 127.0.0.1:${evilPort} HTTP/1.1\r\n\r\n`)]) },
  { name: 'a preamble of unknown kind 3', bytes: () => Buffer.concat([preamble(3, { id: 'x', host: '127.0.0.1', port: evilPort }), Buffer.from('hello')]) }
]

for (const a of attacks) {
  test(`SSRF: ${a.name} reaches only the configured upstream`, async () => {
    const seen = up.requests.length
    const r = await exchange(await rogue.session(), a.bytes(), a.waitMs)
    assert.ok(agent.alive(), 'the agent process must survive')
    assert.equal(evilHits, 0, `the agent connected to the evil listener (${a.name})`)
    if (r.text !== '') assert.match(r.text, /^HTTP\/1\.[01] [1-5]\d\d /, 'whatever the agent answers is an HTTP response')
    for (const req of up.requests.slice(seen)) {
      assert.ok(req.url.startsWith('/') && !req.url.startsWith('//'), `the upstream must see origin-form targets only, got ${JSON.stringify(req.url)}`)
      assert.equal(req.headers.host, `127.0.0.1:${up.port}`, 'the upstream must see its own Host')
      assert.equal(req.headers.authorization, 'Bearer agent-sa-token', 'the agent adds its own credential')
    }
  })
}

test('after the SSRF attempts the agent still serves a normal request, and never touched the evil listener', async () => {
  const s = await rogue.session()
  assert.equal(s, session, 'the agent kept its session')
  const r = await exchange(s, http('GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'))
  assert.match(r.text, /^HTTP\/1\.1 200 /)
  assert.match(r.text, /"url":"\/echo"/, 'the upstream echoed the request')
  assert.equal(evilHits, 0)
  assert.ok(agent.alive())
})
