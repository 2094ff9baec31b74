/**
 * Authenticates a caller of a cluster port. Two credentials are accepted,
 * both issued by this server for this cluster only:
 *
 * - a client certificate signed by the Tower CA whose SANs bind it to the
 *   cluster and to this registration of it (its uid: a cluster removed and
 *   re-added refuses every certificate issued before), and whose serial is not on
 *   the cluster's denylist (TLS requests but does not require a certificate,
 *   so token callers reach HTTP);
 * - a bearer caller token, stored as a hash (KubeFed keeps tokens, not certs).
 *
 * Anything else is refused with 401; nothing unauthenticated is forwarded.
 */
import type { IncomingMessage } from 'node:http'
import type { TLSSocket } from 'node:tls'
import { normalizeSerial, parseClientIdentity, type ClientIdentity } from '@tower/pki'
import type { ClusterRegistry } from './registry/api.ts'
import { bearerToken } from './registry/tokens.ts'
import type { CallerRefusalReason } from './metrics.ts'

/** An authenticated caller. */
export interface Caller {
  user: string
  groups: string[]
  /** Which credential proved it. */
  via: 'certificate' | 'token'
}

/** Why a caller was refused; logged, and sent back in the 401 body. */
export interface Refusal {
  reason: string
  /** The kind of refusal, from a fixed set (the metrics' `reason` label). */
  kind: CallerRefusalReason
}

/** A verified certificate's identity, serial and start of validity (ms since epoch), or why it is unusable. */
type CertResult = { id: ClientIdentity, serial: string } | Refusal


// A keep-alive connection carries many requests: parse its certificate once.
// Whether the registration and serial still hold is checked on every request,
// so a revocation or a re-add also ends requests on open connections.
const certResults = new WeakMap<TLSSocket, CertResult>()

/** The caller of `req` on cluster `cluster`'s port, or why it was refused. */
export function authenticateCaller (req: IncomingMessage, cluster: string, registry: ClusterRegistry): Caller | Refusal {
  const socket = req.socket as TLSSocket
  const byCert = certificateCaller(socket, cluster, registry)
  if (byCert !== undefined && 'user' in byCert) return byCert
  const token = bearerToken(req.headers.authorization)
  if (token !== undefined) {
    const id = registry.verifyCallerToken(cluster, token)
    if (id !== undefined) return { ...id, via: 'token' }
    return { reason: 'bearer token is not a caller token of this cluster', kind: 'token-unknown' }
  }
  return byCert ?? { reason: 'no client certificate and no bearer token', kind: 'no-credentials' }
}

function certificateCaller (socket: TLSSocket, cluster: string, registry: ClusterRegistry): Caller | Refusal | undefined {
  const cert = certificateResult(socket)
  if (cert === undefined || 'reason' in cert) return cert
  const { id, serial } = cert
  if (id.cluster !== cluster) return { reason: `client certificate was issued for cluster "${id.cluster}"`, kind: 'cert-wrong-cluster' }
  const rec = registry.find(cluster)
  if (rec === undefined) return { reason: 'the cluster is no longer registered', kind: 'cert-cluster-gone' }
  // Tower writes the registration's uid into every certificate it issues; one
  // without it cannot be tied to this registration, so it fails closed.
  if (id.clusterUid === undefined) return { reason: 'client certificate carries no cluster uid (issued before this Tower version, or by other tooling): issue a new one with "tower kubeconfig"', kind: 'cert-no-uid' }
  if (id.clusterUid !== rec.uid) return { reason: 'client certificate was issued for an earlier registration of this cluster', kind: 'cert-stale-uid' }
  if (rec.revokedSerials.includes(serial)) return { reason: `client certificate ${serial} is revoked`, kind: 'cert-revoked' }
  return { user: id.user, groups: id.groups, via: 'certificate' }
}

function certificateResult (socket: TLSSocket): CertResult | undefined {
  const cached = certResults.get(socket)
  if (cached !== undefined) return cached
  const x509 = socket.getPeerX509Certificate?.()
  if (x509 === undefined) return undefined
  let result: CertResult
  if (!socket.authorized) {
    result = { reason: `client certificate rejected: ${String(socket.authorizationError)}`, kind: 'cert-untrusted' }
  } else {
    try {
      const serial = normalizeSerial(x509.serialNumber)
      result = serial === undefined
        ? { reason: 'client certificate has an unreadable serial', kind: 'cert-unreadable' }
        : { id: parseClientIdentity(x509), serial }
    } catch (err) {
      result = { reason: `client certificate unreadable: ${(err as Error).message}`, kind: 'cert-unreadable' }
    }
  }
  certResults.set(socket, result)
  return result
}
