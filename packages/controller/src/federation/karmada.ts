/**
 * Joins a member to Karmada in push mode, the way `karmadactl join` does,
 * but pointed at Tower: a Cluster (cluster.karmada.io, served by Karmada's
 * aggregated apiserver) whose apiEndpoint is the cluster's Tower port, and
 * a Secret with the keys Karmada reads, `token` (a caller token Tower
 * issued) and `caBundle` (Tower's CA). Karmada's controllers then reach the
 * member only through the tunnel.
 *
 * The Secret lives in `karmada-cluster`, the namespace karmadactl uses;
 * it is created when missing. Create-or-replace makes the join idempotent;
 * `leaveKarmada` deletes both objects (Karmada's finalizer then removes the
 * member's execution namespace).
 */
import { CoreV1Api, CustomObjectsApi, type KubeConfig, type V1Secret } from '@kubernetes/client-node'
import { InvalidArgumentError } from '@tower/mux'
import { isClusterName } from '@tower/pki'
import {
  apiError, MANAGED_BY_LABEL, MANAGED_BY_VALUE, previousTokenId, removeManaged, secretMeta, statusOf, tokenAnnotation, tokenIdOf, upsert,
  validateMember, type FederationMember, type JoinResult, type LeaveResult, type ObjectMeta
} from './member.ts'

/** Karmada's API group and version of Cluster. */
export const KARMADA_CLUSTER_GROUP = 'cluster.karmada.io'
export const KARMADA_CLUSTER_VERSION = 'v1alpha1'
export const KARMADA_CLUSTER_PLURAL = 'clusters'
/** Namespace of member credentials in the Karmada control plane (karmadactl's choice). */
export const DEFAULT_KARMADA_SECRET_NAMESPACE = 'karmada-cluster'

/** Options of {@link joinKarmada} and {@link leaveKarmada}. */
export interface KarmadaOptions {
  /** Namespace of the credential Secret; default karmada-cluster. */
  secretNamespace?: string
  /**
   * leaveKarmada: how long to wait, in milliseconds, for Karmada's finalizer to remove the Cluster before
   * the Secret goes (default 120 000). Karmada deletes the member's Works through that credential.
   */
  leaveTimeoutMs?: number
}

/** A push-mode Karmada Cluster as Tower writes it. */
export interface KarmadaClusterObject {
  apiVersion: string
  kind: string
  metadata: ObjectMeta
  spec: { syncMode: 'Push', apiEndpoint: string, secretRef: { namespace: string, name: string } }
}

const NAMESPACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/
/** Karmada refuses longer cluster names (its execution namespace is karmada-es-<name>). */
const MAX_KARMADA_NAME = 48

/** The Secret Tower keeps a member's credentials in: `tower-<name>`. */
export function karmadaSecretName (name: string): string {
  return `tower-${name}`
}

function secretNamespaceOf (opts: KarmadaOptions): string {
  const ns = opts.secretNamespace ?? DEFAULT_KARMADA_SECRET_NAMESPACE
  if (typeof ns !== 'string' || !NAMESPACE.test(ns)) throw new InvalidArgumentError(`Karmada secret namespace must be a DNS label, got ${JSON.stringify(ns)}`)
  return ns
}

function checkName (name: string): void {
  if (!isClusterName(name) || name.length > MAX_KARMADA_NAME) {
    throw new InvalidArgumentError(`Karmada cluster name ${JSON.stringify(name)} must be a valid cluster name of at most ${MAX_KARMADA_NAME} characters`)
  }
}

/** Polls until `read` answers 404 (true) or `timeoutMs` passes (false). */
async function gone (read: () => Promise<unknown>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      await read()
    } catch (err) {
      if (statusOf(err) === 404) return true
      throw apiError('waiting for the Karmada Cluster to go', err)
    }
    if (Date.now() >= deadline) return false
    await new Promise((resolve) => setTimeout(resolve, 500))
  }
}

/** An object read back from the API, as something safe to spread (anything else: nothing). */
function spreadable (v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? v as Record<string, unknown> : {}
}

/** The Cluster for `m` (pure; exported for tests and for the reconciler's diff). */
export function karmadaClusterFor (m: FederationMember, secretNamespace: string): KarmadaClusterObject {
  return {
    apiVersion: `${KARMADA_CLUSTER_GROUP}/${KARMADA_CLUSTER_VERSION}`,
    kind: 'Cluster',
    // As for KubeFed: a changed object tells Karmada's controllers to rebuild their member clients.
    metadata: { name: m.name, labels: { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE }, annotations: tokenAnnotation(m) },
    spec: {
      syncMode: 'Push',
      apiEndpoint: m.apiEndpoint,
      secretRef: { namespace: secretNamespace, name: karmadaSecretName(m.name) }
    }
  }
}

/**
 * Create or update the Secret and the push-mode Cluster for `m` in the
 * Karmada control plane `kc` (Karmada's own apiserver, not a member).
 * @throws TOWER_ERR_INVALID_ARG, TOWER_ERR_FEDERATION_CONFLICT, TOWER_ERR_FEDERATION_API
 */
export async function joinKarmada (kc: KubeConfig, m: FederationMember, opts: KarmadaOptions = {}): Promise<JoinResult> {
  validateMember(m)
  checkName(m.name)
  const namespace = secretNamespaceOf(opts)
  const core = kc.makeApiClient(CoreV1Api)
  const custom = kc.makeApiClient(CustomObjectsApi)
  try {
    await core.createNamespace({ body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } } })
  } catch (err) {
    if (statusOf(err) !== 409) throw apiError(`creating namespace ${namespace}`, err)
  }
  const secretName = karmadaSecretName(m.name)
  const secret: V1Secret = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: secretMeta(m, secretName, namespace),
    type: 'Opaque',
    data: { token: Buffer.from(m.token).toString('base64'), caBundle: Buffer.from(m.caPem).toString('base64') }
  }
  const s = await upsert<V1Secret>({
    what: `Secret ${namespace}/${secretName}`,
    read: () => core.readNamespacedSecret({ name: secretName, namespace }),
    create: (body) => core.createNamespacedSecret({ namespace, body }),
    replace: (body) => core.replaceNamespacedSecret({ name: secretName, namespace, body })
  }, secret)
  const obj = { group: KARMADA_CLUSTER_GROUP, version: KARMADA_CLUSTER_VERSION, plural: KARMADA_CLUSTER_PLURAL }
  const c = await upsert<KarmadaClusterObject>({
    what: `Karmada Cluster ${m.name}`,
    read: () => custom.getClusterCustomObject({ ...obj, name: m.name }) as Promise<KarmadaClusterObject>,
    create: (body) => custom.createClusterCustomObject({ ...obj, body }),
    // Keep what Karmada's controllers added to spec (its id, taints): replace only Tower's fields.
    replace: (body, current) => custom.replaceClusterCustomObject({
      ...obj, name: m.name, body: { ...body, spec: { ...spreadable(current.spec), ...body.spec } }
    })
  }, karmadaClusterFor(m, namespace))
  return { created: c.created, previousTokenId: previousTokenId(s.previous, m) }
}

/**
 * Remove the Karmada Cluster, wait for Karmada to finish with it, then remove its Secret.
 * @throws TOWER_ERR_FEDERATION_CONFLICT for objects Tower did not make
 */
export async function leaveKarmada (kc: KubeConfig, name: string, opts: KarmadaOptions = {}): Promise<LeaveResult> {
  checkName(name)
  const namespace = secretNamespaceOf(opts)
  const core = kc.makeApiClient(CoreV1Api)
  const custom = kc.makeApiClient(CustomObjectsApi)
  const obj = { group: KARMADA_CLUSTER_GROUP, version: KARMADA_CLUSTER_VERSION, plural: KARMADA_CLUSTER_PLURAL, name }
  const read = (): Promise<KarmadaClusterObject> => custom.getClusterCustomObject(obj) as Promise<KarmadaClusterObject>
  const cluster = await removeManaged(`Karmada Cluster ${name}`, read, () => custom.deleteClusterCustomObject(obj))
  if (cluster !== undefined && !await gone(read, opts.leaveTimeoutMs ?? 120_000)) {
    // Karmada's finalizer still needs the credential to clean the member up: keep the Secret (and so the
    // token) rather than orphan what it propagated there.
    return { removed: true, pending: true }
  }
  const secretName = karmadaSecretName(name)
  const secret = await removeManaged(`Secret ${namespace}/${secretName}`,
    () => core.readNamespacedSecret({ name: secretName, namespace }),
    () => core.deleteNamespacedSecret({ name: secretName, namespace }))
  return { removed: cluster !== undefined || secret !== undefined, tokenId: tokenIdOf(secret?.metadata) }
}
