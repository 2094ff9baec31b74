/**
 * Server configuration: defaults next to their validation.
 *
 * Every listening port (the agent endpoint, each proxy-mode and each
 * passthrough cluster port) has the same guards against peers that
 * connect and then do nothing: a TLS handshake timeout (for passthrough, the
 * time until the caller's first byte), a request-head timeout, an idle
 * timeout, a cap on connections open at once, and a cap per source address
 * on connections not yet authenticated (source-cap.ts).
 */
import type { Registry } from 'prom-client'
import { InvalidArgumentError, type Logger } from '@tower/mux'
import type { AuditLog } from './audit.ts'

/** Timeouts and cap of one listening port. */
export interface ListenerLimits {
  /**
   * Time from TCP accept to a finished TLS handshake, in milliseconds; a
   * socket still handshaking then is destroyed. On passthrough ports, where
   * Tower does not terminate TLS, the time until the caller's first byte.
   */
  tlsHandshakeTimeoutMs: number
  /**
   * Socket inactivity (no byte either way) after which a connection is
   * destroyed, in milliseconds; 0 = never. Agent sessions are exempt once
   * accepted (the mux keepalive watches them), and so are upgraded caller
   * connections (exec, attach, port-forward), which may sit idle for hours.
   */
  idleTimeoutMs: number
  /** Connections open at once on the port; beyond it new ones are closed at accept. */
  maxConnections: number
  /**
   * Connections one source address (an IPv6 /64) may hold at once on the port
   * while not yet authenticated (TLS handshake, or before the agent's token or
   * the caller's credential was verified; on a passthrough port, before the
   * first byte); beyond it its new ones are closed at accept.
   */
  maxUnauthenticatedPerSource: number
}

/** Limits of the agent endpoint. */
export interface AgentEndpointLimits extends ListenerLimits {
  /** Agent admissions per second on average (0 = unlimited). Drawn only after the agent authenticated. */
  acceptPerSecond: number
  /** Agent admissions allowed at once before the rate applies. */
  acceptBurst: number
  /** Time for an agent to send its upgrade request head, in milliseconds. */
  handshakeTimeoutMs: number
  /**
   * Streams open at once on one agent's session (requests, watches, exec
   * sessions). Beyond it callers get 503 with Retry-After instead of a queue.
   * Sent to the agent in the 101 (`tower-max-streams`).
   */
  maxStreamsPerAgent: number
  /**
   * How long a stream the server opens may wait for the agent's ACK, in
   * milliseconds; past it the stream fails and the session (a dead peer) is
   * closed.
   */
  streamOpenTimeoutMs: number
}

/** Limits of each cluster port. */
export interface CallerLimits extends ListenerLimits {
  /** Largest request head accepted, in bytes; larger gets 431. */
  maxHeaderBytes: number
  /** Time for a caller to send a request head, in milliseconds. */
  headersTimeoutMs: number
  /** Idle keep-alive time of a caller connection between requests, in milliseconds. */
  keepAliveTimeoutMs: number
  /**
   * How long a cluster without an agent counts as "reconnecting", in
   * milliseconds: within it callers get 503 with Retry-After; after it the
   * cluster is offline and callers get 502 with a plain-text message and no
   * Retry-After. kubectl then fails at once and prints Tower's message (for a
   * 503 it retries, then prints a fixed sentence of its own on discovery).
   */
  offlineGraceMs: number
  /**
   * Streams an HTTP/2 caller may have open at once on one connection
   * (requests and watches; SETTINGS_MAX_CONCURRENT_STREAMS). client-go opens
   * another connection when one is full.
   */
  h2MaxConcurrentStreams: number
}

/** Options of {@link TowerServer}. */
export interface ServerOptions {
  /** Host to bind the agent endpoint to. */
  listenHost: string
  /** Port of the agent endpoint; 0 lets the OS choose. */
  listenPort: number
  /** Host to bind the cluster ports to. */
  clusterHost: string
  agentEndpoint: AgentEndpointLimits
  caller: CallerLimits
  /** On stop, how long agent sessions may drain before they are cut, in milliseconds. */
  drainTimeoutMs: number
  /**
   * How often the server certificate is checked for renewal, in
   * milliseconds; a renewed one is loaded into every running listener.
   */
  certCheckIntervalMs: number
  /** Deadline of the `GET /version` sent through a proxy-mode cluster's tunnel when its first agent connects, in milliseconds. */
  versionProbeTimeoutMs: number
  /** The prom-client Registry the server's metrics go in (createMetricsRegistry); absent: a private one. Never the global default. */
  metricsRegistry?: Registry
  /** Where each caller request's audit record goes (see audit.ts); absent: no audit log. */
  audit?: AuditLog
  logger: Logger
}

/**
 * Default of {@link ListenerLimits.maxUnauthenticatedPerSource}. A client-go
 * process opens a handful of connections at once, so 64 leaves room for a
 * NAT gateway in front of many callers (or of agents reconnecting together
 * after a restart: a refused agent retries with backoff, and a handshake
 * takes milliseconds), while one source can hold only 1/16 of a cluster
 * port's 1,024 connections and cannot lock the port by itself.
 */
export const DEFAULT_MAX_UNAUTHENTICATED_PER_SOURCE = 64

/** Defaults for every limit. */
export const defaultServerConfig = {
  listenHost: '0.0.0.0',
  listenPort: 8443,
  clusterHost: '0.0.0.0',
  drainTimeoutMs: 5000,
  certCheckIntervalMs: 60 * 60 * 1000,
  versionProbeTimeoutMs: 5000,
  agentEndpoint: {
    acceptPerSecond: 200,
    acceptBurst: 200,
    handshakeTimeoutMs: 10_000,
    maxStreamsPerAgent: 16_384,
    streamOpenTimeoutMs: 10_000,
    tlsHandshakeTimeoutMs: 10_000,
    idleTimeoutMs: 60_000,
    maxUnauthenticatedPerSource: DEFAULT_MAX_UNAUTHENTICATED_PER_SOURCE,
    maxConnections: 16_384
  },
  caller: {
    maxHeaderBytes: 32 * 1024,
    headersTimeoutMs: 30_000,
    keepAliveTimeoutMs: 65_000,
    offlineGraceMs: 10_000,
    h2MaxConcurrentStreams: 250,
    tlsHandshakeTimeoutMs: 10_000,
    idleTimeoutMs: 60 * 60 * 1000,
    maxConnections: 1024,
    maxUnauthenticatedPerSource: DEFAULT_MAX_UNAUTHENTICATED_PER_SOURCE
  }
} satisfies Omit<ServerOptions, 'logger'>

/** Fills defaults and validates; throws InvalidArgumentError naming the option. */
export function verifyServerConfig (opts: Partial<ServerOptions> & { logger: Logger }): ServerOptions {
  const c: ServerOptions = {
    ...defaultServerConfig,
    ...opts,
    agentEndpoint: { ...defaultServerConfig.agentEndpoint, ...opts.agentEndpoint },
    caller: { ...defaultServerConfig.caller, ...opts.caller }
  }
  const port = (name: string, v: number): void => {
    if (!Number.isInteger(v) || v < 0 || v > 65535) throw new InvalidArgumentError(`${name} must be a port number 0-65535, got ${v}`)
  }
  const positive = (name: string, v: number, min = 1): void => {
    if (!Number.isFinite(v) || v < min) throw new InvalidArgumentError(`${name} must be a number >= ${min}, got ${v}`)
  }
  const listener = (prefix: string, l: ListenerLimits): void => {
    positive(`${prefix}.tlsHandshakeTimeoutMs`, l.tlsHandshakeTimeoutMs, 10)
    positive(`${prefix}.idleTimeoutMs`, l.idleTimeoutMs, 0)
    positive(`${prefix}.maxConnections`, l.maxConnections)
    if (!Number.isInteger(l.maxUnauthenticatedPerSource) || l.maxUnauthenticatedPerSource < 1) {
      throw new InvalidArgumentError(`${prefix}.maxUnauthenticatedPerSource must be an integer >= 1, got ${l.maxUnauthenticatedPerSource}`)
    }
  }
  port('listenPort', c.listenPort)
  positive('drainTimeoutMs', c.drainTimeoutMs, 0)
  positive('certCheckIntervalMs', c.certCheckIntervalMs, 10)
  positive('versionProbeTimeoutMs', c.versionProbeTimeoutMs, 10)
  positive('agentEndpoint.acceptPerSecond', c.agentEndpoint.acceptPerSecond, 0)
  positive('agentEndpoint.acceptBurst', c.agentEndpoint.acceptBurst)
  positive('agentEndpoint.handshakeTimeoutMs', c.agentEndpoint.handshakeTimeoutMs, 100)
  positive('agentEndpoint.maxStreamsPerAgent', c.agentEndpoint.maxStreamsPerAgent)
  positive('agentEndpoint.streamOpenTimeoutMs', c.agentEndpoint.streamOpenTimeoutMs, 1)
  listener('agentEndpoint', c.agentEndpoint)
  positive('caller.maxHeaderBytes', c.caller.maxHeaderBytes, 1024)
  positive('caller.headersTimeoutMs', c.caller.headersTimeoutMs, 100)
  positive('caller.keepAliveTimeoutMs', c.caller.keepAliveTimeoutMs, 100)
  positive('caller.offlineGraceMs', c.caller.offlineGraceMs, 0)
  if (!Number.isInteger(c.caller.h2MaxConcurrentStreams) || c.caller.h2MaxConcurrentStreams < 1 || c.caller.h2MaxConcurrentStreams > 2 ** 31 - 1) {
    throw new InvalidArgumentError(`caller.h2MaxConcurrentStreams must be an integer 1-${2 ** 31 - 1}, got ${c.caller.h2MaxConcurrentStreams}`)
  }
  listener('caller', c.caller)
  return c
}
