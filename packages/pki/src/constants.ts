/**
 * Wire-visible constants of Tower's certificates. Changing one breaks every
 * certificate already issued.
 */

/**
 * Prefix of the SAN URI that binds a client certificate to one member
 * cluster: `tower://cluster/<name>`. A certificate issued for cluster A
 * carries `tower://cluster/A` and is refused on cluster B's listener.
 */
export const CLUSTER_URI_PREFIX = 'tower://cluster/'

/**
 * Prefix of the SAN URI that binds a client certificate to one registration
 * of a cluster: `tower-uid://cluster/<uid>`, where the uid is random and made
 * when the cluster is added. Removing and re-adding a cluster of the same
 * name gives it a new uid, so certificates issued before are refused.
 */
export const CLUSTER_UID_URI_PREFIX = 'tower-uid://cluster/'
