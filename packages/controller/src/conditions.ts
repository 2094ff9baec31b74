/**
 * Cluster conditions as KubeSphere writes them (`status.conditions[]`), as
 * pure functions. `lastTransitionTime` moves only when `status` changes;
 * `lastUpdateTime` moves when status, reason or message changes; an
 * unchanged condition keeps both, so re-reconciling writes nothing.
 */

import type { ClusterCondition } from './cluster-resource.ts'

/** A condition status. */
export type ConditionStatus = ClusterCondition['status']

/** What a reconcile wants a condition to say; times are filled in by {@link setCondition}. */
export interface DesiredCondition {
  type: string
  status: ConditionStatus
  reason: string
  message: string
}

/** Longest message written, in characters; longer ones are cut (a message may quote hostile input). */
export const MAX_CONDITION_MESSAGE = 1024

/** The condition of `type`, or undefined. */
export function findCondition (list: readonly ClusterCondition[], type: string): ClusterCondition | undefined {
  return list.find((c) => c.type === type)
}

/**
 * `list` with `desired` set, at time `now` (RFC 3339). Returns the same array
 * when nothing changed, so callers can compare by identity or with
 * {@link conditionsEqual}.
 */
export function setCondition (list: readonly ClusterCondition[], desired: DesiredCondition, now: string): readonly ClusterCondition[] {
  const message = desired.message.length > MAX_CONDITION_MESSAGE ? desired.message.slice(0, MAX_CONDITION_MESSAGE - 1) + '…' : desired.message
  const i = list.findIndex((c) => c.type === desired.type)
  const old = i === -1 ? undefined : list[i]
  if (old !== undefined && old.status === desired.status && old.reason === desired.reason && old.message === message) return list
  const next: ClusterCondition = {
    type: desired.type,
    status: desired.status,
    lastUpdateTime: now,
    lastTransitionTime: old !== undefined && old.status === desired.status && old.lastTransitionTime !== undefined ? old.lastTransitionTime : now,
    reason: desired.reason,
    message
  }
  if (i === -1) return [...list, next]
  const copy = [...list]
  copy[i] = next
  return copy
}

/** `list` without the condition of `type` (the same array when it has none). */
export function removeCondition (list: readonly ClusterCondition[], type: string): readonly ClusterCondition[] {
  return list.some((c) => c.type === type) ? list.filter((c) => c.type !== type) : list
}

/** True when both lists hold the same conditions, field by field, in any order. */
export function conditionsEqual (a: readonly ClusterCondition[], b: readonly ClusterCondition[]): boolean {
  if (a === b) return true
  if (a.length !== b.length) return false
  return a.every((x) => {
    const y = b.find((c) => c.type === x.type)
    return y !== undefined && y.status === x.status && y.reason === x.reason && y.message === x.message &&
      y.lastUpdateTime === x.lastUpdateTime && y.lastTransitionTime === x.lastTransitionTime
  })
}

/** Now as RFC 3339 without fractional seconds, as metav1.Time serialises. */
export function conditionTime (date: Date = new Date()): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z')
}
