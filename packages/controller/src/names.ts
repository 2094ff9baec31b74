/**
 * Every name Tower uses in the host cluster, in one place: the KubeSphere
 * Cluster resource it reads, and the objects it owns in its namespace.
 * Nothing else in the package spells one of these strings.
 */

/** The KubeSphere Cluster resource (cluster-scoped). */
export const CLUSTER_GROUP = 'cluster.kubesphere.io'
export const CLUSTER_VERSION = 'v1alpha1'
export const CLUSTER_PLURAL = 'clusters'
export const CLUSTER_KIND = 'Cluster'
export const CLUSTER_CRD = `${CLUSTER_PLURAL}.${CLUSTER_GROUP}`

/** Namespace of Tower's own objects when --namespace is not given. */
export const DEFAULT_NAMESPACE = 'tower-system'

/** Label on every object Tower creates; informers select on it. */
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by'
export const MANAGED_BY_VALUE = 'tower'
/** Label naming the member cluster an object belongs to. */
export const CLUSTER_LABEL = 'tower.kubesphere.io/cluster'

/** Pods of the Tower server carry this label; `mc-<name>` Services select them. */
export const SERVER_POD_LABEL = 'app.kubernetes.io/name'
export const SERVER_POD_VALUE = 'tower-server'

/** Finalizer Tower puts on each proxy Cluster so its ports, Service and Secrets go with it. */
export const FINALIZER = 'tower.kubesphere.io/cleanup'

/**
 * Annotations Tower reads on a Cluster:
 *  - mode: `proxy` (default) or `passthrough`;
 *  - impersonate: `"true"` forwards the caller identity (proxy mode);
 *  - service-annotations: a JSON object of annotations for the `mc-<name>` Service (load balancers).
 */
export const MODE_ANNOTATION = 'tower.kubesphere.io/mode'
export const IMPERSONATE_ANNOTATION = 'tower.kubesphere.io/impersonate'
export const SERVICE_ANNOTATIONS_ANNOTATION = 'tower.kubesphere.io/service-annotations'

/** Secret with the CA (keys tls.crt, tls.key), shared by every replica. */
export const CA_SECRET = 'tower-ca'
/** ConfigMap whose data maps each allocated port to `<cluster>/<uid>`; updated with optimistic concurrency. */
export const PORTS_CONFIGMAP = 'tower-ports'
/** Lease held by the replica that allocates ports and writes status. */
export const CONTROLLER_LEASE = 'tower-controller'

/** Secret with a cluster's agent join token (key `token`; during a rotation grace also `previous-token`, `previous-until`). */
export function joinSecretName (cluster: string): string { return `tower-join-${cluster}` }
/** Secret with a cluster's caller kubeconfig (key `kubeconfig`). */
export function kubeconfigSecretName (cluster: string): string { return `tower-kubeconfig-${cluster}` }
/** Secret with a cluster's caller-token hashes (one key per token id) and revoked serials (key `revoked-serials`). */
export function callersSecretName (cluster: string): string { return `tower-callers-${cluster}` }
/** Service in front of a cluster's port: port 6443 to the cluster port, port 80 to the KubeSphere API port. */
export function serviceName (cluster: string): string { return `mc-${cluster}` }
/** The in-cluster DNS name callers use: `mc-<name>.<ns>.svc`. */
export function serviceHost (cluster: string, namespace: string): string { return `${serviceName(cluster)}.${namespace}.svc` }

/** Service port of the Kubernetes API, as KubeSphere's Tower uses. */
export const SERVICE_KUBE_API_PORT = 6443
/** Service port of the KubeSphere API. */
export const SERVICE_KUBESPHERE_API_PORT = 80
/** KubeSphere's convention: the KubeSphere API port is the cluster port plus this. */
export const KUBESPHERE_PORT_OFFSET = 10000

/** Condition types written to `status.conditions`, KubeSphere's names. */
export const ConditionType = {
  Initialized: 'Initialized',
  AgentAvailable: 'AgentAvailable',
  Federated: 'Federated',
  ExternalAccessReady: 'ExternalAccessReady',
  Ready: 'Ready'
} as const
export type ConditionType = typeof ConditionType[keyof typeof ConditionType]

/** Annotation on a Cluster: JSON array of its connected agents `{id, remote, since}`, at most 16 (written by the leader). */
export const AGENTS_ANNOTATION = 'tower.kubesphere.io/agents'
/** Annotation on a join Secret: ISO time of the last rotation (absent: the Secret's creationTimestamp). */
export const ROTATED_AT_ANNOTATION = 'tower.kubesphere.io/rotated-at'

/** Keys of the join Secret. `previous-until` is an ISO time. */
export const JoinSecretKey = {
  token: 'token',
  previousToken: 'previous-token',
  previousUntil: 'previous-until'
} as const
/** Key of the callers Secret holding the revoked client-certificate serials (JSON array of hex). */
export const REVOKED_SERIALS_KEY = 'revoked-serials'
/** Key of the kubeconfig Secret. */
export const KUBECONFIG_KEY = 'kubeconfig'
/** Keys of the CA Secret. */
export const CaSecretKey = { cert: 'tls.crt', key: 'tls.key' } as const

/** Condition reasons that parseCluster decides (the reconciler adds its own). */
export const ParseReason = {
  /** A field has the wrong type, size or value. */
  InvalidSpec: 'InvalidSpec',
  /** The user-set port is not an integer in 1-65535. */
  PortOutOfRange: 'PortOutOfRange',
  /** spec.connection.type is absent: Tower neither manages nor ignores it silently. */
  ConnectionTypeMissing: 'ConnectionTypeMissing'
} as const

/** Condition reasons of port allocation (Initialized=False). */
export const PortReason = {
  /** The user-set port is allocated to another cluster, or is Tower's own. */
  PortConflict: 'PortConflict',
  /** The user-set port is not an integer in 1-65535. */
  PortOutOfRange: ParseReason.PortOutOfRange,
  /** No free port is left in --port-range. */
  PortRangeExhausted: 'PortRangeExhausted'
} as const
/** Annotation on a per-cluster Secret: uid of the Cluster it was made for (a re-created Cluster must not inherit it). */
export const CLUSTER_UID_ANNOTATION = 'tower.kubesphere.io/cluster-uid'

/** Annotation on the kubeconfig Secret: ISO time its client certificate expires (renewed when a third of the validity is left). */
export const EXPIRES_AT_ANNOTATION = 'tower.kubesphere.io/expires-at'
/** Name of the Service port that leads to a cluster's Kubernetes API. */
export const SERVICE_KUBE_API_PORT_NAME = 'kube-api'

/** Condition reasons the reconciler writes (besides ParseReason and PortReason). */
export const ClusterReason = {
  /** Initialized=True: port, Secrets and Service are in place. */
  Initialized: 'Initialized',
  /** Initialized=False while the registry has not seen the cluster's port and join Secret yet. */
  Initializing: 'Initializing',
  /** The Cluster object is larger than Tower reads. */
  ObjectTooLarge: 'ObjectTooLarge',
  AgentConnected: 'AgentConnected',
  AgentDisconnected: 'AgentDisconnected',
  NoAgentYet: 'NoAgentYet',
  /** ExternalAccessReady=True: the load balancer has an address. */
  LoadBalancerReady: 'LoadBalancerReady',
  /** ExternalAccessReady=False: the load balancer has no address yet. */
  LoadBalancerPending: 'LoadBalancerPending',
  /** ExternalAccessReady=False: the service-annotations annotation is invalid; the Service stays ClusterIP. */
  InvalidServiceAnnotations: 'InvalidServiceAnnotations'
} as const

/** Identities of the caller tokens the federation join issues (the member's RBAC sees them under --impersonate). */
export const FederationUser = { kubefed: 'tower-kubefed', karmada: 'tower-karmada' } as const

/** Reasons of the Federated condition Tower writes (a Ready=True/False from KubeFed or Karmada keeps their reason). */
export const FederationReason = {
  /** Every enabled control plane reports the member Ready. */
  Joined: 'Joined',
  /** The federation object is being written, or not yet seen by the watch. */
  Joining: 'Joining',
  /** The object exists; its controller has not reported Ready yet. */
  WaitingForReady: 'WaitingForReady',
  /** Ready=False without a reason. */
  NotReady: 'NotReady',
  /** Writing the federation object failed; retried. */
  JoinFailed: 'JoinFailed',
  /** An object of that name exists and was not made by Tower: left alone. */
  FederationConflict: 'FederationConflict',
  /** A passthrough cluster cannot take a caller token: not joined. */
  PassthroughMode: 'PassthroughMode'
} as const

/** Label of the EndpointSlices Tower writes (the EndpointSlice API's own key): which controller owns the slice. */
export const SLICE_MANAGED_BY_LABEL = 'endpointslice.kubernetes.io/managed-by'
/** Value of SLICE_MANAGED_BY_LABEL on Tower's slices (kube-controller-manager's are endpointslice-controller.k8s.io). */
export const SLICE_MANAGED_BY_VALUE = 'tower.kubesphere.io'
/** Label tying an EndpointSlice to its Service (the EndpointSlice API's own key). */
export const SLICE_SERVICE_LABEL = 'kubernetes.io/service-name'
/** Label on a replica's EndpointSlices and Lease: a short hash of the replica's identity (label values are limited). */
export const REPLICA_LABEL = 'tower.kubesphere.io/replica'
/** Annotation on a replica's EndpointSlices and Lease: the replica's identity, in full. */
export const REPLICA_IDENTITY_ANNOTATION = 'tower.kubesphere.io/replica-identity'
/** Annotation on a replica's EndpointSlice: the name of the Lease that keeps it alive. */
export const REPLICA_LEASE_ANNOTATION = 'tower.kubesphere.io/replica-lease'
/** Label on every replica Lease, so the leader can list them. */
export const REPLICA_LEASE_LABEL = 'tower.kubesphere.io/replica-lease'

/** EndpointSlice of one replica for one cluster's Service: `mc-<name>-<replica hash>`. */
export function sliceName (cluster: string, replicaKey: string): string { return `${serviceName(cluster)}-${replicaKey}` }
/** Lease each replica renews while it runs: `tower-replica-<identity>` (a hash when the identity is no DNS name). */
export function replicaLeaseName (identityName: string): string { return `tower-replica-${identityName}` }
