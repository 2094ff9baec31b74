/**
 * The per-source cap on unauthenticated connections (source-cap.ts,
 * listener-guard.ts): source keys, the bounded counter, and a real server
 * whose agent endpoint and cluster ports close a source's connection beyond
 * the cap at once, while an authenticated agent gives its slot back and
 * another source is not affected.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { once } from 'node:events'
import { defaultServerConfig } from '../src/config.ts'
import { SourceCap, sourceKey } from '../src/source-cap.ts'
import { dialAgent, startServer, until } from './helpers.ts'

// The first bytes of a TLS ClientHello record, and no more: a handshake that stalls.
const PARTIAL_HELLO = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03])

test('sourceKey: IPv4 as is, IPv4-mapped unwrapped, IPv6 by /64, anything else unknown', () => {
  assert.equal(sourceKey('10.1.2.3'), '10.1.2.3')
  assert.equal(sourceKey('::ffff:10.1.2.3'), '10.1.2.3')
  assert.equal(sourceKey('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64')
  assert.equal(sourceKey('2001:0db8:0001:0002::9'), '2001:db8:1:2::/64')
  assert.equal(sourceKey('2001:db8::1'), '2001:db8:0:0::/64')
  assert.equal(sourceKey('2001:DB8:0:0:ffff::1'), sourceKey('2001:db8::2'))
  assert.equal(sourceKey('::1'), '0:0:0:0::/64')
  assert.equal(sourceKey('fe80::1%eth0'), 'fe80:0:0:0::/64')
  assert.equal(sourceKey(undefined), 'unknown')
  assert.equal(sourceKey('constructor'), 'unknown')
})

test('SourceCap: at most limit slots per source, entries gone at zero', () => {
  const cap = new SourceCap(2)
  assert.ok(cap.take('a'))
  assert.ok(cap.take('a'))
  assert.equal(cap.take('a'), false)
  assert.ok(cap.take('b'))
  assert.equal(cap.sources, 2)
  cap.release('a')
  assert.ok(cap.take('a'))
  cap.release('a')
  cap.release('a')
  cap.release('a') // one too many: ignored
  cap.release('b')
  assert.equal(cap.sources, 0)
  assert.equal(cap.count('a'), 0)
})

/** A connection from `localAddress` that sends `send` (a stalled TLS handshake by default; null: nothing). */
async function halfOpen (port: number, localAddress = '127.0.0.1', send: Buffer | null = PARTIAL_HELLO): Promise<net.Socket> {
  const s = net.connect({ host: '127.0.0.1', port, localAddress })
  s.on('error', () => {})
  await once(s, 'connect')
  if (send !== null) s.write(send)
  return s
}

/** True when the server closes `s` within `ms`. */
async function closedWithin (s: net.Socket, ms: number): Promise<boolean> {
  if (s.destroyed) return true
  return await new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms)
    s.once('close', () => { clearTimeout(timer); resolve(true) })
  })
}

async function refusedCount (metrics: { registry: { getSingleMetricAsString: (n: string) => Promise<string> } }, listener: string): Promise<number> {
  const text = await metrics.registry.getSingleMetricAsString('tower_server_unauthenticated_refused_total')
  const m = new RegExp(`listener="${listener}"} (\\d+)`).exec(text)
  return m === null ? 0 : Number(m[1])
}

test('agent endpoint: a source beyond the cap is closed at once; an authenticated agent frees its slot; another source is unaffected', async (t) => {
  const cap = 4
  const ts = await startServer(t, {
    agentEndpoint: { ...defaultServerConfig.agentEndpoint, maxUnauthenticatedPerSource: cap },
    caller: { ...defaultServerConfig.caller, maxUnauthenticatedPerSource: cap }
  }, 'info')
  const { token } = await ts.registry.add('capped')
  await ts.server.synced()
  const port = ts.server.agentPort
  const held: net.Socket[] = []
  t.after(() => { for (const s of held) s.destroy() })
  for (let i = 0; i < cap - 1; i++) held.push(await halfOpen(port))
  // The fourth slot: an agent that authenticates, and gives it back.
  const agent = await dialAgent(ts, 'capped', token)
  t.after(() => agent.socket.destroy())
  held.push(await halfOpen(port))
  for (const s of held) assert.equal(await closedWithin(s, 50), false, 'connections within the cap stay open')
  const over = await halfOpen(port)
  assert.ok(await closedWithin(over, 2000), 'the connection beyond the cap is closed at once (the handshake timeout is 10 s)')
  const other = await halfOpen(port, '127.0.0.2')
  held.push(other)
  assert.equal(await closedWithin(other, 300), false, 'another source is not capped by the first one')
  assert.equal(await refusedCount(ts.server.metrics, 'agent-endpoint'), 1)
  assert.ok(ts.logs.lines.some((l) => l.msg === 'too many unauthenticated connections from one source; new connection closed' && l.source === '127.0.0.1' && l.limit === cap))
  // A slot is given back when its connection closes.
  held.shift()!.destroy()
  // The server sees the close a moment later: retry until a connection stays, with a deadline.
  const deadline = Date.now() + 5000
  let again: net.Socket | undefined
  while (again === undefined && Date.now() < deadline) {
    const s = await halfOpen(port)
    if (await closedWithin(s, 300)) continue
    again = s
    held.push(s)
  }
  assert.ok(again !== undefined, 'a closed connection gives its slot back')
})

test('cluster ports: proxy (TLS) and passthrough (until the first byte) cap a source; bytes on passthrough give the slot back', async (t) => {
  const cap = 3
  const ts = await startServer(t, {
    caller: { ...defaultServerConfig.caller, maxUnauthenticatedPerSource: cap }
  }, 'info')
  await ts.registry.add('proxied')
  const { token } = await ts.registry.add('pt', { mode: 'passthrough' })
  await ts.server.synced()
  const agent = await dialAgent(ts, 'pt', token)
  t.after(() => agent.socket.destroy())
  // Streams the server opens for passthrough callers: accept and hold them.
  agent.session.on('stream', (stream: NodeJS.EventEmitter) => { stream.on('error', () => {}) })
  const held: net.Socket[] = []
  t.after(() => { for (const s of held) s.destroy() })
  const proxyPort = ts.server.clusterPort('proxied')!
  for (let i = 0; i < cap; i++) held.push(await halfOpen(proxyPort))
  assert.ok(await closedWithin(await halfOpen(proxyPort), 2000), 'proxy port: beyond the cap, closed at once')
  assert.equal(await refusedCount(ts.server.metrics, 'cluster'), 1)

  const ptPort = ts.server.clusterPort('pt')!
  // Silent passthrough connections are unauthenticated; one that spoke is not.
  for (let i = 0; i < cap; i++) held.push(await halfOpen(ptPort, '127.0.0.1', null))
  assert.ok(await closedWithin(await halfOpen(ptPort, '127.0.0.1', null), 2000), 'passthrough port: beyond the cap, closed at once')
  const spoke = held[held.length - 1]!
  spoke.write('hello')
  // Once the server has read the byte (and opened a stream to the agent), the slot is free.
  await until(() => agent.session.numStreams > 0, 5000, 'the passthrough stream')
  const fresh = await halfOpen(ptPort, '127.0.0.1', null)
  held.push(fresh)
  assert.equal(await closedWithin(fresh, 300), false, 'the slot of a caller that spoke is given back')
  assert.equal(spoke.destroyed, false, 'while the caller that spoke is still connected')
  assert.equal(await refusedCount(ts.server.metrics, 'cluster'), 2)
})
