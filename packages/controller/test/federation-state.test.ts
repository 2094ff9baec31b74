import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { federatedCondition, readinessOf, rotationAt, tokenState, wantsFederation } from '../src/federation-state.ts'
import { staleReason } from '../src/federation-sync.ts'

const DAY = 86_400_000
const ready = (status: string, reason?: string, message?: string): object => ({ status: { conditions: [{ type: 'Ready', status, reason, message }] } })

describe('federation state: Ready -> Federated', () => {
  test('KubeFed alone: its Ready status and reason', () => {
    const t = readinessOf('kubefed', ready('True', 'ClusterReady', '/healthz responded with ok'))
    assert.deepEqual(federatedCondition([t]), { type: 'Federated', status: 'True', reason: 'ClusterReady', message: 'KubeFed: Ready=True (ClusterReady: /healthz responded with ok)' })
    const f = federatedCondition([readinessOf('kubefed', ready('False', 'ClusterNotReachable', 'timeout'))])
    assert.equal(f.status, 'False')
    assert.equal(f.reason, 'ClusterNotReachable')
  })

  test('both targets: True only when both are Ready; False wins over Unknown; the reason is the failing one', () => {
    const kf = readinessOf('kubefed', ready('True', 'ClusterReady'))
    const km = readinessOf('karmada', ready('True', 'ClusterReady'))
    assert.equal(federatedCondition([kf, km]).status, 'True')
    assert.equal(federatedCondition([kf, km]).reason, 'Joined')
    const down = readinessOf('karmada', ready('False', 'ClusterNotReachable'))
    const c = federatedCondition([kf, down])
    assert.equal(c.status, 'False')
    assert.equal(c.reason, 'ClusterNotReachable')
    assert.match(c.message, /KubeFed: Ready=True.*; Karmada: Ready=False/)
    assert.equal(federatedCondition([readinessOf('kubefed', ready('Unknown')), down]).status, 'False')
    assert.equal(federatedCondition([readinessOf('kubefed', ready('Unknown')), km]).status, 'Unknown')
  })

  test('no object yet: Unknown Joining; an object without Ready: Unknown WaitingForReady', () => {
    assert.deepEqual([federatedCondition([readinessOf('kubefed', undefined)]).status, federatedCondition([readinessOf('kubefed', undefined)]).reason], ['Unknown', 'Joining'])
    const w = federatedCondition([readinessOf('karmada', { status: { conditions: [] } })])
    assert.deepEqual([w.status, w.reason], ['Unknown', 'WaitingForReady'])
  })

  test('hostile status: odd types, a bad reason, a huge message, __proto__ keys never crash and are bounded', () => {
    for (const obj of [{ status: 'x' }, { status: { conditions: 'x' } }, { status: { conditions: [null, 7, { type: 'Ready', status: 42 }] } }, JSON.parse('{"__proto__":{"status":1}}')]) {
      const c = federatedCondition([readinessOf('kubefed', obj)])
      assert.equal(c.status, 'Unknown')
    }
    const r = readinessOf('kubefed', ready('False', 'bad reason with spaces', 'm'.repeat(1_000_000)))
    assert.equal(r.reason, undefined)
    assert.ok(r.message!.length <= 300)
    assert.equal(federatedCondition([r]).reason, 'NotReady')
  })
})

describe('federation state: joinFederation and staleness', () => {
  test('only an explicit false opts out', () => {
    assert.equal(wantsFederation({ spec: { joinFederation: false } }), false)
    assert.equal(wantsFederation({ spec: { joinFederation: true } }), true)
    assert.equal(wantsFederation({ spec: {} }), true)
    assert.equal(wantsFederation({ spec: { joinFederation: 'false' } }), true)
    assert.equal(wantsFederation(null), true)
  })

  test('an object naming another endpoint or CA, or not labelled, is stale', () => {
    const m = { name: 'a', apiEndpoint: 'https://mc-a.tower-system.svc:6443', caPem: 'PEM' }
    const ok = { metadata: { labels: { 'app.kubernetes.io/managed-by': 'tower' } }, spec: { apiEndpoint: m.apiEndpoint, caBundle: Buffer.from('PEM').toString('base64') } }
    assert.equal(staleReason('kubefed', ok, m), undefined)
    assert.equal(staleReason('kubefed', undefined, m), 'not joined yet')
    assert.equal(staleReason('kubefed', { ...ok, spec: { ...ok.spec, apiEndpoint: 'https://x:1' } }, m), 'apiEndpoint differs')
    assert.equal(staleReason('kubefed', { ...ok, spec: { ...ok.spec, caBundle: 'other' } }, m), 'caBundle differs')
    assert.equal(staleReason('karmada', { ...ok, spec: { apiEndpoint: m.apiEndpoint } }, m), undefined)
    assert.equal(staleReason('kubefed', { ...ok, metadata: {} }, m), 'not labelled as Tower\'s')
  })
})

describe('federation state: token rotation timing', () => {
  const created = Date.parse('2026-12-01T00:00:00Z')
  const tokens = [{ id: 'abc', createdAt: new Date(created).toISOString() }]

  test('rotated at two thirds of the TTL, not before', () => {
    assert.equal(rotationAt(created, 30 * DAY), created + 20 * DAY)
    const early = tokenState('abc', tokens, 30 * DAY, created + 20 * DAY - 1)
    assert.deepEqual(early, { due: false, inMs: 1 })
    assert.equal(tokenState('abc', tokens, 30 * DAY, created + 20 * DAY).due, true)
    assert.equal(tokenState('abc', tokens, 30_000, created + 19_999).due, false)
    assert.equal(tokenState('abc', tokens, 30_000, created + 20_000).due, true)
  })

  test('a token the registry no longer lists (revoked), none at all, or one without a time is due at once', () => {
    assert.equal(tokenState('zzz', tokens, 30 * DAY, created).due, true)
    assert.equal(tokenState(undefined, tokens, 30 * DAY, created).due, true)
    assert.equal(tokenState('abc', [{ id: 'abc', createdAt: 'never' }], 30 * DAY, created).due, true)
  })
})
