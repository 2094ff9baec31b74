/**
 * `tower agent`: runs inside the member cluster, dials out to the server and
 * re-originates tunnelled requests to the local kube-apiserver with its own
 * credentials. Reconnects forever.
 */
import fs from 'node:fs'
import type { Argv } from 'yargs'
import { AGENT_DEFAULTS, Agent, CredentialsError, createMetricsRegistry, type Http2Mode, type UpstreamConfig } from '@tower/agent'
import { HealthServer } from '@tower/transport'
import { createRootLogger } from '../logger.ts'
import { logLevelOption, parseHostPort, UsageError } from '../options.ts'
import { onShutdown } from '../signals.ts'

/** Registers the command. */
export function agentCommand (y: Argv): Argv {
  return y.command('agent', 'Run the Tower agent: dial out to the server and serve the member\'s kube-apiserver through it', (c) => c
    .option('server', { type: 'string', demandOption: true, describe: 'Server URL, wss://host:8443 (TOWER_SERVER)' })
    .option('cluster', { type: 'string', demandOption: true, describe: 'Name this cluster was registered under (TOWER_CLUSTER)' })
    .option('token', { type: 'string', describe: 'Agent join token from "tower cluster add"; prefer --token-file (TOWER_TOKEN)' })
    .option('token-file', { type: 'string', describe: 'File holding the join token (TOWER_TOKEN_FILE)' })
    .option('ca-file', { type: 'string', describe: 'CA bundle the server certificate must chain to; printed by "tower cluster add" (TOWER_CA_FILE)' })
    .option('insecure-skip-verify', { type: 'boolean', default: false, describe: 'DANGEROUS: do not verify the server certificate; anyone in the path can steal the token (TOWER_INSECURE_SKIP_VERIFY)' })
    .option('server-name', { type: 'string', describe: 'Name to verify the server certificate against, if not the URL host (TOWER_SERVER_NAME)' })
    .option('upstream', { type: 'string', describe: 'Send traffic to this URL instead of the in-cluster apiserver (TOWER_UPSTREAM)' })
    .option('upstream-ca-file', { type: 'string', describe: 'CA bundle for --upstream (TOWER_UPSTREAM_CA_FILE)' })
    .option('upstream-token-file', { type: 'string', describe: 'Bearer token file for --upstream, re-read when it changes (TOWER_UPSTREAM_TOKEN_FILE)' })
    .option('upstream-insecure', { type: 'boolean', default: false, describe: 'Do not verify the --upstream certificate (TOWER_UPSTREAM_INSECURE)' })
    .option('kubeconfig', { type: 'string', describe: 'Use the apiserver and credentials of this kubeconfig instead of in-cluster ones (TOWER_KUBECONFIG)' })
    .option('context', { type: 'string', describe: 'Context of --kubeconfig [default: current-context] (TOWER_CONTEXT)' })
    .option('agent-id', { type: 'string', describe: 'This instance\'s id in server logs [default: random] (TOWER_AGENT_ID)' })
    .option('reconnect-min-ms', { type: 'number', default: 1000, describe: 'Smallest reconnect delay, ms (TOWER_RECONNECT_MIN_MS)' })
    .option('reconnect-max-ms', { type: 'number', default: 30_000, describe: 'Largest reconnect delay, ms (TOWER_RECONNECT_MAX_MS)' })
    .option('upstream-max-sockets', { type: 'number', default: AGENT_DEFAULTS.upstreamMaxSockets, describe: 'Connections to the apiserver, at most; also the streams this agent takes at once (more are refused, 503 at the server). Keep it at or above the server\'s --max-streams-per-agent (TOWER_UPSTREAM_MAX_SOCKETS)' })
    .option('upstream-http2', { type: 'string', choices: ['auto', 'off'], default: AGENT_DEFAULTS.upstreamHttp2, describe: 'HTTP/2 to the apiserver for plain requests: auto (when its ALPN offers h2) or off; exec/attach/port-forward always use HTTP/1.1 (TOWER_UPSTREAM_HTTP2)' })
    .option('upstream-h2-max-sessions', { type: 'number', default: AGENT_DEFAULTS.upstreamH2MaxSessions, describe: 'HTTP/2 connections to the apiserver, at most; another opens when every one carries the apiserver\'s stream limit, and past this requests use HTTP/1.1 (TOWER_UPSTREAM_H2_MAX_SESSIONS)' })
    .option('hop-frames', { type: 'boolean', default: true, describe: 'Offer the server compact binary hop frames for plain requests instead of HTTP/1.1 text (faster, less memory per watch); --no-hop-frames is for comparing the two and changes nothing with servers older than the feature, which ignore the offer (TOWER_HOP_FRAMES)' })
    .option('metrics-listen', { type: 'string', describe: 'host:port of the plain-HTTP listener for /metrics (Prometheus), /livez and /readyz (kubelet probes); off when unset (TOWER_METRICS_LISTEN)' })
    .option('allow-insecure-ws', { type: 'boolean', default: false, describe: 'Allow a cleartext ws:// server URL (tests only) (TOWER_ALLOW_INSECURE_WS)' })
    .option('log-level', logLevelOption)
    .epilog('The connection to the server honours HTTPS_PROXY and NO_PROXY. Without --upstream or --kubeconfig the agent uses the in-cluster apiserver ($KUBERNETES_SERVICE_HOST) and its ServiceAccount token, re-read as it rotates.')
    .check((a) => {
      if ((a.token === undefined) === (a['token-file'] === undefined)) throw new UsageError('pass exactly one of --token and --token-file')
      if (a.upstream !== undefined && a.kubeconfig !== undefined) throw new UsageError('--upstream and --kubeconfig are exclusive')
      for (const flag of ['upstream-ca-file', 'upstream-token-file'] as const) {
        if (a[flag] !== undefined && a.upstream === undefined) throw new UsageError(`--${flag} needs --upstream`)
      }
      if (a['upstream-insecure'] === true && a.upstream === undefined) throw new UsageError('--upstream-insecure needs --upstream')
      if (a.context !== undefined && a.kubeconfig === undefined) throw new UsageError('--context needs --kubeconfig')
      return true
    }),
  async (argv) => {
    const log = createRootLogger(argv['log-level'])
    const token = argv.token ?? readTokenFile('--token-file', argv['token-file']!)
    const metricsListen = argv['metrics-listen'] === undefined ? undefined : parseHostPort(argv['metrics-listen'], '--metrics-listen')
    const agent = new Agent({
      serverUrl: argv.server,
      allowInsecureWs: argv['allow-insecure-ws'],
      cluster: argv.cluster,
      token,
      caPem: argv['ca-file'] === undefined ? undefined : readFlagFile('--ca-file', argv['ca-file']),
      insecureSkipVerify: argv['insecure-skip-verify'],
      serverName: argv['server-name'],
      upstream: upstreamFrom(argv),
      httpsProxy: process.env.HTTPS_PROXY ?? process.env.https_proxy,
      noProxy: process.env.NO_PROXY ?? process.env.no_proxy,
      reconnectMinMs: argv['reconnect-min-ms'],
      reconnectMaxMs: argv['reconnect-max-ms'],
      upstreamMaxSockets: argv['upstream-max-sockets'],
      upstreamHttp2: argv['upstream-http2'] as Http2Mode,
      upstreamH2MaxSessions: argv['upstream-h2-max-sessions'],
      hopFrames: argv['hop-frames'],
      agentId: argv['agent-id'],
      metricsRegistry: metricsListen === undefined ? undefined : createMetricsRegistry(),
      logger: log
    })
    const health = metricsListen === undefined
      ? undefined
      : new HealthServer({
        ...metricsListen,
        metrics: async () => ({ contentType: agent.metrics.registry.contentType, body: await agent.metrics.registry.metrics() }),
        readiness: () => agent.readiness(),
        logger: log
      })
    await health?.listen()
    onShutdown(log, async () => { await agent.stop(); await health?.close() })
    agent.start()
  })
}

function upstreamFrom (argv: { upstream?: string, kubeconfig?: string, context?: string, 'upstream-ca-file'?: string, 'upstream-token-file'?: string, 'upstream-insecure': boolean }): UpstreamConfig {
  if (argv.upstream !== undefined) {
    const tokenFile = argv['upstream-token-file']
    // read once here so that a wrong path names the flag; the agent re-reads it as it changes
    if (tokenFile !== undefined) readTokenFile('--upstream-token-file', tokenFile)
    return {
      kind: 'url',
      url: argv.upstream,
      caPem: argv['upstream-ca-file'] === undefined ? undefined : readFlagFile('--upstream-ca-file', argv['upstream-ca-file']),
      tokenFile,
      insecureSkipVerify: argv['upstream-insecure']
    }
  }
  if (argv.kubeconfig !== undefined) return { kind: 'kubeconfig', path: argv.kubeconfig, context: argv.context }
  const host = process.env.KUBERNETES_SERVICE_HOST
  const port = Number(process.env.KUBERNETES_SERVICE_PORT ?? 443)
  if (host === undefined || host === '') throw new UsageError('not running in a cluster (KUBERNETES_SERVICE_HOST is unset): pass --upstream or --kubeconfig')
  return { kind: 'in-cluster', host, port }
}

/** Reads the file a flag names; TOWER_ERR_CREDENTIALS naming the flag and the path when it cannot. */
function readFlagFile (flag: string, path: string): string {
  try {
    return fs.readFileSync(path, 'utf8')
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    const why = e.code === undefined ? e.message : `${e.code}${FS_ERRORS.has(e.code) ? ` (${FS_ERRORS.get(e.code)})` : ''}`
    throw new CredentialsError(`cannot read ${flag} ${path}: ${why}`, { cause: err })
  }
}

const FS_ERRORS = new Map([['ENOENT', 'no such file'], ['EACCES', 'permission denied'], ['EISDIR', 'a directory, not a file']])

function readTokenFile (flag: string, path: string): string {
  const token = readFlagFile(flag, path).trim()
  if (token === '') throw new CredentialsError(`${flag} ${path} is empty`)
  return token
}
