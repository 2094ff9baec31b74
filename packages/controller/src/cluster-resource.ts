/**
 * The typed view of KubeSphere's Cluster (cluster.kubesphere.io/v1alpha1)
 * as Tower reads it, and the one function that turns an untrusted object
 * from the API into that view.
 *
 * Anyone who can write a Cluster can put anything in it, so parseCluster
 * treats every field as hostile: it never throws, checks every type, size
 * and range, parses the JSON annotations into Maps (so `__proto__` is just
 * a key) and reports a problem as a reason/message pair the reconciler turns
 * into a condition. Clusters Tower does not manage (`direct`) are parsed
 * only as far as their name and type: a bad Tower annotation on them is not
 * Tower's business, and nothing is ever written to them.
 */
import { isClusterName, isClusterUid } from '@tower/pki'
import type { ClusterMode } from '@tower/server'
import {
  AGENTS_ANNOTATION, FINALIZER, IMPERSONATE_ANNOTATION, MODE_ANNOTATION, ParseReason, SERVICE_ANNOTATIONS_ANNOTATION
} from './names.ts'

/** One connected agent as the agents annotation lists it (the server's AnnotatedAgent). */
export interface AnnotatedAgent {
  id: string
  remote: string
  /** ISO time the session was established. */
  since: string
}

/** One entry of status.conditions, KubeSphere's shape. */
export interface ClusterCondition {
  type: string
  status: 'True' | 'False' | 'Unknown'
  /** RFC 3339 time. */
  lastUpdateTime?: string
  /** RFC 3339 time; changes only when status changes. */
  lastTransitionTime?: string
  reason?: string
  message?: string
}

/** A Cluster as Tower understands it, or why it cannot. */
export type ParsedCluster = {
  ok: true
  name: string
  uid: string
  resourceVersion: string
  /** spec.connection.type; undefined when absent (Initialized=False, ConnectionTypeMissing). */
  type: 'proxy' | 'direct' | undefined
  mode: ClusterMode
  impersonate: boolean
  /** spec.connection.kubernetesAPIServerPort, 1-65535; undefined when unset or 0. */
  port: number | undefined
  /** spec.connection.token when KubeSphere's console set one: the join token to keep. */
  specToken: string | undefined
  externalKubeAPIEnabled: boolean
  /** The service-annotations annotation, or why it is invalid (the Service then stays ClusterIP). */
  serviceAnnotations: Map<string, string> | { error: string }
  /** metadata.deletionTimestamp is set. */
  deleting: boolean
  hasFinalizer: boolean
  /** The valid entries of status.conditions (invalid ones are dropped). */
  conditions: ClusterCondition[]
  /** metadata.creationTimestamp (RFC 3339), or '' when absent. */
  createdAt: string
  /** The agents annotation (connected agents as the leader last wrote them); empty when absent or invalid. */
  agents: AnnotatedAgent[]
  /** status.kubernetesVersion, when a valid one is set. */
  kubernetesVersion: string | undefined
  /** The object as it came from the API, for writes that must send it back. */
  raw: object
} | {
  ok: false
  name: string | undefined
  reason: string
  message: string
}

/** Limits on what parseCluster accepts. */
export const ClusterLimits = {
  /** Longest resourceVersion / uid / timestamp, in characters. */
  shortString: 128,
  /** Join token set in the spec: visible ASCII, this many characters at most. */
  maxTokenLength: 1024,
  /** …and at least this many (a shorter one is guessable). */
  minTokenLength: 16,
  /** Largest service-annotations annotation, in characters. */
  maxServiceAnnotationsLength: 64 * 1024,
  /** Most entries in service-annotations. */
  maxServiceAnnotations: 64,
  /** Longest annotation key (253-character prefix, '/', 63-character name). */
  maxAnnotationKey: 317,
  /** Largest agents annotation, in characters. */
  maxAgentsAnnotationLength: 16 * 1024,
  /** Agents kept from the annotation. */
  maxAgents: 16,
  /** Conditions kept from status. */
  maxConditions: 32,
  /** Longest condition message, in characters. */
  maxConditionMessage: 32 * 1024,
  /** Longest status.kubernetesVersion. */
  maxVersion: 64
} as const

const VISIBLE_ASCII = /^[\x21-\x7e]+$/
const ANNOTATION_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/

/** A plain JSON object (not an array, not null). */
function isRecord (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** Reads an own property only: an input key never reaches the prototype. */
function own (o: Record<string, unknown>, key: string): unknown {
  return Object.hasOwn(o, key) ? o[key] : undefined
}

function shortString (v: unknown): v is string {
  return typeof v === 'string' && v.length <= ClusterLimits.shortString
}

class Invalid extends Error {
  readonly reason: string
  constructor (reason: string, message: string) {
    super(message)
    this.reason = reason
  }
}

function fail (message: string, reason: string = ParseReason.InvalidSpec): never {
  throw new Invalid(reason, message)
}

/** Turns an object from the API (or anywhere) into a ParsedCluster; never throws. */
export function parseCluster (obj: unknown): ParsedCluster {
  let name: string | undefined
  try {
    if (!isRecord(obj)) return { ok: false, name: undefined, reason: ParseReason.InvalidSpec, message: 'not an object' }
    const meta = own(obj, 'metadata')
    if (!isRecord(meta)) return { ok: false, name: undefined, reason: ParseReason.InvalidSpec, message: 'metadata is not an object' }
    const rawName = own(meta, 'name')
    if (typeof rawName === 'string' && rawName.length <= 253) name = rawName
    return parseValid(obj, meta, name)
  } catch (err) {
    if (err instanceof Invalid) return { ok: false, name, reason: err.reason, message: err.message }
    // A getter or proxy in a hand-built object; API objects are plain JSON.
    return { ok: false, name, reason: ParseReason.InvalidSpec, message: 'unreadable object' }
  }
}

function parseValid (obj: Record<string, unknown>, meta: Record<string, unknown>, name: string | undefined): ParsedCluster {
  if (name === undefined) fail('metadata.name is missing or too long')
  const spec = optionalRecord(own(obj, 'spec'), 'spec')
  const connection = optionalRecord(own(spec, 'connection'), 'spec.connection')
  const type = connectionType(own(connection, 'type'))
  const uid = own(meta, 'uid')
  if (!isClusterUid(uid)) fail('metadata.uid is missing or not a Kubernetes uid')
  const resourceVersion = own(meta, 'resourceVersion')
  if (!shortString(resourceVersion) || resourceVersion === '') fail('metadata.resourceVersion is missing or too long')
  const created = own(meta, 'creationTimestamp')
  const createdAt = shortString(created) ? created : ''
  const deleting = own(meta, 'deletionTimestamp') !== undefined && own(meta, 'deletionTimestamp') !== null
  const finalizers = own(meta, 'finalizers')
  const hasFinalizer = Array.isArray(finalizers) && finalizers.includes(FINALIZER)
  const annotations = optionalRecord(own(meta, 'annotations'), 'metadata.annotations')
  const status = isRecord(own(obj, 'status')) ? own(obj, 'status') as Record<string, unknown> : {}
  const common = {
    ok: true as const, name, uid, resourceVersion, type, deleting, hasFinalizer, createdAt, raw: obj,
    conditions: conditions(own(status, 'conditions'))
  }
  if (type !== 'proxy') {
    // Not Tower's cluster: defaults for the rest, and no verdict on its Tower fields.
    return {
      ...common, mode: 'proxy', impersonate: false, port: undefined, specToken: undefined, externalKubeAPIEnabled: false,
      serviceAnnotations: new Map(), agents: [], kubernetesVersion: undefined
    }
  }
  if (!isClusterName(name)) fail(`metadata.name ${JSON.stringify(name)} is not a DNS label of 1-63 characters, which Tower needs for its Secrets, Service and certificates`)
  const mode = modeOf(own(annotations, MODE_ANNOTATION))
  const impersonate = impersonateOf(own(annotations, IMPERSONATE_ANNOTATION))
  if (impersonate && mode !== 'proxy') fail(`${IMPERSONATE_ANNOTATION} needs ${MODE_ANNOTATION} proxy: passthrough cannot see the request`)
  const external = own(spec, 'externalKubeAPIEnabled')
  if (external !== undefined && external !== null && typeof external !== 'boolean') fail('spec.externalKubeAPIEnabled must be true or false')
  return {
    ...common,
    mode,
    impersonate,
    port: portOf(own(connection, 'kubernetesAPIServerPort')),
    specToken: tokenOf(own(connection, 'token')),
    externalKubeAPIEnabled: external === true,
    serviceAnnotations: serviceAnnotationsOf(own(annotations, SERVICE_ANNOTATIONS_ANNOTATION)),
    agents: agentsOf(own(annotations, AGENTS_ANNOTATION)),
    kubernetesVersion: versionOf(own(status, 'kubernetesVersion'))
  }
}

function optionalRecord (v: unknown, field: string): Record<string, unknown> {
  if (v === undefined || v === null) return {}
  if (!isRecord(v)) fail(`${field} must be an object`)
  return v
}

function connectionType (v: unknown): 'proxy' | 'direct' | undefined {
  if (v === undefined || v === null || v === '') return undefined
  if (v === 'proxy' || v === 'direct') return v
  fail(`spec.connection.type must be proxy or direct, got ${describe(v)}`)
}

function modeOf (v: unknown): ClusterMode {
  if (v === undefined || v === null) return 'proxy'
  if (v === 'proxy' || v === 'passthrough') return v
  fail(`${MODE_ANNOTATION} must be proxy or passthrough, got ${describe(v)}`)
}

function impersonateOf (v: unknown): boolean {
  if (v === undefined || v === null || v === 'false') return false
  if (v === 'true') return true
  fail(`${IMPERSONATE_ANNOTATION} must be "true" or "false", got ${describe(v)}`)
}

function portOf (v: unknown): number | undefined {
  if (v === undefined || v === null || v === 0) return undefined
  if (typeof v !== 'number' || !Number.isInteger(v)) fail(`spec.connection.kubernetesAPIServerPort must be an integer, got ${describe(v)}`)
  if (v < 1 || v > 65535) fail(`spec.connection.kubernetesAPIServerPort ${v} is outside 1-65535`, ParseReason.PortOutOfRange)
  return v
}

function tokenOf (v: unknown): string | undefined {
  if (v === undefined || v === null || v === '') return undefined
  if (typeof v !== 'string' || v.length > ClusterLimits.maxTokenLength || !VISIBLE_ASCII.test(v)) {
    fail(`spec.connection.token must be visible ASCII of at most ${ClusterLimits.maxTokenLength} characters`)
  }
  if (v.length < ClusterLimits.minTokenLength) fail(`spec.connection.token must have at least ${ClusterLimits.minTokenLength} characters`)
  return v
}

function versionOf (v: unknown): string | undefined {
  return typeof v === 'string' && v.length <= ClusterLimits.maxVersion && VISIBLE_ASCII.test(v) ? v : undefined
}

/** Parses a JSON annotation without letting it grow or reach a prototype; undefined when absent. */
function jsonAnnotation (v: unknown, field: string, maxLength: number): unknown {
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'string') return { error: `${field} must be a string` }
  if (v.length > maxLength) return { error: `${field} is ${v.length} characters, more than ${maxLength}` }
  try {
    return { value: JSON.parse(v) as unknown }
  } catch {
    return { error: `${field} is not valid JSON` }
  }
}

function serviceAnnotationsOf (v: unknown): Map<string, string> | { error: string } {
  const parsed = jsonAnnotation(v, SERVICE_ANNOTATIONS_ANNOTATION, ClusterLimits.maxServiceAnnotationsLength) as { value?: unknown, error?: string } | undefined
  if (parsed === undefined) return new Map()
  if (parsed.error !== undefined) return { error: parsed.error }
  const value = parsed.value
  if (!isRecord(value)) return { error: `${SERVICE_ANNOTATIONS_ANNOTATION} must be a JSON object of string values` }
  const keys = Object.keys(value)
  if (keys.length > ClusterLimits.maxServiceAnnotations) {
    return { error: `${SERVICE_ANNOTATIONS_ANNOTATION} has ${keys.length} entries, more than ${ClusterLimits.maxServiceAnnotations}` }
  }
  const out = new Map<string, string>()
  for (const key of keys) {
    const val = value[key]
    if (key.length > ClusterLimits.maxAnnotationKey || !ANNOTATION_KEY.test(key)) {
      return { error: `${SERVICE_ANNOTATIONS_ANNOTATION}: ${JSON.stringify(key.slice(0, 64))} is not an annotation key` }
    }
    if (typeof val !== 'string') return { error: `${SERVICE_ANNOTATIONS_ANNOTATION}: the value of ${key} must be a string` }
    out.set(key, val)
  }
  return out
}

function agentsOf (v: unknown): AnnotatedAgent[] {
  const parsed = jsonAnnotation(v, AGENTS_ANNOTATION, ClusterLimits.maxAgentsAnnotationLength) as { value?: unknown } | undefined
  if (parsed === undefined || !Array.isArray(parsed.value)) return []
  const out: AnnotatedAgent[] = []
  for (const a of parsed.value.slice(0, ClusterLimits.maxAgents)) {
    if (!isRecord(a)) continue
    const id = own(a, 'id'); const remote = own(a, 'remote'); const since = own(a, 'since')
    if (shortString(id) && shortString(remote) && shortString(since)) out.push({ id, remote, since })
  }
  return out
}

function conditions (v: unknown): ClusterCondition[] {
  if (!Array.isArray(v)) return []
  const out: ClusterCondition[] = []
  for (const c of v.slice(0, ClusterLimits.maxConditions)) {
    if (!isRecord(c)) continue
    const type = own(c, 'type'); const status = own(c, 'status')
    if (!shortString(type) || type === '' || (status !== 'True' && status !== 'False' && status !== 'Unknown')) continue
    const cond: ClusterCondition = { type, status }
    const lut = own(c, 'lastUpdateTime'); const ltt = own(c, 'lastTransitionTime')
    const reason = own(c, 'reason'); const message = own(c, 'message')
    if (shortString(lut)) cond.lastUpdateTime = lut
    if (shortString(ltt)) cond.lastTransitionTime = ltt
    if (shortString(reason)) cond.reason = reason
    if (typeof message === 'string' && message.length <= ClusterLimits.maxConditionMessage) cond.message = message
    out.push(cond)
  }
  return out
}

/** A short, safe rendering of a hostile value for a message. */
function describe (v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 64 ? v.slice(0, 64) + '…' : v)
  if (typeof v === 'number' || typeof v === 'boolean') return String(v)
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v
}
