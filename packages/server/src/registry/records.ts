/**
 * The read-side rules over cluster records that every registry backend
 * applies the same way: which name may be looked up, which join token a
 * connecting agent presented, whether the credential it authenticated with
 * still holds, and which caller token matches. A backend only has to keep
 * its records (the parsed state.json, or the informers' caches) in a Map or a
 * null-prototype object and call these.
 *
 * After a rotation the old join token may stay valid for a grace period; once
 * the grace ends (or at once without one) agents that used it are
 * disconnected, because their credential no longer passes credentialValidIn.
 */
import { isClusterName } from '@tower/pki'
import type { CallerIdentity, CallerTokenInfo } from './api.ts'
import type { ClusterRecord } from '../state-store.ts'
import { tokenMatches } from './tokens.ts'

/** Why an agent was refused; logged by the server, never sent to the agent. */
export type AgentRefusal = 'invalid-name' | 'unknown-cluster' | 'wrong-token'

/** Result of ClusterRegistry.authenticateAgent. */
export type AgentAuthResult = { ok: true, credential: string } | { ok: false, why: AgentRefusal }

/**
 * The record called `name` in `records`, or undefined. The one cluster-name
 * rule runs first and a plain object is only read through Object.hasOwn, so
 * a hostile name (`__proto__`, `constructor`, a non-string) never reaches
 * Object.prototype and never throws.
 */
export function findCluster (records: ReadonlyMap<string, ClusterRecord> | Record<string, ClusterRecord>, name: unknown): ClusterRecord | undefined {
  if (!isClusterName(name)) return undefined
  if (records instanceof Map) return records.get(name)
  const plain = records as Record<string, ClusterRecord>
  return Object.hasOwn(plain, name) ? plain[name] : undefined
}

/**
 * The opaque id of one token of one registration: the cluster's uid (or its
 * creation time, for clusters from before uids) and a prefix of the token's
 * hash. It changes when the token is rotated or the cluster is re-added.
 */
export function credentialId (c: ClusterRecord, hash: string): string {
  return `${c.uid ?? c.createdAt}/${hash.slice('sha256:'.length, 'sha256:'.length + 16)}`
}

/** True while the previous token of `c` is in its grace period at `now` (ms since epoch). */
export function previousTokenLive (c: ClusterRecord, now: number): boolean {
  return c.previousAgentToken !== undefined && Date.parse(c.previousAgentToken.until) > now
}

/** Which credential of `c` the token is, if any. Both hashes are compared, so timing does not tell which matched. */
export function matchAgentToken (c: ClusterRecord, token: string, now: number): string | undefined {
  const current = tokenMatches(token, c.agentTokenHash)
  const previous = c.previousAgentToken !== undefined && tokenMatches(token, c.previousAgentToken.hash)
  if (current) return credentialId(c, c.agentTokenHash)
  if (previous && previousTokenLive(c, now)) return credentialId(c, c.previousAgentToken!.hash)
  return undefined
}

/**
 * Checks an agent's join token against the record found for `name` (pass
 * `findCluster(...)`'s result). Every refusal looks the same to the agent;
 * `why` is for the server's log.
 */
export function authenticateAgentIn (record: ClusterRecord | undefined, name: unknown, token: unknown, now: number): AgentAuthResult {
  if (!isClusterName(name)) return { ok: false, why: 'invalid-name' }
  if (record === undefined) return { ok: false, why: 'unknown-cluster' }
  const credential = typeof token === 'string' ? matchAgentToken(record, token, now) : undefined
  return credential === undefined ? { ok: false, why: 'wrong-token' } : { ok: true, credential }
}

/** True when `credential` (from matchAgentToken) still opens cluster `c` at `now`. */
export function credentialValid (c: ClusterRecord, credential: string, now: number): boolean {
  if (credential === credentialId(c, c.agentTokenHash)) return true
  return previousTokenLive(c, now) && credential === credentialId(c, c.previousAgentToken!.hash)
}

/** credentialValid for a record that may be gone: false then (the cluster was removed or re-added). */
export function credentialValidIn (record: ClusterRecord | undefined, credential: unknown, now: number): boolean {
  return record !== undefined && typeof credential === 'string' && credentialValid(record, credential, now)
}

/**
 * The identity of the caller token among the record's caller tokens, or
 * undefined. Every entry is compared, so the time taken does not reveal
 * which one matched, or how many there are before it.
 */
export function verifyCallerTokenIn (record: ClusterRecord | undefined, token: unknown): CallerIdentity | undefined {
  if (record === undefined || typeof token !== 'string') return undefined
  let found: CallerIdentity | undefined
  for (const t of record.callerTokens) {
    if (tokenMatches(token, t.hash)) found = { user: t.user, groups: [...t.groups] }
  }
  return found
}

/** The caller tokens of a record as listed: copies, never their hashes. */
export function callerTokensOf (record: ClusterRecord): CallerTokenInfo[] {
  return record.callerTokens.map((t) => ({ id: t.id, user: t.user, groups: [...t.groups], createdAt: t.createdAt }))
}

/** The earliest end of a grace period after `now` among `clusters`, in ms since epoch, or undefined. */
export function nextGraceEnd (clusters: Iterable<ClusterRecord>, now: number): number | undefined {
  let next: number | undefined
  for (const c of clusters) {
    if (!previousTokenLive(c, now)) continue
    const until = Date.parse(c.previousAgentToken!.until)
    if (next === undefined || until < next) next = until
  }
  return next
}
