/**
 * Agent join tokens of one cluster record: which token a connecting agent
 * presented, and whether the credential it authenticated with still holds.
 * After a rotation the old token may stay valid for a grace period; once the
 * grace ends (or at once without one) agents that used it are disconnected.
 */
import type { ClusterRecord } from './state-store.ts'
import { tokenMatches } from './tokens.ts'

/** Why an agent was refused; logged by the server, never sent to the agent. */
export type AgentRefusal = 'invalid-name' | 'unknown-cluster' | 'wrong-token'

/** Result of Registry.authenticateAgent. */
export type AgentAuthResult = { ok: true, credential: string } | { ok: false, why: AgentRefusal }

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

/** True when `credential` (from matchAgentToken) still opens cluster `c` at `now`. */
export function credentialValid (c: ClusterRecord, credential: string, now: number): boolean {
  if (credential === credentialId(c, c.agentTokenHash)) return true
  return previousTokenLive(c, now) && credential === credentialId(c, c.previousAgentToken!.hash)
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
