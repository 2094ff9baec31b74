/**
 * The agent's Prometheus metrics, on a prom-client Registry of its own
 * (never the global default). Counted where things happen: the tunnel's
 * connects, GoAways and window stalls (from the session's events), the
 * upstream dials (from the upstream's connection pool and the h2 pool);
 * read at scrape time: whether the tunnel is up, streams open, and the h2
 * pool's sessions and streams. Every label comes from a fixed set.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import { createMetricsRegistry, exposedNames } from '@tower/transport'
// Shared with the server's metrics; part of this package's API as before.
export { createMetricsRegistry } from '@tower/transport'
import type { Session } from '@tower/mux'
import type { H2PoolStats } from './h2-pool.ts'

/** The `reason` label values of the dial failure counters. */
export const DIAL_FAILURE_REASONS = ['timeout', 'refused', 'dns', 'tls', 'reset', 'rejected', 'other'] as const

/** One of {@link DIAL_FAILURE_REASONS}. */
export type DialFailureReason = typeof DIAL_FAILURE_REASONS[number]

/** What the agent exposes to its metrics at scrape time. */
export interface AgentMetricsSource {
  /** True while a session with the server is up. */
  connected: () => boolean
  /** Streams open on the session now. */
  streams: () => number
  /** The upstream h2 pool's counters, when it has one. */
  h2: () => H2PoolStats | undefined
}

// Upstream dials on a LAN take milliseconds; a struggling apiserver, seconds.
const DIAL_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/** Every metric name an agent exports, as a scrape shows it (histograms with `_bucket`, `_sum`, `_count`), default process metrics included. */
export function agentMetricNames (): string[] {
  const registry = createMetricsRegistry()
  new AgentMetrics(registry)
  return exposedNames(registry)
}

/** The reason label of a dial error, from its code (never from its text). */
export function dialFailureReason (err: Error & { code?: unknown, statusCode?: unknown }): DialFailureReason {
  const code = typeof err.code === 'string' ? err.code : ''
  if (err.statusCode === 401 || err.statusCode === 403) return 'rejected'
  if (code === 'ETIMEDOUT' || code === 'TOWER_ERR_UPSTREAM' || /timed out/i.test(err.message)) return 'timeout'
  if (code === 'ECONNREFUSED') return 'refused'
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'dns'
  if (code === 'ECONNRESET' || code === 'EPIPE') return 'reset'
  if (code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL') || code.includes('CERT') || code === 'DEPTH_ZERO_SELF_SIGNED_CERT' || code === 'SELF_SIGNED_CERT_IN_CHAIN') return 'tls'
  return 'other'
}

function goAwayLabel (code: number): string {
  return code >= 0 && code <= 2 ? String(code) : 'other'
}

/** The agent's metrics; see the module header. */
export class AgentMetrics {
  /** The registry the metrics are registered in. */
  readonly registry: Registry
  #source: AgentMetricsSource | undefined
  #connects = 0
  readonly #reconnects: Counter
  readonly #serverDialFailures: Counter<'reason'>
  readonly #goAways: Counter<'direction' | 'code'>
  readonly #stalls: Counter
  readonly #dialDuration: Histogram<'protocol'>
  readonly #dialFailures: Counter<'reason'>

  /** Registers every agent metric in `registry`. */
  constructor (registry: Registry) {
    this.registry = registry
    const registers = [registry]
    const read = <T>(f: (s: AgentMetricsSource) => T, none: T): T => this.#source === undefined ? none : f(this.#source)
    new Gauge({ name: 'tower_agent_tunnel_connected', help: '1 while the tunnel session with the server is up.', registers, collect () { this.set(read((s) => s.connected() ? 1 : 0, 0)) } })
    new Gauge({ name: 'tower_agent_streams_open', help: 'Mux streams open on the tunnel session (requests, watches, exec sessions).', registers, collect () { this.set(read((s) => s.streams(), 0)) } })
    new Gauge({ name: 'tower_agent_upstream_h2_sessions', help: 'HTTP/2 sessions open to the kube-apiserver.', registers, collect () { this.set(read((s) => s.h2()?.sessions ?? 0, 0)) } })
    new Gauge({ name: 'tower_agent_upstream_h2_streams', help: 'HTTP/2 streams open to the kube-apiserver.', registers, collect () { this.set(read((s) => s.h2()?.streams ?? 0, 0)) } })
    new Counter({ name: 'tower_agent_upstream_h2_requests_total', help: 'Requests sent to the kube-apiserver over HTTP/2 (a replay counts again).', registers, collect () { this.reset(); this.inc(read((s) => s.h2()?.h2Requests ?? 0, 0)) } })
    this.#reconnects = new Counter({ name: 'tower_agent_reconnects_total', help: 'Tunnel sessions established after the first (reconnects).', registers })
    this.#serverDialFailures = new Counter({ name: 'tower_agent_server_dial_failures_total', help: 'Failed connection attempts to the Tower server, by reason.', labelNames: ['reason'], registers })
    this.#goAways = new Counter({ name: 'tower_agent_goaways_total', help: 'yamux GoAway frames on the tunnel, by direction (sent, received) and code (0 normal, 1 protocol error, 2 internal error).', labelNames: ['direction', 'code'], registers })
    this.#stalls = new Counter({ name: 'tower_agent_mux_window_stalls_total', help: 'Writes to the server that waited because the stream\'s window at the server was used up.', registers })
    this.#dialDuration = new Histogram({ name: 'tower_agent_upstream_dial_duration_seconds', help: 'Time to connect to the kube-apiserver (TCP and TLS), in seconds, by protocol (http/1.1, h2).', labelNames: ['protocol'], buckets: DIAL_BUCKETS, registers })
    this.#dialFailures = new Counter({ name: 'tower_agent_upstream_dial_failures_total', help: 'Failed connections to the kube-apiserver, by reason.', labelNames: ['reason'], registers })
  }

  /** Binds the scrape-time source (the agent, once). */
  bind (source: AgentMetricsSource): void {
    this.#source = source
  }

  /** A tunnel session is up: a reconnect after the first, and its GoAways and stalls are counted. */
  connected (session: Session): void {
    if (this.#connects++ > 0) this.#reconnects.inc()
    session.on('goAwaySent', (code) => this.#goAways.inc({ direction: 'sent', code: goAwayLabel(code) }))
    session.on('goAwayReceived', (code) => this.#goAways.inc({ direction: 'received', code: goAwayLabel(code) }))
    session.on('windowStall', () => this.#stalls.inc())
  }

  /** Sessions established so far. */
  get connects (): number { return this.#connects }

  /** A connection attempt to the server failed. */
  serverDialFailed (err: Error): void {
    this.#serverDialFailures.inc({ reason: dialFailureReason(err) })
  }

  /** A connection to the kube-apiserver was established after `ms` milliseconds. */
  upstreamDialed (protocol: 'http/1.1' | 'h2', ms: number): void {
    this.#dialDuration.observe({ protocol }, ms / 1000)
  }

  /** A connection to the kube-apiserver failed. */
  upstreamDialFailed (err: Error): void {
    this.#dialFailures.inc({ reason: dialFailureReason(err) })
  }
}
