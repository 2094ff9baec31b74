/**
 * Authenticates a caller of a cluster port. Two credentials are accepted,
 * both issued by this server for this cluster only:
 *
 * - a client certificate signed by the Tower CA whose SAN binds it to the
 *   cluster (TLS requests but does not require it, so token callers reach HTTP);
 * - a bearer caller token, stored as a hash (KubeFed keeps tokens, not certs).
 *
 * Anything else is refused with 401; nothing unauthenticated is forwarded.
 */
import type { IncomingMessage } from 'node:http'
import type { TLSSocket } from 'node:tls'
import { parseClientIdentity } from '@tower/pki'
import type { Registry } from './registry.ts'
import { bearerToken } from './tokens.ts'

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
}

// A keep-alive connection carries many requests: parse its certificate once.
const certCallers = new WeakMap<TLSSocket, Caller | Refusal>()

/** The caller of `req` on cluster `cluster`'s port, or why it was refused. */
export function authenticateCaller (req: IncomingMessage, cluster: string, registry: Registry): Caller | Refusal {
  const socket = req.socket as TLSSocket
  const byCert = certificateCaller(socket, cluster)
  if (byCert !== undefined && 'user' in byCert) return byCert
  const token = bearerToken(req.headers.authorization)
  if (token !== undefined) {
    const id = registry.verifyCallerToken(cluster, token)
    if (id !== undefined) return { ...id, via: 'token' }
    return { reason: 'bearer token is not a caller token of this cluster' }
  }
  return byCert ?? { reason: 'no client certificate and no bearer token' }
}

function certificateCaller (socket: TLSSocket, cluster: string): Caller | Refusal | undefined {
  const cached = certCallers.get(socket)
  if (cached !== undefined) return cached
  const x509 = socket.getPeerX509Certificate?.()
  if (x509 === undefined) return undefined
  let result: Caller | Refusal
  if (!socket.authorized) {
    result = { reason: `client certificate rejected: ${String(socket.authorizationError)}` }
  } else {
    try {
      const id = parseClientIdentity(x509)
      result = id.cluster === cluster
        ? { user: id.user, groups: id.groups, via: 'certificate' }
        : { reason: `client certificate was issued for cluster "${id.cluster ?? '(none)'}"` }
    } catch (err) {
      result = { reason: `client certificate unreadable: ${(err as Error).message}` }
    }
  }
  certCallers.set(socket, result)
  return result
}
