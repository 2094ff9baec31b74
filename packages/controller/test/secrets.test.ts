// The Secret-side pieces of the kubernetes backend: the mutations each write re-runs after a 409, the
// join Secret reader, resourceVersion ordering, and API errors that never carry a response body.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { notOlder } from '../src/cache.ts'
import { kubeApiError } from '../src/errors.ts'
import { JoinSecretKey, REVOKED_SERIALS_KEY, ROTATED_AT_ANNOTATION } from '../src/names.ts'
import { addCallerTokenDraft, revokeCallerTokensDraft, revokeSerialDraft, rotateJoinDraft } from '../src/secret-drafts.ts'
import { readJoinSecret, type SecretDraft } from '../src/secrets.ts'

const TOKEN = 'tower-agent_abcdefghijklmnopqrstuvwxyz0123456789'
const draft = (data: Record<string, string> = {}): SecretDraft => ({ data: new Map(Object.entries(data)), annotations: new Map(), exists: true })
const b64 = (s: string): string => Buffer.from(s).toString('base64')

test('rotation keeps the old token for the grace only, and reads back as previous', () => {
  const d = draft({ [JoinSecretKey.token]: TOKEN })
  rotateJoinDraft(d, TOKEN + 'new', 5000, Date.parse('2026-12-01T10:00:00Z'))
  assert.equal(d.data.get(JoinSecretKey.token), TOKEN + 'new')
  assert.equal(d.data.get(JoinSecretKey.previousToken), TOKEN)
  assert.equal(d.data.get(JoinSecretKey.previousUntil), '2026-12-01T10:00:05.000Z')
  assert.equal(d.annotations.get(ROTATED_AT_ANNOTATION), '2026-12-01T10:00:00.000Z')
  const read = readJoinSecret({ metadata: { annotations: Object.fromEntries(d.annotations) }, data: Object.fromEntries([...d.data].map(([k, v]) => [k, b64(v)])) })
  assert.deepEqual(read?.previous, { token: TOKEN, until: '2026-12-01T10:00:05.000Z' })
  assert.equal(read?.rotatedAt, '2026-12-01T10:00:00.000Z')
  rotateJoinDraft(d, TOKEN + 'third', 0)
  assert.equal(d.data.has(JoinSecretKey.previousToken), false, 'no grace: the previous token is dropped')
  assert.equal(d.data.has(JoinSecretKey.previousUntil), false)
})

test('join Secret: a token that is short, not text or too long is no token', () => {
  for (const bad of ['short', 'has space inside it, long', 'x'.repeat(2000), '\u0000'.repeat(20)]) {
    assert.equal(readJoinSecret({ data: { [JoinSecretKey.token]: b64(bad) } }), undefined, JSON.stringify(bad.slice(0, 20)))
  }
  assert.equal(readJoinSecret({ data: { [JoinSecretKey.token]: 42 as unknown as string } }), undefined)
  assert.equal(readJoinSecret({ data: JSON.parse('{"__proto__": "x"}') as Record<string, string> }), undefined)
  assert.equal(readJoinSecret(undefined), undefined)
})

test('caller tokens: revoke by id or all; an unknown id is TOWER_ERR_UNKNOWN_TOKEN; serials are kept without junk', () => {
  const d = draft({ [REVOKED_SERIALS_KEY]: '["0a", "BAD", 7]' })
  addCallerTokenDraft(d, 'east', { id: 'aa11', hash: 'sha256:' + '0'.repeat(64), user: 'u', groups: [], createdAt: '2026-12-01T10:00:00Z' })
  addCallerTokenDraft(d, 'east', { id: 'bb22', hash: 'sha256:' + '1'.repeat(64), user: 'v', groups: [], createdAt: '2026-12-01T10:00:00Z' })
  assert.throws(() => revokeCallerTokensDraft(d, 'east', 'nope'), { code: 'TOWER_ERR_UNKNOWN_TOKEN' })
  assert.throws(() => revokeCallerTokensDraft(d, 'east', REVOKED_SERIALS_KEY), { code: 'TOWER_ERR_UNKNOWN_TOKEN' }, 'the serials key is not a token')
  assert.equal(revokeCallerTokensDraft(d, 'east', 'aa11'), 1)
  assert.equal(revokeCallerTokensDraft(d, 'east', '*'), 1)
  assert.equal(revokeCallerTokensDraft(d, 'east', '*'), 0)
  assert.equal(revokeSerialDraft(d, 'east', '0a'), false, 'already revoked')
  assert.equal(revokeSerialDraft(d, 'east', 'ff'), true)
  assert.deepEqual(JSON.parse(d.data.get(REVOKED_SERIALS_KEY)!), ['0a', 'ff'], 'junk entries are dropped on rewrite')
})

test('resourceVersion order: integers compare as numbers, anything else only by equality', () => {
  assert.equal(notOlder('10', '9'), true)
  assert.equal(notOlder('9', '10'), false)
  assert.equal(notOlder('abc', 'abc'), true)
  assert.equal(notOlder('abd', 'abc'), false)
  assert.equal(notOlder(undefined, '1'), false)
})

test('API errors keep the status and reason, never the body', () => {
  const body = JSON.stringify({ kind: 'Status', reason: 'Conflict', message: 'secret data: c2VjcmV0LXRva2Vu' })
  const err = kubeApiError('writing Secret tower-join-east', { code: 409, body, message: `HTTP-Code: 409 Body: ${body} Headers: {"authorization":"Bearer x"}` })
  assert.equal(err.code, 'TOWER_ERR_KUBE_API')
  assert.equal((err as unknown as { status: number }).status, 409)
  assert.equal((err as unknown as { reason: string }).reason, 'Conflict')
  assert.doesNotMatch(err.message, /c2VjcmV0|Bearer|Body/)
  assert.equal(err.cause, undefined)
  const odd = kubeApiError('x', { code: 500, body: '{"reason": "<script>" }' })
  assert.equal((odd as unknown as { reason: string }).reason, '', 'a reason that is not a word is dropped')
  assert.equal((kubeApiError('x', new Error('ECONNREFUSED')) as unknown as { status: number }).status, 0)
})
