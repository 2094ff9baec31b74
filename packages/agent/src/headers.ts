/**
 * Header rules for re-originated requests. Hop-by-hop headers and any header
 * the Connection header names belong to one connection and are not
 * forwarded (the one list is in @tower/transport). The tunnel side's Host and
 * Authorization are dropped too: the agent adds the upstream's Host and the
 * member cluster's own credential. Impersonate-* headers pass: the server
 * strips callers' and sets its own.
 */
import type { IncomingMessage } from 'node:http'
import { dropSet, filterRawHeaders, withConnectionOptions } from '@tower/transport'
import type { TunnelRequest } from './exchange.ts'

// Set by the agent itself (Host, Authorization) and so never copied.
const REQUEST_DROP = dropSet(['host', 'authorization'])
const RESPONSE_DROP = dropSet()

/** Headers for an upgrade request to the upstream, as a flat raw list, without Host and Authorization (the upstream adds those). */
export function upstreamRequestHeaders (req: IncomingMessage, upgrade: true): string[] {
  const out = filterRawHeaders(req.rawHeaders, withConnectionOptions(REQUEST_DROP, req.headers.connection))
  if (upgrade) out.push('Connection', 'Upgrade', 'Upgrade', String(req.headers.upgrade ?? ''))
  return out
}

/** Headers for a plain HTTP/1.1 upstream request, from either hop, without Host and Authorization. */
export function plainRequestHeaders (req: TunnelRequest): string[] {
  const out = filterRawHeaders(req.rawHeaders, withConnectionOptions(REQUEST_DROP, req.connection))
  // the body arrives de-chunked (or as hop frames); node chunks it when told to
  if (req.hasBody && req.chunked) out.push('Transfer-Encoding', 'chunked')
  return out
}

/** Headers of an upstream response to send back through the tunnel, as a flat raw list. */
export function downstreamResponseHeaders (res: IncomingMessage): string[] {
  return filterRawHeaders(res.rawHeaders, withConnectionOptions(RESPONSE_DROP, res.headers.connection))
}
