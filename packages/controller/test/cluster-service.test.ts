import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { parseCluster } from '../src/cluster-resource.ts'
import { desiredService, externalEndpoint, serviceMatches, updatedService } from '../src/cluster-service.ts'

function cluster (extra: { annotations?: Record<string, string>, external?: boolean } = {}) {
  const p = parseCluster({
    apiVersion: 'cluster.kubesphere.io/v1alpha1',
    kind: 'Cluster',
    metadata: { name: 'm1', uid: '11111111-1111-1111-1111-111111111111', resourceVersion: '5', annotations: extra.annotations },
    spec: { connection: { type: 'proxy' }, externalKubeAPIEnabled: extra.external }
  })
  assert.equal(p.ok, true, JSON.stringify(p))
  return p as Extract<typeof p, { ok: true }>
}

describe('Service mc-<name>', () => {
  test('ClusterIP, 6443 to the cluster port, no selector (the replicas\' EndpointSlices route it), owned by the Cluster', () => {
    const s = desiredService(cluster(), 6005, 'tower-system')
    assert.equal(s.metadata?.name, 'mc-m1')
    assert.equal(s.spec?.type, 'ClusterIP')
    assert.deepEqual(s.spec?.ports, [{ name: 'kube-api', protocol: 'TCP', port: 6443, targetPort: 6005 }])
    assert.equal(s.spec?.selector, undefined)
    assert.equal(s.metadata?.ownerReferences?.[0]?.uid, '11111111-1111-1111-1111-111111111111')
    assert.equal(serviceMatches(s, s), true)
    assert.equal(serviceMatches(s, desiredService(cluster(), 6006, 'tower-system')), false)
  })

  test('external: LoadBalancer with the annotations; invalid annotations keep ClusterIP; __proto__ is just a key', () => {
    const ann = { 'tower.kubesphere.io/service-annotations': JSON.stringify({ 'service.beta.kubernetes.io/aws-load-balancer-type': 'nlb' }) }
    const s = desiredService(cluster({ external: true, annotations: ann }), 6005, 'ns')
    assert.equal(s.spec?.type, 'LoadBalancer')
    assert.equal(s.metadata?.annotations?.['service.beta.kubernetes.io/aws-load-balancer-type'], 'nlb')
    const bad = desiredService(cluster({ external: true, annotations: { 'tower.kubesphere.io/service-annotations': '{"__proto__":{"x":"y"}}' } }), 6005, 'ns')
    assert.equal(bad.spec?.type, 'ClusterIP')
    assert.equal(Object.getPrototypeOf(bad.metadata?.annotations), Object.prototype)
    assert.equal(({} as Record<string, unknown>).x, undefined)
  })

  test('a Service written with a selector (before the EndpointSlice routing) loses it on update', () => {
    const desired = desiredService(cluster(), 6005, 'tower-system')
    const old = { ...desired, metadata: { ...desired.metadata, resourceVersion: '9' }, spec: { ...desired.spec, clusterIP: '10.0.0.9', selector: { 'app.kubernetes.io/name': 'tower-server' } } }
    assert.equal(serviceMatches(old, desired), false)
    const updated = updatedService(old, desired)
    assert.equal(updated.spec?.selector, undefined)
    assert.equal(updated.spec?.clusterIP, '10.0.0.9')
    assert.equal(serviceMatches(updated, desired), true)
  })

  test('back to ClusterIP drops LoadBalancer-only fields and keeps the clusterIP', () => {
    const lb = { ...desiredService(cluster({ external: true }), 6005, 'ns') }
    lb.spec = { ...lb.spec, clusterIP: '10.0.0.9', externalTrafficPolicy: 'Cluster', allocateLoadBalancerNodePorts: true }
    const body = updatedService(lb, desiredService(cluster(), 6005, 'ns'))
    assert.equal(body.spec?.type, 'ClusterIP')
    assert.equal(body.spec?.clusterIP, '10.0.0.9')
    assert.equal(body.spec?.externalTrafficPolicy, undefined)
    assert.equal(body.spec?.allocateLoadBalancerNodePorts, undefined)
  })

  test('the external endpoint comes from the first valid ingress entry', () => {
    const svc = (ingress: unknown) => ({ spec: { type: 'LoadBalancer' }, status: { loadBalancer: { ingress } } }) as never
    assert.equal(externalEndpoint(svc([{ ip: '203.0.113.7' }])), 'https://203.0.113.7:6443')
    assert.equal(externalEndpoint(svc([{ ip: '999.1.1.1' }, { hostname: 'lb.example.com' }])), 'https://lb.example.com:6443')
    assert.equal(externalEndpoint(svc([{ ip: '2001:db8::1' }])), 'https://[2001:db8::1]:6443')
    assert.equal(externalEndpoint(svc([{ hostname: 'evil/path' }, 'x', null])), undefined)
    assert.equal(externalEndpoint(svc('nope')), undefined)
    assert.equal(externalEndpoint({ spec: { type: 'ClusterIP' }, status: { loadBalancer: { ingress: [{ ip: '203.0.113.7' }] } } }), undefined)
  })
})
