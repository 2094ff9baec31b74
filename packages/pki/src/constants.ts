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
