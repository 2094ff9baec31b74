/**
 * The one list of hop-by-hop headers (RFC 9110 §7.6.1), for both ends of the
 * proxy path: they describe one connection and never cross the tunnel, and
 * neither does any header a message's own `Connection` header names.
 *
 * Callers build their drop set once ({@link dropSet}) and pass it per
 * message to {@link withConnectionOptions}, which allocates only when the
 * message has a `Connection` header.
 */

/** Hop-by-hop header names, lower case. */
export const HOP_BY_HOP_HEADERS: ReadonlySet<string> = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization',
  'te', 'trailer', 'transfer-encoding', 'upgrade'
])

/** The hop-by-hop headers plus `extra` (lower case): build once per direction. */
export function dropSet (extra: Iterable<string> = []): ReadonlySet<string> {
  const set = new Set(HOP_BY_HOP_HEADERS)
  for (const name of extra) set.add(name.toLowerCase())
  return set
}

/**
 * `base` plus the header names a message's `Connection` header lists, as a
 * new set only if it lists any. A listed `impersonate-*` name is ignored:
 * a caller's `Connection: Impersonate-User` must never strip the identity
 * the server set, which would run the request with the agent's own.
 */
export function withConnectionOptions (base: ReadonlySet<string>, connection: string | string[] | undefined): ReadonlySet<string> {
  if (connection === undefined) return base
  let drop: Set<string> | undefined
  for (const value of Array.isArray(connection) ? connection : [connection]) {
    for (const token of value.split(',')) {
      const t = token.trim().toLowerCase()
      // `close` is an option, not a header name: no set to build for it.
      if (t === '' || t === 'close' || t.startsWith('impersonate-') || base.has(t)) continue
      drop ??= new Set(base)
      drop.add(t)
    }
  }
  return drop ?? base
}

/** A flat raw header list (`rawHeaders`) without the names in `drop` (lower case). */
export function filterRawHeaders (raw: readonly string[], drop: ReadonlySet<string>): string[] {
  const out: string[] = []
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (!drop.has(raw[i]!.toLowerCase())) out.push(raw[i]!, raw[i + 1]!)
  }
  return out
}
