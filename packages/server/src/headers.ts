/**
 * Header rules of the proxy path. Hop-by-hop headers never cross the
 * tunnel, and neither does anything a caller could use to borrow the
 * agent's authority: Authorization and every Impersonate-* header.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade'])

/** True for headers that name a credential or an identity. */
function isCredential (name: string): boolean {
  return name === 'authorization' || name.startsWith('impersonate-')
}

/**
 * The request headers to send through the tunnel: hop-by-hop and credential
 * headers removed; `Connection: Upgrade` and `Upgrade` kept when upgrading.
 */
export function forwardRequestHeaders (headers: IncomingHttpHeaders, upgrade: boolean): OutgoingHttpHeaders {
  const listed = new Set((headerString(headers.connection) ?? '').toLowerCase().split(',').map((s) => s.trim()))
  const out: OutgoingHttpHeaders = {}
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || listed.has(name) || isCredential(name)) continue
    out[name] = value
  }
  if (upgrade && headers.upgrade !== undefined) {
    out.connection = 'Upgrade'
    out.upgrade = headers.upgrade
  }
  return out
}

/** Adds the caller's identity as Impersonate-User / Impersonate-Group. */
export function addImpersonation (headers: OutgoingHttpHeaders, user: string, groups: string[]): void {
  headers['impersonate-user'] = user
  if (groups.length > 0) headers['impersonate-group'] = groups
}

/** Response headers for the caller, from a raw header list, hop-by-hop removed. */
export function forwardResponseHeaders (raw: string[]): string[] {
  const out: string[] = []
  for (let i = 0; i < raw.length; i += 2) {
    if (!HOP_BY_HOP.has(raw[i]!.toLowerCase())) out.push(raw[i]!, raw[i + 1]!)
  }
  return out
}

function headerString (v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(',') : v
}
