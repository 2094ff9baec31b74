/**
 * Tower's Secrets in its namespace: the per-cluster join and callers
 * Secrets and the shared CA.
 *
 * Reading turns a Secret from the cache (hostile: anyone with write access
 * to the namespace can change it) into validated values, never throwing.
 * Writing is read-modify-update with the object's resourceVersion, retried
 * on 409 Conflict, so two writers (the CLI and the leader, two CLIs) never
 * lose each other's change. Creation races (two replicas making the CA, the
 * CLI and the reconciler making a join Secret) end with everyone using the
 * winner's object: AlreadyExists means read what is there.
 */
import type { V1ObjectMeta, V1OwnerReference, V1Secret } from '@kubernetes/client-node'
import { createCa, verifyCaBundle, type CertificateBundle } from '@tower/pki'
import type { CallerTokenRecord } from '@tower/server'
import { MAX_CALLER_TOKENS, MAX_REVOKED_SERIALS } from '@tower/server'
import { kubeApiError, statusOf } from './errors.ts'
import type { KubeContext } from './kube-context.ts'
import {
  CA_SECRET, CaSecretKey, CLUSTER_GROUP, CLUSTER_KIND, CLUSTER_LABEL, CLUSTER_UID_ANNOTATION, CLUSTER_VERSION, JoinSecretKey, joinSecretName,
  MANAGED_BY_LABEL, MANAGED_BY_VALUE, REVOKED_SERIALS_KEY, ROTATED_AT_ANNOTATION
} from './names.ts'

/** A Cluster a Secret belongs to. */
export interface SecretOwner {
  name: string
  uid: string
}

/** The join Secret's content, validated. */
export interface JoinSecret {
  token: string
  /** The token a rotation replaced, while its grace lasts (until is ISO). */
  previous?: { token: string, until: string }
  /** ISO time of the last rotation, or of the Secret's creation. */
  rotatedAt: string
  /** uid of the Cluster this Secret was made for (a re-created Cluster does not inherit it). */
  clusterUid: string | undefined
}

/** The callers Secret's content, validated; bad entries are dropped. */
export interface CallersSecret {
  callerTokens: CallerTokenRecord[]
  revokedSerials: string[]
}

/** Most attempts of one read-modify-update before giving up on conflicts. */
const MAX_UPDATE_ATTEMPTS = 10
const TOKEN = /^[\x21-\x7e]{16,1024}$/
const HASH = /^sha256:[0-9a-f]{64}$/
const TOKEN_ID = /^[a-z0-9]{1,32}$/
const SERIAL = /^[0-9a-f]{1,40}$/
const NAME = /^[^\p{Cc}]{1,256}$/u

/** The value of `key` in a Secret's data, decoded, or undefined (absent, not base64 text, or longer than `max`). */
export function secretValue (secret: V1Secret | undefined, key: string, max = 64 * 1024): string | undefined {
  const data = secret?.data
  if (data === undefined || data === null || typeof data !== 'object' || !Object.hasOwn(data, key)) return undefined
  const b64 = (data as Record<string, unknown>)[key]
  if (typeof b64 !== 'string' || b64.length > Math.ceil(max / 3) * 4 + 4) return undefined
  return Buffer.from(b64, 'base64').toString('utf8')
}

function annotation (meta: V1ObjectMeta | undefined, key: string): string | undefined {
  const a = meta?.annotations
  if (a === undefined || a === null || typeof a !== 'object' || !Object.hasOwn(a, key)) return undefined
  const v = (a as Record<string, unknown>)[key]
  return typeof v === 'string' && v.length <= 128 ? v : undefined
}

function isoTime (v: string | undefined): string | undefined {
  return v !== undefined && !Number.isNaN(Date.parse(v)) ? v : undefined
}

function timestamp (v: unknown): string | undefined {
  if (v instanceof Date && !Number.isNaN(v.getTime())) return v.toISOString()
  return typeof v === 'string' ? isoTime(v) : undefined
}

/** Parses a join Secret; undefined when it has no valid token. */
export function readJoinSecret (secret: V1Secret | undefined): JoinSecret | undefined {
  const token = secretValue(secret, JoinSecretKey.token, 1024)
  if (token === undefined || !TOKEN.test(token)) return undefined
  const rotatedAt = isoTime(annotation(secret?.metadata, ROTATED_AT_ANNOTATION)) ?? timestamp(secret?.metadata?.creationTimestamp) ?? new Date(0).toISOString()
  const out: JoinSecret = { token, rotatedAt, clusterUid: annotation(secret?.metadata, CLUSTER_UID_ANNOTATION) }
  const prev = secretValue(secret, JoinSecretKey.previousToken, 1024)
  const until = isoTime(secretValue(secret, JoinSecretKey.previousUntil, 64))
  if (prev !== undefined && TOKEN.test(prev) && until !== undefined) out.previous = { token: prev, until }
  return out
}

/** Parses a callers Secret (absent: no tokens, no revocations). Entries that do not validate are dropped. */
export function readCallersSecret (secret: V1Secret | undefined): CallersSecret {
  const out: CallersSecret = { callerTokens: [], revokedSerials: [] }
  const data = secret?.data
  if (data === undefined || data === null || typeof data !== 'object') return out
  for (const key of Object.keys(data)) {
    if (key === REVOKED_SERIALS_KEY) {
      out.revokedSerials = parseSerials(secretValue(secret, key, 1024 * 1024))
      continue
    }
    if (!TOKEN_ID.test(key) || out.callerTokens.length >= MAX_CALLER_TOKENS) continue
    const t = parseCallerToken(key, secretValue(secret, key, 16 * 1024))
    if (t !== undefined) out.callerTokens.push(t)
  }
  out.callerTokens.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id))
  return out
}

function parseJson (text: string | undefined): unknown {
  if (text === undefined) return undefined
  try {
    return JSON.parse(text) as unknown
  } catch {
    return undefined
  }
}

function parseSerials (text: string | undefined): string[] {
  const v = parseJson(text)
  if (!Array.isArray(v)) return []
  const out = new Set<string>()
  for (const s of v) {
    if (out.size >= MAX_REVOKED_SERIALS) break
    if (typeof s === 'string' && SERIAL.test(s)) out.add(s)
  }
  return [...out]
}

function parseCallerToken (id: string, text: string | undefined): CallerTokenRecord | undefined {
  const v = parseJson(text)
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined
  const o = v as Record<string, unknown>
  const hash = Object.hasOwn(o, 'hash') ? o.hash : undefined
  const user = Object.hasOwn(o, 'user') ? o.user : undefined
  const groups = Object.hasOwn(o, 'groups') ? o.groups : undefined
  const createdAt = Object.hasOwn(o, 'createdAt') ? o.createdAt : undefined
  if (typeof hash !== 'string' || !HASH.test(hash) || typeof user !== 'string' || !NAME.test(user)) return undefined
  if (!Array.isArray(groups) || groups.length > 64 || !groups.every((g) => typeof g === 'string' && NAME.test(g))) return undefined
  if (typeof createdAt !== 'string' || isoTime(createdAt) === undefined) return undefined
  return { id, hash, user, groups: [...groups] as string[], createdAt }
}

/** The JSON value stored under a caller token's id. */
export function callerTokenValue (t: CallerTokenRecord): string {
  return JSON.stringify({ hash: t.hash, user: t.user, groups: t.groups, createdAt: t.createdAt })
}

/** Labels, owner reference and uid annotation of a per-cluster Secret. */
export function clusterSecretMeta (name: string, namespace: string, owner: SecretOwner): V1ObjectMeta {
  const ref: V1OwnerReference = { apiVersion: `${CLUSTER_GROUP}/${CLUSTER_VERSION}`, kind: CLUSTER_KIND, name: owner.name, uid: owner.uid }
  return {
    name,
    namespace,
    labels: { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE, [CLUSTER_LABEL]: owner.name },
    annotations: { [CLUSTER_UID_ANNOTATION]: owner.uid },
    ownerReferences: [ref]
  }
}

function encode (data: Map<string, string>): Record<string, string> {
  const out: Record<string, string> = Object.create(null) as Record<string, string>
  for (const [k, v] of data) out[k] = Buffer.from(v, 'utf8').toString('base64')
  return out
}

function decode (secret: V1Secret): Map<string, string> {
  const out = new Map<string, string>()
  const data = secret.data
  if (data === undefined || data === null || typeof data !== 'object') return out
  for (const k of Object.keys(data)) {
    const v = secretValue(secret, k, 1024 * 1024)
    if (v !== undefined) out.set(k, v)
  }
  return out
}

/** What a mutation of a Secret sees and may change. */
export interface SecretDraft {
  /** Decoded data; change it in place. */
  data: Map<string, string>
  /** Annotations; change them in place. */
  annotations: Map<string, string>
  /** False when the Secret does not exist yet (it will be created). */
  exists: boolean
}

/** Writes Tower's Secrets through the API. */
export class SecretWriter {
  readonly #ctx: KubeContext

  constructor (context: KubeContext) {
    this.#ctx = context
  }

  /** Reads a Secret from the API (not the cache); undefined on 404. */
  async read (name: string): Promise<V1Secret | undefined> {
    try {
      return await this.#ctx.core.readNamespacedSecret({ name, namespace: this.#ctx.namespace })
    } catch (err) {
      if (statusOf(err) === 404) return undefined
      throw kubeApiError(`reading Secret ${name}`, err)
    }
  }

  /**
   * Read-modify-write of one Secret. `mutate` changes the draft in place
   * (leaving it unchanged skips the write) and returns a result. A missing
   * Secret is created with `meta`; without `meta` it is not, and `mutate`
   * sees `exists: false`. A Secret whose cluster-uid annotation names
   * another Cluster than `meta` does is left from an earlier Cluster of that
   * name: it is taken over empty, with `meta`'s labels and owner.
   * Retries on 409; TOWER_ERR_KUBE_API after MAX_UPDATE_ATTEMPTS conflicts.
   * Returns the mutation's result and the written (or current) Secret.
   */
  async update<T> (name: string, meta: V1ObjectMeta | undefined, mutate: (d: SecretDraft) => T): Promise<{ result: T, secret: V1Secret | undefined }> {
    const { core, namespace } = this.#ctx
    for (let attempt = 1; ; attempt++) {
      const current = await this.read(name)
      if (current === undefined && meta === undefined) {
        return { result: mutate({ data: new Map(), annotations: new Map(), exists: false }), secret: undefined }
      }
      const wantUid = meta?.annotations?.[CLUSTER_UID_ANNOTATION]
      const stale = current !== undefined && wantUid !== undefined && annotation(current.metadata, CLUSTER_UID_ANNOTATION) !== wantUid
      const fresh = current === undefined || stale
      const draft: SecretDraft = {
        data: fresh ? new Map() : decode(current),
        annotations: new Map(Object.entries((fresh ? meta?.annotations : current?.metadata?.annotations) ?? {})),
        exists: current !== undefined && !stale
      }
      const before = JSON.stringify([[...draft.data], [...draft.annotations]])
      const result = mutate(draft)
      if (!fresh && JSON.stringify([[...draft.data], [...draft.annotations]]) === before) return { result, secret: current }
      const annotations = Object.fromEntries(draft.annotations)
      try {
        if (current === undefined) {
          const body: V1Secret = { apiVersion: 'v1', kind: 'Secret', type: 'Opaque', metadata: { ...meta, annotations }, data: encode(draft.data) }
          return { result, secret: await core.createNamespacedSecret({ namespace, body }) }
        }
        const metadata: V1ObjectMeta = stale
          ? { ...meta, name, namespace, resourceVersion: current.metadata?.resourceVersion, annotations }
          : { ...current.metadata, annotations }
        const body: V1Secret = { apiVersion: 'v1', kind: 'Secret', type: current.type ?? 'Opaque', metadata, data: encode(draft.data) }
        return { result, secret: await core.replaceNamespacedSecret({ name, namespace, body }) }
      } catch (err) {
        // 409: someone else wrote (or created) it between our read and our write.
        if (statusOf(err) === 409 && attempt < MAX_UPDATE_ATTEMPTS) continue
        throw kubeApiError(`writing Secret ${name}`, err)
      }
    }
  }

  /**
   * The join Secret of `owner`, created when absent with `token` (the spec's
   * token when KubeSphere set one, else a new one) and taken over when it
   * was left by an earlier Cluster of that name. Returns the token it holds:
   * when the reconciler and the CLI race, both end with the winner's.
   */
  async ensureJoinSecret (owner: SecretOwner, token: string): Promise<{ token: string, secret: V1Secret | undefined }> {
    const name = joinSecretName(owner.name)
    const { result, secret } = await this.update(name, clusterSecretMeta(name, this.#ctx.namespace, owner), (d) => {
      const current = d.data.get(JoinSecretKey.token)
      if (d.exists && current !== undefined && TOKEN.test(current)) return current
      d.data.clear()
      d.data.set(JoinSecretKey.token, token)
      d.annotations.set(ROTATED_AT_ANNOTATION, new Date().toISOString())
      return token
    })
    return { token: result, secret }
  }

  /**
   * Creates the Secret unless one exists; returns the stored one either way
   * (AlreadyExists: the winner's). Never overwrites.
   */
  async createIfAbsent (body: V1Secret): Promise<V1Secret> {
    const name = body.metadata?.name ?? ''
    try {
      return await this.#ctx.core.createNamespacedSecret({ namespace: this.#ctx.namespace, body })
    } catch (err) {
      if (statusOf(err) !== 409) throw kubeApiError(`creating Secret ${name}`, err)
    }
    const existing = await this.read(name)
    // Deleted between our create and our read: the next caller retries.
    if (existing === undefined) throw kubeApiError(`reading Secret ${name}`, { code: 404 })
    return existing
  }

  /** Deletes a Secret; a missing one is fine. */
  async delete (name: string): Promise<void> {
    try {
      await this.#ctx.core.deleteNamespacedSecret({ name, namespace: this.#ctx.namespace })
    } catch (err) {
      if (statusOf(err) !== 404) throw kubeApiError(`deleting Secret ${name}`, err)
    }
  }

  /**
   * The shared CA: read tower-ca, or create it when absent. Two replicas
   * racing both end with the winner's CA. A CA Secret that does not hold a
   * valid bundle is an error, never replaced (every issued credential hangs on it).
   */
  async ensureCa (validityDays = 3650): Promise<CertificateBundle> {
    let secret = await this.read(CA_SECRET)
    if (secret === undefined) {
      const ca = createCa({ commonName: 'tower-ca', validityDays })
      secret = await this.createIfAbsent({
        apiVersion: 'v1',
        kind: 'Secret',
        type: 'Opaque',
        metadata: { name: CA_SECRET, namespace: this.#ctx.namespace, labels: { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE } },
        data: encode(new Map([[CaSecretKey.cert, ca.certPem], [CaSecretKey.key, ca.keyPem]]))
      })
    }
    return readCaSecret(secret)
  }
}

/** The CA bundle in a tower-ca Secret; throws TOWER_ERR_INVALID_ARG (via pki) when it is not a usable CA. */
export function readCaSecret (secret: V1Secret | undefined): CertificateBundle {
  const ca = { certPem: secretValue(secret, CaSecretKey.cert) ?? '', keyPem: secretValue(secret, CaSecretKey.key) ?? '' }
  verifyCaBundle(`Secret ${CA_SECRET}`, ca)
  return ca
}
