/**
 * `tower demo`: a server and an agent in one process, tunnelling to the
 * current kubeconfig context (or any HTTPS URL, or a built-in sample
 * service), with a kubeconfig written for the tunnel endpoint.
 *
 * The demo runs on a temporary state directory it creates and removes when
 * it exits (it holds a CA key). It touches another registry only when
 * `--state-dir` is typed on the command line: TOWER_STATE_DIR, meant for
 * `tower server`, is ignored here, so a demo never rotates the token of a
 * real cluster called "demo".
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { Argv } from 'yargs'
import { hideBin } from 'yargs/helpers'
import { Agent, type UpstreamConfig } from '@tower/agent'
import { FileRegistry, issueKubeconfig, TowerServer } from '@tower/server'
import { createRootLogger } from '../logger.ts'
import { startDemoUpstream } from '../demo-upstream.ts'
import { givenOnCommandLine, logLevelOption } from '../options.ts'
import { onShutdown } from '../signals.ts'

/** Registers the command. */
export function demoCommand (y: Argv): Argv {
  return y.command('demo', 'Run a server and an agent in one process and print the kubectl command to try', (c) => c
    .option('upstream', { type: 'string', describe: 'Tunnel to this HTTPS URL [default: the current kubeconfig context, else a built-in sample service] (TOWER_UPSTREAM)' })
    .option('upstream-ca-file', { type: 'string', describe: 'CA bundle for --upstream (TOWER_UPSTREAM_CA_FILE)' })
    .option('upstream-insecure', { type: 'boolean', default: false, describe: 'Do not verify the --upstream certificate (TOWER_UPSTREAM_INSECURE)' })
    .option('kubeconfig', { type: 'string', describe: 'Kubeconfig whose context is tunnelled [default: $KUBECONFIG or ~/.kube/config] (TOWER_KUBECONFIG)' })
    .option('context', { type: 'string', describe: 'Context to tunnel [default: current-context] (TOWER_CONTEXT)' })
    .option('out', { type: 'string', default: 'tower-demo.kubeconfig', describe: 'Where to write the kubeconfig for the tunnel (TOWER_OUT)' })
    .option('state-dir', { type: 'string', describe: 'Use this existing or new state directory; only honoured when typed on the command line, never from TOWER_STATE_DIR [default: a new temporary one, removed on exit]' })
    .option('log-level', { ...logLevelOption, default: 'warn' }),
  async (argv) => {
    const log = createRootLogger(argv['log-level'])
    const explicit = argv['state-dir'] !== undefined && givenOnCommandLine('state-dir', hideBin(process.argv))
    const stateDir = explicit ? argv['state-dir']! : fs.mkdtempSync(path.join(os.tmpdir(), 'tower-demo-'))
    if (!explicit) process.once('exit', () => { fs.rmSync(stateDir, { recursive: true, force: true }) })
    // The settings are the demo's own: never rewrite those of a registry it was pointed at.
    const registry = await FileRegistry.open({ stateDir, server: explicit ? undefined : { advertiseHost: '127.0.0.1', portRange: '0' }, logger: log })
    const server = new TowerServer(registry, { listenHost: '127.0.0.1', listenPort: 0, clusterHost: '127.0.0.1', logger: log })
    await server.start()

    let upstream: UpstreamConfig
    let what: string
    let sample: { close: () => void } | undefined
    const kubeconfig = argv.kubeconfig ?? process.env.KUBECONFIG?.split(path.delimiter)[0] ?? path.join(os.homedir(), '.kube', 'config')
    if (argv.upstream !== undefined) {
      upstream = { kind: 'url', url: argv.upstream, caPem: argv['upstream-ca-file'] === undefined ? undefined : fs.readFileSync(argv['upstream-ca-file'], 'utf8'), insecureSkipVerify: argv['upstream-insecure'] }
      what = argv.upstream
    } else if (fs.existsSync(kubeconfig)) {
      upstream = { kind: 'kubeconfig', path: kubeconfig, context: argv.context }
      what = `${kubeconfig} (context ${argv.context ?? 'current'})`
    } else {
      const s = await startDemoUpstream()
      sample = s
      upstream = { kind: 'url', url: s.url, caPem: s.caPem }
      what = `a built-in sample service at ${s.url} (no kubeconfig found at ${kubeconfig})`
    }

    const name = 'demo'
    const token = registry.clusters().some((c) => c.name === name) ? await registry.rotateAgentToken(name) : (await registry.add(name)).token
    const agent = new Agent({ serverUrl: `wss://127.0.0.1:${server.agentPort}`, cluster: name, token, caPem: registry.ca.certPem, upstream, logger: log })
    const connected = new Promise<void>((resolve) => agent.once('connected', () => resolve()))
    agent.start()
    onShutdown(log, async () => { await agent.stop(); await server.stop(); sample?.close() })
    await connected
    await server.synced()
    fs.writeFileSync(argv.out, await issueKubeconfig(registry, { cluster: name }), { mode: 0o600 })

    console.log(`Tower demo is running.
  agent endpoint   wss://127.0.0.1:${server.agentPort}
  cluster "${name}"   https://127.0.0.1:${server.clusterPort(name)}  →  ${what}
  state directory  ${stateDir}

Try:
  kubectl --kubeconfig ${argv.out} get --raw /version
  kubectl --kubeconfig ${argv.out} get ns${sample !== undefined ? '   (needs a real cluster: pass --kubeconfig or --upstream)' : ''}

Ctrl-C stops it.`)
  })
}
