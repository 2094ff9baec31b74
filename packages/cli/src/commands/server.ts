/**
 * `tower server`: the agent endpoint and one port per member cluster.
 */
import fs from 'node:fs'
import type { Argv } from 'yargs'
import { parsePortRange, Registry, TowerServer } from '@tower/server'
import { createRootLogger } from '../logger.ts'
import { logLevelOption, parseHostPort, stateDirOption } from '../options.ts'
import { onShutdown } from '../signals.ts'

/** Registers the command. */
export function serverCommand (y: Argv): Argv {
  return y.command('server', 'Run the Tower server: accept agents, serve one port per member cluster', (c) => c
    .option('state-dir', stateDirOption)
    .option('listen', { type: 'string', default: '0.0.0.0:8443', describe: 'host:port of the agent endpoint (wss); port 0 picks a free one (TOWER_LISTEN)' })
    .option('cluster-host', { type: 'string', default: '0.0.0.0', describe: 'Address the cluster ports bind to (TOWER_CLUSTER_HOST)' })
    .option('port-range', { type: 'string', describe: 'Cluster port range, e.g. 6000-6999; 0 = OS-chosen, then kept. Saved in the state dir [default on first start: 6000-6999] (TOWER_PORT_RANGE)' })
    .option('advertise-host', { type: 'string', describe: 'Host name or IP that issued kubeconfigs point at; also a certificate SAN. Saved in the state dir [default on first start: 127.0.0.1] (TOWER_ADVERTISE_HOST)' })
    .option('san', { type: 'string', array: true, describe: 'Extra DNS name or IP for the serving certificate; repeatable. Saved in the state dir (TOWER_SAN)' })
    .option('accept-rate', { type: 'number', default: 200, describe: 'Agent admissions per second before 503 + Retry-After; 0 = unlimited (TOWER_ACCEPT_RATE)' })
    .option('max-streams-per-agent', { type: 'number', default: 16_384, describe: 'Streams (requests, watches, exec sessions) open at once per agent; beyond it callers get 503 + Retry-After (TOWER_MAX_STREAMS_PER_AGENT)' })
    .option('max-header-bytes', { type: 'number', default: 32 * 1024, describe: 'Largest request head on a cluster port; larger gets 431 (TOWER_MAX_HEADER_BYTES)' })
    .option('ready-file', { type: 'string', describe: 'Write {"agentPort":n} here once listening (TOWER_READY_FILE)' })
    .option('log-level', logLevelOption),
  async (argv) => {
    const log = createRootLogger(argv['log-level'])
    const listen = parseHostPort(argv.listen, '--listen')
    if (argv['port-range'] !== undefined) parsePortRange(argv['port-range'])
    const registry = Registry.open({
      stateDir: argv['state-dir'],
      server: { advertiseHost: argv['advertise-host'], sans: argv.san, portRange: argv['port-range'] },
      logger: log
    })
    const server = new TowerServer(registry, {
      listenHost: listen.host,
      listenPort: listen.port,
      clusterHost: argv['cluster-host'],
      agentEndpoint: { acceptPerSecond: argv['accept-rate'], acceptBurst: Math.max(1, argv['accept-rate']), handshakeTimeoutMs: 10_000, maxStreamsPerAgent: argv['max-streams-per-agent'] },
      caller: { maxHeaderBytes: argv['max-header-bytes'], headersTimeoutMs: 30_000, keepAliveTimeoutMs: 65_000 },
      logger: log
    })
    onShutdown(log, () => server.stop())
    await server.start()
    if (argv['ready-file'] !== undefined) fs.writeFileSync(argv['ready-file'], JSON.stringify({ agentPort: server.agentPort }) + '\n')
    log.info({ stateDir: registry.stateDir, clusters: registry.clusters().length, advertiseHost: registry.settings.advertiseHost }, 'tower server running')
  })
}
