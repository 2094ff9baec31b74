// The controller-mode pass criteria can fail: agents held are replayed from a replica's log (a replaced
// session's late disconnect keeps the new one), slices that miss or add a replica are reported, as are a
// dead replica's slice and Lease, and RSS/fd growth past the bounds. Pure functions, no sockets.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { agentsHeld, deadLeftovers, expectedEndpoints, growthProblems, sliceMismatches, type SliceView } from './criteria.ts'

const connected = (cluster: string, agentId: string, remote: string): Record<string, unknown> => ({ msg: 'agent connected', cluster, agentId, remote })
const disconnected = (cluster: string, agentId: string, remote: string): Record<string, unknown> => ({ msg: 'agent disconnected', cluster, agentId, remote })

test('agentsHeld replays connects and disconnects per (agent, remote)', () => {
  const lines = [
    connected('c1', 'a-g1', '10.0.0.1:1'),
    connected('c2', 'b-g1', '10.0.0.2:1'),
    // a-g1 reconnects to the same replica: the old session's disconnect comes after the new connect
    connected('c1', 'a-g1', '10.0.0.1:2'),
    disconnected('c1', 'a-g1', '10.0.0.1:1'),
    disconnected('c2', 'b-g1', '10.0.0.2:1'),
    { msg: 'agent connected', cluster: 7, agentId: 'x' }
  ]
  const held = agentsHeld(lines)
  assert.deepEqual([...held.get('c1')!], ['a-g1'])
  assert.equal(held.get('c2'), undefined)
  assert.equal(held.size, 1)
})

test('sliceMismatches: equal sets pass; a missing or an extra replica fails', () => {
  const expected = expectedEndpoints([
    { address: '10.214.1.2', lines: [connected('c1', 'a', 'r1'), connected('c2', 'b', 'r2')] },
    { address: '10.214.1.3', lines: [connected('c1', 'c', 'r3'), disconnected('c1', 'c', 'r3')] },
    { address: '10.214.1.4', lines: [connected('c2', 'd', 'r4')] }
  ])
  const slice = (service: string, ready: string[], identity = 'r'): SliceView => ({ name: `${service}-${ready.join('-')}`, service, identity, ready })
  const good = [slice('mc-c1', ['10.214.1.2']), slice('mc-c2', ['10.214.1.2']), slice('mc-c2', ['10.214.1.4'])]
  assert.deepEqual(sliceMismatches(['c1', 'c2'], expected, good), [])
  const stale = [...good, slice('mc-c1', ['10.214.1.3'])]
  assert.match(sliceMismatches(['c1', 'c2'], expected, stale)[0]!, /c1: slices list \[10\.214\.1\.2, 10\.214\.1\.3\], the replicas holding its agents are \[10\.214\.1\.2\]/)
  const missing = good.slice(0, 2)
  assert.equal(sliceMismatches(['c1', 'c2'], expected, missing).length, 1)
  // A cluster with no agent anywhere must have no ready slice.
  assert.deepEqual(sliceMismatches(['c3'], expected, []), [])
  assert.equal(sliceMismatches(['c3'], expected, [slice('mc-c3', ['10.214.1.2'])]).length, 1)
})

test('deadLeftovers names a dead replica\'s slice and Lease, and nothing of a live one', () => {
  const live = new Set(['replica-1-g1', 'replica-2-g3'])
  const slices: SliceView[] = [{ name: 's1', service: 'mc-c1', identity: 'replica-1-g1', ready: [] }, { name: 's2', service: 'mc-c1', identity: 'replica-2-g2', ready: ['x'] }]
  const leases = [{ name: 'tower-replica-replica-2-g3', holder: 'replica-2-g3' }, { name: 'tower-replica-replica-2-g2', holder: 'replica-2-g2' }]
  assert.deepEqual(deadLeftovers(live, slices, leases), ['EndpointSlice s2 of replica replica-2-g2', 'Lease tower-replica-replica-2-g2 of replica replica-2-g2'])
  assert.deepEqual(deadLeftovers(live, slices.slice(0, 1), leases.slice(0, 1)), [])
})

test('growthProblems: within the bounds passes, fds or RSS past them fail', () => {
  const bounds = { fdSlack: 24, rssFactor: 2, rssSlackBytes: 64e6 }
  const base = { pid: 1, rssBytes: 200e6, fds: 30 }
  assert.deepEqual(growthProblems('replica-1', base, { pid: 2, rssBytes: 464e6, fds: 54 }, bounds), [])
  assert.match(growthProblems('replica-1', base, { pid: 2, rssBytes: 200e6, fds: 55 }, bounds)[0]!, /55 fds/)
  assert.match(growthProblems('replica-1', base, { pid: 2, rssBytes: 465e6, fds: 30 }, bounds)[0]!, /RSS 465\.0 MB/)
})
