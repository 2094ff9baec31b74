/**
 * Start-up checks of the kubernetes backend, so a missing CRD or a missing
 * RBAC rule fails the server at once with a message naming what to fix,
 * instead of surfacing later as an informer retrying 403s forever.
 *
 * REQUIRED_ACCESS is the one table of what Tower's server needs; the RBAC
 * in deploy/controller grants exactly this, and a test compares the two.
 */
import { CLUSTER_CRD, CLUSTER_GROUP, CLUSTER_PLURAL } from './names.ts'
import { CrdMissingError, ForbiddenError, kubeApiError, statusOf } from './errors.ts'
import type { KubeContext } from './kube-context.ts'

/** One permission: verbs on a resource, cluster-wide or in Tower's namespace. */
export interface AccessRule {
  /** API group; '' for the core group. */
  group: string
  resource: string
  subresource?: string
  verbs: readonly string[]
  /** 'cluster': cluster-scoped; 'namespace': in Tower's namespace. */
  scope: 'cluster' | 'namespace'
  /** Limited to this object name (RBAC resourceNames). */
  name?: string
  /** With scope 'namespace': this namespace instead of Tower's (e.g. KubeFed's, for --join-kubefed). */
  namespace?: string
}

/** Every permission the server's identity needs in the host cluster. */
export const REQUIRED_ACCESS: readonly AccessRule[] = [
  { group: CLUSTER_GROUP, resource: CLUSTER_PLURAL, verbs: ['get', 'list', 'watch', 'update', 'patch'], scope: 'cluster' },
  { group: CLUSTER_GROUP, resource: CLUSTER_PLURAL, subresource: 'status', verbs: ['update', 'patch'], scope: 'cluster' },
  { group: CLUSTER_GROUP, resource: CLUSTER_PLURAL, subresource: 'finalizers', verbs: ['update'], scope: 'cluster' },
  { group: 'apiextensions.k8s.io', resource: 'customresourcedefinitions', verbs: ['get'], scope: 'cluster', name: CLUSTER_CRD },
  { group: '', resource: 'secrets', verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'], scope: 'namespace' },
  { group: '', resource: 'services', verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'], scope: 'namespace' },
  { group: '', resource: 'configmaps', verbs: ['get', 'list', 'watch', 'create', 'update', 'patch'], scope: 'namespace' },
  { group: 'coordination.k8s.io', resource: 'leases', verbs: ['get', 'list', 'create', 'update', 'delete'], scope: 'namespace' },
  { group: 'discovery.k8s.io', resource: 'endpointslices', verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'], scope: 'namespace' },
  { group: '', resource: 'events', verbs: ['create', 'patch'], scope: 'namespace' }
]

/** `resource[/subresource][.group]`, as kubectl and RBAC messages spell it. */
export function resourceLabel (r: Pick<AccessRule, 'group' | 'resource' | 'subresource'>): string {
  return `${r.resource}${r.subresource !== undefined ? `/${r.subresource}` : ''}${r.group !== '' ? `.${r.group}` : ''}`
}

/**
 * Checks that the Cluster CRD is installed (TOWER_ERR_CRD_MISSING) and that
 * every verb of REQUIRED_ACCESS is allowed (TOWER_ERR_FORBIDDEN naming the
 * first missing verb, resource and namespace). Other failures: TOWER_ERR_KUBE_API.
 */
export async function preflight (ctx: KubeContext, rules: readonly AccessRule[] = REQUIRED_ACCESS): Promise<void> {
  if (ctx.discovery !== undefined) {
    try {
      await ctx.discovery.readCustomResourceDefinition({ name: CLUSTER_CRD })
    } catch (err) {
      const status = statusOf(err)
      if (status === 404) throw new CrdMissingError(CLUSTER_CRD)
      if (status === 403) throw new ForbiddenError('get', `customresourcedefinitions.apiextensions.k8s.io/${CLUSTER_CRD}`, undefined)
      throw kubeApiError(`reading the CustomResourceDefinition ${CLUSTER_CRD}`, err)
    }
  }
  const checks = rules.flatMap((rule) => rule.verbs.map((verb) => ({ rule, verb })))
  const results = await Promise.all(checks.map(async ({ rule, verb }) => {
    const namespace = rule.scope === 'namespace' ? rule.namespace ?? ctx.namespace : undefined
    try {
      const review = await ctx.authz.createSelfSubjectAccessReview({
        body: {
          apiVersion: 'authorization.k8s.io/v1',
          kind: 'SelfSubjectAccessReview',
          spec: { resourceAttributes: { verb, group: rule.group, resource: rule.resource, subresource: rule.subresource, namespace, name: rule.name } }
        }
      })
      return { rule, verb, namespace, allowed: review.status?.allowed === true, why: typeof review.status?.reason === 'string' ? review.status.reason.slice(0, 200) : '' }
    } catch (err) {
      throw kubeApiError('SelfSubjectAccessReview', err)
    }
  }))
  const denied = results.find((r) => !r.allowed)
  if (denied !== undefined) throw new ForbiddenError(denied.verb, resourceLabel(denied.rule), denied.namespace, denied.why)
}
