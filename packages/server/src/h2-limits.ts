/**
 * HTTP/2 limits of a proxy-mode cluster port, on top of the limits every
 * port has (CallerLimits). One TLS connection carries a caller's whole
 * session, so what HTTP/1.1 bounded per connection is bounded here per
 * session and per stream: streams at once, the size of a header list, and
 * how much protocol abuse (invalid frames, refused streams, SETTINGS and
 * PING floods) a session may cost before it is torn down. Abuse costs the
 * session, never the process.
 */
import type { SecureServerOptions } from 'node:http2'
import { InvalidArgumentError } from '@tower/mux'

/** HTTP/2 limits of one cluster port. */
export interface H2Limits {
  /**
   * Streams a caller may have open at once on one session (requests and
   * watches; SETTINGS_MAX_CONCURRENT_STREAMS). client-go opens another
   * connection when one is full.
   */
  maxConcurrentStreams: number
  /**
   * Invalid frames (or frames on closed streams) a session may send before
   * it is destroyed; a flood costs the session.
   */
  maxInvalidFrames: number
  /** Streams Tower may refuse (RST_STREAM) on one session before it is destroyed. */
  maxRejectedStreams: number
  /** Memory nghttp2 may hold for one session (header tables, queued frames), in megabytes. */
  maxSessionMemoryMb: number
}

/** Defaults of {@link H2Limits}. */
export const DEFAULT_H2_LIMITS: Readonly<H2Limits> = Object.freeze({
  maxConcurrentStreams: 250,
  maxInvalidFrames: 100,
  maxRejectedStreams: 100,
  maxSessionMemoryMb: 10
})

/** `DEFAULT_H2_LIMITS` overlaid with `limits`, validated; throws InvalidArgumentError naming the option. */
export function verifyH2Limits (limits: Partial<H2Limits> = {}): H2Limits {
  const out: H2Limits = { ...DEFAULT_H2_LIMITS, ...limits }
  const check = (name: keyof H2Limits, min: number, max: number): void => {
    const v = out[name]
    if (!Number.isInteger(v) || v < min || v > max) throw new InvalidArgumentError(`h2.${name} must be an integer ${min}-${max}, got ${v}`)
  }
  check('maxConcurrentStreams', 1, 2 ** 31 - 1)
  check('maxInvalidFrames', 0, 1_000_000)
  check('maxRejectedStreams', 0, 1_000_000)
  check('maxSessionMemoryMb', 1, 1024)
  return out
}

/**
 * The node:http2 server options for `limits`; `maxHeaderBytes` (the port's
 * request-head cap) becomes the header list size an h2 caller may send.
 */
export function h2ServerOptions (limits: H2Limits, maxHeaderBytes: number): SecureServerOptions {
  return {
    maxSessionInvalidFrames: limits.maxInvalidFrames,
    maxSessionRejectedStreams: limits.maxRejectedStreams,
    maxSessionMemory: limits.maxSessionMemoryMb,
    // A SETTINGS frame with more entries than this is a flood: the session ends.
    maxSettings: 32,
    maxOutstandingPings: 10,
    maxHeaderListPairs: 512,
    settings: {
      maxConcurrentStreams: limits.maxConcurrentStreams,
      maxHeaderListSize: maxHeaderBytes,
      // Advertised so an extended CONNECT (RFC 8441 WebSocket over h2) gets a
      // clear refusal instead of a protocol error: upgrades stay HTTP/1.1.
      enableConnectProtocol: true
    }
  }
}
