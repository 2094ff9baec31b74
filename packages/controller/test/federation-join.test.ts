// The pure parts of the federation join: the objects Tower writes, the validation of what goes into them,
// and the create-or-replace step (with in-memory ops standing in for the API). The real KubeFed and
// Karmada runs are test/federation/*.test.ts.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { karmadaClusterFor, kubeFedClusterFor, validateMember, type FederationMember } from '../src/federation/index.ts'
import { MAX_UPSERT_ATTEMPTS, upsert, type ObjectMeta } from '../src/federation/member.ts'

const CA = '-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUe2Vh\n-----END CERTIFICATE-----\n'
const member: FederationMember = { name: 'prod-eu', apiEndpoint: 'https://tower.example.com:31000', caPem: CA, token: 'tct_abc.def', tokenId: 'id-1' }

test('kubeFedClusterFor: Tower endpoint, Tower CA as base64 bytes, the Secret, the token id annotation', () => {
  const c = kubeFedClusterFor(member, 'kube-federation-system')
  assert.equal(c.spec.apiEndpoint, member.apiEndpoint)
  assert.equal(Buffer.from(c.spec.caBundle, 'base64').toString(), CA)
  assert.deepEqual(c.spec.secretRef, { name: 'tower-prod-eu' })
  assert.equal(c.metadata.namespace, 'kube-federation-system')
  assert.equal(c.metadata.labels?.['app.kubernetes.io/managed-by'], 'tower')
  assert.equal(c.metadata.annotations?.['tower.kubesphere.io/caller-token-id'], 'id-1')
})

test('karmadaClusterFor: push mode, secretRef with namespace', () => {
  const c = karmadaClusterFor(member, 'karmada-cluster')
  assert.equal(c.spec.syncMode, 'Push')
  assert.deepEqual(c.spec.secretRef, { namespace: 'karmada-cluster', name: 'tower-prod-eu' })
  assert.equal(c.metadata.namespace, undefined, 'cluster-scoped')
})

test('validateMember refuses what must not reach a cluster object', () => {
  const bad: Array<Partial<FederationMember>> = [
    { name: 'Prod' }, { name: '__proto__' },
    { apiEndpoint: 'http://tower:1' }, { apiEndpoint: 'https://u:p@tower:1' }, { apiEndpoint: 'https://tower:1/?x=1' }, { apiEndpoint: 'not a url' },
    { caPem: 'garbage' }, { caPem: CA + 'x'.repeat(70_000) },
    { token: '' }, { token: 'a b' }, { token: 'x'.repeat(5000) },
    { tokenId: '../x' }
  ]
  for (const b of bad) {
    assert.throws(() => validateMember({ ...member, ...b }), (err: any) => err.code === 'TOWER_ERR_INVALID_ARG', JSON.stringify(b).slice(0, 80))
  }
  validateMember(member)
})

interface Obj { metadata?: ObjectMeta, v?: number }

function memoryOps (initial: Obj | undefined): { store: { obj: Obj | undefined }, ops: Parameters<typeof upsert<Obj>>[0] } {
  const store = { obj: initial }
  const conflict = Object.assign(new Error('exists'), { code: 409 })
  return {
    store,
    ops: {
      what: 'Thing x',
      read: async () => { if (store.obj === undefined) throw Object.assign(new Error('nf'), { code: 404 }); return store.obj },
      create: async (body) => { if (store.obj !== undefined) throw conflict; store.obj = { ...body, metadata: { ...body.metadata, resourceVersion: '1' } } },
      replace: async (body) => {
        if (body.metadata?.resourceVersion !== store.obj?.metadata?.resourceVersion) throw Object.assign(new Error('stale'), { code: 409 })
        store.obj = { ...body, metadata: { ...body.metadata, resourceVersion: String(Number(body.metadata?.resourceVersion) + 1) } }
      }
    }
  }
}

const managed = { labels: { 'app.kubernetes.io/managed-by': 'tower' } }

test('upsert creates, then replaces with the current resourceVersion', async () => {
  const { store, ops } = memoryOps(undefined)
  assert.deepEqual(await upsert(ops, { metadata: { name: 'x', ...managed }, v: 1 }), { created: true })
  const second = await upsert(ops, { metadata: { name: 'x', ...managed }, v: 2 })
  assert.equal(second.created, false)
  assert.equal(second.previous?.v, 1)
  assert.equal(store.obj?.v, 2)
  assert.equal(store.obj?.metadata?.resourceVersion, '2')
})

test('upsert re-reads and retries when another writer changes the object between its read and its replace', async () => {
  const { store, ops } = memoryOps({ metadata: { name: 'x', ...managed, resourceVersion: '1' }, v: 1 })
  const read = ops.read
  let reads = 0
  // The federation controller writes status right after each of the first two reads.
  ops.read = async () => {
    const seen = await read()
    if (++reads <= 2) store.obj = { ...seen, metadata: { ...seen.metadata, resourceVersion: String(Number(seen.metadata?.resourceVersion) + 1) } }
    return seen
  }
  const out = await upsert(ops, { metadata: { name: 'x', ...managed }, v: 2 })
  assert.equal(out.created, false)
  assert.equal(reads, 3)
  assert.equal(store.obj?.v, 2)
  assert.equal(store.obj?.metadata?.resourceVersion, '4')
})

test('upsert gives up after MAX_UPSERT_ATTEMPTS conflicting replaces, with the count in the error', async () => {
  const { store, ops } = memoryOps({ metadata: { name: 'x', ...managed, resourceVersion: '1' }, v: 1 })
  let replaces = 0
  ops.replace = async () => { replaces++; throw Object.assign(new Error('modified'), { code: 409 }) }
  await assert.rejects(upsert(ops, { metadata: { name: 'x', ...managed }, v: 2 }), (err: any) =>
    err.code === 'TOWER_ERR_FEDERATION_API' && err.status === 409 && new RegExp(`${MAX_UPSERT_ATTEMPTS} attempts`).test(err.message))
  assert.equal(replaces, MAX_UPSERT_ATTEMPTS)
  assert.equal(store.obj?.v, 1)
})

test('upsert never takes over an object Tower did not make', async () => {
  const { store, ops } = memoryOps({ metadata: { name: 'x', resourceVersion: '7' }, v: 0 })
  await assert.rejects(upsert(ops, { metadata: { name: 'x', ...managed }, v: 1 }), (err: any) => err.code === 'TOWER_ERR_FEDERATION_CONFLICT')
  assert.equal(store.obj?.v, 0)
})

test('upsert wraps API failures into TOWER_ERR_FEDERATION_API with the status', async () => {
  const { ops } = memoryOps(undefined)
  ops.create = async () => { throw Object.assign(new Error('forbidden'), { code: 403, body: JSON.stringify({ message: 'kubefedclusters is forbidden' }) }) }
  await assert.rejects(upsert(ops, { metadata: { name: 'x', ...managed } }), (err: any) =>
    err.code === 'TOWER_ERR_FEDERATION_API' && err.status === 403 && /forbidden/.test(err.message))
})
