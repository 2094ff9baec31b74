// parseCluster against hostile Cluster objects: it never throws, refuses wrong types and sizes with a
// reason, and treats `__proto__` in annotation JSON as a plain key.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { ClusterLimits, parseCluster } from '../src/cluster-resource.ts'
import {
  AGENTS_ANNOTATION, FINALIZER, IMPERSONATE_ANNOTATION, MODE_ANNOTATION, ParseReason, SERVICE_ANNOTATIONS_ANNOTATION
} from '../src/names.ts'

const UID = '0b5a2c1e-6f7d-4a3b-9c8d-1e2f3a4b5c6d'

function cluster (over: { meta?: Record<string, unknown>, connection?: Record<string, unknown>, spec?: Record<string, unknown>, status?: unknown, annotations?: Record<string, unknown> } = {}): Record<string, unknown> {
  return {
    apiVersion: 'cluster.kubesphere.io/v1alpha1',
    kind: 'Cluster',
    metadata: { name: 'east', uid: UID, resourceVersion: '42', creationTimestamp: '2026-12-01T10:00:00Z', annotations: over.annotations ?? {}, ...over.meta },
    spec: { connection: { type: 'proxy', ...over.connection }, ...over.spec },
    ...(over.status !== undefined ? { status: over.status } : {})
  }
}

test('a valid proxy Cluster parses with every field', () => {
  const p = parseCluster(cluster({
    connection: { kubernetesAPIServerPort: 6001, token: 'abcdefghijklmnopqrstuvwxyz' },
    spec: { externalKubeAPIEnabled: true },
    meta: { finalizers: [FINALIZER] },
    annotations: {
      [MODE_ANNOTATION]: 'proxy',
      [IMPERSONATE_ANNOTATION]: 'true',
      [SERVICE_ANNOTATIONS_ANNOTATION]: JSON.stringify({ 'service.beta.kubernetes.io/aws-load-balancer-type': 'nlb' }),
      [AGENTS_ANNOTATION]: JSON.stringify([{ id: 'a1', remote: '10.0.0.1:5000', since: '2026-12-01T10:00:00Z' }])
    },
    status: { kubernetesVersion: 'v1.36.3', conditions: [{ type: 'Initialized', status: 'True', reason: 'Done' }, { type: 'Bad', status: 'Maybe' }] }
  }))
  assert.ok(p.ok)
  assert.equal(p.name, 'east')
  assert.equal(p.uid, UID)
  assert.equal(p.type, 'proxy')
  assert.equal(p.port, 6001)
  assert.equal(p.impersonate, true)
  assert.equal(p.specToken, 'abcdefghijklmnopqrstuvwxyz')
  assert.equal(p.externalKubeAPIEnabled, true)
  assert.equal(p.hasFinalizer, true)
  assert.equal(p.deleting, false)
  assert.deepEqual(p.serviceAnnotations, new Map([['service.beta.kubernetes.io/aws-load-balancer-type', 'nlb']]))
  assert.deepEqual(p.agents, [{ id: 'a1', remote: '10.0.0.1:5000', since: '2026-12-01T10:00:00Z' }])
  assert.equal(p.kubernetesVersion, 'v1.36.3')
  assert.deepEqual(p.conditions.map((c) => c.type), ['Initialized'], 'the condition with status Maybe is dropped')
})

test('a Cluster without a connection type parses with type undefined; direct ones ignore Tower fields', () => {
  const none = parseCluster(cluster({ connection: { type: undefined } }))
  assert.ok(none.ok)
  assert.equal(none.type, undefined)
  const direct = parseCluster(cluster({ connection: { type: 'direct', kubernetesAPIServerPort: 'x' }, annotations: { [MODE_ANNOTATION]: 'bogus' }, meta: { name: 'Not.A.Label' } }))
  assert.ok(direct.ok, 'a direct Cluster is not Tower\'s to judge')
  assert.equal(direct.type, 'direct')
})

test('wrong types and ranges become a reason, never a throw', () => {
  const cases: Array<[Record<string, unknown>, string]> = [
    [cluster({ connection: { kubernetesAPIServerPort: 70000 } }), ParseReason.PortOutOfRange],
    [cluster({ connection: { kubernetesAPIServerPort: -1 } }), ParseReason.PortOutOfRange],
    [cluster({ connection: { kubernetesAPIServerPort: 6000.5 } }), ParseReason.InvalidSpec],
    [cluster({ connection: { kubernetesAPIServerPort: '6000' } }), ParseReason.InvalidSpec],
    [cluster({ connection: { kubernetesAPIServerPort: 1e308 } }), ParseReason.PortOutOfRange],
    [cluster({ connection: { type: 'tunnel' } }), ParseReason.InvalidSpec],
    [cluster({ connection: { token: 'short' } }), ParseReason.InvalidSpec],
    [cluster({ connection: { token: 'x'.repeat(ClusterLimits.maxTokenLength + 1) } }), ParseReason.InvalidSpec],
    [cluster({ connection: { token: 'has a space in it, long enough' } }), ParseReason.InvalidSpec],
    [cluster({ annotations: { [MODE_ANNOTATION]: 'tcp' } }), ParseReason.InvalidSpec],
    [cluster({ annotations: { [IMPERSONATE_ANNOTATION]: 'yes' } }), ParseReason.InvalidSpec],
    [cluster({ annotations: { [MODE_ANNOTATION]: 'passthrough', [IMPERSONATE_ANNOTATION]: 'true' } }), ParseReason.InvalidSpec],
    [cluster({ spec: { externalKubeAPIEnabled: 'true' } }), ParseReason.InvalidSpec],
    [cluster({ spec: { connection: [] } }), ParseReason.InvalidSpec],
    [cluster({ meta: { uid: 'UPPER' } }), ParseReason.InvalidSpec],
    [cluster({ meta: { name: 'x'.repeat(64) } }), ParseReason.InvalidSpec],
    [cluster({ meta: { annotations: 'nope' } }), ParseReason.InvalidSpec]
  ]
  for (const [obj, reason] of cases) {
    const p = parseCluster(obj)
    assert.equal(p.ok, false, JSON.stringify(obj).slice(0, 200))
    if (!p.ok) {
      assert.equal(p.reason, reason, p.message)
      assert.ok(p.message.length < 400, 'messages stay short even for huge values')
    }
  }
  for (const v of [null, undefined, 1, 'x', [], {}, { metadata: 5 }]) assert.equal(parseCluster(v).ok, false)
})

test('__proto__ and constructor in annotation JSON are plain keys; nothing reaches a prototype', () => {
  const json = '{"__proto__": {"polluted": "yes"}, "constructor": "c"}'
  const p = parseCluster(cluster({ annotations: { [SERVICE_ANNOTATIONS_ANNOTATION]: json } }))
  assert.ok(p.ok)
  assert.ok(!(p.serviceAnnotations instanceof Map) && 'error' in p.serviceAnnotations, 'an object value is refused')
  // `__proto__` is not a valid annotation key (it starts with '_'): refused by name, not by accident.
  const proto = parseCluster(cluster({ annotations: { [SERVICE_ANNOTATIONS_ANNOTATION]: '{"__proto__": "x"}' } }))
  assert.ok(proto.ok)
  assert.ok(!(proto.serviceAnnotations instanceof Map) && /__proto__/.test(proto.serviceAnnotations.error))
  const ok = parseCluster(cluster({ annotations: { [SERVICE_ANNOTATIONS_ANNOTATION]: '{"constructor": "y", "hasOwnProperty": "z"}' } }))
  assert.ok(ok.ok)
  assert.ok(ok.serviceAnnotations instanceof Map)
  assert.equal(ok.serviceAnnotations.get('constructor'), 'y')
  assert.equal(ok.serviceAnnotations.get('hasOwnProperty'), 'z')
  assert.equal(({} as Record<string, unknown>).polluted, undefined)
  // An own __proto__ key in the object itself (JSON.parse makes one) is just ignored.
  const hostile = JSON.parse('{"metadata": {"name": "east", "uid": "' + UID + '", "resourceVersion": "1", "__proto__": {"deletionTimestamp": "x"}}, "spec": {"connection": {"type": "proxy"}}}') as unknown
  const h = parseCluster(hostile)
  assert.ok(h.ok)
  assert.equal(h.deleting, false)
})

test('oversized annotations become an error value, not a crash or a huge Map', () => {
  const big = JSON.stringify(Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`k${i}`, 'v'])))
  const p = parseCluster(cluster({ annotations: { [SERVICE_ANNOTATIONS_ANNOTATION]: big, [AGENTS_ANNOTATION]: 'x'.repeat(1024 * 1024) } }))
  assert.ok(p.ok)
  assert.ok(!(p.serviceAnnotations instanceof Map))
  assert.deepEqual(p.agents, [])
  const many = JSON.stringify(Array.from({ length: 100 }, (_, i) => ({ id: `a${i}`, remote: 'r', since: 's' })))
  const q = parseCluster(cluster({ annotations: { [AGENTS_ANNOTATION]: many } }))
  assert.ok(q.ok)
  assert.equal(q.agents.length, ClusterLimits.maxAgents)
})

test('arbitrary JSON never makes parseCluster throw', () => {
  fc.assert(fc.property(fc.jsonValue(), (v) => {
    const p = parseCluster(v)
    assert.equal(typeof p.ok, 'boolean')
  }), { numRuns: 2000 })
  // Arbitrary values in every field Tower reads.
  const field = fc.oneof(fc.jsonValue(), fc.constant(undefined), fc.string({ maxLength: 2000 }), fc.double(), fc.integer())
  fc.assert(fc.property(field, field, field, field, field, field, field, (port, type, token, mode, imp, svc, conds) => {
    const obj = cluster({ connection: { kubernetesAPIServerPort: port, type, token }, annotations: { [MODE_ANNOTATION]: mode, [IMPERSONATE_ANNOTATION]: imp, [SERVICE_ANNOTATIONS_ANNOTATION]: svc }, status: { conditions: conds } })
    const p = parseCluster(obj)
    if (p.ok && p.type === 'proxy') {
      assert.ok(p.port === undefined || (Number.isInteger(p.port) && p.port >= 1 && p.port <= 65535))
      assert.ok(p.mode === 'proxy' || p.mode === 'passthrough')
    }
  }), { numRuns: 2000 })
})
