/**
 * `tower server`: the agent endpoint and one port per member cluster, on
 * the registry --registry chooses: the state directory, or (controller mode)
 * the Cluster resources of a host cluster, where this process also runs the
 * controller once it holds the Lease.
 */
import fs from 'node:fs'
import { isIP } from 'node:net'
import type { Argv } from 'yargs'
import { pino } from 'pino'
import {
  AUDIT_LEVELS, AuditLog, createMetricsRegistry, DEFAULT_AUDIT_MAX_BACKUPS, DEFAULT_AUDIT_MAX_SIZE, defaultServerConfig, FileAuditSink, parsePortRange,
  StreamAuditSink, TowerServer, type AuditLevel, type AuditSink, type LineStream
} from '@tower/server'
import { HealthServer } from '@tower/transport'
import { createRootLogger } from '../logger.ts'
import { federationSettings, withFederationOptions } from '../federation-options.ts'
import { logLevelOption, parseHostPort, UsageError } from '../options.ts'
import { controllerSettings, openRegistry, registryChoice, registryWhere, withControllerOptions, withRegistryOptions } from '../registry-options.ts'
import { onShutdown } from '../signals.ts'

/** Past the drain timeout, how long the rest of a shutdown may take before the process exits anyway, in milliseconds. */
const SHUTDOWN_MARGIN_MS = 15_000

/** The kubernetes registry's hook for the EndpointSlice write counter. */
interface SliceWrites { observeEndpointSliceWrites: (hook: (op: 'create' | 'update' | 'delete', result: 'ok' | 'conflict' | 'error') => void) => void }

const agentDefaults = defaultServerConfig.agentEndpoint
const callerDefaults = defaultServerConfig.caller

/** Registers the command. */
export function serverCommand (y: Argv): Argv {
  return y.command('server', 'Run the Tower server: accept agents, serve one port per member cluster', (c) => withFederationOptions(withControllerOptions(withRegistryOptions(c)))
    .option('listen', { type: 'string', default: '0.0.0.0:8443', describe: 'host:port of the agent endpoint (wss); port 0 picks a free one (TOWER_LISTEN)' })
    .option('cluster-host', { type: 'string', default: '0.0.0.0', describe: 'Address the cluster ports bind to (TOWER_CLUSTER_HOST)' })
    .option('port-range', { type: 'string', describe: 'Cluster port range, e.g. 6000-6999; 0 = OS-chosen, then kept (file registry only). Saved in the state dir; with --registry kubernetes, the range the controller allocates from [default on first start: 6000-6999] (TOWER_PORT_RANGE)' })
    .option('advertise-host', { type: 'string', describe: 'Host name or IP that issued kubeconfigs point at; also a certificate SAN. Saved in the state dir [default on first start: 127.0.0.1] (TOWER_ADVERTISE_HOST)' })
    .option('san', { type: 'string', array: true, describe: 'Extra DNS name or IP for the serving certificate; repeatable. Saved in the state dir (TOWER_SAN)' })
    .option('accept-rate', { type: 'number', default: agentDefaults.acceptPerSecond, describe: 'Authenticated agent admissions per second; agents over it get 503 + Retry-After naming their turn, handed out at this rate; 0 = unlimited (TOWER_ACCEPT_RATE)' })
    .option('max-streams-per-agent', { type: 'number', default: agentDefaults.maxStreamsPerAgent, describe: 'Streams (requests, watches, exec sessions) open at once per agent; beyond it callers get 503 + Retry-After. Sent to the agent in the handshake (TOWER_MAX_STREAMS_PER_AGENT)' })
    .option('stream-open-timeout', { type: 'number', default: agentDefaults.streamOpenTimeoutMs, describe: 'Milliseconds a new stream waits for the agent\'s ACK; then the agent\'s session is closed as dead (TOWER_STREAM_OPEN_TIMEOUT)' })
    .option('agent-tls-handshake-timeout', { type: 'number', default: agentDefaults.tlsHandshakeTimeoutMs, describe: 'Milliseconds from TCP accept to a finished TLS handshake on the agent endpoint (TOWER_AGENT_TLS_HANDSHAKE_TIMEOUT)' })
    .option('agent-header-timeout', { type: 'number', default: agentDefaults.handshakeTimeoutMs, describe: 'Milliseconds for an agent to send its upgrade request head on the agent endpoint (TOWER_AGENT_HEADER_TIMEOUT)' })
    .option('agent-idle-timeout', { type: 'number', default: agentDefaults.idleTimeoutMs, describe: 'Milliseconds an agent endpoint connection may be idle before its upgrade; 0 = never. Accepted sessions use the mux keepalive instead (TOWER_AGENT_IDLE_TIMEOUT)' })
    .option('agent-max-connections', { type: 'number', default: agentDefaults.maxConnections, describe: 'Connections open at once on the agent endpoint: one per connected agent plus handshakes in progress, so keep it above the agents one replica may hold (a failed peer replica\'s too); it bounds file descriptors (two per agent with its cluster port) and memory (about 110 KB per connected agent measured at 5,000), not who may connect (TOWER_AGENT_MAX_CONNECTIONS)' })
    .option('max-header-bytes', { type: 'number', default: callerDefaults.maxHeaderBytes, describe: 'Largest request head on a cluster port; larger gets 431 (TOWER_MAX_HEADER_BYTES)' })
    .option('tls-handshake-timeout', { type: 'number', default: callerDefaults.tlsHandshakeTimeoutMs, describe: 'Milliseconds from TCP accept to a finished TLS handshake on a cluster port; on a passthrough port, to the caller\'s first byte (TOWER_TLS_HANDSHAKE_TIMEOUT)' })
    .option('header-timeout', { type: 'number', default: callerDefaults.headersTimeoutMs, describe: 'Milliseconds for a caller to send a request head on a proxy-mode cluster port (TOWER_HEADER_TIMEOUT)' })
    .option('keep-alive-timeout', { type: 'number', default: callerDefaults.keepAliveTimeoutMs, describe: 'Milliseconds a caller connection may sit idle between requests (TOWER_KEEP_ALIVE_TIMEOUT)' })
    .option('idle-timeout', { type: 'number', default: callerDefaults.idleTimeoutMs, describe: 'Milliseconds without a byte either way after which a caller connection (a request, a watch, a passthrough connection) is closed; upgraded connections (exec, attach, port-forward) are exempt; 0 = never (TOWER_IDLE_TIMEOUT)' })
    .option('h2-max-streams', { type: 'number', default: callerDefaults.h2MaxConcurrentStreams, describe: 'Streams (requests, watches) an HTTP/2 caller may have open at once on one connection to a proxy-mode cluster port; client-go opens another connection when one is full (TOWER_H2_MAX_STREAMS)' })
    .option('max-connections', { type: 'number', default: callerDefaults.maxConnections, describe: 'Connections open at once per cluster port (proxy and passthrough) (TOWER_MAX_CONNECTIONS)' })
    .option('max-unauthenticated-per-source', { type: 'number', default: callerDefaults.maxUnauthenticatedPerSource, describe: 'Connections one source address (an IPv6 /64) may hold at once, per port (agent endpoint and each cluster port), while still in the TLS handshake or not yet authenticated (agent token, caller credential; on a passthrough port, before the first byte); beyond it its new connections are closed at accept and counted in tower_server_unauthenticated_refused_total (TOWER_MAX_UNAUTHENTICATED_PER_SOURCE)' })
    .option('offline-grace', { type: 'number', default: callerDefaults.offlineGraceMs, describe: 'Milliseconds a cluster without an agent counts as reconnecting (503 + Retry-After); after it callers get 502 with the Tower message as plain text and no Retry-After, which kubectl prints at once (TOWER_OFFLINE_GRACE)' })
    .option('cert-check-interval', { type: 'number', default: defaultServerConfig.certCheckIntervalMs, describe: 'Milliseconds between checks of the server certificate; one near expiry is renewed and reloaded without a restart (TOWER_CERT_CHECK_INTERVAL)' })
    .option('metrics-listen', { type: 'string', describe: 'host:port of the plain-HTTP listener for /metrics (Prometheus), /livez and /readyz (kubelet probes); off when unset (TOWER_METRICS_LISTEN)' })
    .option('audit-level', { type: 'string', choices: AUDIT_LEVELS, default: 'Metadata', describe: 'Audit records per caller request: None, or Metadata (one JSON line per request, two per watch; see README "Audit log") (TOWER_AUDIT_LEVEL)' })
    .option('audit-log', { type: 'string', describe: 'Append audit records to this file, rotated by size; unset: stdout, one JSON object per line among the log lines (TOWER_AUDIT_LOG)' })
    .option('audit-log-max-size', { type: 'number', default: DEFAULT_AUDIT_MAX_SIZE, describe: 'Bytes at which --audit-log rotates to FILE.1 (TOWER_AUDIT_LOG_MAX_SIZE)' })
    .option('audit-log-max-backups', { type: 'number', default: DEFAULT_AUDIT_MAX_BACKUPS, describe: 'Rotated audit files kept (FILE.1 newest ... FILE.N); 0 keeps none (TOWER_AUDIT_LOG_MAX_BACKUPS)' })
    .option('drain-timeout', { type: 'number', default: 30_000, describe: 'Milliseconds a SIGTERM drain (--registry kubernetes) lets in-flight requests finish after the agents were sent to another replica; then watches end cleanly and what is left is reset (TOWER_DRAIN_TIMEOUT)' })
    .option('pod-name', { type: 'string', describe: 'With --registry kubernetes: this replica\'s Pod, owner of its EndpointSlices (downward API metadata.name) (TOWER_POD_NAME)' })
    .option('pod-uid', { type: 'string', describe: 'With --registry kubernetes: the uid of --pod-name (downward API metadata.uid) (TOWER_POD_UID)' })
    .option('pod-ip', { type: 'string', describe: 'With --registry kubernetes: the address this replica\'s EndpointSlices route callers to (downward API status.podIP); unset: --advertise-host when it is an IP (TOWER_POD_IP)' })
    .option('ready-file', { type: 'string', describe: 'Write {"agentPort":n} here once listening (TOWER_READY_FILE)' })
    .option('log-level', logLevelOption),
  async (argv) => {
    const log = createRootLogger(argv['log-level'])
    const listen = parseHostPort(argv.listen, '--listen')
    const metricsListen = argv['metrics-listen'] === undefined ? undefined : parseHostPort(argv['metrics-listen'], '--metrics-listen')
    if (argv['port-range'] !== undefined) parsePortRange(argv['port-range'])
    const kind = registryChoice(argv)
    const federation = federationSettings(argv, kind)
    const registry = await openRegistry(argv, {
      create: true,
      server: { advertiseHost: argv['advertise-host'], sans: argv.san, portRange: argv['port-range'], listenPort: listen.port },
      controller: kind === 'kubernetes' ? { ...controllerSettings(argv), federation, replica: replicaSettings(argv) } : undefined,
      logger: log
    })
    const auditSink = await openAuditSink(argv['audit-level'] as AuditLevel, argv['audit-log'], argv['audit-log-max-size'], argv['audit-log-max-backups'], log)
    const audit = new AuditLog({ level: argv['audit-level'] as AuditLevel, sink: auditSink, logger: log })
    const server = new TowerServer(registry, {
      listenHost: listen.host,
      listenPort: listen.port,
      clusterHost: argv['cluster-host'],
      certCheckIntervalMs: argv['cert-check-interval'],
      drainTimeoutMs: argv['drain-timeout'],
      agentEndpoint: {
        acceptPerSecond: argv['accept-rate'],
        acceptBurst: Math.max(1, argv['accept-rate']),
        handshakeTimeoutMs: argv['agent-header-timeout'],
        maxStreamsPerAgent: argv['max-streams-per-agent'],
        streamOpenTimeoutMs: argv['stream-open-timeout'],
        tlsHandshakeTimeoutMs: argv['agent-tls-handshake-timeout'],
        idleTimeoutMs: argv['agent-idle-timeout'],
        maxConnections: argv['agent-max-connections'],
        maxUnauthenticatedPerSource: argv['max-unauthenticated-per-source']
      },
      caller: {
        maxHeaderBytes: argv['max-header-bytes'],
        headersTimeoutMs: argv['header-timeout'],
        keepAliveTimeoutMs: argv['keep-alive-timeout'],
        offlineGraceMs: argv['offline-grace'],
        tlsHandshakeTimeoutMs: argv['tls-handshake-timeout'],
        idleTimeoutMs: argv['idle-timeout'],
        maxConnections: argv['max-connections'],
        maxUnauthenticatedPerSource: argv['max-unauthenticated-per-source'],
        h2MaxConcurrentStreams: argv['h2-max-streams']
      },
      metricsRegistry: metricsListen === undefined ? undefined : createMetricsRegistry(),
      audit,
      logger: log
    })
    // Up before the server starts, so that liveness answers while the registry syncs (readiness says why it is not ready).
    const health = metricsListen === undefined
      ? undefined
      : new HealthServer({
        ...metricsListen,
        metrics: async () => ({ contentType: server.metrics.registry.contentType, body: await server.metrics.registry.metrics() }),
        readiness: () => server.readiness(),
        logger: log
      })
    await health?.listen()
    // Several replicas (controller mode) drain: agents and callers move to another replica first.
    if (registry.kind === 'kubernetes') (registry as unknown as SliceWrites).observeEndpointSliceWrites((op, result) => { server.metrics.endpointSliceWrite(op, result) })
    const shutdown = async (): Promise<void> => { if (registry.kind === 'kubernetes') await server.drain(); else await server.stop() }
    onShutdown(log, async () => { await shutdown(); await health?.close(); await auditSink?.close() }, argv['drain-timeout'] + SHUTDOWN_MARGIN_MS)
    await server.start()
    if (argv['ready-file'] !== undefined) fs.writeFileSync(argv['ready-file'], JSON.stringify({ agentPort: server.agentPort }) + '\n')
    log.info({ registry: kind, where: registryWhere(argv), clusters: registry.clusters().length, advertiseHost: registry.settings.advertiseHost }, 'tower server running')
  })
}

/**
 * The audit sink the flags ask for: none at level None; the file, opened now
 * so an unwritable path fails at start-up; or stdout through the logger's
 * own destination, so records and log lines never interleave mid-line.
 */
async function openAuditSink (level: AuditLevel, file: string | undefined, maxSizeBytes: number, maxBackups: number, log: pino.Logger): Promise<AuditSink | undefined> {
  if (level === 'None') return undefined
  if (file !== undefined) {
    const sink = new FileAuditSink({ path: file, maxSizeBytes, maxBackups, logger: log })
    await sink.open()
    return sink
  }
  const destination = (log as unknown as Record<symbol, LineStream | undefined>)[pino.symbols.streamSym]
  return new StreamAuditSink({ stream: destination ?? process.stdout, logger: log })
}

/** --pod-ip, --pod-name, --pod-uid: where this replica runs (the downward API in deploy/controller). */
function replicaSettings (argv: { 'pod-ip'?: string, 'pod-name'?: string, 'pod-uid'?: string }): { address?: string, pod?: { name: string, uid: string } } | undefined {
  const ip = argv['pod-ip']
  if (ip !== undefined && isIP(ip) === 0) throw new UsageError(`--pod-ip must be an IPv4 or IPv6 address, got "${ip}"`)
  const name = argv['pod-name']; const uid = argv['pod-uid']
  if ((name === undefined) !== (uid === undefined)) throw new UsageError('--pod-name and --pod-uid go together (the downward API gives both)')
  if (ip === undefined && name === undefined) return undefined
  return { ...(ip !== undefined ? { address: ip } : {}), ...(name !== undefined && uid !== undefined ? { pod: { name, uid } } : {}) }
}
