/**
 * Agents the server must stop trusting or stop using (issue 8, items 10-12),
 * against the real server process: a thief holding a join token that was
 * rotated away or whose cluster was removed, a session left behind by a
 * network blip, and a session that announced it is draining. Callers must
 * be served by the healthy agent and never wait on, or be answered by, the
 * stale one.
 */
import { after, before, beforeEach, test } from 'node:test'
import assert from 'node:assert/strict'
import { FrameType } from '@tower/mux'
import { startUpstream, type Upstream } from '../fixtures/upstream.ts'
import { World, connectAgent } from './lib/world.ts'
import { MuxFlag, RawAgentConnection, muxFrame } from './lib/raw-agent.ts'
import type { ClusterInfo } from './lib/tower-process.ts'
import type { Agent } from '@tower/agent'

let world: World
let up: Upstream
const agents: Agent[] = []

before(async () => {
  world = await World.start()
  up = await startUpstream()
})
// An attack that kills the server fails its own test; the next one gets a fresh server.
beforeEach(async () => { world = await world.revived() })
after(async () => {
  for (const a of agents) await a.stop()
  await up?.close()
  await world?.stop()
})

/** Resolves true once the server ended the raw session (GoAway or close), false after `ms`. */
async function ended (c: RawAgentConnection, ms: number): Promise<boolean> {
  const goAway = c.nextMux((f) => f.type === FrameType.goAway, ms).then(() => true, () => false)
  let timer: NodeJS.Timeout | undefined
  const closed = Promise.race([c.closed.then(() => true), new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), ms) })])
  const r = await Promise.race([goAway, closed])
  clearTimeout(timer)
  return r
}

/** A caller request to `c` that the raw agent receives: proves the server routes to it. */
async function routedTo (raw: RawAgentConnection, c: ClusterInfo, cert: { certPem: string, keyPem: string }): Promise<void> {
  const seen = raw.nextMux((f) => f.type !== FrameType.ping && (f.flags & MuxFlag.syn) !== 0)
  const req = world.get(c, '/echo', {}, cert, 5000).catch(() => undefined)
  await seen
  void req
}

test('item 12: rotating a join token disconnects the agent that holds the old one', async () => {
  const base = world.baseline()
  const c = await world.tower.addCluster('stolen')
  const cert = await world.tower.callerCert('stolen')
  const thief = await RawAgentConnection.connect(world.tower.agentPort, world.tower.caPem, c.name, c.token, { agentId: 'thief' })
  await routedTo(thief, c, cert)
  const out = JSON.parse(await world.tower.cli(['cluster', 'token', 'stolen', '--rotate', '--output', 'json'])) as { token: string }
  assert.notEqual(out.token, c.token)
  const gone = await ended(thief, 10_000)
  thief.destroy()
  assert.ok(gone, 'the session authenticated with the rotated-away token must end')
  const real = await connectAgent(world.tower, { ...c, token: out.token }, up, 'rightful')
  agents.push(real)
  assert.equal((await world.get(c, '/echo', {}, cert)).status, 200, 'the new token serves')
  await real.stop()
  await world.survived(base)
})

test('item 12: removing a cluster disconnects its agents at once', async () => {
  const base = world.baseline()
  const c = await world.tower.addCluster('gone')
  const raw = await RawAgentConnection.connect(world.tower.agentPort, world.tower.caPem, c.name, c.token, { agentId: 'leftover' })
  assert.ok(await raw.sync(), 'the session is up')
  await world.tower.cli(['cluster', 'remove', 'gone'])
  const gone = await ended(raw, 10_000)
  raw.destroy()
  assert.ok(gone, 'the agent of a removed cluster must be disconnected')
  await world.survived(base)
})

test('item 11: an agent that reconnects with the same id replaces its dead session; callers never wait on it', async () => {
  const base = world.baseline()
  const c = await world.tower.addCluster('blip')
  const cert = await world.tower.callerCert('blip')
  // The old connection went silent (a network blip): it never answers a SYN.
  const dead = await RawAgentConnection.connect(world.tower.agentPort, world.tower.caPem, c.name, c.token, { agentId: 'blip-agent' })
  const real = await connectAgent(world.tower, c, up, 'blip-agent')
  agents.push(real)
  const statuses: Array<number | string> = []
  for (let i = 0; i < 6; i++) {
    statuses.push(await world.get(c, '/echo', {}, cert, 5000).then((r) => r.status, (err: Error) => err.message))
  }
  const replaced = await ended(dead, 5000)
  dead.destroy()
  assert.deepEqual(statuses, [200, 200, 200, 200, 200, 200], 'every request is served by the new session')
  assert.ok(replaced, 'the old session of the same agent id is closed')
  await real.stop()
  await world.survived(base)
})

test('item 10: a session that sent GoAway is not picked while a healthy agent is connected', async () => {
  const base = world.baseline()
  const c = await world.tower.addCluster('drain')
  const cert = await world.tower.callerCert('drain')
  const real = await connectAgent(world.tower, c, up, 'healthy')
  agents.push(real)
  const draining = await RawAgentConnection.connect(world.tower.agentPort, world.tower.caPem, c.name, c.token, { agentId: 'draining' })
  await draining.sendMux(muxFrame(FrameType.goAway, 0, 0, 0))
  assert.ok(await draining.sync(), 'the draining session is still up')
  // The ping answer proves the server read the GoAway. A stream it opened
  // before that (the version probe that a new agent's connect starts) is
  // fair; only streams opened after it count.
  const seenBefore = draining.muxFrames.length
  const statuses: Array<number | string> = []
  for (let i = 0; i < 10; i++) {
    statuses.push(await world.get(c, '/echo', {}, cert, 5000).then((r) => r.status, (err: Error) => err.message))
  }
  const synsToDraining = draining.muxFrames.slice(seenBefore).filter((f) => (f.flags & MuxFlag.syn) !== 0 && f.type !== FrameType.ping).length
  draining.destroy()
  assert.deepEqual(statuses, Array(10).fill(200), 'callers are served by the healthy agent')
  assert.equal(synsToDraining, 0, 'no stream is opened on a session that sent GoAway')
  await real.stop()
  await world.survived(base)
})
