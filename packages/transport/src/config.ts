/**
 * The tuned WebSocket and mux settings both ends use. Server and agent must
 * agree on these (message size limit, keepalive), so they live here rather
 * than in each side's config.
 */
import type { ClientOptions, ServerOptions } from 'ws'
import type { SessionOptions } from '@tower/mux'
import { MAX_PAYLOAD } from './constants.ts'

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
 * role): `new Session(wsDuplex(ws), { ...sessionOptions({ logger }), client: false })`.
 * `overrides` win over {@link SESSION_DEFAULTS}.
 */
export function sessionOptions (overrides: Partial<Omit<SessionOptions, 'client'>> = {}): Omit<SessionOptions, 'client'> {
  // the mux validates the values (verifyConfig) when the Session is built
  return { ...SESSION_DEFAULTS, ...dropUndefined(overrides) }
}

/**
 * `ws` server options for the agent endpoint. Spread them into
 * `new WebSocketServer({ noServer: true, ...wsServerOptions() })`.
 */
export function wsServerOptions (): ServerOptions {
  return {
    // Compression costs CPU and memory per message and the payload (mostly
    // TLS inside passthrough, JSON in proxy mode) is better left to HTTP.
    perMessageDeflate: false,
    maxPayload: MAX_PAYLOAD,
    // Messages are binary mux bytes; text frames are rejected anyway.
    skipUTF8Validation: true
  }
}

/** Options of {@link wsClientOptions}. */
export interface WsClientOptionsInput {
  /** True when the URL is `wss:`. Only then is masking skipped. */
  secure: boolean
  /** How long the opening handshake may take, in milliseconds. */
  handshakeTimeout?: number
}

/**
 * `ws` client options for the agent's connection. Over wss the mask is
 * all-zero, which ws recognises and skips: masking exists to stop cache
 * poisoning of cleartext intermediaries, and inside TLS there are none. Over
 * plain ws the mask is kept, as RFC 6455 requires.
 */
export function wsClientOptions (input: WsClientOptionsInput): ClientOptions {
  const options: ClientOptions = {
    perMessageDeflate: false,
    maxPayload: MAX_PAYLOAD,
    skipUTF8Validation: true,
    // A redirect could send the join token to another host.
    followRedirects: false
  }
  if (input.handshakeTimeout !== undefined) options.handshakeTimeout = input.handshakeTimeout
  if (input.secure) options.generateMask = () => {}
  return options
}

function dropUndefined<T extends object> (o: T): Partial<T> {
  const out: Partial<T> = {}
  for (const [k, v] of Object.entries(o)) {
    if (v !== undefined) (out as Record<string, unknown>)[k] = v
  }
  return out
}
