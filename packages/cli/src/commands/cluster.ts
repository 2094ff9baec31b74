/**
 * `tower cluster …`: register member clusters and manage their tokens.
 * These commands edit the state directory; a running server picks the
 * changes up by itself.
 */
import type { Argv } from 'yargs'
import { Registry, type ClusterMode } from '@tower/server'
import { outputOption, stateDirOption } from '../options.ts'

function openRegistry (stateDir: string): Registry {
  return Registry.open({ stateDir })
}

function agentCommand (registry: Registry, name: string, token: string): string {
  const host = registry.settings.advertiseHost
  return [
    'tower agent \\',
    `  --server wss://${host.includes(':') ? `[${host}]` : host}:${registry.readStatus()?.agentPort ?? 8443} \\`,
    `  --cluster ${name} \\`,
    `  --token ${token} \\`,
    '  --ca-file tower-ca.crt'
  ].join('\n')
}

/** Registers the command group. */
export function clusterCommand (y: Argv): Argv {
  return y.command('cluster', 'Register member clusters and manage their agent tokens', (c) => c
    .option('state-dir', stateDirOption)
    .option('output', outputOption)
    .command('add <name>', 'Register a cluster: allocate its port and create its agent token (shown once)', (a) => a
      .positional('name', { type: 'string', demandOption: true, describe: 'Cluster name (a DNS label)' })
      .option('mode', { choices: ['proxy', 'passthrough'], default: 'proxy', describe: 'proxy: TLS ends at Tower, callers authenticated, the agent adds its own credentials; passthrough: raw TCP, TLS end to end (TOWER_MODE)' })
      .option('impersonate', { type: 'boolean', default: false, describe: 'Forward the caller identity as Impersonate-User/Group (proxy mode) (TOWER_IMPERSONATE)' })
      .option('port', { type: 'number', describe: 'Use this port instead of allocating one from the range (TOWER_PORT)' }),
    (argv) => {
      const registry = openRegistry(argv['state-dir'])
      const { cluster, token } = registry.add(argv.name, { mode: argv.mode as ClusterMode, impersonate: argv.impersonate, port: argv.port })
      const caPem = registry.ca.certPem
      if (argv.output === 'json') {
        console.log(JSON.stringify({ name: cluster.name, mode: cluster.mode, port: cluster.port, impersonate: cluster.impersonate, token, caPem }, null, 2))
        return
      }
      console.log(`Cluster "${cluster.name}" registered (mode ${cluster.mode}, port ${cluster.port === 0 ? 'chosen when the server binds it' : cluster.port}).`)
      console.log('\nAgent token (shown only now; rotate with "tower cluster token --rotate"):\n')
      console.log(`  ${token}\n`)
      console.log('Save the CA below as tower-ca.crt where the agent runs, then start the agent:\n')
      console.log(agentCommand(registry, cluster.name, token))
      console.log('\nIn Kubernetes, put both in the agent Secret used by deploy/agent.yaml:\n')
      console.log(`  kubectl -n tower-system create secret generic tower-agent --from-literal=cluster=${cluster.name} --from-literal=token=${token} --from-file=ca.crt=tower-ca.crt`)
      console.log('\n' + caPem.trim())
    })
    .command('list', 'List clusters, their ports and connected agents', (a) => a, (argv) => {
      const registry = openRegistry(argv['state-dir'])
      const status = registry.readStatus()
      const rows = registry.clusters().map((c) => {
        const s = status?.clusters?.[c.name]
        return { name: c.name, mode: c.mode, port: (s?.port ?? c.port) || null, impersonate: c.impersonate, agents: s?.agents?.length ?? 0, connected: (s?.agents?.length ?? 0) > 0, callerTokens: c.callerTokens.length, createdAt: c.createdAt }
      })
      if (argv.output === 'json') {
        console.log(JSON.stringify(rows, null, 2))
        return
      }
      if (status === undefined) console.error('note: no status.json: the server has not run with this state directory, so agent counts are unknown')
      const table = [['NAME', 'MODE', 'PORT', 'AGENTS', 'IMPERSONATE'], ...rows.map((r) => [r.name, r.mode, String(r.port ?? '-'), String(r.agents), r.impersonate ? 'yes' : 'no'])]
      const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)))
      for (const r of table) console.log(r.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd())
    })
    .command('remove <name>', 'Unregister a cluster: close its port, disconnect its agents, drop its tokens', (a) => a
      .positional('name', { type: 'string', demandOption: true }), (argv) => {
      openRegistry(argv['state-dir']).remove(argv.name)
      console.log(`cluster "${argv.name}" removed`)
    })
    .command('token <name>', 'Rotate the agent token of a cluster, or revoke caller tokens', (a) => a
      .positional('name', { type: 'string', demandOption: true })
      .option('rotate', { type: 'boolean', default: false, describe: 'Create a new agent token; the old one stops working for new connections' })
      .option('revoke-caller', { type: 'string', describe: 'Revoke a caller token by id, or "*" for all' })
      .check((a) => {
        if (!a.rotate && a['revoke-caller'] === undefined) throw new Error('nothing to do: pass --rotate or --revoke-caller')
        return true
      }), (argv) => {
      const registry = openRegistry(argv['state-dir'])
      if (argv['revoke-caller'] !== undefined) {
        const n = registry.revokeCallerTokens(argv.name, argv['revoke-caller'])
        console.log(`${n} caller token(s) revoked`)
      }
      if (argv.rotate) {
        const token = registry.rotateAgentToken(argv.name)
        if (argv.output === 'json') console.log(JSON.stringify({ name: argv.name, token }))
        else console.log(`New agent token for "${argv.name}" (shown only now). Update the agent's Secret; connected agents stay connected until they reconnect:\n\n  ${token}`)
      }
    })
    .demandCommand(1, 'name a cluster subcommand: add, list, remove, token'))
}
