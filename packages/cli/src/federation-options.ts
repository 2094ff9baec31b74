/**
 * The federation-join flags of `tower server` (controller mode only):
 * --join-kubefed, --kubefed-namespace, --join-karmada, --federation-endpoint-host
 * and --federation-token-ttl, and their translation into the controller's
 * FederationSettings. With --registry file they are a usage error: the
 * one-off `tower join kubefed|karmada` does that job there.
 */
import type { Argv, Options } from 'yargs'
import type { FederationSettings } from '@tower/controller'
import { parseDuration, UsageError } from './options.ts'

/** The flags, as yargs options. */
export const federationOptions = {
  'join-kubefed': { type: 'boolean', describe: 'With --registry kubernetes: keep a KubeFedCluster (and its caller-token Secret) per proxy Cluster in the host cluster, and the Cluster\'s Federated condition from its Ready [default: false] (TOWER_JOIN_KUBEFED)' },
  'kubefed-namespace': { type: 'string', describe: 'With --join-kubefed: KubeFed\'s namespace in the host cluster [default: kube-federation-system] (TOWER_KUBEFED_NAMESPACE)' },
  'join-karmada': { type: 'string', describe: 'With --registry kubernetes: kubeconfig of Karmada\'s apiserver; keep a push-mode Karmada Cluster per proxy Cluster there (TOWER_JOIN_KARMADA)' },
  'federation-endpoint-host': { type: 'string', describe: 'Host the federation objects\' apiEndpoint names, with the cluster\'s own Tower port, instead of mc-<name>.<namespace>.svc:6443; for a federation controller outside the host cluster; must be a certificate SAN [default: the Service] (TOWER_FEDERATION_ENDPOINT_HOST)' },
  'federation-token-ttl': { type: 'string', describe: 'Lifetime of the federation caller tokens, e.g. 30d; each is replaced at two thirds, then revoked [default: 30d] (TOWER_FEDERATION_TOKEN_TTL)' }
} satisfies Record<string, Options>

/** What the flags parse into. */
export interface FederationArgs {
  'join-kubefed'?: boolean
  'kubefed-namespace'?: string
  'join-karmada'?: string
  'federation-endpoint-host'?: string
  'federation-token-ttl'?: string
}

/** Adds the flags to a command. */
export function withFederationOptions<T> (y: Argv<T>): Argv<T & FederationArgs> {
  let out = y as unknown as Argv<T & FederationArgs>
  for (const [name, opt] of Object.entries(federationOptions)) out = out.option(name, opt as Options) as unknown as Argv<T & FederationArgs>
  return out
}

/** The controller's federation settings; undefined when no join is asked for. Throws UsageError for the file registry. */
export function federationSettings (args: FederationArgs, registry: 'file' | 'kubernetes'): FederationSettings | undefined {
  const kubefed = args['join-kubefed'] === true
  const karmada = args['join-karmada']
  if (!kubefed && karmada === undefined) return undefined
  if (registry !== 'kubernetes') {
    throw new UsageError('--join-kubefed and --join-karmada apply to --registry kubernetes only; with the file registry use "tower join kubefed|karmada NAME"')
  }
  if (karmada === '') throw new UsageError('--join-karmada needs the path of a kubeconfig for Karmada\'s apiserver')
  const ttl = args['federation-token-ttl']
  return {
    kubefed,
    kubefedNamespace: args['kubefed-namespace'],
    karmadaKubeconfig: karmada,
    endpointHost: args['federation-endpoint-host'],
    tokenTtlMs: ttl === undefined ? undefined : parseDuration(ttl, '--federation-token-ttl')
  }
}
