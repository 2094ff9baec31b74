import assert from 'node:assert/strict'
import { once } from 'node:events'
import { describe, test } from 'node:test'
import { ApiException, type V1Lease } from '@kubernetes/client-node'
import type { KubeContext } from '../src/kube-context.ts'
import { LeaderElector } from '../src/leader-election.ts'

/**
 * An in-memory Lease store with the apiserver's optimistic concurrency (409 on a stale resourceVersion,
 * 409 AlreadyExists on create) and a switch that makes every call fail like an unreachable apiserver.
 * The real apiserver is in test/e2e/controller-reconcile.test.ts; this one lets a test cut it off.
 */
class FakeLeases {
  lease: V1Lease | undefined
  version = 0
  down = false
  /** Every call hangs (a black-holed apiserver) instead of failing. */
  hang = false
  writes: string[] = []
  async #check (): Promise<void> {
    if (this.hang) await new Promise(() => {})
    if (this.down) throw new Error('connect ECONNREFUSED')
  }

  readNamespacedLease = async (): Promise<V1Lease> => {
    await this.#check()
    if (this.lease === undefined) throw new ApiException(404, 'not found', {}, {})
    return structuredClone(this.lease)
  }

  createNamespacedLease = async ({ body }: { body: V1Lease }): Promise<V1Lease> => {
    await this.#check()
    if (this.lease !== undefined) throw new ApiException(409, 'exists', {}, {})
    return this.#store(body)
  }

  replaceNamespacedLease = async ({ body }: { body: V1Lease }): Promise<V1Lease> => {
    await this.#check()
    if (this.lease === undefined) throw new ApiException(404, 'not found', {}, {})
    if (body.metadata?.resourceVersion !== this.lease.metadata?.resourceVersion) throw new ApiException(409, 'conflict', {}, {})
    return this.#store(body)
  }

  #store (body: V1Lease): V1Lease {
    this.version++
    this.lease = structuredClone({ ...body, metadata: { ...body.metadata, resourceVersion: String(this.version) } })
    this.writes.push(body.spec?.holderIdentity ?? '')
    return structuredClone(this.lease)
  }
}

function context (leases: FakeLeases): KubeContext {
  return { namespace: 'tower-system', coordination: leases } as unknown as KubeContext
}

describe('LeaderElector', () => {
  test('one of two candidates leads; the lease records holder, duration and transitions', async () => {
    const leases = new FakeLeases()
    const a = new LeaderElector({ context: context(leases), identity: 'a', leaseDurationMs: 3000 })
    const b = new LeaderElector({ context: context(leases), identity: 'b', leaseDurationMs: 3000 })
    const leading = Promise.race([once(a, 'leading').then(() => a), once(b, 'leading').then(() => b)])
    a.start()
    b.start()
    const leader = await leading
    const other = leader === a ? b : a
    assert.equal(leader.leading, true)
    assert.equal(other.leading, false)
    assert.equal(leases.lease?.spec?.holderIdentity, leader === a ? 'a' : 'b')
    assert.equal(leases.lease?.spec?.leaseDurationSeconds, 3)
    assert.equal(leases.lease?.spec?.leaseTransitions, 0)
    // A renewal or two later, still the same leader and no flapping.
    await new Promise((resolve) => setTimeout(resolve, 1500))
    assert.equal(leader.leading, true)
    assert.equal(other.leading, false)
    assert.ok(leases.writes.every((w) => w === leases.writes[0]), `only the leader wrote: ${leases.writes.join(',')}`)

    // stop() releases: the other takes over at once, long before the 3 s expiry.
    const t0 = Date.now()
    const took = once(other, 'leading')
    await leader.stop()
    assert.equal(leases.lease?.spec?.holderIdentity, '')
    await took
    assert.ok(Date.now() - t0 < 2000, `took over in ${Date.now() - t0} ms`)
    assert.equal(leases.lease?.spec?.leaseTransitions, 1)
    await other.stop()
  })

  test('a holder whose renewals fail steps down within 2/3 of the lease duration', async () => {
    const leases = new FakeLeases()
    const a = new LeaderElector({ context: context(leases), identity: 'a', leaseDurationMs: 3000 })
    a.start()
    await once(a, 'leading')
    leases.down = true
    const t0 = Date.now()
    await once(a, 'lost')
    const t = Date.now() - t0
    assert.equal(a.leading, false)
    // Renew deadline 2 s (2/3 of 3 s), checked on the 1 s renew period: before anyone else may take over at 3 s.
    assert.ok(t >= 1000 && t < 3000, `stepped down after ${t} ms`)
    leases.down = false
    await once(a, 'leading')
    await a.stop()
  })

  test('a holder whose renewals hang (black-holed apiserver) steps down too', async () => {
    const leases = new FakeLeases()
    const a = new LeaderElector({ context: context(leases), identity: 'a', leaseDurationMs: 3000 })
    a.start()
    await once(a, 'leading')
    leases.hang = true
    const t0 = Date.now()
    await once(a, 'lost')
    const t = Date.now() - t0
    assert.ok(t < 3500, `stepped down after ${t} ms`)
    await a.stop()
  })

  test('a lease held by someone else is taken only after it expires unrenewed', async () => {
    const leases = new FakeLeases()
    leases.lease = { metadata: { name: 'tower-controller', resourceVersion: '0' }, spec: { holderIdentity: 'ghost', leaseDurationSeconds: 3, leaseTransitions: 4 } }
    const a = new LeaderElector({ context: context(leases), identity: 'a', leaseDurationMs: 3000 })
    const t0 = Date.now()
    a.start()
    await once(a, 'leading')
    const t = Date.now() - t0
    assert.ok(t >= 3000, `waited ${t} ms for the ghost's lease to expire`)
    assert.equal(leases.lease?.spec?.leaseTransitions, 5)
    await a.stop()
  })

  test('options are validated', () => {
    const ctx = context(new FakeLeases())
    assert.throws(() => new LeaderElector({ context: ctx, identity: '' }), { code: 'TOWER_ERR_INVALID_ARG' })
    assert.throws(() => new LeaderElector({ context: ctx, identity: 'a', leaseDurationMs: 1500 }), { code: 'TOWER_ERR_INVALID_ARG' })
  })
})
