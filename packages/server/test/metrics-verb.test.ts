/**
 * The `verb` and `code` labels: Kubernetes verbs from method and path, and a
 * fixed set whatever a caller sends.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { codeLabel, METRICS_VERBS, metricsVerb, requestInfo } from '../src/index.ts'

const kubernetesVerb = (method: string, url: string, upgrade: boolean): string => metricsVerb(requestInfo(method, url, upgrade))

test('verbs from method and Kubernetes path', () => {
  const cases: Array<[string, string, boolean, string]> = [
    ['GET', '/api/v1/namespaces/default/pods', false, 'list'],
    ['GET', '/api/v1/namespaces/default/pods/p1', false, 'get'],
    ['GET', '/api/v1/namespaces/default/pods?watch=true&resourceVersion=5', false, 'watch'],
    ['GET', '/api/v1/watch/namespaces/default/pods', false, 'watch'],
    ['GET', '/apis/apps/v1/deployments', false, 'list'],
    ['GET', '/apis/apps/v1/namespaces/ns/deployments/d/status', false, 'get'],
    ['GET', '/api/v1/namespaces', false, 'list'],
    ['GET', '/api/v1/namespaces/kube-system', false, 'get'],
    ['PUT', '/api/v1/namespaces/kube-system/finalize', false, 'update'],
    ['GET', '/api/v1', false, 'other'],
    ['GET', '/version', false, 'get'],
    ['POST', '/version', false, 'other'],
    ['POST', '/api/v1/namespaces/default/configmaps', false, 'create'],
    ['PUT', '/api/v1/namespaces/default/configmaps/c', false, 'update'],
    ['PATCH', '/api/v1/namespaces/default/configmaps/c', false, 'patch'],
    ['DELETE', '/api/v1/namespaces/default/configmaps/c', false, 'delete'],
    ['DELETE', '/api/v1/namespaces/default/configmaps', false, 'deletecollection'],
    ['POST', '/api/v1/namespaces/default/pods/p/exec?command=sh', true, 'connect'],
    ['GET', '/api/v1/namespaces/default/pods/p/portforward', true, 'connect'],
    ['POST', '/api/v1/namespaces/default/pods/p/attach', false, 'connect'],
    ['GET', '/api/v1/namespaces/default/services/s/proxy/metrics', false, 'proxy'],
    ['GET', '/api/v1/namespaces/default/pods?watch=1', true, 'watch'],
    ['OPTIONS', '/api/v1/pods', false, 'other']
  ]
  for (const [method, url, upgrade, verb] of cases) assert.equal(kubernetesVerb(method, url, upgrade), verb, `${method} ${url}`)
})

test('any method and path give a verb of the fixed set; any status a bounded code label', () => {
  const verbs = new Set<string>(METRICS_VERBS)
  fc.assert(fc.property(fc.string(), fc.string({ maxLength: 5000 }), fc.boolean(), (method, url, upgrade) => {
    assert.ok(verbs.has(kubernetesVerb(method, url, upgrade)))
  }), { seed: 11, numRuns: 2000 })
  const codes = new Set<string>()
  for (let s = -5; s < 1000; s++) codes.add(codeLabel(s))
  codes.add(codeLabel(undefined))
  codes.add(codeLabel(Number.NaN))
  assert.ok(codes.size <= 40, `${codes.size} code labels`)
  assert.equal(codeLabel(200), '200')
  assert.equal(codeLabel(299), '2xx')
  assert.equal(codeLabel(undefined), 'aborted')
  assert.equal(codeLabel(1000), 'aborted')
})
