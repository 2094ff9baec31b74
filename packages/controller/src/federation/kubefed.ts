/**
 * Joins a member to KubeFed the way `kubefedctl join` does, but pointed at
 * Tower: a KubeFedCluster whose apiEndpoint is the cluster's Tower port and
 * whose caBundle is Tower's CA, and a Secret (key `token`) with a caller
 * token Tower issued for that cluster. KubeFed then talks to the member
 * only through the tunnel, with an identity Tower (and, under
 * --impersonate, the member's RBAC) controls.
 *
 * Both objects live in the KubeFed namespace. Create-or-replace makes the
 * join idempotent; `leaveKubeFed` deletes both.
 */
import { CoreV1Api, CustomObjectsApi, type KubeConfig, type V1Secret } from '@kubernetes/client-node'
import { InvalidArgumentError } from '@tower/mux'
import { isClusterName } from '@tower/pki'
import {
  MANAGED_BY_LABEL, MANAGED_BY_VALUE, previousTokenId, removeManaged, secretMeta, tokenAnnotation, tokenIdOf, upsert, validateMember,
  type FederationMember, type JoinResult, type LeaveResult, type ObjectMeta
} from './member.ts'

/** KubeFed's API group and version of KubeFedCluster. */
export const KUBEFED_GROUP = 'core.kubefed.io'
export const KUBEFED_VERSION = 'v1beta1'
export const KUBEFED_CLUSTER_PLURAL = 'kubefedclusters'
/** KubeFed's default control-plane namespace (its --kubefed-namespace default). */
export const DEFAULT_KUBEFED_NAMESPACE = 'kube-federation-system'

/** Options of {@link joinKubeFed} and {@link leaveKubeFed}. */
export interface KubeFedOptions {
  /** KubeFed's namespace; default kube-federation-system. */
  namespace?: string
}

/** A KubeFedCluster as Tower writes it. */
export interface KubeFedClusterObject {
  apiVersion: string
  kind: string
  metadata: ObjectMeta
  spec: { apiEndpoint: string, caBundle: string, secretRef: { name: string } }
}

const NAMESPACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/

/** The Secret Tower keeps a member's token in: `tower-<name>`. */
export function kubeFedSecretName (name: string): string {
  return `tower-${name}`
}

function namespaceOf (opts: KubeFedOptions): string {
  const ns = opts.namespace ?? DEFAULT_KUBEFED_NAMESPACE
  if (typeof ns !== 'string' || !NAMESPACE.test(ns)) throw new InvalidArgumentError(`KubeFed namespace must be a DNS label, got ${JSON.stringify(ns)}`)
  return ns
}

/** The KubeFedCluster for `m` (pure; exported for tests and for the reconciler's diff). */
export function kubeFedClusterFor (m: FederationMember, namespace: string): KubeFedClusterObject {
  return {
    apiVersion: `${KUBEFED_GROUP}/${KUBEFED_VERSION}`,
    kind: 'KubeFedCluster',
    // The token id annotation is not bookkeeping only: KubeFed builds its member clients from the Secret
    // once and rebuilds them only when the KubeFedCluster's spec, labels or annotations change, so a new
    // token in the Secret alone would go unused (and the old one, once revoked, would fail every probe).
    metadata: { name: m.name, namespace, labels: { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE }, annotations: tokenAnnotation(m) },
    spec: {
      apiEndpoint: m.apiEndpoint,
      // []byte in Go: base64 in JSON.
      caBundle: Buffer.from(m.caPem).toString('base64'),
      secretRef: { name: kubeFedSecretName(m.name) }
    }
  }
}

/**
 * Create or update the Secret and the KubeFedCluster for `m` in KubeFed's
 * namespace of the host cluster `kc`. The Secret is written first, so the
 * KubeFedCluster never names a Secret that does not exist yet.
 * @throws TOWER_ERR_INVALID_ARG, TOWER_ERR_FEDERATION_CONFLICT, TOWER_ERR_FEDERATION_API
 */
export async function joinKubeFed (kc: KubeConfig, m: FederationMember, opts: KubeFedOptions = {}): Promise<JoinResult> {
  validateMember(m)
  const namespace = namespaceOf(opts)
  const core = kc.makeApiClient(CoreV1Api)
  const custom = kc.makeApiClient(CustomObjectsApi)
  const secretName = kubeFedSecretName(m.name)
  const secret: V1Secret = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: secretMeta(m, secretName, namespace),
    type: 'Opaque',
    data: { token: Buffer.from(m.token).toString('base64') }
  }
  const s = await upsert<V1Secret>({
    what: `Secret ${namespace}/${secretName}`,
    read: () => core.readNamespacedSecret({ name: secretName, namespace }),
    create: (body) => core.createNamespacedSecret({ namespace, body }),
    replace: (body) => core.replaceNamespacedSecret({ name: secretName, namespace, body })
  }, secret)
  const obj = { group: KUBEFED_GROUP, version: KUBEFED_VERSION, namespace, plural: KUBEFED_CLUSTER_PLURAL }
  const c = await upsert<KubeFedClusterObject>({
    what: `KubeFedCluster ${namespace}/${m.name}`,
    read: () => custom.getNamespacedCustomObject({ ...obj, name: m.name }) as Promise<KubeFedClusterObject>,
    create: (body) => custom.createNamespacedCustomObject({ ...obj, body }),
    replace: (body) => custom.replaceNamespacedCustomObject({ ...obj, name: m.name, body })
  }, kubeFedClusterFor(m, namespace))
  return { created: c.created, previousTokenId: previousTokenId(s.previous, m) }
}

/**
 * Remove the KubeFedCluster and its Secret (KubeFed then stops propagating
 * to the member; objects already there stay, as with `kubefedctl unjoin`).
 * @throws TOWER_ERR_FEDERATION_CONFLICT for objects Tower did not make
 */
export async function leaveKubeFed (kc: KubeConfig, name: string, opts: KubeFedOptions = {}): Promise<LeaveResult> {
  const namespace = namespaceOf(opts)
  if (!isClusterName(name)) throw new InvalidArgumentError(`cluster name ${JSON.stringify(name)} is not valid`)
  const core = kc.makeApiClient(CoreV1Api)
  const custom = kc.makeApiClient(CustomObjectsApi)
  const obj = { group: KUBEFED_GROUP, version: KUBEFED_VERSION, namespace, plural: KUBEFED_CLUSTER_PLURAL, name }
  const cluster = await removeManaged(`KubeFedCluster ${namespace}/${name}`,
    () => custom.getNamespacedCustomObject(obj) as Promise<KubeFedClusterObject>,
    () => custom.deleteNamespacedCustomObject(obj))
  const secretName = kubeFedSecretName(name)
  const secret = await removeManaged(`Secret ${namespace}/${secretName}`,
    () => core.readNamespacedSecret({ name: secretName, namespace }),
    () => core.deleteNamespacedSecret({ name: secretName, namespace }))
  return { removed: cluster !== undefined || secret !== undefined, tokenId: tokenIdOf(secret?.metadata) }
}
