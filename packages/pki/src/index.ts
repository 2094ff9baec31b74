export { CertificateInvalidError, KubeconfigInvalidError, KubeconfigUnsupportedError } from './errors.ts'
export { CLUSTER_URI_PREFIX, CLUSTER_UID_URI_PREFIX } from './constants.ts'
export { DEFAULT_KEY_BITS, CLOCK_SKEW_MS, MAX_VALIDITY_DAYS, MAX_CLUSTER_NAME_LENGTH, isClusterName, isClusterUid, validateClusterName } from './config.ts'
export type { CertificateBundle } from './certificate.ts'
export { createCa, verifyCaBundle, type CreateCaOptions } from './ca.ts'
export { issueServerCert, type ServerCertOptions } from './server-certificate.ts'
export { issueClientCert, clusterUri, type ClientCertOptions } from './client-certificate.ts'
export {
  parseClientIdentity, verifyIssuedBy, parseSubjectAltName, normalizeSerial,
  type ClientIdentity, type ClientCertificateInput, type X509CertificateLike, type PeerCertificateLike
} from './identity.ts'
export {
  parseKubeconfig, kubeconfigFromObject, selectContext,
  type Kubeconfig, type KubeconfigCluster, type KubeconfigUser, type KubeconfigContext, type SelectedContext
} from './kubeconfig.ts'
export {
  resolveContext,
  type ResolveOptions, type ResolvedContext, type ResolvedCluster, type ResolvedUser
} from './kubeconfig-resolve.ts'
export { renderKubeconfig, type RenderKubeconfigOptions, type CertificateCredentials, type TokenCredentials } from './kubeconfig-render.ts'
export { rewriteKubeconfigServer, type RewriteKubeconfigOptions } from './kubeconfig-rewrite.ts'
