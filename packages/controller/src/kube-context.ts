/**
 * The connection to the host cluster: one KubeConfig and the typed API
 * clients every part of the controller shares.
 */
import {
  ApiextensionsV1Api, AuthorizationV1Api, CoordinationV1Api, CoreV1Api, CustomObjectsApi, KubeConfig
} from '@kubernetes/client-node'
import { InvalidArgumentError } from '@tower/mux'
import { DEFAULT_NAMESPACE } from './names.ts'

/** The host cluster's API, as the controller uses it. */
export interface KubeContext {
  /** The loaded configuration (from a file, or the Pod's ServiceAccount). */
  kc: KubeConfig
  /** Namespace of Tower's own objects (Secrets, Services, the ports ConfigMap, the Lease). */
  namespace: string
  core: CoreV1Api
  custom: CustomObjectsApi
  coordination: CoordinationV1Api
  /** For the CRD check at start-up. */
  discovery?: ApiextensionsV1Api
  authz: AuthorizationV1Api
}

/** Options of loadKubeContext. */
export interface KubeContextOptions {
  /** Path of a kubeconfig file; absent: the in-cluster ServiceAccount. */
  kubeconfig?: string
  /** Tower's namespace; default tower-system. */
  namespace?: string
}

/** A Kubernetes namespace name: a DNS label. */
const NAMESPACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/

/** Loads the configuration and builds the API clients; throws TOWER_ERR_INVALID_ARG for a bad namespace. */
export function loadKubeContext (opts: KubeContextOptions): KubeContext {
  const namespace = opts.namespace ?? DEFAULT_NAMESPACE
  if (typeof namespace !== 'string' || !NAMESPACE.test(namespace)) {
    throw new InvalidArgumentError(`--namespace must be a DNS label, got ${JSON.stringify(namespace)}`)
  }
  const kc = new KubeConfig()
  if (opts.kubeconfig !== undefined) kc.loadFromFile(opts.kubeconfig)
  else kc.loadFromCluster()
  return contextFrom(kc, namespace)
}

/** Builds the API clients around an already loaded KubeConfig (tests build one with loadFromOptions). */
export function contextFrom (kc: KubeConfig, namespace: string): KubeContext {
  return {
    kc,
    namespace,
    core: kc.makeApiClient(CoreV1Api),
    custom: kc.makeApiClient(CustomObjectsApi),
    coordination: kc.makeApiClient(CoordinationV1Api),
    discovery: kc.makeApiClient(ApiextensionsV1Api),
    authz: kc.makeApiClient(AuthorizationV1Api)
  }
}
