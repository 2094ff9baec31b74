export { joinKubeFed, leaveKubeFed, kubeFedClusterFor, kubeFedSecretName, DEFAULT_KUBEFED_NAMESPACE, KUBEFED_GROUP, KUBEFED_VERSION, KUBEFED_CLUSTER_PLURAL, type KubeFedOptions, type KubeFedClusterObject } from './kubefed.ts'
export { joinKarmada, leaveKarmada, karmadaClusterFor, karmadaSecretName, DEFAULT_KARMADA_SECRET_NAMESPACE, KARMADA_CLUSTER_GROUP, KARMADA_CLUSTER_VERSION, KARMADA_CLUSTER_PLURAL, type KarmadaOptions, type KarmadaClusterObject } from './karmada.ts'
export { validateMember, TOKEN_ID_ANNOTATION, TOKEN_EXPIRES_ANNOTATION, type FederationMember, type JoinResult, type LeaveResult } from './member.ts'
export { FederationApiError, FederationConflictError } from '../errors.ts'
