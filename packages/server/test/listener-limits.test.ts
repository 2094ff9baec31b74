/**
 * Every listening port against peers that connect and stall: sockets that
 * never start TLS, that stall in the handshake, that send plaintext to a TLS
 * port, and passthrough callers that never speak or go idle.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import tls from 'node:tls'
import { once } from 'node:events'
import { readPreamble } from '@tower/transport'
import { defaultServerConfig } from '../src/config.ts'
import { dialAgent, openFds, startServer, until } from './helpers.ts'

// The first bytes of a TLS ClientHello record, and no more: a handshake that stalls.
const PARTIAL_HELLO = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03])

async function connectMany (port: number, n: number, send?: Buffer | string): Promise<net.Socket[]> {
  return await Promise.all(Array.from({ length: n }, async () => {
    const s = net.connect({ host: '127.0.0.1', port })
    s.on('error', () => {})
    await once(s, 'connect')
    if (send !== undefined) s.write(send)
    return s
  }))
}

test('sockets that never finish TLS are destroyed at the handshake timeout and hold nothing after the client leaves', async (t) => {
  const short = { tlsHandshakeTimeoutMs: 300 }
  const ts = await startServer(t, {
    agentEndpoint: { ...defaultServerConfig.agentEndpoint, ...short },
    caller: { ...defaultServerConfig.caller, ...short }
  }, 'info')
  await ts.registry.add('slow')
  await ts.server.synced()
  const clusterPort = ts.server.clusterPort('slow')!
  const fdsBefore = openFds()
  const clients: net.Socket[] = []
  for (const port of [ts.server.agentPort, clusterPort]) {
    clients.push(...await connectMany(port, 40))
    clients.push(...await connectMany(port, 10, PARTIAL_HELLO))
    // Plaintext on a TLS port: an immediate TLS error, answered by destroying, not by an HTTP write.
    clients.push(...await connectMany(port, 10, 'GET / HTTP/1.1\r\nhost: x\r\n\r\n'))
  }
  // The server closes each one itself, at its handshake timeout or its TLS error.
  await until(() => clients.every((c) => c.destroyed || c.readableEnded), 10_000, 'the server to close every stalled socket')
  for (const c of clients) c.destroy()
  await until(() => ts.server.agentEndpointConnections === 0 && ts.server.clusterConnections('slow') === 0, 5000, 'the server to forget the sockets')
  await until(() => openFds() <= fdsBefore + 2, 5000, `fds back near ${fdsBefore} (now ${openFds()})`)
})

test('a connection beyond the per-port cap is closed at accept', async (t) => {
  const ts = await startServer(t, { caller: { ...defaultServerConfig.caller, maxConnections: 3 } }, 'info')
  await ts.registry.add('capped')
  await ts.server.synced()
  const port = ts.server.clusterPort('capped')!
  const held = await connectMany(port, 3)
  t.after(() => { for (const c of held) c.destroy() })
  await until(() => ts.server.clusterConnections('capped') === 3, 5000, 'three connections held')
  const [extra] = await connectMany(port, 1)
  await once(extra!, 'close')
  assert.equal(ts.server.clusterConnections('capped'), 3)
})

test('passthrough: silent callers cost no stream and are closed; idle connections are closed; the cap holds', async (t) => {
  const ts = await startServer(t, {
    caller: { ...defaultServerConfig.caller, tlsHandshakeTimeoutMs: 300, idleTimeoutMs: 400, maxConnections: 4 }
  }, 'info')
  const { token } = await ts.registry.add('pt', { mode: 'passthrough' })
  await ts.server.synced()
  const port = ts.server.clusterPort('pt')!
  const agent = await dialAgent(ts, 'pt', token)
  t.after(() => agent.session.destroy())
  let streams = 0
  agent.session.on('stream', (s) => {
    streams++
    s.on('error', () => {})
    readPreamble(s).then(() => s.on('data', (d: Buffer) => s.write(d)), () => s.destroy())
  })
  await until(() => ts.server.tunnels.count('pt') === 1, 5000, 'agent registered')

  const silent = await connectMany(port, 3)
  const [talker] = await connectMany(port, 1, 'hello')
  const echoed = await once(talker!, 'data') as [Buffer]
  assert.equal(echoed[0].toString(), 'hello')
  const [over] = await connectMany(port, 1)
  await once(over!, 'close')
  assert.equal(streams, 1, 'only the caller that spoke got a stream')
  await Promise.all(silent.map((s) => once(s, 'close')))
  // The talker went quiet: the idle timeout closes it and frees its stream.
  await once(talker!, 'close')
  await until(() => ts.server.tunnels.tunnels('pt')[0]!.session.numStreams === 0, 5000, 'the stream to be released')
  assert.equal(ts.server.clusterConnections('pt'), 0)
})

test('a request head trickled a header at a time is cut at the head timeout, not node\'s 30 s check', async (t) => {
  const ts = await startServer(t, {
    agentEndpoint: { ...defaultServerConfig.agentEndpoint, handshakeTimeoutMs: 300 },
    caller: { ...defaultServerConfig.caller, headersTimeoutMs: 300 }
  }, 'info')
  await ts.registry.add('trickle')
  await ts.server.synced()
  const sockets = await Promise.all([ts.server.agentPort, ts.server.clusterPort('trickle')!].map(async (port) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca: ts.registry.ca.certPem, servername: 'localhost' })
    s.on('error', () => {})
    await once(s, 'secureConnect')
    s.write('GET / HTTP/1.1\r\nhost: x\r\n')
    let n = 0
    const tick = setInterval(() => { if (!s.destroyed) s.write(`x-slow-${n++}: y\r\n`) }, 50)
    s.once('close', () => clearInterval(tick))
    t.after(() => { clearInterval(tick); s.destroy() })
    return s
  }))
  // The bound is well under node's default check interval of 30 s.
  await until(() => sockets.every((s) => s.destroyed || s.readableEnded), 5000, 'both trickling sockets to be cut')
})
