/**
 * The changes the registry's writes make to a per-cluster Secret, as pure
 * functions of a SecretDraft: SecretWriter.update runs them again on a
 * fresh read after every 409, so each must be computable from the draft
 * alone (plus its arguments) and throw its coded error from there.
 */
import { InvalidArgumentError } from '@tower/mux'
import { MAX_CALLER_TOKENS, MAX_REVOKED_SERIALS, UnknownCallerTokenError, type CallerTokenRecord } from '@tower/server'
import { JoinSecretKey, REVOKED_SERIALS_KEY, ROTATED_AT_ANNOTATION } from './names.ts'
import { callerTokenValue, readCallersSecret, type SecretDraft } from './secrets.ts'

/** Join Secret: `token` becomes current; the old one stays as previous-token until now + graceMs (0: dropped at once). */
export function rotateJoinDraft (d: SecretDraft, token: string, graceMs: number, now = Date.now()): void {
  const old = d.data.get(JoinSecretKey.token)
  if (graceMs > 0 && old !== undefined) {
    d.data.set(JoinSecretKey.previousToken, old)
    d.data.set(JoinSecretKey.previousUntil, new Date(now + graceMs).toISOString())
  } else {
    d.data.delete(JoinSecretKey.previousToken)
    d.data.delete(JoinSecretKey.previousUntil)
  }
  d.data.set(JoinSecretKey.token, token)
  d.annotations.set(ROTATED_AT_ANNOTATION, new Date(now).toISOString())
}

function tokenIds (d: SecretDraft): string[] {
  return [...d.data.keys()].filter((k) => k !== REVOKED_SERIALS_KEY)
}

/** Callers Secret: adds one caller token (by its hash); InvalidArgumentError past MAX_CALLER_TOKENS. */
export function addCallerTokenDraft (d: SecretDraft, cluster: string, t: CallerTokenRecord): void {
  if (tokenIds(d).length >= MAX_CALLER_TOKENS) throw new InvalidArgumentError(`cluster "${cluster}" already has ${MAX_CALLER_TOKENS} caller tokens: revoke some first`)
  d.data.set(t.id, callerTokenValue(t))
}

/** Callers Secret: removes the token `id`, or all with `*`; returns how many. TOWER_ERR_UNKNOWN_TOKEN for an id not there. */
export function revokeCallerTokensDraft (d: SecretDraft, cluster: string, id: string): number {
  const ids = tokenIds(d).filter((k) => id === '*' || k === id)
  if (id !== '*' && ids.length === 0) throw new UnknownCallerTokenError(cluster, String(id))
  for (const k of ids) d.data.delete(k)
  return ids.length
}

/** Callers Secret: adds a normalised serial; false when it was there. InvalidArgumentError past MAX_REVOKED_SERIALS. */
export function revokeSerialDraft (d: SecretDraft, cluster: string, hex: string): boolean {
  // The stored list, validated the way reads see it (a junk list is rewritten from its valid part).
  const current = new Set(readCallersSecret({ data: { [REVOKED_SERIALS_KEY]: Buffer.from(d.data.get(REVOKED_SERIALS_KEY) ?? '[]').toString('base64') } }).revokedSerials)
  if (current.has(hex)) return false
  if (current.size >= MAX_REVOKED_SERIALS) throw new InvalidArgumentError(`cluster "${cluster}" already has ${MAX_REVOKED_SERIALS} revoked serials: re-add the cluster to invalidate every certificate at once`)
  current.add(hex)
  d.data.set(REVOKED_SERIALS_KEY, JSON.stringify([...current]))
  return true
}
