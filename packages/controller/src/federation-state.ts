/**
 * The pure decisions of the federation join (federation-sync.ts does the
 * I/O): whether a Cluster wants to be joined, whether the object in the
 * federation control plane still says what Tower would write, when its
 * caller token is due for rotation, and what the Cluster's Federated
 * condition says given the Ready conditions KubeFed and Karmada report.
 *
 * Federated with both targets on: True only when both are Ready=True;
 * otherwise False when either says False, else Unknown; the reason is the
 * first not-ready target's, and the message names both.
 */
import type { DesiredCondition, ConditionStatus } from './conditions.ts'
import { ConditionType, FederationReason } from './names.ts'

/** A federation control plane Tower joins clusters to. */
export type FederationTarget = 'kubefed' | 'karmada'

/** What a target's object says about a member: its Ready condition, or that there is no object. */
export interface TargetReadiness {
  target: FederationTarget
  /** Undefined while the object does not exist (not joined yet). */
  status?: ConditionStatus
  reason?: string
  message?: string
}

const TARGET_NAME: Record<FederationTarget, string> = { kubefed: 'KubeFed', karmada: 'Karmada' }
/** A Kubernetes condition reason: CamelCase-ish, bounded. Anything else is replaced. */
const REASON = /^[A-Za-z]([A-Za-z0-9_,:]{0,126}[A-Za-z0-9_])?$/
/** Longest message taken from a federation object (they are hostile input too). */
const MAX_MESSAGE = 300

function record (v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? v as Record<string, unknown> : {}
}

/**
 * spec.joinFederation of a Cluster: an explicit `false` opts it out; absent
 * (or anything but false) means join, since --join-kubefed/--join-karmada
 * are opt-in already. KubeSphere's console writes true.
 */
export function wantsFederation (raw: unknown): boolean {
  const spec = record(record(raw).spec)
  return !(Object.hasOwn(spec, 'joinFederation') && spec.joinFederation === false)
}

/** The Ready condition of a KubeFedCluster or Karmada Cluster read back from the API (untrusted shape). */
export function readinessOf (target: FederationTarget, obj: unknown): TargetReadiness {
  if (obj === undefined || obj === null) return { target }
  const conditions = record(record(obj).status).conditions
  const list = Array.isArray(conditions) ? conditions.slice(0, 32) : []
  const ready = list.map(record).find((c) => c.type === 'Ready')
  if (ready === undefined) return { target, status: 'Unknown', reason: FederationReason.WaitingForReady, message: `${TARGET_NAME[target]} has not reported Ready yet` }
  const status: ConditionStatus = ready.status === 'True' || ready.status === 'False' ? ready.status : 'Unknown'
  const reason = typeof ready.reason === 'string' && REASON.test(ready.reason) ? ready.reason : undefined
  const message = typeof ready.message === 'string' ? ready.message.slice(0, MAX_MESSAGE) : ''
  return { target, status, reason, message }
}

function describe (r: TargetReadiness): string {
  if (r.status === undefined) return `${TARGET_NAME[r.target]}: not joined yet`
  const why = [r.reason, r.message].filter((s) => s !== undefined && s !== '').join(': ')
  return `${TARGET_NAME[r.target]}: Ready=${r.status}${why !== '' ? ` (${why})` : ''}`
}

/** The Federated condition from every enabled target's readiness (see the module comment). */
export function federatedCondition (targets: readonly TargetReadiness[]): DesiredCondition {
  const type = ConditionType.Federated
  const message = targets.map(describe).join('; ')
  if (targets.length > 0 && targets.every((t) => t.status === 'True')) {
    return { type, status: 'True', reason: targets.length === 1 ? (targets[0]!.reason ?? FederationReason.Joined) : FederationReason.Joined, message }
  }
  const notJoined = targets.find((t) => t.status === undefined)
  const failed = targets.find((t) => t.status === 'False')
  if (failed !== undefined) return { type, status: 'False', reason: failed.reason ?? FederationReason.NotReady, message }
  if (notJoined !== undefined) return { type, status: 'Unknown', reason: FederationReason.Joining, message }
  const unknown = targets.find((t) => t.status === 'Unknown')
  return { type, status: 'Unknown', reason: unknown?.reason ?? FederationReason.WaitingForReady, message }
}

/** When a caller token issued at `createdAtMs` is replaced: at two thirds of `ttlMs`. */
export function rotationAt (createdAtMs: number, ttlMs: number): number {
  return createdAtMs + Math.floor(ttlMs * 2 / 3)
}

/** Its expiry, written beside it so a reader sees how long it lives. */
export function expiryAt (createdAtMs: number, ttlMs: number): number {
  return createdAtMs + ttlMs
}

/** The state of a joined member's token, from the registry's list of the cluster's caller tokens. */
export type TokenState = { due: false, inMs: number } | { due: true, why: string }

/**
 * Whether the token `id` (from the federation object's annotation) must be
 * replaced now: it is unknown to the registry (revoked, or never stored),
 * has no parseable creation time, or is past two thirds of `ttlMs`.
 */
export function tokenState (id: string | undefined, tokens: ReadonlyArray<{ id: string, createdAt: string }>, ttlMs: number, nowMs: number): TokenState {
  if (id === undefined) return { due: true, why: 'no caller token recorded' }
  const t = tokens.find((x) => x.id === id)
  if (t === undefined) return { due: true, why: `caller token ${id} is no longer valid` }
  const created = Date.parse(t.createdAt)
  if (Number.isNaN(created)) return { due: true, why: `caller token ${id} has no creation time` }
  const at = rotationAt(created, ttlMs)
  if (nowMs >= at) return { due: true, why: `caller token ${id} is past two thirds of its ${Math.round(ttlMs / 1000)} s lifetime` }
  return { due: false, inMs: at - nowMs }
}
