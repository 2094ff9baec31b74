/**
 * How the kubernetes backend turns what the cache holds about one cluster
 * (the Cluster, its join and callers Secrets, its entry in the ports
 * ConfigMap) into the ClusterRecord the server and the shared rules in
 * @tower/server read. A cluster is served only when all of it is there: a
 * proxy Cluster not being deleted, with a port the ports ConfigMap assigns
 * to this very Cluster (name and uid), and a join Secret made for this uid.
 */
import type { V1ConfigMap, V1Secret } from '@kubernetes/client-node'
import { hashToken, type ClusterRecord } from '@tower/server'
import { parseCluster, type ParsedCluster } from './cluster-resource.ts'
import { CLUSTER_UID_ANNOTATION, ConditionType, PortReason } from './names.ts'
import { readCallersSecret, readJoinSecret } from './secrets.ts'

/** What buildRecord needs about one cluster. */
export interface RecordSources {
  cluster: object | undefined
  joinSecret: V1Secret | undefined
  callersSecret: V1Secret | undefined
  portsConfigMap: V1ConfigMap | undefined
}

/** The result of buildRecord: a record, or why the cluster is not served yet. */
export type RecordResult = { ok: true, record: ClusterRecord, parsed: ParsedCluster & { ok: true } } | { ok: false, why: string, parsed?: ParsedCluster }

/** The owner the ports ConfigMap names for `port`, as `<cluster>/<uid>`, or undefined. */
export function portOwner (cm: V1ConfigMap | undefined, port: number): string | undefined {
  const data = cm?.data
  if (data === undefined || data === null || typeof data !== 'object') return undefined
  const key = String(port)
  if (!Object.hasOwn(data, key)) return undefined
  const v = (data as Record<string, unknown>)[key]
  return typeof v === 'string' ? v : undefined
}

/**
 * Builds the record of one cluster. With `requirePort` false (add() waiting
 * for the controller), a cluster without an allocated port gets port 0
 * instead of being refused.
 */
export function buildRecord (src: RecordSources, requirePort = true): RecordResult {
  const parsed = parseCluster(src.cluster)
  if (!parsed.ok) return { ok: false, why: `invalid Cluster: ${parsed.message}`, parsed }
  if (parsed.type !== 'proxy') return { ok: false, why: 'not a proxy Cluster', parsed }
  if (parsed.deleting) return { ok: false, why: 'being deleted', parsed }
  let port = 0
  if (parsed.port !== undefined && portOwner(src.portsConfigMap, parsed.port) === `${parsed.name}/${parsed.uid}`) port = parsed.port
  if (port === 0 && requirePort) return { ok: false, why: 'no port allocated yet', parsed }
  const join = readJoinSecret(src.joinSecret)
  if (join === undefined) return { ok: false, why: 'no join Secret yet', parsed }
  if (join.clusterUid !== undefined && join.clusterUid !== parsed.uid) return { ok: false, why: 'join Secret belongs to an earlier Cluster of that name', parsed }
  const callers = readCallersSecret(sameUid(src.callersSecret, parsed.uid) ? src.callersSecret : undefined)
  const record: ClusterRecord = {
    name: parsed.name,
    uid: parsed.uid,
    mode: parsed.mode,
    port,
    impersonate: parsed.impersonate,
    agentTokenHash: hashToken(join.token),
    tokenRotatedAt: join.rotatedAt,
    callerTokens: callers.callerTokens,
    revokedSerials: callers.revokedSerials,
    createdAt: parsed.createdAt !== '' ? parsed.createdAt : join.rotatedAt
  }
  if (join.previous !== undefined) record.previousAgentToken = { hash: hashToken(join.previous.token), until: join.previous.until }
  return { ok: true, record, parsed }
}

/** A callers Secret left from an earlier Cluster of the same name grants nothing. */
function sameUid (secret: V1Secret | undefined, uid: string): boolean {
  const annotations = secret?.metadata?.annotations
  if (annotations === undefined || annotations === null) return true
  const v = Object.hasOwn(annotations, CLUSTER_UID_ANNOTATION) ? annotations[CLUSTER_UID_ANNOTATION] : undefined
  return v === undefined || v === uid
}

const PORT_REASONS: ReadonlySet<string> = new Set(Object.values(PortReason))

/** The controller's Initialized=False port verdict (PortConflict, PortOutOfRange, PortRangeExhausted) on this Cluster of this uid, if any. */
export function portRefusal (cluster: object | undefined, uid: string): { reason: string, message: string } | undefined {
  const parsed = parseCluster(cluster)
  if (!parsed.ok || parsed.uid !== uid) return undefined
  const c = parsed.conditions.find((x) => x.type === ConditionType.Initialized)
  if (c?.status !== 'False' || c.reason === undefined || !PORT_REASONS.has(c.reason)) return undefined
  return { reason: c.reason, message: c.message ?? c.reason }
}
