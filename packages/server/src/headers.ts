/**
 * Header rules of the proxy path, server side. Hop-by-hop headers never
 * cross the tunnel (the one list is in @tower/transport), and neither does
 * anything a caller could use to borrow the agent's authority:
 * Authorization and every Impersonate-* header.
 *
 * Headers travel as flat raw lists (`rawHeaders`), so repeated headers keep
 * their order and no name from the wire ever becomes an object key.
 */
import type { IncomingMessage } from 'node:http'
import { dropSet, filterRawHeaders, withConnectionOptions } from '@tower/transport'

const REQUEST_DROP = dropSet(['authorization'])
const RESPONSE_DROP = dropSet()

/** True for headers that name a credential or an identity. */
function isCredential (lowerName: string): boolean {
  return lowerName === 'authorization' || lowerName.startsWith('impersonate-')
}

/**
 * The request headers to send through the tunnel, as a flat raw list:
 * hop-by-hop and credential headers removed; `Connection: Upgrade` and
 * `Upgrade` kept when upgrading.
 */
export function forwardRequestHeaders (req: IncomingMessage, upgrade: boolean): string[] {
  const drop = withConnectionOptions(REQUEST_DROP, req.headers.connection)
  const raw = req.rawHeaders
  const out: string[] = []
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase()
    if (!drop.has(name) && !isCredential(name)) out.push(raw[i]!, raw[i + 1]!)
  }
  if (upgrade && req.headers.upgrade !== undefined) out.push('Connection', 'Upgrade', 'Upgrade', req.headers.upgrade)
  return out
}

/** Adds the caller's identity as Impersonate-User and one Impersonate-Group per group. */
export function addImpersonation (headers: string[], user: string, groups: readonly string[]): void {
  headers.push('Impersonate-User', user)
  for (const group of groups) headers.push('Impersonate-Group', group)
}

/** Response headers for the caller, hop-by-hop (and what its Connection header lists) removed. */
export function forwardResponseHeaders (res: IncomingMessage): string[] {
  return filterRawHeaders(res.rawHeaders, withConnectionOptions(RESPONSE_DROP, res.headers.connection))
}
