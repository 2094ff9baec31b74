/**
 * `tower cluster …`: register member clusters and manage their tokens, in
 * the registry --registry chooses (registry-options.ts): the state
 * directory, or Cluster resources and Secrets in a host cluster. A running
 * server picks the changes up by itself. Only `cluster add` may create a
 * state directory. Every command prints the same with either registry.
 */
import fs from 'node:fs'
import type { Argv, CommandModule } from 'yargs'
import type { ClusterMode, ClusterRegistry } from '@tower/server'
import { outputOption, parseDuration, UsageError } from '../options.ts'
import { registryWhere, waitOption, withRegistry, withRegistryOptions, type RegistryArgs } from '../registry-options.ts'
import { defaultAgentUrl, manifestCommand } from './manifest.ts'

/** The agent command, with the token read from a file: never on a command line (ps, shell history). */
async function agentCommand (registry: ClusterRegistry, name: string, tokenFile: string): Promise<string> {
  return [
    'tower agent \\',
    `  --server ${await defaultAgentUrl(registry)} \\`,
    `  --cluster ${name} \\`,
    `  --token-file ${tokenFile} \\`,
    '  --ca-file tower-ca.crt'
  ].join('\n')
}

/** Registers the command group. */
export function clusterCommand (y: Argv): Argv {
  return y.command('cluster', 'Register member clusters and manage their agent tokens', (c) => withRegistryOptions(c)
    .option('output', outputOption)
    .command('add <name>', 'Register a cluster: allocate its port and create its agent token (shown once)', (a) => a
      .positional('name', { type: 'string', demandOption: true, describe: 'Cluster name (a DNS label)' })
      .option('mode', { choices: ['proxy', 'passthrough'], default: 'proxy', describe: 'proxy: TLS ends at Tower, callers authenticated, the agent adds its own credentials; passthrough: raw TCP, TLS end to end (TOWER_MODE)' })
      .option('impersonate', { type: 'boolean', default: false, describe: 'Forward the caller identity as Impersonate-User/Group (proxy mode) (TOWER_IMPERSONATE)' })
      .option('port', { type: 'number', describe: 'Use this port (1-65535) instead of allocating one from the range (TOWER_PORT)' })
      .option('token-out', { type: 'string', describe: 'Write the agent token to this file (mode 0600) instead of printing it (TOWER_TOKEN_OUT)' })
      .option('wait', waitOption),
    async (argv) => {
      const addTimeoutMs = argv.wait === undefined ? undefined : parseDuration(argv.wait, '--wait')
      await withRegistry(argv, { create: true, addTimeoutMs }, async (registry) => {
      const { cluster, token } = await registry.add(argv.name, { mode: argv.mode as ClusterMode, impersonate: argv.impersonate, port: argv.port })
      const caPem = registry.ca.certPem
      const tokenOut = argv['token-out']
      if (tokenOut !== undefined) fs.writeFileSync(tokenOut, token + '\n', { mode: 0o600, flag: 'wx' })
      if (argv.output === 'json') {
        console.log(JSON.stringify({ name: cluster.name, mode: cluster.mode, port: cluster.port, impersonate: cluster.impersonate, ...(tokenOut === undefined ? { token } : { tokenFile: tokenOut }), caPem }, null, 2))
        return
      }
      const tokenFile = tokenOut ?? `${cluster.name}.token`
      const pending = registry.kind === 'kubernetes' ? `pending: the controller has not allocated one within ${argv.wait ?? '30s'} (is tower server running?)` : 'chosen when the server binds it'
      console.log(`Cluster "${cluster.name}" registered (mode ${cluster.mode}, port ${cluster.port === 0 ? pending : cluster.port}).`)
      if (tokenOut !== undefined) {
        console.log(`\nAgent token written to ${tokenOut} (mode 0600; rotate with "tower cluster token ${cluster.name} --rotate").`)
      } else {
        console.log(`\nAgent token (shown only now; rotate with "tower cluster token ${cluster.name} --rotate").`)
        console.log(`Save it in ${tokenFile}, readable only by you (an editor, or paste into: umask 077; cat > ${tokenFile}):\n`)
        console.log(`  ${token}\n`)
      }
      console.log('Save the CA below as tower-ca.crt where the agent runs, then start the agent:\n')
      console.log(await agentCommand(registry, cluster.name, tokenFile))
      console.log('\nIn Kubernetes, put both in the agent Secret used by deploy/agent.yaml:\n')
      console.log(`  kubectl -n tower-system create secret generic tower-agent --from-literal=cluster=${cluster.name} --from-file=token=${tokenFile} --from-file=ca.crt=tower-ca.crt`)
      console.log(`\nor print all the member needs (Namespace, RBAC, that Secret, the Deployment):\n\n  tower cluster manifest ${cluster.name}${registry.kind === 'file' ? ` --token-file ${tokenFile}` : ''} | kubectl apply -f -`)
      console.log('\n' + caPem.trim())
      })
    })
    .command('list', 'List clusters, their ports and, while a server runs, their connected agents', (a) => a, async (argv) => withRegistry(argv, {}, async (registry) => {
      const status = await registry.readStatus()
      const live = (name: string): { port?: unknown, agents?: unknown } | undefined => {
        const clusters: unknown = status?.clusters
        if (typeof clusters !== 'object' || clusters === null || !Object.hasOwn(clusters, name)) return undefined
        return (clusters as Record<string, { port?: unknown, agents?: unknown }>)[name]
      }
      const rows = registry.clusters().map((c) => {
        const s = live(c.name)
        const agents = status === undefined ? null : Array.isArray(s?.agents) ? s.agents.length : 0
        const port = typeof s?.port === 'number' && s.port > 0 ? s.port : c.port
        return { name: c.name, mode: c.mode, port: port || null, impersonate: c.impersonate, agents, connected: agents === null ? null : agents > 0, callerTokens: c.callerTokens.length, createdAt: c.createdAt }
      })
      if (argv.output === 'json') {
        console.log(JSON.stringify(rows, null, 2))
        return
      }
      if (status === undefined) console.error(`note: no tower server is running with ${registryWhere(argv as RegistryArgs)}, so no agent is connected (AGENTS shows -)`)
      const table = [['NAME', 'MODE', 'PORT', 'AGENTS', 'IMPERSONATE'], ...rows.map((r) => [r.name, r.mode, String(r.port ?? '-'), r.agents === null ? '-' : String(r.agents), r.impersonate ? 'yes' : 'no'])]
      const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)))
      for (const r of table) console.log(r.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd())
    }))
    .command('remove <name>', 'Unregister a cluster: close its port, disconnect its agents, drop its tokens', (a) => a
      .positional('name', { type: 'string', demandOption: true }), async (argv) => withRegistry(argv, {}, async (registry) => {
      await registry.remove(argv.name)
      console.log(`cluster "${argv.name}" removed`)
    }))
    .command('tokens <name>', 'List the caller tokens of a cluster (id, user, groups, creation time)', (a) => a
      .positional('name', { type: 'string', demandOption: true }), async (argv) => withRegistry(argv, {}, async (registry) => {
      const tokens = registry.callerTokens(argv.name)
      if (argv.output === 'json') {
        console.log(JSON.stringify(tokens, null, 2))
        return
      }
      if (tokens.length === 0) {
        console.error(`cluster "${argv.name}" has no caller tokens ("tower kubeconfig ${argv.name} --token" issues one)`)
        return
      }
      const table = [['ID', 'USER', 'GROUPS', 'CREATED'], ...tokens.map((t) => [t.id, t.user, t.groups.join(',') || '-', t.createdAt])]
      const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)))
      for (const r of table) console.log(r.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd())
    }))
    .command('token <name>', 'Rotate the agent token of a cluster, or revoke caller tokens', (a) => a
      .positional('name', { type: 'string', demandOption: true })
      .option('rotate', { type: 'boolean', default: false, describe: 'Create a new agent token; agents using the old one are disconnected (after --grace)' })
      .option('grace', { type: 'string', describe: 'With --rotate: the old token keeps working this long (e.g. 10m, 2h; at most 30d), so agents can be updated first [default: 0, disconnect at once]' })
      .option('token-out', { type: 'string', describe: 'With --rotate: write the new token to this file (mode 0600) instead of printing it' })
      .option('revoke-caller', { type: 'string', describe: 'Revoke a caller token by id (see "tower cluster tokens"), or "*" for all' })
      .check((a) => {
        if (!a.rotate && a['revoke-caller'] === undefined) throw new UsageError('nothing to do: pass --rotate or --revoke-caller')
        if (!a.rotate && (a.grace !== undefined || a['token-out'] !== undefined)) throw new UsageError('--grace and --token-out apply to --rotate only')
        return true
      }), async (argv) => withRegistry(argv, {}, async (registry) => {
      const graceMs = argv.grace === undefined ? 0 : parseDuration(argv.grace, '--grace')
      if (argv['revoke-caller'] !== undefined) {
        const n = await registry.revokeCallerTokens(argv.name, argv['revoke-caller'])
        console.log(`${n} caller token(s) revoked`)
      }
      if (argv.rotate) {
        const token = await registry.rotateAgentToken(argv.name, { graceMs })
        const tokenOut = argv['token-out']
        if (tokenOut !== undefined) fs.writeFileSync(tokenOut, token + '\n', { mode: 0o600, flag: 'wx' })
        const when = graceMs === 0 ? 'now' : `in ${argv.grace}`
        if (argv.output === 'json') {
          console.log(JSON.stringify({ name: argv.name, ...(tokenOut === undefined ? { token } : { tokenFile: tokenOut }), graceMs }))
        } else {
          console.log(`New agent token for "${argv.name}"${tokenOut === undefined ? ` (shown only now):\n\n  ${token}\n` : ` written to ${tokenOut}.`}`)
          console.log(`Agents still using the old token are disconnected ${when}: update the agent's token file or Secret.`)
        }
      }
    }))
    .command(manifestCommand as unknown as CommandModule)
    .demandCommand(1, 'name a cluster subcommand: add, list, remove, token, tokens, manifest'))
}
