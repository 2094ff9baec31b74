// buildRecord: a cluster is served only when its Cluster, port entry and join Secret agree (name and uid),
// and the record carries what the Secrets say (hashes only), validated.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { V1ConfigMap, V1Secret } from '@kubernetes/client-node'
import { authenticateAgentIn, hashToken, verifyCallerTokenIn } from '@tower/server'
import { buildRecord, type RecordSources } from '../src/cluster-record.ts'
import { CLUSTER_UID_ANNOTATION, JoinSecretKey, MODE_ANNOTATION, REVOKED_SERIALS_KEY, ROTATED_AT_ANNOTATION } from '../src/names.ts'
import { readCallersSecret } from '../src/secrets.ts'

const UID = '0b5a2c1e-6f7d-4a3b-9c8d-1e2f3a4b5c6d'
const OTHER_UID = 'ffffffff-6f7d-4a3b-9c8d-1e2f3a4b5c6d'
const TOKEN = 'tower-agent_abcdefghijklmnopqrstuvwxyz0123456789'
const b64 = (s: string): string => Buffer.from(s).toString('base64')

function sources (over: Partial<RecordSources> & { port?: number, uid?: string, annotations?: Record<string, string> } = {}): RecordSources {
  const uid = over.uid ?? UID
  return {
    cluster: over.cluster ?? {
      metadata: { name: 'east', uid, resourceVersion: '7', creationTimestamp: '2026-12-01T10:00:00Z', annotations: over.annotations ?? {} },
      spec: { connection: { type: 'proxy', kubernetesAPIServerPort: over.port ?? 6001 } }
    },
    joinSecret: 'joinSecret' in over
      ? over.joinSecret
      : { metadata: { name: 'tower-join-east', annotations: { [CLUSTER_UID_ANNOTATION]: UID, [ROTATED_AT_ANNOTATION]: '2026-12-01T11:00:00Z' } }, data: { [JoinSecretKey.token]: b64(TOKEN) } },
    callersSecret: over.callersSecret,
    portsConfigMap: 'portsConfigMap' in over ? over.portsConfigMap : { data: { 6001: `east/${UID}` } } as V1ConfigMap
  }
}

test('a complete cluster becomes a record with the token hash, not the token', () => {
  const r = buildRecord(sources({ annotations: { [MODE_ANNOTATION]: 'passthrough' } }))
  assert.ok(r.ok)
  assert.equal(r.record.name, 'east')
  assert.equal(r.record.uid, UID)
  assert.equal(r.record.port, 6001)
  assert.equal(r.record.mode, 'passthrough')
  assert.equal(r.record.agentTokenHash, hashToken(TOKEN))
  assert.equal(r.record.tokenRotatedAt, '2026-12-01T11:00:00Z')
  assert.equal(r.record.createdAt, '2026-12-01T10:00:00Z')
  assert.ok(!JSON.stringify(r.record).includes(TOKEN))
  assert.equal(authenticateAgentIn(r.record, 'east', TOKEN, Date.now()).ok, true)
  assert.equal(authenticateAgentIn(r.record, 'east', TOKEN + 'x', Date.now()).ok, false)
})

test('half-reconciled clusters are not served', () => {
  assert.equal(buildRecord(sources({ portsConfigMap: undefined })).ok, false, 'no ports entry')
  assert.equal(buildRecord(sources({ portsConfigMap: { data: { 6001: `east/${OTHER_UID}` } } })).ok, false, 'ports entry of an earlier uid')
  assert.equal(buildRecord(sources({ portsConfigMap: { data: { 6001: `west/${UID}` } } })).ok, false, 'port of another cluster')
  assert.equal(buildRecord(sources({ joinSecret: undefined })).ok, false, 'no join Secret')
  const stale = sources({ uid: OTHER_UID, portsConfigMap: { data: { 6001: `east/${OTHER_UID}` } } })
  const r = buildRecord(stale)
  assert.equal(r.ok, false, 'join Secret of an earlier Cluster')
  if (!r.ok) assert.match(r.why, /earlier Cluster/)
  const deleting = sources()
  ;(deleting.cluster as { metadata: Record<string, unknown> }).metadata.deletionTimestamp = '2026-12-01T12:00:00Z'
  assert.equal(buildRecord(deleting).ok, false, 'being deleted')
  const pending = buildRecord(sources({ portsConfigMap: undefined }), false)
  assert.ok(pending.ok, 'with requirePort false a pending port is port 0')
  assert.equal(pending.record.port, 0)
})

test('a join Secret with a bad token is no join Secret; previous token with its grace', () => {
  const bad: V1Secret = { metadata: { annotations: {} }, data: { [JoinSecretKey.token]: b64('short') } }
  assert.equal(buildRecord(sources({ joinSecret: bad })).ok, false)
  const until = new Date(Date.now() + 60_000).toISOString()
  const rotated: V1Secret = {
    metadata: { annotations: { [CLUSTER_UID_ANNOTATION]: UID } },
    data: { [JoinSecretKey.token]: b64(TOKEN), [JoinSecretKey.previousToken]: b64(TOKEN + 'old'), [JoinSecretKey.previousUntil]: b64(until) }
  }
  const r = buildRecord(sources({ joinSecret: rotated }))
  assert.ok(r.ok)
  assert.deepEqual(r.record.previousAgentToken, { hash: hashToken(TOKEN + 'old'), until })
  assert.equal(authenticateAgentIn(r.record, 'east', TOKEN + 'old', Date.now()).ok, true)
  assert.equal(authenticateAgentIn(r.record, 'east', TOKEN + 'old', Date.now() + 120_000).ok, false)
})

test('caller tokens and serials come validated from the callers Secret; junk entries are dropped', () => {
  const good = { hash: hashToken('tower-caller_x'), user: 'alice', groups: ['devs'], createdAt: '2026-12-01T10:00:00Z' }
  const callers: V1Secret = {
    metadata: { annotations: { [CLUSTER_UID_ANNOTATION]: UID } },
    data: {
      a1b2c3d4: b64(JSON.stringify(good)),
      badhash: b64(JSON.stringify({ ...good, hash: 'md5:00' })),
      badgroups: b64(JSON.stringify({ ...good, groups: [1] })),
      notjson: b64('{'),
      __proto__x: b64(JSON.stringify(good)),
      [REVOKED_SERIALS_KEY]: b64(JSON.stringify(['0a', 'ZZ', 5, '0a']))
    }
  }
  const parsed = readCallersSecret(callers)
  assert.deepEqual(parsed.callerTokens.map((t) => t.id), ['a1b2c3d4'])
  assert.deepEqual(parsed.revokedSerials, ['0a'])
  const r = buildRecord(sources({ callersSecret: callers }))
  assert.ok(r.ok)
  assert.deepEqual(verifyCallerTokenIn(r.record, 'tower-caller_x'), { user: 'alice', groups: ['devs'] })
  // The callers Secret of an earlier Cluster of the name grants nothing.
  const old: V1Secret = { ...callers, metadata: { annotations: { [CLUSTER_UID_ANNOTATION]: OTHER_UID } } }
  const r2 = buildRecord(sources({ callersSecret: old }))
  assert.ok(r2.ok)
  assert.equal(verifyCallerTokenIn(r2.record, 'tower-caller_x'), undefined)
  assert.deepEqual(r2.record.revokedSerials, [])
})
