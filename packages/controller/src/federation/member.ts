/**
 * What both federation joins share: the member as Tower presents it
 * (endpoint, CA, caller token), its validation, and the create-or-replace
 * step that makes a join idempotent.
 *
 * Objects Tower writes carry the managed-by label and the id of the caller
 * token they hold (an annotation, never the token), so a re-join can hand
 * the previous id back for revocation and a leave can say what to revoke.
 */
import { isClusterName } from '@tower/pki'
import { InvalidArgumentError } from '@tower/mux'
import { FederationApiError, FederationConflictError } from '../errors.ts'

/** The member cluster as the federation control plane must see it: Tower's endpoint for it. */
export interface FederationMember {
  /** Cluster name (Tower's, and the name of the KubeFedCluster / Karmada Cluster). */
  name: string
  /** https://host:port of the cluster's Tower port. */
  apiEndpoint: string
  /** Tower's CA certificate (PEM): it signs the serving certificate of every Tower port. */
  caPem: string
  /** A caller token of this cluster, issued by Tower. */
  token: string
  /** Id of that caller token (kept in an annotation so it can be revoked later). */
  tokenId?: string
  /** ISO time the caller token expires, when it does (annotated beside the id so a reader sees when it is rotated). */
  tokenExpiresAt?: string
}

/** Result of a join. */
export interface JoinResult {
  /** True when the cluster object did not exist before. */
  created: boolean
  /** Caller-token id the replaced Secret held, when it differs from the new one: revoke it. */
  previousTokenId?: string
}

/** Result of a leave. */
export interface LeaveResult {
  /** True when there was something to remove. */
  removed: boolean
  /** Caller-token id the removed Secret held: revoke it. */
  tokenId?: string
  /** The cluster object is being deleted but still there (a finalizer): its Secret and token were kept. */
  pending?: boolean
}

/** Label on every object Tower writes into a federation control plane. */
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by'
/** Its value. */
export const MANAGED_BY_VALUE = 'tower'
/** Annotation holding the id of the caller token in a Secret Tower wrote. */
export const TOKEN_ID_ANNOTATION = 'tower.kubesphere.io/caller-token-id'
/** Annotation holding that token's expiry (ISO time), when it has one. */
export const TOKEN_EXPIRES_ANNOTATION = 'tower.kubesphere.io/token-expires-at'

const PEM_CERT = /^-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----\s*$/
/** Bounds on what we put into objects (an apiserver refuses objects over ~1.5 MB anyway). */
const MAX_TOKEN_BYTES = 4096
const MAX_CA_BYTES = 64 * 1024

/** Checks a member; throws TOWER_ERR_INVALID_ARG naming the bad field. */
export function validateMember (m: FederationMember): void {
  if (!isClusterName(m.name)) throw new InvalidArgumentError(`federation member name ${JSON.stringify(m.name)} is not a valid cluster name`)
  let url: URL
  try {
    url = new URL(m.apiEndpoint)
  } catch {
    throw new InvalidArgumentError(`apiEndpoint ${JSON.stringify(m.apiEndpoint)} is not a URL`)
  }
  if (url.protocol !== 'https:' || url.host === '' || url.username !== '' || url.search !== '' || url.hash !== '') {
    throw new InvalidArgumentError(`apiEndpoint must be https://host:port without user, query or fragment, got ${JSON.stringify(m.apiEndpoint)}`)
  }
  if (typeof m.caPem !== 'string' || m.caPem.length > MAX_CA_BYTES || !PEM_CERT.test(m.caPem.trim() + '\n')) {
    throw new InvalidArgumentError('caPem must be one PEM certificate')
  }
  if (typeof m.token !== 'string' || m.token === '' || m.token.length > MAX_TOKEN_BYTES || !/^[\x21-\x7e]+$/.test(m.token)) {
    throw new InvalidArgumentError('token must be a non-empty printable string')
  }
  if (m.tokenId !== undefined && !/^[\w-]{1,64}$/.test(m.tokenId)) throw new InvalidArgumentError('tokenId must be 1-64 word characters')
  if (m.tokenExpiresAt !== undefined && (typeof m.tokenExpiresAt !== 'string' || m.tokenExpiresAt.length > 40 || Number.isNaN(Date.parse(m.tokenExpiresAt)))) {
    throw new InvalidArgumentError('tokenExpiresAt must be an ISO time')
  }
}

/** HTTP status of a failed client-node call, or undefined for a network error. */
export function statusOf (err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'number' ? code : undefined
}

/** Wraps a failed call into TOWER_ERR_FEDERATION_API, naming what was attempted. */
export function apiError (what: string, err: unknown): FederationApiError {
  const status = statusOf(err)
  const body = (err as { body?: unknown } | null)?.body
  let detail = ''
  if (typeof body === 'string') {
    try {
      const msg: unknown = (JSON.parse(body) as { message?: unknown }).message
      if (typeof msg === 'string') detail = `: ${msg.slice(0, 500)}`
    } catch {
      detail = `: ${body.slice(0, 200)}`
    }
  } else if (err instanceof Error && status === undefined) {
    detail = `: ${err.message.slice(0, 500)}`
  }
  return new FederationApiError(`${what} failed${status === undefined ? '' : ` (HTTP ${status})`}${detail}`, status, { cause: err })
}

/** Minimal object metadata as read back from the API (untrusted shape). */
export interface ObjectMeta {
  name?: string
  namespace?: string
  resourceVersion?: string
  labels?: Record<string, string>
  annotations?: Record<string, string>
}

/** True when the object carries Tower's managed-by label. */
export function isManaged (meta: ObjectMeta | undefined): boolean {
  const labels = meta?.labels
  return typeof labels === 'object' && labels !== null && Object.hasOwn(labels, MANAGED_BY_LABEL) &&
    labels[MANAGED_BY_LABEL] === MANAGED_BY_VALUE
}

/** The caller-token id annotation of an object, when present and well-formed. */
export function tokenIdOf (meta: ObjectMeta | undefined): string | undefined {
  const a = meta?.annotations
  if (typeof a !== 'object' || a === null || !Object.hasOwn(a, TOKEN_ID_ANNOTATION)) return undefined
  const v = a[TOKEN_ID_ANNOTATION]
  return typeof v === 'string' && /^[\w-]{1,64}$/.test(v) ? v : undefined
}

/** How to read, create and replace one object: the three calls {@link upsert} needs. */
export interface UpsertOps<T extends { metadata?: ObjectMeta }> {
  /** Human description for errors, e.g. `KubeFedCluster kube-federation-system/a`. */
  what: string
  read: () => Promise<T>
  create: (body: T) => Promise<unknown>
  /** Gets the desired object (with the current resourceVersion) and the current one. */
  replace: (body: T, current: T) => Promise<unknown>
}

/**
 * Most read-and-replace rounds of one {@link upsert}. A federation controller
 * writes the object it owns (KubeFed updates a KubeFedCluster's status every
 * health check), so a replace can meet a 409 even when nobody else is joining.
 */
export const MAX_UPSERT_ATTEMPTS = 5

/**
 * Create `desired`, or replace the existing object with it. Each replace
 * carries the resourceVersion just read, so a concurrent writer makes the
 * replace fail (409) rather than be overwritten; then the object is read
 * again and the replace retried, up to {@link MAX_UPSERT_ATTEMPTS} rounds.
 * An existing object without Tower's label is a conflict.
 * Returns whether it was created, and the previous object when replaced.
 */
export async function upsert<T extends { metadata?: ObjectMeta }> (ops: UpsertOps<T>, desired: T): Promise<{ created: boolean, previous?: T }> {
  try {
    await ops.create(desired)
    return { created: true }
  } catch (err) {
    if (statusOf(err) !== 409) throw apiError(`creating ${ops.what}`, err)
  }
  for (let attempt = 1; ; attempt++) {
    let current: T
    try {
      current = await ops.read()
    } catch (err) {
      throw apiError(`reading ${ops.what}`, err)
    }
    if (!isManaged(current.metadata)) {
      throw new FederationConflictError(`${ops.what} exists and was not created by Tower (no ${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE} label): remove it first, or pick another name`)
    }
    const body = { ...desired, metadata: { ...desired.metadata, resourceVersion: current.metadata?.resourceVersion } }
    try {
      await ops.replace(body, current)
      return { created: false, previous: current }
    } catch (err) {
      if (statusOf(err) === 409 && attempt < MAX_UPSERT_ATTEMPTS) continue
      throw apiError(`updating ${ops.what}${statusOf(err) === 409 ? ` (${attempt} attempts, each changed meanwhile)` : ''}`, err)
    }
  }
}

/**
 * Delete an object Tower made. Returns the object that was deleted, or
 * undefined when there was none; an object without Tower's label is left
 * alone (a conflict).
 */
export async function removeManaged<T extends { metadata?: ObjectMeta }> (what: string, read: () => Promise<T>, del: () => Promise<unknown>): Promise<T | undefined> {
  let current: T
  try {
    current = await read()
  } catch (err) {
    if (statusOf(err) === 404) return undefined
    throw apiError(`reading ${what}`, err)
  }
  if (!isManaged(current.metadata)) throw new FederationConflictError(`${what} was not created by Tower: not removing it`)
  try {
    await del()
  } catch (err) {
    if (statusOf(err) !== 404) throw apiError(`deleting ${what}`, err)
  }
  return current
}

/** The caller-token id annotation for `m` (empty without an id). */
export function tokenAnnotation (m: FederationMember): Record<string, string> {
  const out: Record<string, string> = m.tokenId === undefined ? {} : { [TOKEN_ID_ANNOTATION]: m.tokenId }
  if (m.tokenExpiresAt !== undefined) out[TOKEN_EXPIRES_ANNOTATION] = m.tokenExpiresAt
  return out
}

/** Labels and annotations of a Secret holding `m`'s token. */
export function secretMeta (m: FederationMember, name: string, namespace: string): ObjectMeta {
  return { name, namespace, labels: { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE, 'tower.kubesphere.io/cluster': m.name }, annotations: tokenAnnotation(m) }
}

/** The previous token id worth revoking: the old Secret's, when it differs from the new one. */
export function previousTokenId (previous: { metadata?: ObjectMeta } | undefined, m: FederationMember): string | undefined {
  const old = tokenIdOf(previous?.metadata)
  return old !== undefined && old !== m.tokenId ? old : undefined
}
