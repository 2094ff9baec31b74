import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { withPeers } from '../src/controller.ts'
import { parseAgents, replicaKey, sliceMatches } from '../src/endpoint-slices.ts'
import { leaseNameFor } from '../src/replica-lease.ts'

const agent = (id: string) => ({ id, remote: '10.0.0.1:5000', since: '2026-01-01T00:00:00.000Z' })

describe('agents across replicas', () => {
  test('the leader\'s view merges the peers\' agents, once per id, and drops "last agent left" while any is connected', () => {
    const own = { agents: [], lastAgentLeftAt: '2026-01-01T00:00:00.000Z', kubernetesVersion: 'v1.36.3' }
    const merged = withPeers(own, [agent('b'), agent('b'), agent('c')])
    assert.deepEqual(merged.agents.map((a) => a.id), ['b', 'c'])
    assert.equal(merged.lastAgentLeftAt, undefined)
    assert.equal(merged.kubernetesVersion, 'v1.36.3')
    assert.equal(withPeers(own, []), own, 'no peers: the own report as it is')
    assert.deepEqual(withPeers({ agents: [agent('a')] }, [agent('a'), agent('d')]).agents.map((a) => a.id), ['a', 'd'])
  })

  test('a peer slice\'s agents annotation is hostile input: wrong types, __proto__, huge values give fewer agents, never a throw', () => {
    assert.deepEqual(parseAgents(JSON.stringify([agent('a')])), [agent('a')])
    for (const bad of [undefined, 42, '', 'not json', '{"a":1}', '"x"', 'x'.repeat(20_000), JSON.stringify([{ id: 1 }, null, 'x'])]) {
      assert.deepEqual(parseAgents(bad), [], String(bad).slice(0, 40))
    }
    const proto = parseAgents('[{"__proto__":{"polluted":true},"id":"p","remote":"r","since":"s"}]')
    assert.equal(proto.length, 1)
    assert.equal(({} as Record<string, unknown>).polluted, undefined)
    assert.equal(parseAgents(JSON.stringify(Array.from({ length: 100 }, (_, i) => agent(String(i))))).length, 16)
    assert.equal(parseAgents(JSON.stringify([{ ...agent('x'), id: 'y'.repeat(1000) }]))[0]!.id.length, 256)
  })
})

describe('replica names', () => {
  test('replica keys are short, stable and label-safe; Lease names are the identity when it is a DNS name, else a hash', () => {
    assert.match(replicaKey('tower-server-7d9f-abcde'), /^[0-9a-f]{10}$/)
    assert.equal(replicaKey('a'), replicaKey('a'))
    assert.notEqual(replicaKey('a'), replicaKey('b'))
    assert.equal(leaseNameFor('tower-server-7d9f-abcde'), 'tower-replica-tower-server-7d9f-abcde')
    assert.match(leaseNameFor('My_Host'), /^tower-replica-[0-9a-f]{16}$/)
    assert.match(leaseNameFor('x'.repeat(250)), /^tower-replica-[0-9a-f]{16}$/)
  })

  test('sliceMatches: equal slices match; readiness, port, address or owner differences do not', () => {
    const slice = {
      addressType: 'IPv4',
      metadata: { name: 'mc-a-1', labels: { a: '1', b: '2' }, annotations: { x: 'y' }, ownerReferences: [{ apiVersion: 'v1', kind: 'Pod', name: 'p', uid: 'u' }] },
      endpoints: [{ addresses: ['10.0.0.1'], conditions: { ready: true, serving: true, terminating: false } }],
      ports: [{ name: 'kube-api', port: 6001, protocol: 'TCP' }]
    }
    const copy = (): typeof slice => JSON.parse(JSON.stringify(slice)) as typeof slice
    assert.equal(sliceMatches(copy(), slice), true)
    const reordered = copy(); reordered.metadata.labels = { b: '2', a: '1' }
    assert.equal(sliceMatches(reordered, slice), true)
    const draining = copy(); draining.endpoints[0]!.conditions.ready = false
    assert.equal(sliceMatches(draining, slice), false)
    const port = copy(); port.ports[0]!.port = 6002
    assert.equal(sliceMatches(port, slice), false)
    const addr = copy(); addr.endpoints[0]!.addresses = ['10.0.0.2']
    assert.equal(sliceMatches(addr, slice), false)
    const owner = copy(); owner.metadata.ownerReferences[0]!.uid = 'other'
    assert.equal(sliceMatches(owner, slice), false)
  })
})
