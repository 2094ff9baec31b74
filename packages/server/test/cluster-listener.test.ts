/**
 * Handler bugs on listening ports: a throw while handling one caller costs
 * that caller's connection only, never the process, and the port keeps
 * serving. The guard is the one every listener uses (listener-guard.ts).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import net from 'node:net'
import { once } from 'node:events'
import { guarded, socketOf } from '../src/listener-guard.ts'
import { rawTlsRequest, sinkLogger, startServer, statusOf } from './helpers.ts'

test('a cluster-port handler that throws costs one connection; the port keeps serving', async (t) => {
  const ts = await startServer(t)
  await ts.registry.add('bug')
  await ts.server.synced()
  const port = ts.server.clusterPort('bug')!
  const ca = ts.registry.ca.certPem
  const throwing = t.mock.method(ts.registry, 'verifyCallerToken', () => { throw new Error('injected caller-auth bug') })
  const request = 'GET /api HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer tower-caller_x\r\nconnection: close\r\n\r\n'
  const upgrade = 'GET /api/v1/exec HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer tower-caller_x\r\nconnection: Upgrade\r\nupgrade: SPDY/3.1\r\n\r\n'
  for (const r of [request, upgrade]) {
    const answer = await rawTlsRequest(port, ca, r)
    assert.ok(answer === '' || statusOf(answer) === 500, answer.split('\r\n')[0])
  }
  assert.ok(throwing.mock.callCount() >= 2)
  throwing.mock.restore()
  assert.equal(statusOf(await rawTlsRequest(port, ca, request)), 401, 'the port still answers')
})

test('the listener guard: request, upgrade and connection handlers that throw destroy their socket only', async (t) => {
  const { logs, logger } = sinkLogger()
  const server = http.createServer()
  // Each handler throws on its first call only.
  const failing = new Set(['connection', 'request'])
  const once1 = (what: string): void => { if (failing.delete(what)) throw new Error(`injected ${what} bug`) }
  server.on('request', guarded(logger, 'request', socketOf.request, (_req: http.IncomingMessage, res: http.ServerResponse) => {
    once1('request')
    res.end('ok')
  }))
  server.on('upgrade', guarded(logger, 'upgrade', socketOf.upgrade, () => { throw new Error('injected upgrade bug') }))
  server.on('connection', guarded(logger, 'connection', socketOf.connection, () => once1('connection')))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => { server.closeAllConnections(); server.close() })
  const port = (server.address() as net.AddressInfo).port
  const send = async (text: string): Promise<string> => {
    const s = net.connect(port, '127.0.0.1')
    s.on('error', () => {})
    await once(s, 'connect')
    s.write(text)
    const chunks: Buffer[] = []
    s.on('data', (c: Buffer) => chunks.push(c))
    await once(s, 'close')
    return Buffer.concat(chunks).toString()
  }
  assert.equal(await send('GET / HTTP/1.1\r\nhost: x\r\n\r\n'), '', 'connection handler threw: destroyed')
  assert.equal(await send('GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'), '', 'request handler threw: destroyed')
  assert.equal(await send('GET / HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: foo\r\n\r\n'), '', 'upgrade handler threw: destroyed')
  assert.match(await send('GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'), /^HTTP\/1\.1 200/, 'the server keeps serving')
  assert.deepEqual(logs.find(/handler failed/).map((l) => l.err.message), ['injected connection bug', 'injected request bug', 'injected upgrade bug'])
})
