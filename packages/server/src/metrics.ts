/**
 * The server's Prometheus metrics, on a prom-client Registry of its own (never
 * the global default, so one process can run several servers).
 *
 * Two kinds of values:
 * - counted as things happen (requests, refusals, handshakes, GoAways,
 *   window stalls, EndpointSlice writes), by the call sites that see them;
 * - read at scrape time from the server's own state ({@link MetricsSource}:
 *   agents, streams, listeners, bytes, readiness), so nothing is kept twice.
 *
 * Label cardinality is bounded: `cluster` only for registered clusters (every
 * series of a cluster is removed when it leaves the registry), `verb` from a
 * fixed set derived from the Kubernetes request path and method (request-verb.ts,
 * shared with the audit log), `code` from a
 * fixed set of status codes (others as their class, `2xx`…), `reason` and
 * `result` from fixed sets.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import { createMetricsRegistry, exposedNames } from '@tower/transport'
// Shared with the agent's metrics; part of this package's API as before.
export { createMetricsRegistry, exposedNames } from '@tower/transport'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { IncomingHttpHeaders } from 'node:http2'
import type { Duplex } from 'node:stream'
import type { Session } from '@tower/mux'
import type { TunnelPool } from './tunnels.ts'
import { metricsVerb, requestInfo, type MetricsVerb } from './request-verb.ts'
import { sniffStatus } from './socket-status.ts'

/** What the server exposes to its metrics at scrape time. */
export interface MetricsSource {
  /** Names of the registered clusters. */
  clusters: () => string[]
  tunnels: TunnelPool
  /** Bytes received from and sent to callers on a cluster's port (TLS included), or undefined while it has no listener. */
  clusterTraffic: (cluster: string) => { received: number, sent: number } | undefined
  /** Whether the agent endpoint is listening. */
  agentEndpointUp: () => boolean
  /** Cluster ports listening now. */
  clusterListeners: () => number
  /** Whether the registry is synced (see TowerServer.readiness). */
  registrySynced: () => boolean
  /** Whether the server is draining. */
  draining: () => boolean
}

/** Why a caller was refused, as the `reason` label. */
export type CallerRefusalReason =
  | 'no-credentials' | 'token-unknown' | 'cert-untrusted' | 'cert-wrong-cluster' | 'cert-cluster-gone'
  | 'cert-no-uid' | 'cert-stale-uid' | 'cert-revoked' | 'cert-unreadable'

/** The `reason` label values of `tower_server_caller_auth_failures_total`. */
export const CALLER_REFUSAL_REASONS: readonly CallerRefusalReason[] = [
  'no-credentials', 'token-unknown', 'cert-untrusted', 'cert-wrong-cluster', 'cert-cluster-gone', 'cert-no-uid', 'cert-stale-uid', 'cert-revoked', 'cert-unreadable'
]

/** The `result` label values of `tower_server_agent_handshakes_total`; anything else counts as `other`. */
export const HANDSHAKE_RESULTS = new Set([
  'ok', 'wrong-path', 'not-websocket', 'wrong-subprotocol', 'invalid-agent-id', 'invalid-name', 'no-token',
  'unknown-cluster', 'wrong-token', 'admission-rate', 'draining', 'other'
])

/** The `operation` and `result` label values of `tower_server_endpointslice_writes_total`. */
export type EndpointSliceOperation = 'create' | 'update' | 'patch' | 'delete'
/** See {@link EndpointSliceOperation}. */
export type EndpointSliceResult = 'ok' | 'conflict' | 'error'

// Status codes with a label of their own; any other is counted as its class.
const CODES = new Set([101, 200, 201, 202, 204, 206, 304, 400, 401, 403, 404, 405, 406, 409, 410, 412, 413, 415, 422, 429, 431, 500, 501, 502, 503, 504])

/** The `code` label of a status code; `aborted` when no response head was sent. */
export function codeLabel (status: number | undefined): string {
  if (status === undefined || !Number.isInteger(status) || status < 100 || status > 599) return 'aborted'
  return CODES.has(status) ? String(status) : `${Math.floor(status / 100)}xx`
}

/** The `verb` label of a request (the derivation the audit log shares, request-verb.ts). */
function kubernetesVerb (method: string | undefined, url: string | undefined, upgrade: boolean): MetricsVerb {
  return metricsVerb(requestInfo(method, url, upgrade))
}

/** The `code` label of a GoAway code. */
function goAwayLabel (code: number): string {
  return code >= 0 && code <= 2 ? String(code) : 'other'
}

// Where a request's latency is cut: the whole exchange for short requests, up
// to several minutes for a large list.
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600]

// Agent ids remembered to tell a reconnect; beyond it the oldest are forgotten.
const SEEN_AGENTS_LIMIT = 16_384

/** Every metric name a server exports, as a scrape shows it (histograms with `_bucket`, `_sum`, `_count`), default process metrics included. */
export function serverMetricNames (): string[] {
  const registry = createMetricsRegistry()
  new ServerMetrics(registry)
  return exposedNames(registry)
}

/** The server's metrics; see the module header. */
export class ServerMetrics {
  /** The registry the metrics are registered in. */
  readonly registry: Registry
  #source: MetricsSource | undefined
  readonly #registered = new Set<string>()
  // Per cluster, the label sets of its request series, so that they can be removed with it.
  readonly #requestLabels = new Map<string, Map<string, { verb: string, code: string }>>()
  readonly #seenAgents = new Map<string, true>()
  readonly #requests: Counter<'cluster' | 'verb' | 'code'>
  readonly #latency: Histogram<'cluster' | 'verb' | 'code'>
  readonly #authFailures: Counter<'cluster' | 'reason'>
  readonly #handshakes: Counter<'result'>
  readonly #reconnects: Counter<'cluster'>
  readonly #goAways: Counter<'direction' | 'code'>
  readonly #stalls: Counter<'cluster'>
  readonly #sliceWrites: Counter<'operation' | 'result'>
  readonly #unauthenticatedRefused: Counter<'listener'>

  /** Registers every server metric in `registry`. */
  constructor (registry: Registry) {
    this.registry = registry
    const registers = [registry]
    const perCluster = (name: string, help: string, read: (source: MetricsSource, cluster: string) => number | undefined, counter = false): void => {
      const collect = (metric: Gauge<'cluster'> | Counter<'cluster'>): void => {
        metric.reset()
        const source = this.#source
        if (source === undefined) return
        for (const cluster of source.clusters()) {
          const v = read(source, cluster)
          if (v === undefined) continue
          if (metric instanceof Gauge) metric.set({ cluster }, v)
          else metric.inc({ cluster }, v)
        }
      }
      if (counter) new Counter({ name, help, labelNames: ['cluster'], registers, collect () { collect(this) } })
      else new Gauge({ name, help, labelNames: ['cluster'], registers, collect () { collect(this) } })
    }
    const flag = (name: string, help: string, read: (source: MetricsSource) => number): void => {
      const source = (): MetricsSource | undefined => this.#source
      new Gauge({ name, help, registers, collect () { const s = source(); this.set(s === undefined ? 0 : read(s)) } })
    }
    perCluster('tower_server_agents_connected', 'Agent sessions connected, per registered cluster.', (s, c) => s.tunnels.count(c))
    perCluster('tower_server_streams_open', 'Mux streams open on the cluster\'s agent sessions: requests, watches, exec sessions, passthrough connections, and idle keep-alive streams pooled for the next request.', (s, c) =>
      s.tunnels.tunnels(c).reduce((n, t) => n + t.session.numStreams, 0))
    perCluster('tower_server_cluster_received_bytes_total', 'Bytes received from callers on the cluster\'s port (TLS included), since its listener opened.', (s, c) => s.clusterTraffic(c)?.received, true)
    perCluster('tower_server_cluster_sent_bytes_total', 'Bytes sent to callers on the cluster\'s port (TLS included), since its listener opened.', (s, c) => s.clusterTraffic(c)?.sent, true)
    flag('tower_server_clusters', 'Clusters registered.', (s) => s.clusters().length)
    flag('tower_server_cluster_listeners_up', 'Cluster ports listening.', (s) => s.clusterListeners())
    flag('tower_server_agent_endpoint_up', '1 while the agent endpoint is listening.', (s) => s.agentEndpointUp() ? 1 : 0)
    flag('tower_server_registry_synced', '1 while the registry is synced.', (s) => s.registrySynced() ? 1 : 0)
    flag('tower_server_draining', '1 while the server is draining.', (s) => s.draining() ? 1 : 0)
    this.#requests = new Counter({ name: 'tower_server_requests_total', help: 'Caller requests on proxy-mode cluster ports, by Kubernetes verb and status code (answered by the member or by Tower).', labelNames: ['cluster', 'verb', 'code'], registers })
    this.#latency = new Histogram({ name: 'tower_server_request_duration_seconds', help: 'Caller request latency in seconds, from the request to the end of its response (for watch and connect: the whole watch or session).', labelNames: ['cluster', 'verb', 'code'], buckets: LATENCY_BUCKETS, registers })
    this.#authFailures = new Counter({ name: 'tower_server_caller_auth_failures_total', help: 'Callers refused with 401 on a cluster port, by reason.', labelNames: ['cluster', 'reason'], registers })
    this.#handshakes = new Counter({ name: 'tower_server_agent_handshakes_total', help: 'Agent handshakes on the agent endpoint, by result (ok, or why it was refused).', labelNames: ['result'], registers })
    this.#reconnects = new Counter({ name: 'tower_server_agent_reconnects_total', help: 'Agent sessions from an agent id already seen for the cluster (reconnects).', labelNames: ['cluster'], registers })
    this.#goAways = new Counter({ name: 'tower_server_goaways_total', help: 'yamux GoAway frames on agent sessions, by direction (sent, received) and code (0 normal, 1 protocol error, 2 internal error).', labelNames: ['direction', 'code'], registers })
    this.#stalls = new Counter({ name: 'tower_server_mux_window_stalls_total', help: 'Writes to an agent that waited because the stream\'s window at the agent was used up (a slow reader, or a window too small for the link).', labelNames: ['cluster'], registers })
    this.#sliceWrites = new Counter({ name: 'tower_server_endpointslice_writes_total', help: 'EndpointSlice writes to the host cluster (controller mode), by operation and result.', labelNames: ['operation', 'result'], registers })
    this.#unauthenticatedRefused = new Counter({ name: 'tower_server_unauthenticated_refused_total', help: 'Connections closed at accept because their source address already held --max-unauthenticated-per-source connections not yet authenticated, by listener (agent-endpoint, cluster).', labelNames: ['listener'], registers })
  }

  /** Binds the scrape-time source (the server, once). */
  bind (source: MetricsSource): void {
    this.#source = source
  }

  /**
   * The registered clusters changed: series of clusters no longer registered
   * are removed, and new ones may be counted.
   */
  setClusters (names: Iterable<string>): void {
    const wanted = new Set(names)
    for (const cluster of this.#registered) {
      if (wanted.has(cluster)) continue
      this.#registered.delete(cluster)
      for (const { verb, code } of this.#requestLabels.get(cluster)?.values() ?? []) {
        this.#requests.remove({ cluster, verb, code })
        this.#latency.remove({ cluster, verb, code })
      }
      this.#requestLabels.delete(cluster)
      for (const reason of CALLER_REFUSAL_REASONS) this.#authFailures.remove({ cluster, reason })
      this.#reconnects.remove({ cluster })
      this.#stalls.remove({ cluster })
      for (const key of this.#seenAgents.keys()) if (key.startsWith(`${cluster}\0`)) this.#seenAgents.delete(key)
    }
    for (const cluster of wanted) this.#registered.add(cluster)
  }

  /** Counts an HTTP/1.1 request once its response is over (or the caller left). */
  observeRequest (cluster: string, req: IncomingMessage, res: ServerResponse): void {
    const started = performance.now()
    const verb = kubernetesVerb(req.method, req.url, false)
    res.once('close', () => this.#count(cluster, verb, res.headersSent ? res.statusCode : undefined, started))
  }

  /**
   * The verb an h2 stream's request is counted under. The stream's relay
   * keeps it and calls {@link countStream} when the stream closes, so a
   * watch holds no closure of the metrics' own.
   */
  streamVerb (headers: IncomingHttpHeaders): MetricsVerb {
    return kubernetesVerb(String(headers[':method'] ?? ''), String(headers[':path'] ?? ''), false)
  }

  /** Counts an h2 stream's request: it closed with `status` (undefined when no head went out), `started` by performance.now(). */
  countStream (cluster: string, verb: MetricsVerb, status: number | undefined, started: number): void {
    this.#count(cluster, verb, status, started)
  }

  /**
   * Counts an upgrade request (exec, attach, port-forward, WebSocket watch)
   * once its connection closes. Its answer is written raw to the socket, so
   * the status is read from the first bytes written: `HTTP/1.1 NNN`.
   */
  observeUpgrade (cluster: string, req: IncomingMessage, socket: Duplex): void {
    const started = performance.now()
    const verb = kubernetesVerb(req.method, req.url, true)
    let status: number | undefined
    sniffStatus(socket, (code) => { status = code })
    socket.once('close', () => this.#count(cluster, verb, status, started))
  }

  /** Counts a caller refused with 401. */
  authFailure (cluster: string, reason: CallerRefusalReason): void {
    if (this.#registered.has(cluster)) this.#authFailures.inc({ cluster, reason })
  }

  /** Counts an agent handshake refused on the agent endpoint (`why` as logged). */
  handshakeRefused (why: string): void {
    this.#handshakes.inc({ result: HANDSHAKE_RESULTS.has(why) && why !== 'ok' ? why : 'other' })
  }

  /**
   * Counts an accepted agent: a handshake `ok`, a reconnect when its id was
   * seen before for the cluster, and its session's GoAways and window stalls.
   */
  agentAccepted (cluster: string, agentId: string, session: Session): void {
    this.#handshakes.inc({ result: 'ok' })
    const key = `${cluster}\0${agentId}`
    if (this.#seenAgents.has(key)) {
      this.#seenAgents.delete(key)
      if (this.#registered.has(cluster)) this.#reconnects.inc({ cluster })
    } else if (this.#seenAgents.size >= SEEN_AGENTS_LIMIT) {
      this.#seenAgents.delete(this.#seenAgents.keys().next().value!)
    }
    this.#seenAgents.set(key, true)
    session.on('goAwaySent', (code) => this.#goAways.inc({ direction: 'sent', code: goAwayLabel(code) }))
    session.on('goAwayReceived', (code) => this.#goAways.inc({ direction: 'received', code: goAwayLabel(code) }))
    session.on('windowStall', () => { if (this.#registered.has(cluster)) this.#stalls.inc({ cluster }) })
  }

  /** Counts an EndpointSlice write (controller mode; called by the EndpointSlice writer). */
  endpointSliceWrite (operation: EndpointSliceOperation, result: EndpointSliceResult): void {
    this.#sliceWrites.inc({ operation, result })
  }

  /** Counts a connection closed at accept by the per-source cap on unauthenticated connections. */
  unauthenticatedRefused (listener: 'agent-endpoint' | 'cluster'): void {
    this.#unauthenticatedRefused.inc({ listener })
  }

  #count (cluster: string, verb: MetricsVerb, status: number | undefined, started: number): void {
    // A request that ends after its cluster was removed must not bring its series back.
    if (!this.#registered.has(cluster)) return
    const code = codeLabel(status)
    let labels = this.#requestLabels.get(cluster)
    if (labels === undefined) this.#requestLabels.set(cluster, labels = new Map())
    const key = `${verb} ${code}`
    if (!labels.has(key)) labels.set(key, { verb, code })
    this.#requests.inc({ cluster, verb, code })
    this.#latency.observe({ cluster, verb, code }, (performance.now() - started) / 1000)
  }
}
