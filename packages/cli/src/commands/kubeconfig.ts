/**
 * `tower kubeconfig <name>`: a kubeconfig whose server is the cluster's
 * Tower port.
 */
import fs from 'node:fs'
import path from 'node:path'
import type { Argv } from 'yargs'
import { issueKubeconfig, Registry } from '@tower/server'
import { stateDirOption } from '../options.ts'

/** Registers the command. */
export function kubeconfigCommand (y: Argv): Argv {
  return y.command('kubeconfig <name>', 'Print a kubeconfig for a cluster\'s Tower endpoint', (c) => c
    .positional('name', { type: 'string', demandOption: true, describe: 'Cluster name' })
    .option('state-dir', stateDirOption)
    .option('token', { type: 'boolean', default: false, describe: 'Authenticate with a new caller token (for KubeFed) instead of a client certificate' })
    .option('user', { type: 'string', describe: 'Identity in the credential (certificate CN); reaches the member as Impersonate-User with --impersonate clusters [default: tower-admin]' })
    .option('group', { type: 'string', array: true, describe: 'Group of that identity (certificate O); repeatable' })
    .option('validity-days', { type: 'number', default: 365, describe: 'Client certificate lifetime in days' })
    .option('server-host', { type: 'string', describe: 'Host the kubeconfig points at [default: the server\'s --advertise-host]' })
    .option('from', { type: 'string', describe: 'Passthrough clusters: the member\'s own kubeconfig to rewrite to the tunnel endpoint' })
    .option('context', { type: 'string', describe: 'With --from: the context to use [default: current-context]' })
    .option('out', { type: 'string', describe: 'Write to this file (mode 0600) instead of stdout' }),
  (argv) => {
    const registry = Registry.open({ stateDir: argv['state-dir'] })
    const yaml = issueKubeconfig(registry, {
      cluster: argv.name,
      serverHost: argv['server-host'],
      user: argv.user,
      groups: argv.group,
      token: argv.token,
      validityDays: argv['validity-days'],
      from: argv.from === undefined ? undefined : { text: fs.readFileSync(argv.from, 'utf8'), context: argv.context, baseDir: path.dirname(path.resolve(argv.from)) }
    })
    if (argv.out !== undefined) fs.writeFileSync(argv.out, yaml, { mode: 0o600 })
    else process.stdout.write(yaml)
  })
}
