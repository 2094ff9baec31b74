/**
 * The tuned mux settings both ends use. Server and agent must agree on these
 * (keepalive, windows), so they live here rather than in each side's config.
 */
import type { SessionOptions } from '@tower/mux'

/** Mux session defaults for the tunnel (both ends). */
export const SESSION_DEFAULTS = {
  /** Initial per-stream receive window, in bytes (the yamux default). */
  initialWindow: 256 * 1024,
  /**
   * Largest per-stream receive window, in bytes: a stalled reader costs at
   * most this much buffer per stream on either side. 4 MiB measured 10-20%
   * more one-stream throughput than 1 MiB between busy processes (where the
   * round trip grows), and no gain beyond.
   */
  maxWindow: 4 * 1024 * 1024,
  /** Open streams per session; a cluster sees as many as its concurrent requests and watches. */
  maxStreams: 16_384,
  /** Inbound SYNs not yet accepted. */
  acceptBacklog: 1024,
  /** Mux keepalive ping interval, in milliseconds. */
  keepAliveInterval: 10_000,
  /**
   * Dead-peer timeout: a keepalive ping unanswered for this long closes the
   * session, in milliseconds. One ping is outstanding at a time, so a dead
   * peer is noticed 30-40 s after it went silent; generous, because a
   * saturated link delays the pong behind a full send window.
   */
  keepAliveTimeout: 30_000
} as const

/**
 * The mux options for the tunnel, without `client` (each end sets its own
 * role): `new Session(wsStream(socket, { role }), { ...sessionOptions({ logger }), client: false })`.
 * `overrides` win over {@link SESSION_DEFAULTS}.
 */
export function sessionOptions (overrides: Partial<Omit<SessionOptions, 'client'>> = {}): Omit<SessionOptions, 'client'> {
  // the mux validates the values (verifyConfig) when the Session is built
  return { ...SESSION_DEFAULTS, ...dropUndefined(overrides) }
}

function dropUndefined<T extends object> (o: T): Partial<T> {
  const out: Partial<T> = {}
  for (const [k, v] of Object.entries(o)) {
    if (v !== undefined) (out as Record<string, unknown>)[k] = v
  }
  return out
}
