import { test } from 'node:test'
import assert from 'node:assert/strict'
import { metricsVerb, requestInfo } from '../src/request-verb.ts'
import { REDACTED, redactURI, setAuditIdHeader } from '../src/audit.ts'

test('verb and object of resource requests, as kube-apiserver derives them', () => {
  const cases: Array<[string, string, boolean, string, Record<string, string> | undefined]> = [
    ['GET', '/api/v1/namespaces/default/pods', false, 'list', { resource: 'pods', namespace: 'default', apiGroup: '', apiVersion: 'v1' }],
    ['GET', '/api/v1/namespaces/default/pods/web-0', false, 'get', { resource: 'pods', namespace: 'default', name: 'web-0', apiGroup: '', apiVersion: 'v1' }],
    ['GET', '/api/v1/namespaces/default/pods?watch=true&resourceVersion=5', false, 'watch', { resource: 'pods', namespace: 'default', apiGroup: '', apiVersion: 'v1' }],
    ['GET', '/api/v1/watch/namespaces/default/pods', false, 'watch', { resource: 'pods', namespace: 'default', apiGroup: '', apiVersion: 'v1' }],
    ['POST', '/apis/apps/v1/namespaces/ns1/deployments', false, 'create', { resource: 'deployments', namespace: 'ns1', apiGroup: 'apps', apiVersion: 'v1' }],
    ['PUT', '/apis/apps/v1/namespaces/ns1/deployments/d/status', false, 'update', { resource: 'deployments', namespace: 'ns1', name: 'd', subresource: 'status', apiGroup: 'apps', apiVersion: 'v1' }],
    ['PATCH', '/api/v1/nodes/n1', false, 'patch', { resource: 'nodes', name: 'n1', apiGroup: '', apiVersion: 'v1' }],
    ['DELETE', '/api/v1/namespaces/default/pods/p', false, 'delete', { resource: 'pods', namespace: 'default', name: 'p', apiGroup: '', apiVersion: 'v1' }],
    ['DELETE', '/api/v1/namespaces/default/pods', false, 'deletecollection', { resource: 'pods', namespace: 'default', apiGroup: '', apiVersion: 'v1' }],
    ['GET', '/api/v1/namespaces/kube-system', false, 'get', { resource: 'namespaces', namespace: 'kube-system', name: 'kube-system', apiGroup: '', apiVersion: 'v1' }],
    ['PUT', '/api/v1/namespaces/x/finalize', false, 'update', { resource: 'namespaces', namespace: 'x', name: 'x', subresource: 'finalize', apiGroup: '', apiVersion: 'v1' }],
    ['POST', '/api/v1/namespaces/default/pods/p/exec?command=sh', true, 'connect', { resource: 'pods', namespace: 'default', name: 'p', subresource: 'exec', apiGroup: '', apiVersion: 'v1' }],
    ['GET', '/api/v1/namespaces/default/pods/p/portforward', true, 'connect', { resource: 'pods', namespace: 'default', name: 'p', subresource: 'portforward', apiGroup: '', apiVersion: 'v1' }],
    ['GET', '/api/v1/namespaces/default/services/s/proxy/a/b', false, 'get', { resource: 'services', namespace: 'default', name: 's', subresource: 'proxy', apiGroup: '', apiVersion: 'v1' }],
    ['GET', '/version', false, 'get', undefined],
    ['POST', '/openapi/v3', false, 'post', undefined],
    ['BREW', '/api/v1/pods', false, 'other', { resource: 'pods', apiGroup: '', apiVersion: 'v1' }],
    ['BREW', '/healthz', false, 'other', undefined]
  ]
  for (const [method, url, upgrade, verb, objectRef] of cases) {
    assert.deepEqual(requestInfo(method, url, upgrade), objectRef === undefined ? { verb } : { verb, objectRef }, `${method} ${url}`)
  }
})

test('hostile targets: no object, a fixed verb, no throw', () => {
  assert.deepEqual(requestInfo('GET', `/api/v1/namespaces/${'n'.repeat(300)}/pods`, false), { verb: 'list' })
  assert.deepEqual(requestInfo('GET', '/api/v1/' + 'a/'.repeat(3000), false), { verb: 'other' })
  assert.deepEqual(requestInfo(undefined, undefined, false), { verb: 'other' })
  assert.deepEqual(requestInfo('GET', '/api/v1/namespaces/__proto__/constructor', false).objectRef?.resource, 'constructor')
})

test('the metrics verb is one of the fixed label set', () => {
  assert.equal(metricsVerb(requestInfo('GET', '/api/v1/namespaces/d/services/s/proxy/x', false)), 'proxy')
  assert.equal(metricsVerb(requestInfo('POST', '/api/v1/namespaces/d/pods/p/exec', true)), 'connect')
  assert.equal(metricsVerb(requestInfo('GET', '/version', false)), 'get')
  assert.equal(metricsVerb(requestInfo('POST', '/openapi/v3', false)), 'other')
  assert.equal(metricsVerb(requestInfo('GET', '/api/v1/pods?watch=1', false)), 'watch')
})

test('secret query parameters and bearer-looking values are redacted; the rest is kept', () => {
  const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln'
  assert.equal(redactURI('/api/v1/pods?token=abc&limit=5'), `/api/v1/pods?token=${REDACTED}&limit=5`)
  assert.equal(redactURI('/x?ACCESS_TOKEN=a&Password=b&secret=c&fieldSelector=a%3Db'), `/x?ACCESS_TOKEN=${REDACTED}&Password=${REDACTED}&secret=${REDACTED}&fieldSelector=a%3Db`)
  assert.equal(redactURI(`/x?q=${jwt}`), `/x?q=${REDACTED}`)
  assert.equal(redactURI('/x?auth=Bearer%20abcdef'), `/x?auth=${REDACTED}`)
  assert.equal(redactURI('/x?c=tower-caller_AAAA'), `/x?c=${REDACTED}`)
  assert.equal(redactURI('/x?%74oken=zzz'), `/x?%74oken=${REDACTED}`)
  assert.equal(redactURI('/api/v1/pods'), '/api/v1/pods')
  const long = redactURI('/x?' + 'a'.repeat(10_000))
  assert.equal(long.length, 2048)
  assert.ok(long.endsWith('…'))
  for (const secret of ['abc', 'zzz', jwt, 'abcdef', 'AAAA']) {
    assert.ok(!redactURI(`/p?token=${secret}&x=${jwt}&password=${secret}`).includes(secret))
  }
})

test('a caller-sent Audit-ID is replaced by Tower\'s', () => {
  const headers = ['Host', 'h', 'audit-id', 'forged', 'Accept', '*/*', 'AUDIT-ID', 'forged2']
  setAuditIdHeader(headers, 'mine')
  assert.deepEqual(headers, ['Host', 'h', 'Accept', '*/*', 'Audit-ID', 'mine'])
})
