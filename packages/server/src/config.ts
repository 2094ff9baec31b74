/**
 * Server configuration: defaults next to their validation.
 */
import { InvalidArgumentError, type Logger } from '@tower/mux'

/** Limits of the agent endpoint. */
export interface AgentEndpointLimits {
  /** Agent admissions per second on average (0 = unlimited). */
  acceptPerSecond: number
  /** Agent admissions allowed at once before the rate applies. */
  acceptBurst: number
  /** Time for an agent to send its upgrade request, in milliseconds. */
  handshakeTimeoutMs: number
  /**
   * Streams open at once on one agent's session (requests, watches, exec
   * sessions). Beyond it callers get 503 with Retry-After instead of a queue.
   */
  maxStreamsPerAgent: number
}

/** Limits of each cluster port. */
export interface CallerLimits {
  /** Largest request head accepted, in bytes; larger gets 431. */
  maxHeaderBytes: number
  /** Time for a caller to send a request head, in milliseconds. */
  headersTimeoutMs: number
  /** Idle keep-alive time of a caller connection, in milliseconds. */
  keepAliveTimeoutMs: number
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
  logger: Logger
}

/** Defaults for every limit. */
export const defaultServerConfig = {
  listenHost: '0.0.0.0',
  listenPort: 8443,
  clusterHost: '0.0.0.0',
  drainTimeoutMs: 5000,
  agentEndpoint: { acceptPerSecond: 200, acceptBurst: 200, handshakeTimeoutMs: 10_000, maxStreamsPerAgent: 16_384 },
  caller: { maxHeaderBytes: 32 * 1024, headersTimeoutMs: 30_000, keepAliveTimeoutMs: 65_000 }
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
  port('listenPort', c.listenPort)
  positive('drainTimeoutMs', c.drainTimeoutMs, 0)
  positive('agentEndpoint.acceptPerSecond', c.agentEndpoint.acceptPerSecond, 0)
  positive('agentEndpoint.acceptBurst', c.agentEndpoint.acceptBurst)
  positive('agentEndpoint.handshakeTimeoutMs', c.agentEndpoint.handshakeTimeoutMs, 100)
  positive('agentEndpoint.maxStreamsPerAgent', c.agentEndpoint.maxStreamsPerAgent)
  positive('caller.maxHeaderBytes', c.caller.maxHeaderBytes, 1024)
  positive('caller.headersTimeoutMs', c.caller.headersTimeoutMs, 100)
  positive('caller.keepAliveTimeoutMs', c.caller.keepAliveTimeoutMs, 100)
  return c
}
