/**
 * Header rules for re-originated requests (RFC 9110 §7.6.1): hop-by-hop
 * headers and any header the Connection header names belong to one
 * connection and are not forwarded. The tunnel side's Authorization is
 * dropped too: the agent adds the member cluster's own credential.
 * Impersonate-* headers pass: the server strips callers' and sets its own.
 */
import type { IncomingMessage } from 'node:http'

const HOP_BY_HOP = [
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization',
  'te', 'trailer', 'transfer-encoding', 'upgrade'
]

// Set by the agent itself (Host, Authorization) and so never copied.
const REQUEST_DROP = new Set([...HOP_BY_HOP, 'host', 'authorization'])
const RESPONSE_DROP = new Set(HOP_BY_HOP)

/** Headers for the upstream request, as a flat raw list, without Host and Authorization (the upstream adds those). */
export function upstreamRequestHeaders (req: IncomingMessage, upgrade: boolean): string[] {
  const drop = withConnectionTokens(REQUEST_DROP, req.headers.connection)
  const out = filter(req.rawHeaders, drop)
  if (upgrade) {
    out.push('Connection', 'Upgrade', 'Upgrade', String(req.headers.upgrade ?? ''))
  } else if (req.headers['transfer-encoding'] !== undefined) {
    // the body arrives de-chunked from the parser; node re-chunks it when told to
    out.push('Transfer-Encoding', 'chunked')
  }
  return out
}

/** Headers of an upstream response to send back through the tunnel, as a flat raw list. */
export function downstreamResponseHeaders (res: IncomingMessage): string[] {
  return filter(res.rawHeaders, withConnectionTokens(RESPONSE_DROP, res.headers.connection))
}

function withConnectionTokens (base: Set<string>, connection: string | undefined): Set<string> {
  if (connection === undefined) return base
  const drop = new Set(base)
  for (const token of connection.split(',')) {
    const t = token.trim().toLowerCase()
    // Never let a caller's "Connection: Impersonate-User" strip the
    // impersonation the server set: the request would then run with the
    // agent's own, broader identity.
    if (t !== '' && !t.startsWith('impersonate-')) drop.add(t)
  }
  return drop
}

function filter (raw: string[], drop: Set<string>): string[] {
  const out: string[] = []
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (!drop.has(raw[i].toLowerCase())) out.push(raw[i], raw[i + 1])
  }
  return out
}
