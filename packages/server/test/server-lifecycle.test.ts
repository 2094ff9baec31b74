/**
 * The server as the registry changes under it: draining sessions, token
 * rotation and cluster removal, sync failures, a second server on the same
 * state directory, and certificate renewal.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import tls from 'node:tls'
import { once } from 'node:events'
import { X509Certificate } from 'node:crypto'
import type { MuxStream } from '@tower/mux'
import { issueServerCert } from '@tower/pki'
import { FileRegistry } from '../src/registry/file-registry.ts'
import { TowerServer } from '../src/server.ts'
import { TunnelPool } from '../src/tunnels.ts'
import { defaultServerConfig } from '../src/config.ts'
import { dialAgent, startServer, until, type TestAgent, type TestServer } from './helpers.ts'

// Opens a server → agent stream and waits until the agent has it, so the session has work in flight.
async function busy (ts: TestServer, cluster: string, agent: TestAgent): Promise<MuxStream> {
  const accepted = once(agent.session, 'stream')
  const tunnel = ts.server.tunnels.tunnels(cluster).find((t) => t.agentId !== undefined)!
  const stream = ts.server.tunnels.openOn(tunnel, 'http')
  stream.on('error', () => {})
  const [theirs] = await accepted as [MuxStream]
  theirs.on('error', () => {})
  return stream
}

test('pick skips a session draining after a GoAway and uses the healthy agent', async (t) => {
  const ts = await startServer(t)
  const { token } = await ts.registry.add('drain')
  const a = await dialAgent(ts, 'drain', token, 'agent-a')
  t.after(() => a.session.destroy())
  await until(() => ts.server.tunnels.count('drain') === 1, 5000, 'agent a registered')
  await busy(ts, 'drain', a)
  const b = await dialAgent(ts, 'drain', token, 'agent-b')
  t.after(() => b.session.destroy())
  await until(() => ts.server.tunnels.count('drain') === 2, 5000, 'agent b registered')
  const draining = ts.server.tunnels.tunnels('drain').find((x) => x.agentId === 'agent-a')!
  const goaway = once(draining.session, 'goaway')
  a.session.close()
  await goaway
  assert.equal(draining.session.closed, false, 'still draining its stream')
  for (let i = 0; i < 6; i++) assert.equal(ts.server.tunnels.pick('drain').agentId, 'agent-b')
})

test('a cluster without agents: NoAgentError says since when', async () => {
  const before = Date.now()
  const pool = new TunnelPool()
  assert.throws(() => pool.pick('none'), (err: Error & { code?: string, offlineSince?: number }) => {
    assert.equal(err.code, 'TOWER_ERR_NO_AGENT')
    assert.ok(typeof err.offlineSince === 'number' && err.offlineSince >= before && err.offlineSince <= Date.now())
    return true
  })
})

test('rotating the join token disconnects agents that used the old one', async (t) => {
  const ts = await startServer(t)
  const { token } = await ts.registry.add('rot')
  const agent = await dialAgent(ts, 'rot', token)
  t.after(() => agent.session.destroy())
  await until(() => ts.server.tunnels.count('rot') === 1, 5000, 'agent registered')
  await busy(ts, 'rot', agent)
  const closed = once(agent.session, 'close')
  await ts.registry.rotateAgentToken('rot')
  await closed
  assert.equal(ts.server.tunnels.count('rot'), 0)
  const line = await ts.logs.waitFor(/join token is no longer valid/)
  assert.equal(line.reason, 'join token rotated')
})

test('removing a cluster disconnects its agents at once, open streams or not', async (t) => {
  const ts = await startServer(t)
  const { token } = await ts.registry.add('gone')
  const agent = await dialAgent(ts, 'gone', token)
  t.after(() => agent.session.destroy())
  await until(() => ts.server.tunnels.count('gone') === 1, 5000, 'agent registered')
  await busy(ts, 'gone', agent)
  const closed = once(agent.session, 'close')
  await ts.registry.remove('gone')
  await closed
  await ts.server.synced()
  assert.equal(ts.server.clusterPort('gone'), undefined)
  assert.equal((await ts.logs.waitFor(/join token is no longer valid/)).reason, 'cluster removed')
})

test('a failing sync is logged and the next one still runs', async (t) => {
  const ts = await startServer(t)
  const real = ts.registry.serverCertificate.bind(ts.registry)
  let fail = true
  t.mock.method(ts.registry, 'serverCertificate', () => {
    if (fail) throw new Error('injected certificate failure')
    return real()
  })
  await ts.registry.add('first')
  await ts.server.synced()
  const line = await ts.logs.waitFor(/cannot bring the cluster ports in line/)
  assert.equal(line.err.message, 'injected certificate failure')
  assert.equal(ts.server.clusterPort('first'), undefined)
  fail = false
  await ts.registry.add('second')
  await ts.server.synced()
  assert.ok(ts.server.clusterPort('first') !== undefined)
  assert.ok(ts.server.clusterPort('second') !== undefined)
})

test('a second server on the same state directory is refused; status says when the server stopped', async (t) => {
  const ts = await startServer(t)
  const registry2 = await FileRegistry.open({ stateDir: ts.registry.stateDir, logger: ts.logger })
  const second = new TowerServer(registry2, { listenHost: '127.0.0.1', listenPort: 0, clusterHost: '127.0.0.1', logger: ts.logger })
  await assert.rejects(second.start(), { code: 'TOWER_ERR_SERVER_RUNNING' })
  assert.equal(second.agentPort, 0, 'nothing was bound')
  assert.equal((await ts.registry.readStatus())?.pid, process.pid)
  await ts.server.stop()
  const status = (await ts.registry.readStatus())!
  assert.equal(status.pid, process.pid)
  assert.ok(typeof status.stoppedAt === 'string')
  // Once the first has stopped, the directory is free again.
  await second.start()
  await second.stop()
})

test('a renewed server certificate is loaded into the running listeners', async (t) => {
  const ts = await startServer(t, { certCheckIntervalMs: 50 })
  await ts.registry.add('renew')
  await ts.server.synced()
  const renewed = issueServerCert(ts.registry.ca, { commonName: 'tower-server-renewed', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], validityDays: 30 })
  t.mock.method(ts.registry, 'serverCertificate', () => renewed)
  await ts.logs.waitFor('server certificate reloaded')
  const want = new X509Certificate(renewed.certPem).fingerprint256
  for (const port of [ts.server.agentPort, ts.server.clusterPort('renew')!]) {
    const socket = tls.connect({ host: '127.0.0.1', port, ca: ts.registry.ca.certPem, servername: 'localhost' })
    await once(socket, 'secureConnect')
    assert.equal(socket.getPeerX509Certificate()?.fingerprint256, want, `port ${port} serves the renewed certificate`)
    socket.destroy()
  }
})

test('a stream the agent never ACKs fails after the stream-open timeout and ends that session', async (t) => {
  const ts = await startServer(t, { agentEndpoint: { ...defaultServerConfig.agentEndpoint, streamOpenTimeoutMs: 200 } })
  // Passthrough: no version probe races the stream this test opens.
  const { token } = await ts.registry.add('mute', { mode: 'passthrough' })
  // No 'stream' listener: the agent's session holds the SYN without ACKing it, like a dead peer.
  const agent = await dialAgent(ts, 'mute', token)
  t.after(() => agent.session.destroy())
  await until(() => ts.server.tunnels.count('mute') === 1, 5000, 'agent registered')
  const session = ts.server.tunnels.tunnels('mute')[0]!.session
  const stream = ts.server.tunnels.open('mute', 'http')
  const failed = once(stream, 'error')
  const [err] = await failed as [Error & { code?: string }]
  assert.equal(err.code, 'TOWER_ERR_STREAM_OPEN_TIMEOUT')
  await until(() => session.closed, 5000, 'the session to end')
  assert.equal(ts.server.tunnels.count('mute'), 0)
})
