// Passthrough mode (kind 'tcp'): a raw relay to the configured upstream, TLS end to end.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import https from 'node:https'
import tls from 'node:tls'
import type { IncomingMessage } from 'node:http'
import { rig } from './harness.ts'

test('TLS runs end to end through the relay to the configured upstream', async (t) => {
  const { server, upstream } = await rig(t)
  const st = server.open('tcp')
  // the TLS socket keeps the stream after the request; the teardown's session close must not throw
  st.on('error', () => {})
  const secure = tls.connect({ socket: st as never, ca: upstream.caPem, servername: 'localhost' })
  secure.on('error', () => {})
  t.after(() => secure.destroy())
  await once(secure, 'secureConnect')
  assert.equal(secure.authorized, true)
  const req = https.request({ host: 'localhost', path: '/echo', createConnection: () => secure, headers: { authorization: 'Bearer member-cred' } })
  req.on('error', () => {}) // the teardown resets the kept-alive connection
  req.end()
  const [res] = await once(req, 'response') as [IncomingMessage]
  let body = ''
  for await (const c of res) body += String(c)
  const seen = JSON.parse(body) as { headers: Record<string, string> }
  // passthrough does not touch the request: the caller's own credential arrives
  assert.equal(seen.headers.authorization, 'Bearer member-cred')
})

test('half-close through the relay: the client FINs, the upstream answers, then both close', async (t) => {
  const { server, upstream } = await rig(t)
  const st = server.open('tcp')
  const secure = tls.connect({ socket: st as never, ca: upstream.caPem, servername: 'localhost' })
  t.after(() => secure.destroy())
  await once(secure, 'secureConnect')
  // HTTP/1.0-style: the request, then our FIN; the upstream still answers
  secure.end('GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  let text = ''
  for await (const c of secure) text += String(c)
  assert.match(text, /^HTTP\/1.1 200/)
  assert.match(text, /NamespaceList/)
})

test('a dial failure resets the stream', async (t) => {
  const { server } = await rig(t, { agent: { upstream: { kind: 'url', url: 'https://127.0.0.1:1' } } })
  const st = server.open('tcp')
  st.write('hello')
  const [err] = await once(st, 'error') as [{ code: string }]
  assert.equal(err.code, 'TOWER_ERR_STREAM_RESET')
})

test('a bad preamble resets the stream and the session lives on', async (t) => {
  const { server } = await rig(t)
  const session = server.session
  assert.ok(session !== undefined)
  const st = session.open()
  st.write(Buffer.from([9, 9, 9, 9]))
  const [err] = await once(st, 'error') as [{ code: string }]
  assert.equal(err.code, 'TOWER_ERR_STREAM_RESET')
  assert.equal(session.closed, false)
})
