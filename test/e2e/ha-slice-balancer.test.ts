// The slice balancer's endpoint choice (harness/slice-balancer.ts readyEndpoints), without an apiserver:
// only ready endpoints (ready true or absent, as the EndpointSlice API documents; false while a Tower
// replica drains) with an address of the slice's addressType and a valid TCP port count, and hostile
// field types are skipped rather than thrown on. The balancer itself runs against the real host
// apiserver in ha.test.ts.
//
// Run: node --experimental-strip-types --test test/e2e/ha-slice-balancer.test.ts
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { V1EndpointSlice } from '@kubernetes/client-node'
import { readyEndpoints } from './harness/index.ts'

const slice = (o: Record<string, unknown>): V1EndpointSlice => ({ addressType: 'IPv4', ports: [{ port: 6443, protocol: 'TCP' }], endpoints: [], ...o }) as V1EndpointSlice

test('ready and unknown-readiness endpoints count; not-ready ones (a draining replica) do not', () => {
  const got = readyEndpoints([
    slice({ endpoints: [{ addresses: ['10.0.0.2'], conditions: { ready: true } }] }),
    slice({ endpoints: [{ addresses: ['10.0.0.3'], conditions: { ready: false } }] }),
    slice({ endpoints: [{ addresses: ['10.0.0.1'] }] })
  ])
  assert.deepEqual(got, [{ address: '10.0.0.1', port: 6443 }, { address: '10.0.0.2', port: 6443 }])
})

test('hostile slices are skipped, not thrown on', () => {
  const hostile = [
    slice({ addressType: 'FQDN', endpoints: [{ addresses: ['example.com'], conditions: { ready: true } }] }),
    slice({ endpoints: [{ addresses: ['not-an-ip'], conditions: { ready: true } }] }),
    slice({ endpoints: [{ addresses: ['fd00::1'], conditions: { ready: true } }] }), // IPv6 in an IPv4 slice
    slice({ ports: [{ port: 70000 }], endpoints: [{ addresses: ['10.0.0.4'] }] }),
    slice({ ports: [{ port: '6443' }], endpoints: [{ addresses: ['10.0.0.5'] }] }),
    slice({ ports: [{ port: 53, protocol: 'UDP' }], endpoints: [{ addresses: ['10.0.0.6'] }] }),
    slice({ ports: 'x', endpoints: [{ addresses: ['10.0.0.7'] }] }),
    slice({ endpoints: { length: 1 } }),
    slice({ endpoints: [null, { addresses: 'x' }, { addresses: [7] }, { addresses: ['10.0.0.8'], conditions: { ready: 'yes' } }] }),
    null as unknown as V1EndpointSlice
  ]
  assert.deepEqual(readyEndpoints(hostile), [])
})

test('a named port is chosen by name; duplicates across slices count once', () => {
  const s = slice({ ports: [{ name: 'metrics', port: 9090 }, { name: 'https', port: 6443 }], endpoints: [{ addresses: ['10.0.0.9'] }] })
  assert.deepEqual(readyEndpoints([s, s], 'https'), [{ address: '10.0.0.9', port: 6443 }])
  assert.deepEqual(readyEndpoints([s]), [{ address: '10.0.0.9', port: 9090 }])
  assert.deepEqual(readyEndpoints([s], 'absent'), [])
})
